"""The tenant's codec preference sticks to its calls: later offers (re-INVITE, UPDATE) are
answered from the tenant's list, not from the user agent's global one.

Tenant acme accepts ``G722, PCMA`` only; the user agent's configured list is the default
``PCMU, PCMA, G722, opus``. The caller (the user agent's own dial()) then re-offers without
the current codec: the answer must be the tenant's codec (PCMA), where the global list would
have picked PCMU, and an offer of codecs the tenant does not accept is refused (488).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agent.helpers import tone_ulaw, wait_until
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISessionConfig
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.config import Settings
from w3sipagent.sdp import SessionDescription, assign_version, create_offer
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable


def _ai(tenant: str, key: str, transport: str, cfg: AISessionConfig) -> Any:
    return ScriptedSession(cfg, greeting=ScriptedReply(tone_ulaw(200, amp=9000), "Hi."))


def _offer(call: Call, previous: SessionDescription, codecs: list[str]) -> SessionDescription:
    assert call.endpoint is not None
    offer = create_offer(
        codecs,
        local_address="127.0.0.1",
        port=call.endpoint.local_port,
        session_id=previous.origin.sess_id,
        session_version=1,
    )
    return assign_version(offer, previous)


async def test_reinvite_and_update_are_answered_with_the_tenants_codecs(tmp_path: Path) -> None:
    acme = TenantConfig(
        id="acme",
        hosts=["acme.example"],
        api_key=SecretRef(env="ACME_KEY"),
        codecs=["G722", "PCMA"],
        agents={"main": AgentConfig(instructions="You are acme.")},
    )
    svc = AgentService(
        Settings(records={"recordings_dir": str(tmp_path / "rec")}),  # type: ignore[arg-type]
        tenants=TenantTable({"acme": acme}),
        ai_factory=_ai,
        ua_config=fast_config(),
        environ={"ACME_KEY": "sk-acme-0123456789"},
        bridge_defaults=BridgeOptions(housekeeping_interval=0.02),
        register=False,
    )
    await svc.start()
    caller = UserAgent(fast_config())
    await caller.start()
    try:
        assert svc.ua is not None
        assert svc.ua.config.codecs[0].startswith("PCMU")  # the global list prefers PCMU
        call = await caller.dial(
            "sip:main@acme.example",
            proxy=("127.0.0.1", svc.port),
            codecs=["PCMU/8000", "PCMA/8000", "G722/8000"],
        )
        assert call.media.encoding.upper() == "G722"  # the tenant's first choice
        await wait_until(lambda: call.call_id in svc.bridges, what="bridged")
        agent_call = svc.bridges[call.call_id].call
        assert isinstance(agent_call, Call)
        sdp = call.local_sdp
        assert isinstance(sdp, SessionDescription)

        # re-INVITE without the current codec, PCMU (not the tenant's) first
        sdp = _offer(call, sdp, ["PCMU/8000", "PCMA/8000"])
        r = await caller.request_in_dialog(
            call, "INVITE", body=bytes(sdp), content_type="application/sdp"
        )
        assert r.status == 200
        answer = SessionDescription.parse(r.body)
        assert [c.encoding for c in answer.media[0].codecs if not c.is_telephone_event] == ["PCMA"]
        await wait_until(lambda: agent_call.media.encoding.upper() == "PCMA", what="PCMA")

        # UPDATE with the tenant's second choice first: the current codec stays
        sdp = _offer(call, sdp, ["PCMA/8000", "G722/8000"])
        r = await caller.request_in_dialog(
            call, "UPDATE", body=bytes(sdp), content_type="application/sdp"
        )
        assert r.status == 200
        answer = SessionDescription.parse(r.body)
        assert answer.media[0].codecs[0].encoding == "PCMA"

        # codecs the tenant does not accept (the global list would): refused, call kept
        sdp = _offer(call, sdp, ["opus/48000/2", "PCMU/8000"])
        r = await caller.request_in_dialog(
            call, "INVITE", body=bytes(sdp), content_type="application/sdp"
        )
        assert r.status == 488
        assert not agent_call.ended and agent_call.media.encoding.upper() == "PCMA"
        await call.hangup()
    finally:
        await caller.close(timeout=0)
        await svc.close(timeout=0)
