"""Exact barge-in: the assistant's message in history is cut at the words actually played."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.cascade.conftest import (
    CHECK_ORDER,
    KEY,
    SCENARIO,
    Run,
    caller_speech,
    settings_for,
)
from tests.wait import wait_until
from w3sipagent.ai.session import (
    AgentTranscript,
    AISessionConfig,
    AudioDelta,
    ItemTruncated,
    ResponseDone,
    SpeechStarted,
    ToolCall,
)
from w3sipagent.cascade import CascadeSession, ListenSettings
from w3sipagent.localai.cascade import CascadeServer, Pacing
from w3sipagent.localai.tts import tone_speech

AFTER = [
    "It shipped today.",
    "It arrives tomorrow morning.",
    "Is there anything else I can do for you today?",
]


TAIL_MS = 2.0
"""At most what the 24 → 8 kHz resampler's flush adds to a sentence (its filter delay)."""


def pcmu_ms(text: str) -> float:
    """How long the local server's speech of ``text`` lasts, in ms (24 kHz PCM16)."""
    return len(tone_speech(text)) / 48


@pytest.fixture
async def paced() -> AsyncIterator[CascadeServer]:
    pacing = Pacing(audio_chunk_delay=0.05)  # speech streams at twice real time
    async with CascadeServer(
        scenario=SCENARIO, api_keys=[KEY], tts_engine="tone", pacing=pacing
    ) as srv:
        yield srv


async def answer_after_tool(run: Run) -> str:
    """Greeting, caller turn, tool call, tool output: the answer now streams; its item id."""
    await run.session.create_response()
    await wait_until(lambda: len(run.of(ResponseDone)) == 1, 5, "greeting")
    for frame in caller_speech():
        run.session.send_audio(frame)
    await wait_until(lambda: len(run.of(ToolCall)) == 1, 5, "tool call")
    await wait_until(lambda: len(run.of(ResponseDone)) == 2, 5, "turn answer")
    call = run.of(ToolCall)[0]
    assert isinstance(call, ToolCall)
    await run.session.send_tool_result(call.call_id, '{"status": "shipped"}')
    await wait_until(
        lambda: any(isinstance(e, AgentTranscript) and e.text.startswith("It") for e in run.events),
        5,
        "answer text",
    )
    ev = next(e for e in reversed(run.events) if isinstance(e, AgentTranscript))
    return ev.item_id


def audio_of(run: Run, item_id: str) -> int:
    return sum(
        len(e.audio)
        for e in run.of(AudioDelta)
        if isinstance(e, AudioDelta) and e.item_id == item_id
    )


async def test_cut_mid_stream_keeps_the_sentence_heard(paced: CascadeServer) -> None:
    cfg = AISessionConfig(tools=(CHECK_ORDER,))  # PCMU both ways
    listen = ListenSettings(barge_in_ms=200)
    run = Run(CascadeSession(cfg, settings_for(paced, listen=listen)))
    await run.start()
    try:
        item = await answer_after_tool(run)
        first = pcmu_ms(AFTER[0])
        # the bridge played the first sentence and 1 ms of the second when the caller spoke
        await wait_until(lambda: audio_of(run, item) / 8 > first + 200, 5, "second sentence")
        starts = len(run.of(SpeechStarted))
        for frame in caller_speech(400, 0):
            run.session.send_audio(frame)
        await wait_until(lambda: len(run.of(SpeechStarted)) == starts + 1, 2, "barge-in")
        await run.session.truncate(item, int(first + TAIL_MS) + 1)
        await run.session.cancel_response()
        done = run.of(ResponseDone)[-1]
        assert isinstance(done, ResponseDone) and done.status == "cancelled"
        sent = audio_of(run, item)
        assert sent / 8 < sum(pcmu_ms(s) for s in AFTER)  # the rest was never synthesised
        assert run.session.cuts[-1].text == AFTER[0]
        assistant = [it for it in run.session.conversation if it.get("role") == "assistant"]
        assert assistant[-1]["content"] == AFTER[0]
        await run.session.add_message("caller pressed 3")  # a round trip of the loop
        assert audio_of(run, item) == sent  # nothing more of the cancelled answer arrives
    finally:
        await run.stop()


@pytest.mark.parametrize("played", ["first", "two", "mid"])
async def test_cut_after_the_answer_was_synthesised(server: CascadeServer, played: str) -> None:
    run = Run(CascadeSession(AISessionConfig(tools=(CHECK_ORDER,)), settings_for(server)))
    await run.start()
    try:
        item = await answer_after_tool(run)
        await wait_until(lambda: len(run.of(ResponseDone)) == 3, 5, "answer done")
        d0, d1 = pcmu_ms(AFTER[0]), pcmu_ms(AFTER[1])
        total = audio_of(run, item) / 8
        assert 0 <= total - sum(pcmu_ms(s) for s in AFTER) <= 3 * TAIL_MS  # a segment a sentence
        at, expected = {
            "first": (d0 + TAIL_MS + 1, AFTER[0]),
            "two": (d0 + d1 + 2 * TAIL_MS + 1, f"{AFTER[0]} {AFTER[1]}"),
            # "It arrives" is 10 of 28 characters of the second sentence
            "mid": (d0 + TAIL_MS + d1 * 11 / 28, f"{AFTER[0]} It arrives"),
        }[played]
        await run.session.truncate(item, int(at))
        assistant = [it for it in run.session.conversation if it.get("role") == "assistant"]
        assert assistant[-1]["content"] == expected
        # the bridge is told what the history keeps, with the sentences' ends (for the CDR)
        await wait_until(lambda: run.of(ItemTruncated), 5, "ItemTruncated")
        cut = run.of(ItemTruncated)[-1]
        assert isinstance(cut, ItemTruncated)
        assert (cut.item_id, cut.audio_end_ms, cut.text) == (item, int(at), expected)
        assert cut.full_text == " ".join(AFTER)
        assert [t for _, t in cut.spans] == list(AFTER)
        assert abs(cut.spans[0][0] - d0) <= TAIL_MS
        # the next model request carries the cut text, not the whole answer
        for frame in caller_speech():
            run.session.send_audio(frame)
        await wait_until(lambda: len(run.of(ResponseDone)) == 4, 5, "next turn")
        sent = [r.json() for r in server.requests if r.path == "/v1/responses"][-1]
        said = [i["content"] for i in sent["input"] if i.get("role") == "assistant"]
        assert said[-1] == expected
    finally:
        await run.stop()


async def test_cut_inside_the_sentence_being_synthesised(paced: CascadeServer) -> None:
    run = Run(CascadeSession(AISessionConfig(tools=(CHECK_ORDER,)), settings_for(paced)))
    await run.start()
    try:
        item = await answer_after_tool(run)
        d0, d1 = pcmu_ms(AFTER[0]) + TAIL_MS, pcmu_ms(AFTER[1])
        # 70 % of the second sentence was sent and heard; its synthesis is still running
        await wait_until(lambda: audio_of(run, item) / 8 > d0 + 0.7 * d1, 5, "second sentence")
        assert audio_of(run, item) / 8 < d0 + d1
        await run.session.truncate(item, int(d0 + 0.7 * d1))
        await run.session.cancel_response()
        cut = run.session.cuts[-1].text
        # the words heard of it, estimated from the first sentence's speech rate
        assert cut.startswith(AFTER[0] + " It arrives")
        assert f"{AFTER[0]} {AFTER[1]}".startswith(cut) and cut != f"{AFTER[0]} {AFTER[1]}"
    finally:
        await run.stop()
