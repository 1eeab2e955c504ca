"""A cascade session against the local server: speech in → transcript → answer audio out."""

from __future__ import annotations

import itertools
import json

from tests.cascade.conftest import Run, caller_speech
from tests.wait import wait_until
from w3sipagent.ai.session import (
    AgentTranscript,
    AudioDelta,
    AudioDone,
    CallerTranscript,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    TurnStages,
)
from w3sipagent.localai.cascade import CascadeServer


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
