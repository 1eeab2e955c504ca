"""REGISTER mode end to end with a real Kamailio 5.6 as the registrar (on 127.0.0.1).

``AgentService`` registers tenant acme's ``registrations.pbx`` (user ``support``) at
Kamailio; a caller dialling ``sip:support@KAMAILIO`` through Kamailio reaches the agent
(Kamailio's ``lookup("location")`` rewrites the Request-URI to our Contact), the call is
bridged to the scripted AI and the CDR names the tenant. Draining unregisters: Kamailio's
location table forgets us and the next call gets 404. Skipped with the reason when
Kamailio or the peer recipes are missing (tests/interop/conftest.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import rms_pcm, tone_ulaw, wait_until
from tests.asyncio.helpers import fast_config
from tests.interop.conftest import KamailioFactory, interop_log, kamailio
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService, registration_contact_user
from w3sipagent.ai.session import AISessionConfig
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.register import RegisterConfig
from w3sipagent.asyncio.useragent import CallRejected, UserAgent
from w3sipagent.config import Settings
from w3sipagent.records.cdr import Disposition
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable
from w3sipagent.tenants.models import RegistrationConfig

__all__ = ["interop_log", "kamailio"]

pytestmark = pytest.mark.interop


def _ai(tenants: list[str]) -> Any:
    def make(tenant: str, key: str, transport: str, cfg: AISessionConfig) -> ScriptedSession:
        tenants.append(tenant)
        return ScriptedSession(cfg, greeting=ScriptedReply(tone_ulaw(400, amp=9000), "Hi."))

    return make


async def _listen(call: Call, into: list[bytes]) -> None:
    async for pcm in call.audio():
        into.append(pcm)


async def test_agent_service_registers_at_kamailio_and_a_call_to_the_aor_is_the_tenants(
    kamailio: KamailioFactory, tmp_path: Path, interop_log: list[str]
) -> None:
    kam = await kamailio()
    acme = TenantConfig(
        id="acme",
        hosts=[],  # reachable only through the registration
        api_key=SecretRef(env="ACME_KEY"),
        agents={"main": AgentConfig(instructions="You are acme.", greeting="Greet.")},
        registrations={
            "pbx": RegistrationConfig(
                registrar=f"sip:127.0.0.1:{kam.port}", user="support", expires=60
            )
        },
    )
    tenants: list[str] = []
    svc = AgentService(
        Settings(records={"recordings_dir": str(tmp_path / "rec")}),  # type: ignore[arg-type]
        tenants=TenantTable({"acme": acme}),
        ai_factory=_ai(tenants),
        ua_config=fast_config(),
        environ={"ACME_KEY": "sk-acme-0123456789"},
        register_config=RegisterConfig(request_timeout=3, backoff_initial=0.2, backoff_jitter=0),
        bridge_defaults=BridgeOptions(housekeeping_interval=0.02),
    )
    caller = UserAgent(fast_config())
    await svc.start()
    await caller.start()
    try:
        await wait_until(
            lambda: svc.registration_statuses()["acme/pbx"].state == "registered",
            timeout=5,
            what="registered at Kamailio",
        )
        status = svc.registration_statuses()["acme/pbx"]
        interop_log.append(f"registered: {status}")
        assert status.code == 200 and status.expires is not None and 0 < status.expires <= 60
        contact = f"sip:{registration_contact_user('acme', 'pbx')}@127.0.0.1:{svc.port}"
        dump = kam.kamcmd("ul.dump")
        assert contact in dump, dump[-1500:]

        aor = f"sip:support@127.0.0.1:{kam.port}"
        call = await caller.dial(aor, proxy=("127.0.0.1", kam.port), timeout=8)
        heard: list[bytes] = []
        listener = asyncio.create_task(_listen(call, heard))
        await wait_until(lambda: len(heard) >= 10, timeout=5, what="greeting heard")
        assert max(rms_pcm(f) for f in heard) > 2000
        assert tenants == ["acme"]
        bridge = svc.bridges[call.call_id]
        interop_log.append(f"call via Kamailio: {bridge.call.info.request_uri}")
        assert bridge.call.info.request_uri.startswith(
            f"sip:{registration_contact_user('acme', 'pbx')}@"
        )
        await call.hangup()
        await asyncio.wait_for(listener, 3)
        await wait_until(
            lambda: any(c.call_id == call.call_id for c in svc.finished), timeout=5, what="cdr"
        )
        cdr = next(c for c in svc.finished if c.call_id == call.call_id)
        interop_log.append(f"CDR: tenant={cdr.tenant} agent={cdr.agent} {cdr.disposition}")
        assert cdr.tenant == "acme" and cdr.agent == "main"
        assert cdr.disposition is Disposition.CALLER_HANGUP

        svc.drain()  # unregisters: Kamailio forgets the contact
        await wait_until(lambda: svc.registration_statuses() == {}, timeout=5, what="unregistered")
        assert "reg-acme-pbx" not in kam.kamcmd("ul.dump")
        with pytest.raises(CallRejected) as ei:
            await caller.dial(aor, proxy=("127.0.0.1", kam.port), timeout=8)
        assert ei.value.status == 404
    finally:
        await caller.close(timeout=0)
        await svc.close(timeout=0)
