"""A real SIP call (PCMU) through AgentService to a cascade agent at the local server:
the caller hears the agent, its speech is transcribed and answered, the CDR has the
per-stage latencies of the turn."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.agent.helpers import rms_pcm
from tests.asyncio.helpers import fast_config
from tests.cascade.conftest import KEY, quiet, voice
from tests.cascade.test_bargein import TAIL_MS, pcmu_ms
from tests.wait import wait_until
from w3sipagent.agent.service import AgentService
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.cascade import CascadeSession
from w3sipagent.cli.live import calls_table
from w3sipagent.config import Settings
from w3sipagent.localai import Scenario
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.records.cdr import Disposition
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable
from w3sipagent.tenants.cascade import CascadeConfig, CascadeStageConfig

SCRIPT = Scenario.loads(
    """
name = "cascade-sip"
[greeting]
say = "Hello, this is the shop."
[[turns]]
caller = "Where is my order?"
say = "It shipped today. It arrives tomorrow."
"""
)

LONG_GREETING = [
    "Hello, this is the shop.",
    "We sell books, maps and globes from all over the world.",
    "Our opening hours are from nine in the morning to six in the evening.",
    "How can I help you today?",
]
LONG = Scenario.loads(
    f"""
name = "cascade-sip-long"
[greeting]
say = "{" ".join(LONG_GREETING)}"
[[turns]]
caller = "Where is my order?"
say = "It shipped today."
"""
)

STAGES = [
    "caller_speech_end",
    "end_of_turn",
    "transcript_final",
    "model_first_token",
    "first_sentence",
    "tts_first_byte",
    "first_rtp",
]


def tenants(base_url: str) -> TenantTable:
    def stage(model: str) -> CascadeStageConfig:
        return CascadeStageConfig(base_url=base_url, model=model)

    cascade = CascadeConfig(
        stt=stage("whisper-1"), llm=stage("gpt-4.1-mini"), tts=stage("gpt-4o-mini-tts")
    )
    shop = TenantConfig(
        id="shop",
        hosts=["shop.example"],
        api_key=SecretRef(env="SHOP_KEY"),
        agents={
            "desk": AgentConfig(
                instructions="You are the shop.", greeting="Greet.", cascade=cascade
            )
        },
    )
    return TenantTable({"shop": shop})


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    key, script = getattr(request, "param", (KEY, SCRIPT))
    async with CascadeServer(scenario=script, api_keys=[KEY], tts_engine="tone") as srv:
        store = CdrStore(f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}", retry_delay=0.01)
        await store.open()
        svc = AgentService(
            Settings(),
            tenants=tenants(srv.base_url),
            store=store,
            ua_config=fast_config(),
            environ={"SHOP_KEY": key},
        )
        await svc.start()
        caller = UserAgent(fast_config())
        await caller.start()
        try:
            yield srv, svc, caller, store
        finally:
            await caller.close(timeout=0)
            await svc.close(timeout=0)
            await store.close()


def quiet_tail(heard: list[float], frames: int = 25) -> bool:
    """The agent has been silent for the last ``frames`` frames (500 ms) heard."""
    return len(heard) > frames and all(r < 300 for r in heard[-frames:])


async def _listen(call: Call, into: list[float]) -> None:
    async for pcm in call.audio():
        into.append(rms_pcm(pcm))


@pytest.mark.parametrize("codec", ["PCMU/8000", "G722/8000", "opus/48000/2"])
async def test_cascade_call_heard_transcribed_answered_with_stage_latencies(
    rig: Any, codec: str
) -> None:
    srv, svc, caller, store = rig
    call = await caller.dial("sip:desk@shop.example", proxy=("127.0.0.1", svc.port), codecs=[codec])
    rate = call.sample_rate
    heard: list[float] = []
    listener = asyncio.create_task(_listen(call, heard))
    await wait_until(lambda: sum(r > 1000 for r in heard) >= 10, 15, "greeting heard")
    bridge = svc.bridges[call.call_id]
    session = bridge.sessions[0].inner  # the service tracks each session (its leak report)
    assert isinstance(session, CascadeSession)
    await wait_until(lambda: quiet_tail(heard), 15, "greeting played")

    loud_before = sum(r > 1000 for r in heard)
    await call.play(voice(700, rate) + quiet(900, rate))
    await wait_until(lambda: sum(r > 1000 for r in heard) >= loud_before + 20, 15, "answer heard")
    await wait_until(lambda: quiet_tail(heard), 15, "answer played")
    # the live table shows the median of each stage
    live = next(c for c in svc.live_calls() if c.call_id == call.call_id)
    assert list(live.stages_ms) == STAGES[1:]
    console = Console(width=200, record=True)
    console.print(calls_table(svc))
    assert f"eot {live.stages_ms['end_of_turn']:.0f} · stt" in console.export_text()
    await call.hangup()
    await asyncio.wait_for(listener, 5)
    await wait_until(lambda: not svc.bridges, 5, "bridge ended")
    await store.flush()
    cdr = await store.get_cdr(call.call_id)
    assert cdr is not None and cdr.codec == codec.split("/")[0]
    said = [(e.speaker, e.text) for e in cdr.transcript]
    assert said == [
        ("agent", "Hello, this is the shop."),
        ("caller", "Where is my order?"),
        ("agent", "It shipped today. It arrives tomorrow."),
    ]
    # the caller was silent while the agent spoke: no barge-in (G.722's silence frames
    # once decoded to a buzz the VAD took for speech)
    assert not [e for e in cdr.events if e["kind"] in ("barge_in", "truncated")], cdr.events
    stages = cdr.turn_stages_ms()
    assert len(stages) == 1
    st = stages[0]
    assert list(st) == STAGES
    assert all(st[a] <= st[b] for a, b in itertools.pairwise(STAGES))
    assert st["caller_speech_end"] == 0.0
    assert 400 <= st["end_of_turn"] <= 700  # silence_ms 500 (and the VAD's hangover)
    assert st["first_rtp"] - st["tts_first_byte"] < 100  # the next pacer tick or two
    # the stages requested went to the local server, with the tenant's key
    paths = [r.path for r in srv.requests]
    assert paths.count("/v1/audio/transcriptions") == 1
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in srv.requests)


@pytest.mark.parametrize("rig", [("sk-refused-0000000000", SCRIPT)], indirect=True)
async def test_refused_stage_follows_the_fallback(rig: Any) -> None:
    _srv, svc, caller, store = rig
    call = await caller.dial(
        "sip:desk@shop.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    await wait_until(lambda: call.ended, 15, "call ended by the fallback")
    await wait_until(lambda: not svc.bridges, 5, "bridge ended")
    await store.flush()
    cdr = await store.get_cdr(call.call_id)
    assert cdr is not None and cdr.disposition is Disposition.AI_ERROR
    kinds = [e["kind"] for e in cdr.events]
    assert kinds[0] == "ai_connect_failed" and kinds[-1] == "fallback"
    assert cdr.events[0]["error"].startswith("llm: Incorrect API key provided")
    assert "sk-refused" not in cdr.model_dump_json()


@pytest.mark.parametrize("rig", [(KEY, LONG)], indirect=True)
async def test_barge_in_over_rtp_cuts_history_at_the_audio_played(rig: Any) -> None:
    _srv, svc, caller, store = rig
    call = await caller.dial(
        "sip:desk@shop.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    heard: list[float] = []
    listener = asyncio.create_task(_listen(call, heard))
    await wait_until(lambda: len(heard) >= 100, 15, "two seconds of the greeting")
    bridge = svc.bridges[call.call_id]
    session = bridge.sessions[0].inner  # the service tracks each session (its leak report)
    assert isinstance(session, CascadeSession)
    await call.play(voice(700) + quiet(900))  # the caller talks over the agent
    await wait_until(lambda: bool(session.cuts), 10, "barge-in cut")
    cut = session.cuts[0]
    barge = bridge.barge_ins[0]
    assert barge.item_id == cut.item_id and barge.heard_ms == cut.played_ms
    assert barge.cut_at - barge.speech_at < 0.02  # playout flushed on SpeechStarted
    assert 2000 <= cut.played_ms <= sum(pcmu_ms(s) for s in LONG_GREETING) - 1000
    assert cut.full_text == " ".join(LONG_GREETING)
    # the text kept is the text of the audio played, sentence by sentence (± the
    # resampler's tail of each sentence) and the words of the sentence being played
    ends = list(itertools.accumulate(pcmu_ms(s) + TAIL_MS for s in LONG_GREETING))
    whole = sum(1 for e in ends if e <= cut.played_ms)
    assert cut.text.startswith(" ".join(LONG_GREETING[:whole]))
    assert not cut.text.startswith(" ".join(LONG_GREETING[: whole + 1]))
    assistant = [it for it in session.conversation if it.get("role") == "assistant"]
    assert assistant[0]["content"] == cut.text
    # the caller's turn is still answered
    await wait_until(lambda: len(session.conversation) >= 3, 10, "answer after the cut")
    await call.hangup()
    await asyncio.wait_for(listener, 5)
    await wait_until(lambda: not svc.bridges, 5, "bridge ended")
    await store.flush()
    cdr = await store.get_cdr(call.call_id)
    assert cdr is not None
    cuts = [e for e in cdr.events if e["kind"] == "barge_in"]
    assert cuts and cuts[0]["heard_ms"] == cut.played_ms
    # the CDR keeps what the history kept, with where each sentence ended
    kept = [e for e in cdr.events if e["kind"] == "truncated"]
    assert len(kept) == 1 and kept[0]["heard_ms"] == cut.played_ms
    assert kept[0]["kept"] == cut.text and kept[0]["full"] == cut.full_text
    assert [t for _, t in kept[0]["spans"]][:whole] == LONG_GREETING[:whole]


async def test_stage_failure_mid_call_reconnects_and_the_turn_is_answered(rig: Any) -> None:
    srv, svc, caller, store = rig
    call = await caller.dial(
        "sip:desk@shop.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    heard: list[float] = []
    listener = asyncio.create_task(_listen(call, heard))
    await wait_until(lambda: sum(r > 1000 for r in heard) >= 10, 15, "greeting heard")
    await wait_until(lambda: quiet_tail(heard), 15, "greeting played")
    bridge = svc.bridges[call.call_id]
    srv.fail_next("/v1/responses", 503, message="The engine is currently overloaded.")
    loud_before = sum(r > 1000 for r in heard)
    await call.play(voice(700) + quiet(900))
    await wait_until(lambda: len(bridge.sessions) == 2, 10, "a new session")
    await wait_until(lambda: sum(r > 1000 for r in heard) >= loud_before + 20, 15, "answer heard")
    await wait_until(lambda: quiet_tail(heard), 15, "answer played")
    await call.hangup()
    await asyncio.wait_for(listener, 5)
    await wait_until(lambda: not svc.bridges, 5, "bridge ended")
    await store.flush()
    cdr = await store.get_cdr(call.call_id)
    assert cdr is not None and cdr.disposition is Disposition.CALLER_HANGUP
    kinds = [e["kind"] for e in cdr.events]
    assert kinds.index("ai_error") < kinds.index("ai_lost") < kinds.index("ai_reconnected")
    err = next(e for e in cdr.events if e["kind"] == "ai_error")
    assert "overloaded" in err["message"] and err["fatal"]
    assert [t.text for t in cdr.transcript if t.speaker == "agent"][-1] == (
        "It shipped today. It arrives tomorrow."
    )
