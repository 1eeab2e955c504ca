"""The agent service end to end over loopback SIP: the user agent's own dial() is the caller.

The AI is the scripted session (injected as the service's AI factory), so these tests also
check what configuration and which API key each tenant's call used (isolation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import rms_pcm, tone_pcm, tone_ulaw, wait_until
from tests.asyncio.helpers import fast_config
from tests.postgres import pg_cluster
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISessionConfig, AudioFormat
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import CallRejected, UserAgent
from w3sipagent.codecs.g711 import ulaw_encode
from w3sipagent.config import Settings
from w3sipagent.records.cdr import Disposition
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable, WebhookToolConfig

__all__ = ["pg_cluster"]

ENV = {"ACME_KEY": "sk-acme-0123456789", "GLOBEX_KEY": "sk-globex-9876543210", "HOOK": "tok-1"}


def tenants() -> TenantTable:
    acme = TenantConfig(
        id="acme",
        hosts=["acme.example"],
        api_key=SecretRef(env="ACME_KEY"),
        agents={
            "support": AgentConfig(
                instructions="You are Acme support.",
                greeting="Greet as Acme.",
                tools=[
                    WebhookToolConfig(
                        name="acme_orders", url="http://127.0.0.1:9/acme", auth_env="HOOK"
                    )
                ],
            )
        },
        transfers={"sales": "sip:sales@pbx.acme.example"},
        max_concurrent_calls=1,
    )
    globex = TenantConfig(
        id="globex",
        hosts=["globex.example"],
        api_key=SecretRef(env="GLOBEX_KEY"),
        agents={
            "desk": AgentConfig(
                instructions="You are the Globex desk.",
                voice="cedar",
                tools=[WebhookToolConfig(name="globex_crm", url="http://127.0.0.1:9/globex")],
            )
        },
        transfers={"billing": "sip:billing@pbx.globex.example"},
    )
    return TenantTable({"acme": acme, "globex": globex})


class Recorder:
    """The service's AI factory: scripted sessions, remembering who asked with which key."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str, str, AISessionConfig, ScriptedSession]] = []

    def __call__(
        self, tenant: str, key: str, transport: str, cfg: AISessionConfig
    ) -> ScriptedSession:
        greeting = ScriptedReply(tone_ulaw(600, amp=9000), f"Hello from {tenant}.")
        s = ScriptedSession(cfg, greeting=greeting)
        self.made.append((tenant, key, transport, cfg, s))
        return s


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}"
    return request.getfixturevalue("pg_cluster").create_database()  # type: ignore[no-any-return]


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[CdrStore]:
    s = CdrStore(db_url, retry_delay=0.01)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def rig(
    store: CdrStore, tmp_path: Path
) -> AsyncIterator[tuple[AgentService, UserAgent, Recorder]]:
    ai = Recorder()
    settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
    svc = AgentService(
        settings,
        tenants=tenants(),
        store=store,
        ai_factory=ai,
        ua_config=fast_config(),
        environ=dict(ENV),
    )
    await svc.start()
    caller = UserAgent(fast_config())
    await caller.start()
    yield svc, caller, ai
    await caller.close(timeout=0)
    await svc.close(timeout=0)


async def _listen(call: Call, into: list[bytes]) -> None:
    async for pcm in call.audio():
        into.append(pcm)


async def test_call_is_bridged_greeting_heard_audio_passthrough_and_cdr(
    rig: Any, store: CdrStore
) -> None:
    svc, caller, ai = rig
    call = await caller.dial(
        "sip:support@acme.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    heard: list[bytes] = []
    listener = asyncio.create_task(_listen(call, heard))
    await wait_until(lambda: len(heard) >= 40, timeout=15, what="greeting heard")
    # the AI session was created at admission, before the 200 OK, and is the one in use
    assert len(ai.made) == 1
    tenant, key, transport, cfg, session = ai.made[0]
    bridge = svc.bridges[call.call_id]
    assert bridge.sessions == [session]
    assert (tenant, key, transport) == ("acme", "sk-acme-0123456789", "websocket")
    assert cfg.input_format is AudioFormat.PCMU and cfg.output_format is AudioFormat.PCMU
    assert session.responses_requested == ["Greet as Acme."]
    assert max(rms_pcm(f) for f in heard) > 3000  # the greeting reached the caller
    # caller speech reaches the AI as the very PCMU bytes sent
    pcm = tone_pcm(400, 8000, 7000, 300.0)
    n0 = len(session.audio)
    await call.play(pcm)
    await wait_until(lambda: len(session.audio) - n0 >= 3200, timeout=10, what="speech at AI")
    got = bytes(session.audio[n0:])
    assert ulaw_encode(pcm) in got  # untouched payload bytes, no transcoding
    await call.hangup()
    await asyncio.wait_for(listener, 5)
    await wait_until(lambda: not svc.bridges, what="bridge ended")
    await store.flush()
    cdr = await store.get_cdr(call.call_id)
    assert cdr is not None
    assert (cdr.tenant, cdr.agent, cdr.codec, cdr.ai_format) == (
        "acme",
        "support",
        "PCMU",
        "audio/pcmu",
    )
    assert cdr.disposition is Disposition.CALLER_HANGUP and cdr.hangup_by == "caller"
    assert cdr.request_uri == "sip:support@acme.example"
    assert cdr.source is not None and cdr.source.startswith("127.0.0.1:")
    assert [(e.speaker, e.text) for e in cdr.transcript] == [("agent", "Hello from acme.")]
    assert cdr.answer_at is not None and cdr.end_at is not None and cdr.end_at >= cdr.answer_at
    assert cdr.rtp and cdr.usage.total_tokens > 0
    assert "sk-acme" not in cdr.model_dump_json()  # the key is never in a CDR


async def test_cdr_answer_time_is_the_200_ok_not_the_ack(rig: Any, store: CdrStore) -> None:
    """A caller that ACKs late (a slow PBX, a lost first 200 OK): the CDR's answer time is
    when our 200 OK went out, not when the ACK arrived."""
    from tests.asyncio.helpers import RawUac, RtpPeer, sdp

    svc, _caller, _ai = rig
    uac = RawUac(svc.port)
    rtp = await RtpPeer.open()
    try:
        uac.send(uac.request("INVITE", body=sdp(rtp.port)))
        ok = await uac.recv_response()
        sent = time.monotonic()
        assert ok.status == 200
        for _ in range(6):  # no ACK yet: the 200 OK is retransmitted (T1 20 ms: 0.38 s in all)
            again = await uac.recv_response()
            assert again.status == 200 and again.cseq.method == "INVITE"
        late = time.monotonic() - sent
        assert late >= 0.3
        uac.send(uac.ack(ok))
        await wait_until(lambda: bool(svc.bridges), what="bridged after the ACK")
        uac.cseq = 2
        uac.send(uac.request("BYE", to_tag=ok.to.tag, body=b""))
        while (r := await uac.recv_response()).cseq.method != "BYE":
            assert r.status == 200  # our 200 OK retransmitted before the ACK got there
        assert r.status == 200
    finally:
        uac.close()
        if rtp.transport is not None:
            rtp.transport.close()
    await wait_until(lambda: not svc.bridges, what="bridge ended")
    await store.flush()
    cdr = await store.get_cdr(uac.call_id)
    assert cdr is not None and cdr.answer_at is not None and cdr.end_at is not None
    assert (cdr.answer_at - cdr.invite_at).total_seconds() < 0.2
    assert (cdr.end_at - cdr.answer_at).total_seconds() >= late - 0.005


async def test_unknown_tenant_404_and_tenant_limit_486_go_to_the_activity_log(
    rig: Any, store: CdrStore
) -> None:
    svc, caller, ai = rig
    with pytest.raises(CallRejected) as nf:
        await caller.dial("sip:x@nobody.example", proxy=("127.0.0.1", svc.port))
    assert nf.value.status == 404
    first = await caller.dial("sip:support@acme.example", proxy=("127.0.0.1", svc.port))
    with pytest.raises(CallRejected) as busy:
        await caller.dial("sip:support@acme.example", proxy=("127.0.0.1", svc.port))
    assert busy.value.status == 486
    await first.hangup()
    await wait_until(lambda: not svc.bridges, what="bridge ended")
    await store.flush()
    acts = {(a.tenant, a.code, a.reason): a.count for a in await store.list_activity()}
    assert acts[(None, 404, "no tenant for x@nobody.example")] == 1
    assert acts[("acme", 486, "tenant call limit")] == 1
    assert acts[("acme", 200, "accepted")] == 1
    assert await store.count_cdrs() == 1  # rejections are not CDRs
    assert len(ai.made) == 1


async def test_tenant_isolation_key_prompt_tools_and_destinations(rig: Any) -> None:
    svc, caller, ai = rig
    a = await caller.dial("sip:support@acme.example", proxy=("127.0.0.1", svc.port))
    b = await caller.dial("sip:desk@globex.example", proxy=("127.0.0.1", svc.port))
    await wait_until(lambda: len(svc.bridges) == 2, what="two bridges")
    made = {m[0]: m for m in ai.made}
    assert set(made) == {"acme", "globex"}
    _, key_a, _, cfg_a, _ = made["acme"]
    _, key_b, _, cfg_b, _ = made["globex"]
    assert key_a == "sk-acme-0123456789" and key_b == "sk-globex-9876543210"
    assert (
        cfg_a.instructions == "You are Acme support."
        and cfg_b.instructions == "You are the Globex desk."
    )
    assert cfg_b.voice == "cedar"
    names_a = {t.name for t in cfg_a.tools}
    names_b = {t.name for t in cfg_b.tools}
    assert "acme_orders" in names_a and "globex_crm" not in names_a
    assert "globex_crm" in names_b and "acme_orders" not in names_b
    tr_a = next(t for t in cfg_a.tools if t.name == "transfer_call")
    tr_b = next(t for t in cfg_b.tools if t.name == "transfer_call")
    assert tr_a.parameters["properties"]["destination"]["enum"] == ["sales"]
    assert tr_b.parameters["properties"]["destination"]["enum"] == ["billing"]
    # the registries themselves: a globex call cannot reach acme's webhook or destination
    bridge_b = svc.bridges[b.call_id]
    assert "acme_orders" not in bridge_b.tools
    result = await bridge_b.tools.run(bridge_b, "transfer_call", '{"destination": "sales"}')
    assert result.error is not None and "allowed: billing" in result.error
    webhook_b = bridge_b.tools.tools["globex_crm"]
    assert webhook_b.handler.__self__.config.url == "http://127.0.0.1:9/globex"
    await a.hangup()
    await b.hangup()
    await wait_until(lambda: not svc.bridges, what="bridges ended")


async def test_missing_api_key_falls_back_and_is_not_leaked(rig: Any, store: CdrStore) -> None:
    svc, caller, ai = rig
    environ = svc.environ
    assert isinstance(environ, dict)
    del environ["ACME_KEY"]  # acme's variable is gone; keys are read at call time
    call = await caller.dial("sip:support@acme.example", proxy=("127.0.0.1", svc.port))
    end = await asyncio.wait_for(call.wait_ended(), 10)
    assert end.reason == "remote_bye"
    assert ai.made == []
    await wait_until(lambda: not svc.bridges, what="bridge ended")
    await store.flush()
    cdr = await store.get_cdr(call.call_id)
    assert cdr is not None and cdr.disposition is Disposition.AI_ERROR
    failed = [e for e in cdr.events if e["kind"] == "ai_connect_failed"]
    assert failed and "ACME_KEY is not set" in failed[0]["error"]
