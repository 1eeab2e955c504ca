"""AI-side faults for every back end (issue 12): a real SIP call to an AgentService whose AI
connection goes through :class:`~w3sipagent.faults.FaultProxy` in front of the local
servers (Realtime, GPT-Live, the cascade's HTTP stages). The first connection gets the
fault; the call is never lost (the bridge reconnects, docs/testing-faults.md says when it
falls back instead), its CDR records what happened, and nothing logs a traceback.

The WebSocket back ends are struck mid-greeting (their keep-alive pings, 0.2 s + 0.3 s here,
detect a stalled or half-open connection); the cascade's first HTTP connection at once (its
stage timeout, 1 s here, detects a stall).
"""

from __future__ import annotations

import asyncio
import logging
import wave
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import rms_pcm, tone_pcm
from tests.asyncio.helpers import fast_config
from tests.wait import wait_until
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.service import AgentService
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.config import Settings
from w3sipagent.faults.aiproxy import AIFault, FaultPlan, FaultProxy
from w3sipagent.localai import RealtimeServer, Scenario
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.localai.live import LiveServer
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable
from w3sipagent.tenants.cascade import CascadeConfig, CascadeStageConfig
from w3sipagent.tenants.models import FallbackConfig

KEY = "sk-test-faults-0001"
SCRIPT = Scenario.loads(
    """
name = "faults"
[greeting]
say = "Hello, this is the shop. We sell books, maps and globes. How can I help you today?"
[[turns]]
caller = "Where is my order?"
say = "It shipped today."
"""
)
PING: dict[str, Any] = {"ping_interval": 0.2, "ping_timeout": 0.3}
FAULTS = list(AIFault)[1:]  # every fault but none
LOSSY = {AIFault.STALL, AIFault.HALF_OPEN, AIFault.CLOSE, AIFault.GARBAGE}


def tenants(backend: str, cascade_url: str | None, fallback_wav: Path | None = None) -> TenantTable:
    values: dict[str, Any] = {"instructions": "You are the shop.", "greeting": "Greet."}
    if backend == "live":
        values["backend"] = "live"
    if cascade_url is not None:

        def stage(model: str) -> CascadeStageConfig:
            return CascadeStageConfig(base_url=cascade_url, model=model, timeout=1.0)

        values["cascade"] = CascadeConfig(
            stt=stage("whisper-1"), llm=stage("gpt-4.1-mini"), tts=stage("gpt-4o-mini-tts")
        )
    shop = TenantConfig(
        id="shop",
        hosts=["shop.example"],
        api_key=SecretRef(env="SHOP_KEY"),
        agents={"desk": AgentConfig(**values)},
        fallback=FallbackConfig(wav=fallback_wav),
    )
    return TenantTable({"shop": shop})


async def serve(stack: AsyncExitStack, backend: str, plan: FaultPlan) -> tuple[Any, FaultProxy]:
    """The local server of ``backend`` and the fault proxy in front of it."""
    srv: Any
    if backend == "realtime":
        srv = RealtimeServer(scenario=SCRIPT, tts_engine="tone", api_keys=[KEY])
    elif backend == "live":
        srv = LiveServer(scenario=SCRIPT, tts_engine="tone")
    else:
        srv = CascadeServer(scenario=SCRIPT, api_keys=[KEY], tts_engine="tone")
    await stack.enter_async_context(srv)
    proxy = await stack.enter_async_context(FaultProxy((srv.host, srv.port), plan))
    return srv, proxy


def settings(backend: str, srv: Any, proxy: FaultProxy, tmp_path: Path) -> Settings:
    """The agent's settings: the AI service is the proxy, with quick keep-alive pings
    (``realtime.ping_interval`` / ``ping_timeout``: the same keys a deployment sets)."""
    values: dict[str, Any] = {"connect_timeout": 2.0, **PING}
    if backend == "realtime":
        values["base_url"] = proxy.url(srv.http_url).replace("http", "ws", 1)
    elif backend == "live":
        values["base_url"] = proxy.url(srv.base_url)
    return Settings(
        realtime=values,  # type: ignore[arg-type]
        records={"recordings_dir": str(tmp_path / "rec")},  # type: ignore[arg-type]
    )


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def place_call(
    stack: AsyncExitStack,
    tmp_path: Path,
    backend: str,
    plan: FaultPlan,
    fallback_wav: Path | None = None,
) -> tuple[AgentService, FaultProxy, Any, list[float]]:
    srv, proxy = await serve(stack, backend, plan)
    cascade_url = proxy.url(srv.base_url) if backend == "cascade" else None
    store = CdrStore(f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}", retry_delay=0.01)
    await store.open()
    stack.push_async_callback(store.close)
    svc = AgentService(
        settings(backend, srv, proxy, tmp_path),
        tenants=tenants(backend, cascade_url, fallback_wav),
        store=store,
        ua_config=fast_config(),
        environ={"SHOP_KEY": KEY},
        bridge_defaults=BridgeOptions(
            housekeeping_interval=0.02, close_timeout=0.5, connect_timeout=3.0
        ),
    )
    await svc.start()
    stack.push_async_callback(svc.close, timeout=0)
    caller = UserAgent(fast_config())
    await caller.start()
    stack.push_async_callback(caller.close, timeout=0)
    call = await caller.dial("sip:desk@shop.example", proxy=("127.0.0.1", svc.port))
    heard: list[float] = []

    async def listen() -> None:
        async for pcm in call.audio():
            heard.append(rms_pcm(pcm))

    task = asyncio.create_task(listen())
    stack.callback(task.cancel)
    return svc, proxy, call, heard


def kinds(cdr: CallRecord) -> list[str]:
    return [str(e.get("kind")) for e in cdr.events]


async def stored(svc: AgentService, call_id: str) -> CallRecord:
    """The call's CDR as the database holds it."""
    store = svc.store
    assert isinstance(store, CdrStore)
    await store.flush()
    row = await store.get_cdr(call_id)
    assert row is not None
    return row


@pytest.mark.parametrize("fault", FAULTS, ids=[f.value for f in FAULTS])
@pytest.mark.parametrize("backend", ["realtime", "live", "cascade"])
async def test_the_call_outlives_the_fault_and_its_cdr_says_what_happened(
    stack: AsyncExitStack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    backend: str,
    fault: AIFault,
) -> None:
    caplog.set_level(logging.INFO)
    after = 0.0 if backend == "cascade" else 0.6
    plan = FaultPlan(fault, after=after, connections=1, slow_rate=4000, seed=5)
    svc, proxy, call, heard = await place_call(stack, tmp_path, backend, plan)
    await wait_until(lambda: proxy.faulted >= 1, 5, "the fault struck")
    bridge = svc.bridges[call.call_id]
    if fault in LOSSY:  # the connection is lost: the bridge gets a new one
        await wait_until(
            lambda: {"ai_reconnected", "ai_retry"} & set(kinds(bridge.cdr)), 8, "a new session"
        )
        await wait_until(lambda: bridge.session is not None, 5, "the new session live")
        assert proxy.connections >= 2
    else:
        await asyncio.sleep(0.3)  # the slow connection carries on
    n = len(heard)
    await wait_until(lambda: len(heard) >= n + 10, 5, "the call still carries audio")
    assert not call.ended and call.call_id in svc.bridges  # never lost
    await call.hangup()
    await wait_until(lambda: bool(svc.finished), 5, "the CDR")
    await proxy.close()  # its stalled connections are its own tasks, not the service's
    (finished,) = svc.finished
    cdr = await stored(svc, finished.call_id)
    assert kinds(cdr) == kinds(finished)
    assert (cdr.disposition, cdr.reason) == (Disposition.CALLER_HANGUP, "remote_bye"), cdr
    events = kinds(cdr)
    if fault in LOSSY:
        assert "ai_lost" in events or "ai_connect_failed" in events, events
        assert "fallback" not in events
    else:
        assert "ai_lost" not in events and "ai_connect_failed" not in events, events
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


async def test_a_service_that_keeps_failing_ends_in_the_tenants_fallback(
    stack: AsyncExitStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every connection is reset 0.6 s in: the one reconnection (``reconnect_attempts``) is
    lost too, and the caller gets the tenant's fallback WAV, then a BYE; the CDR says so."""
    wav = tmp_path / "sorry.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone_pcm(600, 8000, 9000, 500.0))
    plan = FaultPlan(AIFault.CLOSE, after=0.6, connections=0)
    svc, proxy, call, heard = await place_call(stack, tmp_path, "realtime", plan, wav)
    await wait_until(lambda: call.ended, 10, "the agent's BYE after the fallback")
    await wait_until(lambda: bool(svc.finished), 5, "the CDR")
    await proxy.close()
    (finished,) = svc.finished
    cdr = await stored(svc, finished.call_id)
    assert (cdr.disposition, cdr.hangup_by) == (Disposition.FALLBACK, "agent"), cdr
    events = kinds(cdr)
    assert events.count("ai_lost") == 2 and "ai_reconnected" in events, events
    assert "fallback" in events, events
    assert proxy.faulted == proxy.connections == 2
    assert sum(r > 3000 for r in heard[-40:]) >= 20  # the 600 ms WAV reached the caller
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
