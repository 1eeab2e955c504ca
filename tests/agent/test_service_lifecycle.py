"""AgentService over loopback SIP: per-tenant codecs, registration tenants, hot reload,
usage caps, retention, admission flood, the CDR of every failure path, the CDR webhook.

The caller is the user agent's own ``dial()``; the AI is the scripted session.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import rms_pcm, tone_pcm, tone_ulaw, wait_until
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService, negotiated_encoding, tenant_codec_preference
from w3sipagent.ai.session import AISessionConfig, AudioFormat
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.media import MediaConfig
from w3sipagent.asyncio.useragent import CallRejected, UserAgent
from w3sipagent.config import Settings, load_settings
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable
from w3sipagent.tenants.resolver import registration_id

ENV = {"ACME_KEY": "sk-acme-0123456789", "HOOK_TOKEN": "tok-hook"}


class AI:
    """Scripted sessions; ``fail_from``: sessions from this index on fail to start."""

    def __init__(self, fail_from: int | None = None, greeting_ms: int = 400) -> None:
        self.made: list[tuple[str, AISessionConfig, ScriptedSession]] = []
        self.fail_from = fail_from
        self.greeting_ms = greeting_ms

    def __call__(self, tenant: str, key: str, transport: str, cfg: AISessionConfig) -> Any:
        n = len(self.made)
        fail = "refused" if self.fail_from is not None and n >= self.fail_from else None
        if cfg.output_format is AudioFormat.PCM24K:
            audio = tone_pcm(self.greeting_ms, 24000, 9000)
        else:
            audio = tone_ulaw(self.greeting_ms, amp=9000)
        s = ScriptedSession(
            cfg, greeting=ScriptedReply(audio, f"Hi from {tenant}."), fail_start=fail
        )
        self.made.append((tenant, cfg, s))
        return s


def tenant(tid: str = "acme", **kw: Any) -> TenantConfig:
    values: dict[str, Any] = {
        "id": tid,
        "hosts": [f"{tid}.example"],
        "api_key": SecretRef(env="ACME_KEY"),
        "agents": {"main": AgentConfig(instructions=f"You are {tid}.", greeting="Greet.")},
    }
    values.update(kw)
    return TenantConfig(**values)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CdrStore]:
    s = CdrStore(f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}", retry_delay=0.01)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def make(tmp_path: Path, store: CdrStore) -> AsyncIterator[Callable[..., Any]]:
    """``await make(tenants, ai, **service_kwargs)`` → (service, caller user agent)."""
    opened: list[tuple[AgentService, UserAgent]] = []

    async def build(
        tenants: TenantTable | Callable[[], TenantTable],
        ai: AI,
        *,
        ua: dict[str, Any] | None = None,
        caller_ua: dict[str, Any] | None = None,
        **kw: Any,
    ) -> tuple[AgentService, UserAgent]:
        settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
        kw.setdefault("store", store)
        kw.setdefault("bridge_defaults", BridgeOptions(housekeeping_interval=0.02))
        svc = AgentService(
            settings,
            tenants=tenants,
            ai_factory=ai,
            ua_config=fast_config(**(ua or {})),
            environ=ENV,
            **kw,
        )
        await svc.start()
        caller = UserAgent(fast_config(**(caller_ua or {})))
        await caller.start()
        opened.append((svc, caller))
        return svc, caller

    yield build
    for svc, caller in opened:
        await caller.close(timeout=0)
        await svc.close(timeout=0)


async def _listen(call: Call, into: list[bytes]) -> None:
    async for pcm in call.audio():
        into.append(pcm)


async def _ended(svc: AgentService, store: CdrStore, call_id: str) -> CallRecord:
    await wait_until(lambda: call_id not in svc.bridges, timeout=5, what="bridge ended")
    await wait_until(lambda: any(c.call_id == call_id for c in svc.finished), timeout=5, what="cdr")
    await store.flush()
    cdr = await store.get_cdr(call_id)
    assert cdr is not None
    return cdr


# ---------------------------------------------------------------- codecs


def test_tenant_codec_preference_maps_names_to_the_configured_specs() -> None:
    configured = ("PCMU/8000", "opus/48000/2")
    assert tenant_codec_preference(["G722", "opus", "PCMU"], configured) == (
        "G722/8000",
        "opus/48000/2",
        "PCMU/8000",
    )
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0 8 9 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    assert negotiated_encoding(offer, ["PCMA/8000", "PCMU/8000"]) == "PCMA"
    assert negotiated_encoding(offer, ["G722/8000"]) == "G722"
    assert negotiated_encoding(offer, ["opus/48000/2"]) is None
    assert negotiated_encoding(b"not sdp", ["PCMU/8000"]) is None


@pytest.mark.parametrize(
    ("codecs", "encoding", "fmt"),
    [
        (["PCMA", "PCMU"], "PCMA", AudioFormat.PCMA),
        (["PCMU", "PCMA"], "PCMU", AudioFormat.PCMU),
        (["G722", "PCMU"], "G722", AudioFormat.PCM24K),
    ],
)
async def test_tenant_codec_preference_is_negotiated_and_the_early_session_matches(
    make: Any, store: CdrStore, codecs: list[str], encoding: str, fmt: AudioFormat
) -> None:
    ai = AI()
    svc, caller = await make(TenantTable({"acme": tenant(codecs=codecs)}), ai)
    call = await caller.dial(
        "sip:main@acme.example",
        proxy=("127.0.0.1", svc.port),
        codecs=["PCMU/8000", "PCMA/8000", "G722/8000"],
    )
    assert call.media.encoding.upper() == encoding  # the tenant's order, not the global one
    heard: list[bytes] = []
    listener = asyncio.create_task(_listen(call, heard))
    await wait_until(lambda: len(heard) >= 10, timeout=15, what="greeting heard")
    assert max(rms_pcm(f) for f in heard) > 2000
    # one AI session: the one started at admission had the format the call got
    assert len(ai.made) == 1
    _, cfg, session = ai.made[0]
    assert cfg.input_format is fmt and cfg.output_format is fmt
    assert svc.bridges[call.call_id].sessions == [session]
    await call.hangup()
    await asyncio.wait_for(listener, 5)
    cdr = await _ended(svc, store, call.call_id)
    assert cdr.codec is not None and cdr.codec.upper() == encoding
    assert cdr.ai_format == fmt.value


# ---------------------------------------------------------------- tenants


async def test_registration_the_call_arrived_through_names_the_tenant(
    make: Any, store: CdrStore
) -> None:
    acme = tenant(
        hosts=[],
        registrations={"main": {"registrar": "sip:pbx.example", "user": "1000"}},
    )
    ai = AI()
    svc, caller = await make(TenantTable({"acme": acme}), ai)
    assert svc.ua is not None
    svc.ua.add_local_contact("reg-acme-main", registration_id("acme", "main"))
    with pytest.raises(CallRejected) as unknown:  # our address, but no registration
        await caller.dial("sip:someone@127.0.0.1", proxy=("127.0.0.1", svc.port))
    assert unknown.value.status == 404
    call = await caller.dial("sip:reg-acme-main@127.0.0.1", proxy=("127.0.0.1", svc.port))
    await wait_until(lambda: call.call_id in svc.bridges, what="bridge")
    assert [m[0] for m in ai.made] == ["acme"]
    await call.hangup()
    cdr = await _ended(svc, store, call.call_id)
    assert cdr.tenant == "acme" and cdr.agent == "main"


RELOAD_TOML = """
[tenants.acme]
hosts = ["acme.example"]
api_key = {{ env = "ACME_KEY" }}
[tenants.acme.transfers]
desk = "{desk}"
[tenants.acme.agents.main]
instructions = "{prompt}"
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()  # the mtime moves even on a coarse clock
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_reload_keeps_active_calls_on_their_snapshot(
    make: Any, store: CdrStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = tmp_path / "w3sipagent.toml"
    _write(conf, RELOAD_TOML.format(prompt="v1", desk="sip:desk1@pbx.example"))
    reg = TenantRegistry(
        load_settings(conf, {}, environ={}), lambda: load_settings(conf, {}, environ={})
    )
    ai = AI()
    svc, caller = await make(lambda: reg.table, ai)
    proxy = ("127.0.0.1", svc.port)
    first = await caller.dial("sip:main@acme.example", proxy=proxy)
    await wait_until(lambda: first.call_id in svc.bridges, what="first bridge")
    _write(conf, RELOAD_TOML.format(prompt="v2", desk="sip:desk2@pbx.example"))
    assert reg.reload() is True
    second = await caller.dial("sip:main@acme.example", proxy=proxy)
    await wait_until(lambda: second.call_id in svc.bridges, what="second bridge")
    assert [m[1].instructions for m in ai.made] == ["v1", "v2"]
    b1, b2 = svc.bridges[first.call_id], svc.bridges[second.call_id]
    assert dict(b1.options.transfers) == {"desk": "sip:desk1@pbx.example"}
    assert dict(b2.options.transfers) == {"desk": "sip:desk2@pbx.example"}
    # the first call is still up, and a reconnection of it uses its own snapshot
    assert not first.ended
    ai.made[0][2].drop()
    await wait_until(lambda: len(ai.made) == 3, what="reconnection")
    assert ai.made[2][1].instructions.startswith("v1")
    # a bad file keeps the running config (and says why)
    _write(conf, "[tenants.acme]\nhosts = 42\n")
    assert reg.reload() is False
    assert "keeping the running tenants" in caplog.text and "hosts" in caplog.text
    third = await caller.dial("sip:main@acme.example", proxy=proxy)
    await wait_until(lambda: third.call_id in svc.bridges, what="third bridge")
    assert ai.made[3][1].instructions == "v2"
    for c in (first, second, third):
        assert not c.ended
        await c.hangup()
    for c in (first, second, third):
        cdr = await _ended(svc, store, c.call_id)
        assert cdr.disposition is Disposition.CALLER_HANGUP


# ---------------------------------------------------------------- records


def _wav(path: Path, ms: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone_pcm(ms, 8000, 9000))
    return path


async def test_usage_cap_gives_the_fallback_instead_of_the_ai(
    make: Any, store: CdrStore, tmp_path: Path
) -> None:
    acme = tenant(
        usage_caps={"tokens_per_day": 1},
        fallback={"wav": str(_wav(tmp_path / "sorry.wav", 600))},
    )
    ai = AI()
    svc, caller = await make(TenantTable({"acme": acme}), ai)
    proxy = ("127.0.0.1", svc.port)
    first = await caller.dial("sip:main@acme.example", proxy=proxy)
    await wait_until(lambda: first.call_id in svc.bridges, what="first bridge")
    bridge = svc.bridges[first.call_id]
    await wait_until(lambda: bridge.cdr.usage.total_tokens > 0, what="the AI used tokens")
    await first.hangup()
    used = await _ended(svc, store, first.call_id)
    assert used.usage.total_tokens > 0  # this call used the day's budget
    second = await caller.dial("sip:main@acme.example", proxy=proxy)
    heard: list[bytes] = []
    listener = asyncio.create_task(_listen(second, heard))
    end = await asyncio.wait_for(second.wait_ended(), 10)
    await asyncio.wait_for(listener, 5)
    assert end.reason == "remote_bye"  # the agent hung up politely after the WAV
    assert len(ai.made) == 1  # no AI for the call over the cap
    assert sum(1 for f in heard if rms_pcm(f) > 3000) >= 20  # the WAV reached the caller
    cdr = await _ended(svc, store, second.call_id)
    assert cdr.disposition is Disposition.FALLBACK
    assert any(e.get("reason") == "usage cap reached" for e in cdr.events)


async def test_retention_is_run_by_the_service(make: Any, store: CdrStore) -> None:
    acme = tenant(retention={"transcripts": "10ms"})
    ai = AI()
    svc, caller = await make(TenantTable({"acme": acme}), ai, retention_interval=0.05)
    assert svc.retention is not None
    call = await caller.dial("sip:main@acme.example", proxy=("127.0.0.1", svc.port))
    await wait_until(lambda: call.call_id in svc.bridges, what="bridge")
    bridge = svc.bridges[call.call_id]
    await wait_until(lambda: bool(bridge.cdr.transcript), what="a transcript to purge")
    await call.hangup()
    cdr = await _ended(svc, store, call.call_id)
    assert cdr.transcript or cdr.transcript_purged  # there was something to purge

    async def purged() -> bool:
        got = await store.get_cdr(call.call_id)
        return got is not None and got.transcript_purged and not got.transcript

    deadline = time.monotonic() + 3
    while not await purged():
        assert time.monotonic() < deadline, "the retention task never purged the transcript"
        await asyncio.sleep(0.05)
    await svc.close(timeout=0)
    assert svc.retention is None


async def test_an_invite_flood_is_aggregated_in_the_activity_log(make: Any, tmp_path: Path) -> None:
    small = CdrStore(f"sqlite+aiosqlite:///{tmp_path / 'flood.db'}", max_activity_keys=5)
    await small.open()
    try:
        ai = AI()
        svc, caller = await make(TenantTable({"acme": tenant()}), ai, store=small)
        proxy = ("127.0.0.1", svc.port)
        for i in range(30):  # a scanner: a new user and host each time
            with pytest.raises(CallRejected) as rej:
                await caller.dial(f"sip:{i}@scan{i}.example", proxy=proxy)
            assert rej.value.status == 404
        await small.flush()
        rows = await small.list_activity()
        assert sum(r.count for r in rows) == 30
        assert len(rows) <= 6  # bounded keys per window, then one overflow row
        assert await small.count_cdrs() == 0 and ai.made == []
    finally:
        await small.close()


# ---------------------------------------------------------------- every end leaves a CDR


CASES: dict[str, dict[str, Any]] = {
    "caller_hangup": {},
    "max_duration": {"tenant": {"max_call_duration": "300ms"}},
    "caller_silence": {"tenant": {"caller_silence_timeout": "300ms"}},
    "rtp_timeout": {
        "ua": {"media": MediaConfig(inactivity_timeout=0.3)},
        "caller_ua": {"media": MediaConfig(silence="none")},
    },
    "ai_cannot_connect": {"ai": AI(fail_from=0)},
    "ai_drop_reconnect_fails": {"ai": AI(fail_from=1)},
}
EXPECTED: dict[str, tuple[Disposition, str | None, str]] = {
    "caller_hangup": (Disposition.CALLER_HANGUP, None, "caller"),
    "max_duration": (Disposition.TIMEOUT, "max_duration", "system"),
    "caller_silence": (Disposition.TIMEOUT, "caller_silence", "system"),
    "rtp_timeout": (Disposition.TIMEOUT, "rtp_timeout", "system"),
    "ai_cannot_connect": (Disposition.AI_ERROR, None, "agent"),
    "ai_drop_reconnect_fails": (Disposition.AI_ERROR, None, "agent"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_every_way_a_call_ends_leaves_a_cdr(make: Any, store: CdrStore, case: str) -> None:
    spec = CASES[case]
    ai = spec.get("ai") or AI()
    ai.made.clear()
    acme = tenant(**spec.get("tenant", {}))
    svc, caller = await make(
        TenantTable({"acme": acme}),
        ai,
        ua=spec.get("ua"),
        caller_ua=spec.get("caller_ua"),
        bridge_defaults=BridgeOptions(housekeeping_interval=0.02, reconnect_attempts=1),
    )
    call = await caller.dial("sip:main@acme.example", proxy=("127.0.0.1", svc.port))

    def talking() -> bool:  # the bridge runs with its AI session
        bridge = svc.bridges.get(call.call_id)
        return bridge is not None and bridge.session is not None

    if case == "caller_hangup":
        await wait_until(talking, what="bridge with its AI session")
        await call.hangup()
    elif case == "ai_drop_reconnect_fails":
        await wait_until(lambda: bool(ai.made) and ai.made[0][2].started, what="ai up")
        await wait_until(talking, what="bridge with its AI session")
        ai.made[0][2].drop()
    end = await asyncio.wait_for(call.wait_ended(), 10)
    cdr = await _ended(svc, store, call.call_id)
    disposition, reason, by = EXPECTED[case]
    assert cdr.disposition is disposition, (case, cdr.disposition, cdr.reason)
    if reason is not None:
        assert cdr.reason == reason
    assert cdr.hangup_by == by
    assert end.reason == ("local_hangup" if by == "caller" else "remote_bye")
    assert cdr.end_at is not None and cdr.answer_at is not None
    kinds = [e["kind"] for e in cdr.events]
    if case == "ai_cannot_connect":
        assert "ai_connect_failed" in kinds
    if case == "ai_drop_reconnect_fails":
        assert "ai_lost" in kinds and len(ai.made) == 2


# ---------------------------------------------------------------- CDR webhook


class HookServer:
    """An HTTP endpoint on 127.0.0.1 answering ``statuses`` in turn (then 200), each answer
    held until :attr:`release` is set (a webhook receiver as slow as the test wants)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.release = asyncio.Event()
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> HookServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/cdr"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, json.loads(body)))
        await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


async def test_cdr_webhook_is_posted_after_teardown_with_retries(
    make: Any, store: CdrStore
) -> None:
    async with HookServer([503]) as http:  # slow, and the first post fails
        hook = {"url": http.url, "backoff": "50ms", "auth_env": "HOOK_TOKEN", "attempts": 3}
        ai = AI()
        svc, caller = await make(TenantTable({"acme": tenant(cdr_webhook=hook)}), ai)
        call = await caller.dial("sip:main@acme.example", proxy=("127.0.0.1", svc.port))
        await wait_until(lambda: call.call_id in svc.bridges, what="bridge")
        bridge = svc.bridges[call.call_id]
        await wait_until(lambda: bridge.session is not None, what="the AI session")
        await call.hangup()
        await wait_until(lambda: call.call_id not in svc.bridges, what="teardown")
        # the call is torn down and its CDR stored while the webhook still has no answer
        await wait_until(lambda: len(http.requests) == 1, what="first post")
        await store.flush()
        stored = await store.get_cdr(call.call_id)
        assert stored is not None and stored.disposition is Disposition.CALLER_HANGUP
        assert not http.release.is_set() and len(http.requests) == 1
        http.release.set()
        await wait_until(lambda: len(http.requests) == 2, timeout=5, what="retried post")
        headers, body = http.requests[-1]
        assert body["call_id"] == call.call_id and body["tenant"] == "acme"
        assert body["disposition"] == "caller_hangup"
        assert headers["authorization"] == "Bearer tok-hook"
        assert "sk-acme" not in json.dumps(body)
        poster = svc.webhooks
        assert poster is not None
        await wait_until(lambda: poster.delivered == 1, timeout=3, what="delivered")
