"""Hostile and faulty callers against a running AgentService (issue 12): every admitted call
ends in exactly one CDR and releases its AI session, RTP ports and tenant slot, whatever the
path; limits hold under a burst; refusals reach the activity log and the metrics.

The callers are raw UDP sockets (they send exactly what a broken or hostile peer sends);
the AI is the scripted session. The autouse fixture of ``conftest.py`` checks the release
property after each test as well.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import tone_pcm, tone_ulaw, wait_until
from tests.asyncio.helpers import RawUac, RtpPeer, fast_config, sdp
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.mappers import digest_users
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISessionConfig
from w3sipagent.asyncio.media import MediaConfig
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.config import Settings
from w3sipagent.ids import SecureIdSource
from w3sipagent.metrics import Metrics
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.store import CdrStore
from w3sipagent.sip.auth import DigestClient
from w3sipagent.sip.message import SipResponse
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable

ENV = {"ACME_KEY": "sk-acme-0123456789"}


class AI:
    """Scripted sessions (``start_delay``: each takes that long to connect)."""

    def __init__(self, start_delay: float = 0.0, fail: bool = False) -> None:
        self.made: list[ScriptedSession] = []
        self.start_delay = start_delay
        self.fail = fail

    def __call__(self, tenant: str, key: str, transport: str, cfg: AISessionConfig) -> Any:
        s = ScriptedSession(
            cfg,
            greeting=ScriptedReply(tone_ulaw(300, amp=9000), "Hi."),
            start_delay=self.start_delay,
            fail_start="refused" if self.fail else None,
        )
        self.made.append(s)
        return s


def acme(**kw: Any) -> TenantTable:
    values: dict[str, Any] = {
        "id": "acme",
        "hosts": ["acme.example"],
        "api_key": SecretRef(env="ACME_KEY"),
        "agents": {"support": AgentConfig(instructions="You are Acme.", greeting="Greet.")},
    }
    values.update(kw)
    return TenantTable({"acme": TenantConfig(**values)})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CdrStore]:
    s = CdrStore(f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}", retry_delay=0.01)
    await s.open()
    yield s
    await s.close()


Make = Callable[..., Any]


@pytest.fixture
async def make(tmp_path: Path, store: CdrStore) -> AsyncIterator[Make]:
    """``await make(ai, tenants=..., ua={...})`` → a started service with its own metrics."""
    opened: list[AgentService] = []

    async def build(ai: AI, *, tenants: TenantTable | None = None, **ua: Any) -> AgentService:
        settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
        svc = AgentService(
            settings,
            tenants=tenants or acme(),
            store=store,
            ai_factory=ai,
            ua_config=fast_config(**ua),
            environ=ENV,
            metrics=Metrics(),
            bridge_defaults=BridgeOptions(housekeeping_interval=0.02, close_timeout=0.5),
        )
        await svc.start()
        opened.append(svc)
        return svc

    yield build
    for svc in opened:
        await svc.close(timeout=0)


async def cdr_of(svc: AgentService, store: CdrStore, call_id: str) -> CallRecord:
    """The call's CDR once written (exactly one in the service's finished list)."""
    await wait_until(
        lambda: any(c.call_id == call_id for c in svc.finished), timeout=8, what="the CDR"
    )
    assert [c.call_id for c in svc.finished].count(call_id) == 1
    await store.flush()
    cdr = await store.get_cdr(call_id)
    assert cdr is not None
    return cdr


def calls_total(svc: AgentService, disposition: str) -> float:
    assert svc.metrics is not None
    value = svc.metrics.registry.get_sample_value(
        "w3sipagent_calls_total", {"tenant": "acme", "disposition": disposition}
    )
    return value or 0.0


def released(svc: AgentService, ai: AI) -> bool:
    """The call's AI sessions closed, its RTP ports and tenant slot given back."""
    assert svc.ua is not None
    return (
        all(s.closed for s in ai.made)
        and svc.ua.ports.in_use == 0
        and not svc.ua.calls
        and svc.admission.held("acme") == 0
    )


async def invite(uac: RawUac, body: bytes, branch: str = "z9hG4bKinv1") -> SipResponse:
    """Send one INVITE; its final response (provisional ones skipped)."""
    uac.send(uac.request("INVITE", body=body, branch=branch))
    while True:
        r = await uac.recv_response(timeout=5)
        if r.status >= 200:
            return r


# ---------------------------------------------------------------- every path ends in a CDR


async def test_a_200_never_acked_ends_in_one_cdr_and_closes_the_early_ai_session(
    make: Make, store: CdrStore
) -> None:
    """The issue's reproduction: the RTP inactivity timeout fires before the ACK wait."""
    ai = AI()
    svc = await make(ai, media=MediaConfig(inactivity_timeout=0.3), ack_wait=5.0)
    uac, rtp = RawUac(svc.port), await RtpPeer.open()
    try:
        ok = await invite(uac, sdp(rtp.port))
        assert ok.status == 200
        cdr = await cdr_of(svc, store, uac.call_id)
        assert (cdr.disposition, cdr.reason, cdr.hangup_by) == (
            Disposition.TIMEOUT,
            "rtp_timeout",
            "system",
        )
        assert cdr.answer_at is not None and cdr.end_at is not None
        assert len(ai.made) == 1  # the early session, started at admission...
        await wait_until(lambda: released(svc, ai), what="session closed, ports released")
        assert calls_total(svc, "timeout") == 1
    finally:
        uac.close()
        rtp.close()


async def test_ack_timeout_after_a_cancel_of_the_200_ends_in_a_failed_cdr(
    make: Make, store: CdrStore
) -> None:
    ai = AI()
    svc = await make(ai, ack_wait=0.3)
    uac, rtp = RawUac(svc.port), await RtpPeer.open()
    try:
        ok = await invite(uac, sdp(rtp.port), branch="z9hG4bKcancelme")
        assert ok.status == 200
        uac.send(uac.request("CANCEL", body=b"", branch="z9hG4bKcancelme"))  # too late
        cdr = await cdr_of(svc, store, uac.call_id)
        assert (cdr.disposition, cdr.reason, cdr.sip_code) == (
            Disposition.FAILED,
            "ack_timeout",
            408,
        )
        await wait_until(lambda: released(svc, ai), what="session closed, ports released")
        assert calls_total(svc, "failed") == 1
    finally:
        uac.close()
        rtp.close()


@pytest.mark.parametrize("ack", [False, True])
async def test_an_offerless_invite_ends_in_a_cdr_acked_without_answer_or_not_acked(
    make: Make, store: CdrStore, ack: bool
) -> None:
    ai = AI()
    svc = await make(ai, ack_wait=0.3)
    uac = RawUac(svc.port)
    try:
        ok = await invite(uac, b"")
        assert ok.status == 200 and ok.body  # our offer is in the 200
        if ack:
            uac.send(uac.ack(ok))  # without the answer: the call cannot go on (BYE, 488)
        cdr = await cdr_of(svc, store, uac.call_id)
        assert cdr.disposition is Disposition.FAILED
        assert cdr.reason == ("no_answer_in_ack" if ack else "ack_timeout")
        await wait_until(lambda: released(svc, ai), what="ports released")
    finally:
        uac.close()


async def test_the_caller_leaves_while_the_early_ai_session_is_still_connecting(
    make: Make, store: CdrStore
) -> None:
    ai = AI(start_delay=1.0)
    svc = await make(ai)
    uac, rtp = RawUac(svc.port), await RtpPeer.open()
    try:
        ok = await invite(uac, sdp(rtp.port))
        assert ok.status == 200 and len(ai.made) == 1 and not ai.made[0].started
        uac.cseq = 2
        uac.send(uac.request("BYE", body=b"", to_tag=ok.to.tag))  # before the ACK
        cdr = await cdr_of(svc, store, uac.call_id)
        assert (cdr.disposition, cdr.hangup_by) == (Disposition.CALLER_HANGUP, "caller")
        await wait_until(lambda: released(svc, ai), what="the early session closed")
        assert not ai.made[0].started  # cancelled while connecting, never went live
    finally:
        uac.close()
        rtp.close()


async def test_a_failing_call_handler_still_writes_the_cdr(
    make: Make, store: CdrStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ai = AI()
    svc = await make(ai)

    parts = svc.admission.session_parts
    asked: list[object] = []

    def broken(*args: Any, **kwargs: Any) -> Any:  # fine at admission, fails in the handler
        asked.append(args)
        if len(asked) > 1:
            raise RuntimeError("no session recipe")
        return parts(*args, **kwargs)

    monkeypatch.setattr(svc.admission, "session_parts", broken)
    uac, rtp = RawUac(svc.port), await RtpPeer.open()
    try:
        ok = await invite(uac, sdp(rtp.port))
        uac.send(uac.ack(ok))
        bye = await uac.recv_request(timeout=5)  # the user agent hangs the call up
        assert bye.method == "BYE"
        cdr = await cdr_of(svc, store, uac.call_id)
        assert cdr.disposition is Disposition.FAILED
        assert cdr.reason == "internal error: RuntimeError"
        await wait_until(lambda: released(svc, ai), what="the early session closed")
    finally:
        uac.close()
        rtp.close()


@pytest.mark.parametrize("acked", [False, True])
async def test_shutdown_mid_call_writes_a_shutdown_cdr(
    make: Make, store: CdrStore, acked: bool
) -> None:
    ai = AI()
    svc = await make(ai)
    uac, rtp = RawUac(svc.port), await RtpPeer.open()
    try:
        ok = await invite(uac, sdp(rtp.port))
        if acked:
            uac.send(uac.ack(ok))
            await wait_until(lambda: uac.call_id in svc.bridges, what="bridged")
        await svc.close(timeout=0)
        cdr = await cdr_of(svc, store, uac.call_id)
        assert (cdr.disposition, cdr.hangup_by) == (Disposition.SHUTDOWN, "system")
        assert released(svc, ai)
    finally:
        uac.close()
        rtp.close()


def _wav(path: Path, ms: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone_pcm(ms, 8000, 9000))
    return path


async def test_a_caller_hanging_up_during_the_fallback_is_a_fallback_call(
    make: Make, store: CdrStore, tmp_path: Path
) -> None:
    ai = AI(fail=True)
    tenants = acme(fallback={"wav": str(_wav(tmp_path / "sorry.wav", 3000))})
    svc = await make(ai, tenants=tenants)
    caller = UserAgent(fast_config())
    await caller.start()
    try:
        call = await caller.dial("sip:support@acme.example", proxy=("127.0.0.1", svc.port))

        def in_fallback() -> bool:
            b = svc.bridges.get(call.call_id)
            return b is not None and any(e["kind"] == "fallback" for e in b.cdr.events)

        await wait_until(in_fallback, timeout=5, what="the fallback playing")
        await call.hangup()
        cdr = await cdr_of(svc, store, call.call_id)
        assert (cdr.disposition, cdr.hangup_by) == (Disposition.FALLBACK, "caller")
    finally:
        await caller.close(timeout=0)


# ---------------------------------------------------------------- limits under a burst


async def _burst(svc: AgentService, n: int) -> tuple[list[int], list[RawUac]]:
    """``n`` INVITEs at once, each from its own socket; their final statuses."""
    rtp = await RtpPeer.open()
    uacs = [RawUac(svc.port) for _ in range(n)]
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(invite(u, sdp(rtp.port))) for u in uacs]
    finally:
        rtp.close()
    return [t.result().status for t in tasks], uacs


async def test_a_burst_never_over_admits_the_tenant_limit(make: Make, store: CdrStore) -> None:
    ai = AI()
    svc = await make(ai, tenants=acme(max_concurrent_calls=4))
    statuses, uacs = await _burst(svc, 30)
    try:
        assert statuses.count(200) == 4, sorted(statuses)
        assert statuses.count(486) == 26
        assert svc.stats.admitted == 4
    finally:
        await svc.close(timeout=0)  # the 4 calls end (shutdown): 4 CDRs
        for u in uacs:
            u.close()
    assert svc.stats.cdrs == 4


async def test_a_burst_never_over_admits_max_calls(make: Make, store: CdrStore) -> None:
    ai = AI()
    svc = await make(ai, max_calls=4)
    statuses, uacs = await _burst(svc, 30)
    try:
        assert statuses.count(200) == 4, sorted(statuses)
        assert statuses.count(503) == 26
    finally:
        await svc.close(timeout=0)
        for u in uacs:
            u.close()
    await store.flush()
    rows = await store.list_activity()
    assert sum(r.count for r in rows if r.code == 503) == 26
    assert svc.metrics is not None
    assert (
        svc.metrics.registry.get_sample_value(
            "w3sipagent_rejected_calls_total", {"code": "503", "reason": "max_calls"}
        )
        == 26
    )


# ---------------------------------------------------------------- refusals in the records


async def test_a_source_outside_allowed_sources_is_refused_and_recorded(
    make: Make, store: CdrStore
) -> None:
    ai = AI()
    svc = await make(ai, allowed_sources=("10.0.0.0/8",))
    uac = RawUac(svc.port)
    try:
        r = await invite(uac, sdp(9))
        assert r.status == 403
    finally:
        uac.close()
    await store.flush()
    rows = [r for r in await store.list_activity() if r.code == 403]
    assert [(r.source, r.count) for r in rows] == [("127.0.0.1", 1)]
    assert svc.metrics is not None
    assert (
        svc.metrics.registry.get_sample_value(
            "w3sipagent_rejected_calls_total", {"code": "403", "reason": "source_not_allowed"}
        )
        == 1
    )
    assert ai.made == [] and svc.stats.admitted == 0


# ---------------------------------------------------------------- digest from the config


def _authorize(challenge: SipResponse, uri: str, password: str) -> str:
    _, value = DigestClient().build_authorization(
        challenge.headers.get_all("WWW-Authenticate"),
        method="INVITE",
        uri=uri,
        username="bob",
        password=password,
        body=b"",
        ids=SecureIdSource(),
        proxy=False,
    )
    return value


async def test_digest_auth_of_invites_is_a_deployment_setting(
    store: CdrStore, tmp_path: Path
) -> None:
    """``sip.auth.users`` turns the challenge on: no or wrong credentials get 401 and no
    call, a replayed nonce count gets 401, the right password gets the call."""
    env = {**ENV, "BOB_PW": "bob-secret-pw"}
    settings = Settings(
        sip={"auth": {"users": {"bob": {"env": "BOB_PW"}}}},  # type: ignore[arg-type]
        records={"recordings_dir": str(tmp_path / "rec")},  # type: ignore[arg-type]
    )
    ua = replace(fast_config(), **digest_users(settings, env))  # type: ignore[arg-type]
    ai = AI()
    svc = AgentService(
        settings, tenants=acme(), store=store, ai_factory=ai, ua_config=ua, environ=env
    )
    await svc.start()
    uac, rtp = RawUac(svc.port), await RtpPeer.open()
    uri = f"sip:support@acme.example;fs_path=sip:127.0.0.1:{svc.port}"
    try:
        uac.send(uac.request("INVITE", uri=uri, body=sdp(rtp.port), branch="z9hG4bKa1"))
        challenge = await uac.recv_response()
        assert challenge.status == 401 and challenge.headers.get_all("WWW-Authenticate")
        uac.send(uac.request("ACK", uri=uri, branch="z9hG4bKa1", to_tag=challenge.to.tag))
        uac.cseq = 2
        wrong = _authorize(challenge, uri, "not-the-password")
        uac.send(
            uac.request("INVITE", uri=uri, body=sdp(rtp.port), extra=[f"Authorization: {wrong}"])
        )
        refused = await uac.recv_response()
        assert refused.status == 401
        uac.send(uac.request("ACK", uri=uri, to_tag=refused.to.tag, cseq=2))
        uac.cseq = 3
        right = _authorize(refused, uri, "bob-secret-pw")
        uac.send(
            uac.request("INVITE", uri=uri, body=sdp(rtp.port), extra=[f"Authorization: {right}"])
        )
        ok = await uac.recv_response()
        assert ok.status == 200
        uac.send(uac.ack(ok))
        await wait_until(lambda: uac.call_id in svc.bridges, what="the authenticated call")
        assert svc.stats.admitted == 1 and len(ai.made) == 1
        replayer = RawUac(svc.port)  # the same Authorization, another call: replayed nc
        try:
            replayer.send(
                replayer.request(
                    "INVITE", uri=uri, body=sdp(rtp.port), extra=[f"Authorization: {right}"]
                )
            )
            replay = await replayer.recv_response()
            assert replay.status == 401
        finally:
            replayer.close()
        assert svc.stats.admitted == 1  # neither the wrong password nor the replay got in
    finally:
        await svc.close(timeout=0)
        uac.close()
        rtp.close()


async def test_an_outbound_call_that_cannot_be_sent_still_has_its_cdr(
    make: Make, store: CdrStore
) -> None:
    ai = AI()
    svc = await make(ai)
    with pytest.raises(Exception, match="no DNS here"):  # nowhere to send it
        await svc.dial("sip:bob@pbx.invalid", "acme")
    assert [c.disposition for c in svc.finished] == [Disposition.FAILED]
    assert svc.stats.dialed == 1 and svc.stats.cdrs == 1


async def test_an_invite_cancelled_during_its_admission_gets_a_cdr(
    make: Make, store: CdrStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ai = AI()
    svc = await make(ai)
    read_key = svc.admission.read_api_key
    reading = asyncio.Event()

    async def slow_key(ctx: Any) -> None:  # a key file on a slow disk
        reading.set()
        await asyncio.sleep(0.3)
        await read_key(ctx)

    monkeypatch.setattr(svc.admission, "read_api_key", slow_key)
    uac, rtp = RawUac(svc.port), await RtpPeer.open()
    try:
        uac.send(uac.request("INVITE", body=sdp(rtp.port), branch="z9hG4bKslow"))
        await asyncio.wait_for(reading.wait(), 5)
        uac.send(uac.request("CANCEL", body=b"", branch="z9hG4bKslow"))
        statuses = set()
        while 487 not in statuses:
            statuses.add((await uac.recv_response(timeout=5)).status)
        cdr = await cdr_of(svc, store, uac.call_id)
        assert (cdr.disposition, cdr.hangup_by, cdr.sip_code) == (
            Disposition.CALLER_HANGUP,
            "caller",
            487,
        )
        assert cdr.answer_at is None
        await wait_until(lambda: released(svc, ai), what="the early session closed")
    finally:
        uac.close()
        rtp.close()
