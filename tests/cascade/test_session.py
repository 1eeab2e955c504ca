"""A cascade session against the local server: speech in → transcript → answer audio out."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

from tests.cascade.conftest import CHECK_ORDER, Run, caller_speech, settings_for, voice
from tests.wait import wait_until
from w3sipagent.ai.session import (
    AgentTranscript,
    AISessionConfig,
    AudioDelta,
    AudioDone,
    AudioFormat,
    CallerTranscript,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    TurnStages,
)
from w3sipagent.cascade import CascadeSession
from w3sipagent.localai.audio import resample
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.localai.tts import tone_speech


def finals(run: Run) -> list[str]:
    return [e.text for e in run.of(AgentTranscript) if isinstance(e, AgentTranscript) and e.final]


async def test_greeting_turn_and_tool_call(run: Run, server: CascadeServer) -> None:
    await run.session.create_response("Greet the caller.")
    await wait_until(lambda: len(run.of(ResponseDone)) == 1, 5, "greeting")
    assert finals(run) == ["Hello caller."]
    audio = b"".join(e.audio for e in run.of(AudioDelta) if isinstance(e, AudioDelta))
    assert len(audio) > 8 * 300  # PCMU: 8 bytes a ms; the tone speech lasts a while
    assert len(run.of(AudioDone)) == 1

    for frame in caller_speech():
        run.session.send_audio(frame)
    await wait_until(lambda: len(run.of(ToolCall)) == 1, 5, "tool call")
    kinds = [type(e) for e in run.events]
    assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped) < kinds.index(CallerTranscript)
    caller = run.of(CallerTranscript)[0]
    assert isinstance(caller, CallerTranscript) and caller.text == "Where is my order?"
    call = run.of(ToolCall)[0]
    assert isinstance(call, ToolCall) and call.name == "check_order"
    assert json.loads(call.arguments) == {"order_id": "42"}
    await wait_until(lambda: len(run.of(ResponseDone)) == 2, 5, "turn answer")
    assert finals(run)[1] == "Let me check."

    # the stages of the turn came before its first audio, in order
    stages = run.of(TurnStages)
    assert len(stages) == 1 and isinstance(stages[0], TurnStages)
    t = stages[0].times
    order = [
        "caller_speech_end",
        "end_of_turn",
        "transcript_final",
        "model_first_token",
        "first_sentence",
        "tts_first_byte",
    ]
    assert list(t) == order or sorted(t, key=t.__getitem__) == order
    assert all(t[a] <= t[b] for a, b in itertools.pairwise(order))
    assert 0.45 <= t["end_of_turn"] - t["caller_speech_end"] <= 0.56  # silence_ms 500
    assert not any(k.startswith("_") for k in t)  # the session's own marks stay inside
    assert len(run.session.added_ms) == 1 and 0 <= run.session.added_ms[0] < 1000

    await run.session.send_tool_result(call.call_id, '{"status": "shipped"}')
    await wait_until(lambda: len(run.of(ResponseDone)) == 3, 5, "after tool")
    assert finals(run)[2].startswith("It shipped today.")
    started = [e.response_id for e in run.of(ResponseStarted) if isinstance(e, ResponseStarted)]
    assert len(set(started)) == 3

    # the model saw the whole conversation, tool call and output included
    conv = run.session.conversation
    assert [it.get("role") or it["type"] for it in conv] == [
        "assistant",
        "user",
        "assistant",
        "function_call",
        "function_call_output",
        "assistant",
    ]
    last = [r for r in server.requests if r.path == "/v1/responses"][-1].json()
    assert last["input"][-1] == {
        "type": "function_call_output",
        "call_id": call.call_id,
        "output": '{"status": "shipped"}',
    }


async def test_chat_completions_api_same_turns(server: CascadeServer) -> None:

    cfg = AISessionConfig(instructions="You are a shop assistant.", tools=(CHECK_ORDER,))
    run = Run(CascadeSession(cfg, settings_for(server, api="chat")))
    await run.start()
    try:
        await run.session.create_response()
        await wait_until(lambda: len(run.of(ResponseDone)) == 1, 5, "greeting")
        for frame in caller_speech():
            run.session.send_audio(frame)
        await wait_until(lambda: len(run.of(ToolCall)) == 1, 5, "tool call")
        call = run.of(ToolCall)[0]
        assert isinstance(call, ToolCall) and json.loads(call.arguments) == {"order_id": "42"}
        await run.session.send_tool_result(call.call_id, '{"status": "shipped"}')
        await wait_until(lambda: len(run.of(ResponseDone)) == 3, 5, "after tool")
        assert finals(run) == ["Hello caller.", "Let me check.", finals(run)[2]]
        assert finals(run)[2].startswith("It shipped today.")
        done = run.of(ResponseDone)[-1]
        assert isinstance(done, ResponseDone) and done.usage is not None
        assert done.usage.total_tokens > 0
        chats = [r.json() for r in server.requests if r.path == "/v1/chat/completions"]
        assert len(chats) == 3 and not any(r.path == "/v1/responses" for r in server.requests)
        msgs = chats[-1]["messages"]
        assert msgs[0] == {"role": "system", "content": "You are a shop assistant."}
        assert msgs[-2]["tool_calls"][0]["id"] == call.call_id
        assert msgs[-1] == {
            "role": "tool",
            "tool_call_id": call.call_id,
            "content": '{"status": "shipped"}',
        }
    finally:
        await run.stop()


async def test_filler_is_said_while_a_tool_is_slow(server: CascadeServer) -> None:

    settings = settings_for(server, filler="One moment please.", filler_after_ms=100)
    run = Run(CascadeSession(AISessionConfig(tools=(CHECK_ORDER,)), settings))
    await run.start()
    try:
        for frame in caller_speech():
            run.session.send_audio(frame)
        await wait_until(lambda: len(run.of(ToolCall)) == 1, 5, "tool call")
        await wait_until(lambda: "One moment please." in finals(run), 5, "filler")
        assert all(it.get("content") != "One moment please." for it in run.session.conversation)
        n = len(run.of(ResponseDone))
        call = run.of(ToolCall)[0]
        assert isinstance(call, ToolCall)
        await run.session.send_tool_result(call.call_id, "{}")
        await wait_until(lambda: len(run.of(ResponseDone)) == n + 1, 5, "answer")
        assert finals(run)[-1].startswith("It shipped today.")
        assert finals(run).count("One moment please.") == 1
    finally:
        await run.stop()


async def test_pcm24k_in_and_out(server: CascadeServer) -> None:

    cfg = AISessionConfig(
        input_format=AudioFormat.PCM24K, output_format=AudioFormat.PCM24K, tools=(CHECK_ORDER,)
    )
    run = Run(CascadeSession(cfg, settings_for(server)))
    await run.start()
    try:
        await run.session.create_response()
        await wait_until(lambda: len(run.of(ResponseDone)) == 1, 5, "greeting")
        audio = b"".join(e.audio for e in run.of(AudioDelta) if isinstance(e, AudioDelta))
        assert audio == tone_speech("Hello caller.")  # 24 kHz straight from the TTS
        speech = resample(voice(600) + bytes(11200), 8000, 24000)
        for i in range(0, len(speech), 960):
            run.session.send_audio(speech[i : i + 960])
        await wait_until(lambda: bool(run.of(CallerTranscript)), 5, "caller turn")
        stt = next(r for r in server.requests if r.path == "/v1/audio/transcriptions")
        wav = stt.body[stt.body.index(b"RIFF") :]
        assert int.from_bytes(wav[24:28], "little") == 16000  # the VAD's rate, 16 kHz
    finally:
        await run.stop()


async def test_streaming_transcription_sends_deltas(server: CascadeServer) -> None:
    base = settings_for(server)
    settings = replace(base, stt=replace(base.stt, model="gpt-4o-mini-transcribe"))
    run = Run(CascadeSession(AISessionConfig(tools=(CHECK_ORDER,)), settings))
    await run.start()
    try:
        for frame in caller_speech():
            run.session.send_audio(frame)
        await wait_until(
            lambda: any(isinstance(e, CallerTranscript) and e.final for e in run.events), 5
        )
        said = [e for e in run.of(CallerTranscript) if isinstance(e, CallerTranscript)]
        deltas = [e.text for e in said if not e.final]
        assert len(deltas) > 1 and "".join(deltas) == "Where is my order?"
        assert said[-1].final and said[-1].text == "Where is my order?"
        assert len({e.item_id for e in said}) == 1
        stt = next(r for r in server.requests if r.path == "/v1/audio/transcriptions")
        assert b'name="stream"' in stt.body
    finally:
        await run.stop()
