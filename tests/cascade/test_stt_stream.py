"""Streaming speech-to-text (``stt_mode = "stream"``): the Realtime transcription session
against the local server, audio sent while the caller speaks, deltas, errors."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.cascade.conftest import (
    CHECK_ORDER,
    KEY,
    SCENARIO,
    Run,
    caller_speech,
    settings_for,
    voice,
)
from tests.wait import wait_until
from w3sipagent.agent.partial import PartialTranscript
from w3sipagent.ai.session import (
    AIErrorEvent,
    AISessionConfig,
    AudioFormat,
    CallerTranscript,
    Closed,
    ResponseDone,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    TurnStages,
)
from w3sipagent.cascade import CascadeSession, StageEndpoint
from w3sipagent.cascade.stt_stream import realtime_url
from w3sipagent.codecs.g711 import ulaw_encode
from w3sipagent.localai import Scenario
from w3sipagent.localai.cascade import CascadeServer, Pacing


def stream_session(server: CascadeServer, fmt: AudioFormat = AudioFormat.PCMU) -> Run:
    settings = settings_for(server, stt_mode="stream")
    settings = replace(settings, stt=replace(settings.stt, model="gpt-4o-transcribe"))
    cfg = AISessionConfig(
        instructions="You are a shop assistant.",
        input_format=fmt,
        output_format=fmt,
        tools=(CHECK_ORDER,),
        transcription_language="en",
    )
    return Run(CascadeSession(cfg, settings))


async def test_audio_streams_while_the_caller_speaks_and_deltas_come_back(
    server: CascadeServer,
) -> None:
    run = stream_session(server)
    await run.start()
    try:
        sock = server.transcription_sockets[0]
        update = sock.events_in[0]
        assert update["type"] == "session.update"
        assert update["session"] == {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "turn_detection": None,
                }
            },
        }
        frames = caller_speech(ms=600, silence_ms=700)
        # speech only (30 frames): the turn has started, nothing is committed yet, and the
        # audio is already at the service
        for f in frames[:30]:
            run.session.send_audio(f)
        await wait_until(lambda: run.of(SpeechStarted), 5, "speech started")

        def appended() -> int:
            return sum(
                len(base64.b64decode(e["audio"]))
                for e in sock.events_in
                if e["type"] == "input_audio_buffer.append"
            )

        await wait_until(lambda: appended() >= 8 * 400, 5, "speech appended while spoken")
        assert not any(e["type"] == "input_audio_buffer.commit" for e in sock.events_in)
        assert not run.of(SpeechStopped)
        for f in frames[30:]:
            run.session.send_audio(f)
        await wait_until(lambda: run.of(ToolCall), 5, "answered after the transcript")
        kinds = [e["type"] for e in sock.events_in]
        assert kinds.count("input_audio_buffer.commit") == 1
        # everything up to the end of turn went out before the commit: the utterance
        # (padding, 600 ms speech, the silence that ended the turn) in G.711 bytes
        assert 8 * (600 + 400) <= appended() <= 8 * (600 + 300 + 700)
        texts = [e for e in run.of(CallerTranscript) if isinstance(e, CallerTranscript)]
        deltas = [e.text for e in texts if not e.final]
        assert "".join(deltas) == "Where is my order?" and len(deltas) == 4
        assert [e.text for e in texts if e.final] == ["Where is my order?"]
        assert len({e.item_id for e in texts}) == 1
        # no per-utterance request; the model saw the transcript
        paths = [r.path for r in server.requests]
        assert "/v1/audio/transcriptions" not in paths
        model_req = next(r for r in server.requests if r.path == "/v1/responses").json()
        assert model_req["input"][-1] == {"role": "user", "content": "Where is my order?"}
        await wait_until(lambda: run.of(TurnStages), 5, "turn stages")
        await wait_until(lambda: run.of(ResponseDone), 5, "answer done")
        stages = run.of(TurnStages)[0]
        assert isinstance(stages, TurnStages)
        t = stages.times
        assert t["end_of_turn"] <= t["transcript_final"] <= t["model_first_token"]
        assert run.session.added_ms and run.session.added_ms[0] < 50
    finally:
        await run.stop()


async def test_pcm24k_call_streams_24khz_pcm(server: CascadeServer) -> None:
    run = stream_session(server, AudioFormat.PCM24K)
    await run.start()
    try:
        sock = server.transcription_sockets[0]
        fmt = sock.events_in[0]["session"]["audio"]["input"]["format"]
        assert fmt == {"type": "audio/pcm", "rate": 24000}
        from w3sipagent.localai.audio import resample

        pcm = resample(voice(600) + bytes(700 * 16), 8000, 24000)
        for i in range(0, len(pcm), 960):
            run.session.send_audio(pcm[i : i + 960])
        await wait_until(lambda: run.of(ToolCall), 5, "answered")
        n = sum(
            len(base64.b64decode(e["audio"]))
            for e in sock.events_in
            if e["type"] == "input_audio_buffer.append"
        )
        assert 48 * 1000 <= n <= 48 * 1600  # 24 kHz 16-bit: 48 bytes a ms
    finally:
        await run.stop()


async def test_transcription_failure_ends_the_session_as_an_ai_failure(
    server: CascadeServer,
) -> None:
    run = stream_session(server)
    await run.start()
    server.fail_next_transcription("audio_unintelligible", "The audio could not be transcribed.")
    for f in caller_speech():
        run.session.send_audio(f)
    await wait_until(lambda: run.of(Closed), 5, "session closed")
    err = run.of(AIErrorEvent)[0]
    assert isinstance(err, AIErrorEvent) and err.fatal and err.code == "audio_unintelligible"
    closed = run.of(Closed)[0]
    assert isinstance(closed, Closed) and closed.error
    assert "stt failed: stt: The audio could not be transcribed." in closed.reason


async def test_refused_key_fails_the_start(server: CascadeServer) -> None:
    settings = settings_for(server, stt_mode="stream", probe=False)
    settings = replace(settings, stt=replace(settings.stt, api_key="sk-wrong-key-000000"))
    session = CascadeSession(AISessionConfig(), settings)
    with pytest.raises(Exception) as info:
        await session.start()
    assert "Incorrect API key provided" in str(info.value)
    assert getattr(info.value, "status", None) == 401


# ----------------------------------------------------------------- the local server's side


async def test_local_transcription_session_events_and_errors(server: CascadeServer) -> None:
    url = realtime_url(server.base_url)
    async with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:

        async def recv() -> dict:  # type: ignore[type-arg]
            return json.loads(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[no-any-return]

        created = await recv()
        assert created["type"] == "session.created" and created["event_id"]
        assert created["session"]["type"] == "transcription"
        assert created["session"]["object"] == "realtime.transcription_session"
        # a realtime session type is refused with the param named
        await ws.send(json.dumps({"type": "session.update", "event_id": "e1",
                                  "session": {"type": "realtime"}}))  # fmt: skip
        err = await recv()
        assert err["type"] == "error" and err["error"]["param"] == "session.type"
        assert err["error"]["event_id"] == "e1"
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": "gpt-realtime-whisper"},
                "turn_detection": {"type": "server_vad"}}}}}))  # fmt: skip
        err = await recv()  # the streaming model takes no turn detection
        assert err["error"]["code"] == "invalid_value"
        assert err["error"]["param"] == "session.audio.input.turn_detection"
        assert "Turn detection is not supported" in err["error"]["message"]
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": "gpt-4o-mini-transcribe", "prompt": "shop"},
                "turn_detection": None}}}}))  # fmt: skip
        updated = await recv()
        assert updated["type"] == "session.updated"
        tr = updated["session"]["audio"]["input"]["transcription"]
        assert tr == {"model": "gpt-4o-mini-transcribe", "language": None, "prompt": "shop"}
        # too little audio
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(bytes(400)).decode()}))  # fmt: skip
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        err = await recv()
        assert err["error"]["code"] == "input_audio_buffer_commit_empty"
        assert "only has 50.00ms" in err["error"]["message"]
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}))
        err = await recv()
        assert err["error"]["param"] == "audio"
        # a real turn: committed, deltas, completed with token usage
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(ulaw_encode(voice(500))).decode()}))  # fmt: skip
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        committed = await recv()
        assert committed["type"] == "input_audio_buffer.committed"
        assert committed["previous_item_id"] is None
        item = committed["item_id"]
        text = ""
        while (ev := await recv())["type"].endswith(".delta"):
            assert ev["item_id"] == item and ev["content_index"] == 0
            text += ev["delta"]
        assert ev["type"] == "conversation.item.input_audio_transcription.completed"
        assert ev["transcript"] == text == "Where is my order?"
        assert ev["usage"]["type"] == "tokens" and ev["usage"]["input_tokens"] > 0
    # refusals at the handshake: no key, and a realtime (not transcription) session
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            url.split("?")[0], additional_headers={"Authorization": f"Bearer {KEY}"}
        ):
            pass
    assert info.value.response.status_code == 400
    # the HTTP counter and the session share the script: the next line is turn 2
    assert server.audio.next_caller_line(KEY) == "Tell me more."


async def test_lost_transcription_session_is_an_ai_failure(server: CascadeServer) -> None:
    run = stream_session(server)
    await run.start()
    await server.close()  # the service goes away: the socket is dropped
    for f in caller_speech():
        run.session.send_audio(f)
    await wait_until(lambda: run.of(Closed), 5, "session closed")
    closed = run.of(Closed)[0]
    assert isinstance(closed, Closed) and closed.error
    assert closed.reason.startswith("stt failed: stt: transcription session")


# ----------------------------------------------------------------- a streaming model


def live_session(
    server: CascadeServer, checker: CascadeServer | None = None, delay: str | None = "minimal"
) -> Run:
    settings = settings_for(
        server,
        stt_mode="stream",
        transcription_prompt="Acme orders",
        transcription_delay=delay,
        turn_check=None
        if checker is None
        else StageEndpoint(checker.base_url, "gpt-4.1-nano", KEY, timeout=5),
    )
    settings = replace(settings, stt=replace(settings.stt, model="gpt-realtime-whisper"))
    cfg = AISessionConfig(input_format=AudioFormat.PCMU, output_format=AudioFormat.PCMU,
                          tools=(CHECK_ORDER,))  # fmt: skip
    return Run(CascadeSession(cfg, settings))


async def test_streaming_model_words_reach_the_bridge_while_the_caller_speaks(
    server: CascadeServer,
) -> None:
    run = live_session(server)
    await run.start()
    try:
        sock = server.transcription_sockets[0]
        tr = sock.events_in[0]["session"]["audio"]["input"]["transcription"]
        # gpt-realtime-whisper takes no prompt (SDK): not sent; the delay is
        assert tr == {"model": "gpt-realtime-whisper", "delay": "minimal"}
        frames = caller_speech(ms=1000, silence_ms=700)
        for f in frames[:47]:  # 940 ms of speech: the caller is still speaking
            run.session.send_audio(f)

        def so_far() -> str:  # the console's live view (agent/partial.py) of the events
            partial = PartialTranscript(lambda: 0.0)
            for ev in run.events:
                partial.feed(ev)
            lines = [ln["text"] for ln in partial.lines() if ln["speaker"] == "caller"]
            return lines[0] if lines else ""

        await wait_until(lambda: so_far() == "Where is my order?", 5, "the words so far")
        # all of it while the caller speaks: no end of turn, nothing committed
        assert not run.of(SpeechStopped) and run.session.caller_speaking
        assert not any(e["type"] == "input_audio_buffer.commit" for e in sock.events_in)
        started = run.of(SpeechStarted)[0]
        assert isinstance(started, SpeechStarted)
        deltas = [e for e in run.of(CallerTranscript) if isinstance(e, CallerTranscript)]
        assert [d.text for d in deltas] == ["Where", " is", " my", " order?"]
        assert {d.item_id for d in deltas} == {started.item_id} and not any(d.final for d in deltas)
        for f in frames[47:]:
            run.session.send_audio(f)
        await wait_until(lambda: run.of(ToolCall), 5, "answered")
        texts = [e for e in run.of(CallerTranscript) if isinstance(e, CallerTranscript)]
        assert [e.text for e in texts if e.final] == ["Where is my order?"]
        assert len([e for e in texts if not e.final]) == 4  # no word twice after the commit
        model_req = next(r for r in server.requests if r.path == "/v1/responses").json()
        assert model_req["input"][-1] == {"role": "user", "content": "Where is my order?"}
    finally:
        await run.stop()


JUDGE = Scenario.loads('name = "judge"\n[[turns]]\ncaller = "x"\nsay = "Yes"\n')


def checks(srv: CascadeServer) -> list[str]:
    return [r.json()["input"][-1]["content"] for r in srv.requests if r.path == "/v1/responses"]


@pytest.fixture
async def slow_server() -> AsyncIterator[CascadeServer]:
    """The service's pass over the committed audio takes a second."""
    pacing = Pacing(transcript_delay=1.0)
    async with CascadeServer(scenario=SCENARIO, api_keys=[KEY], tts_engine="tone",
                             pacing=pacing) as srv:  # fmt: skip
        yield srv


async def test_turn_check_starts_on_the_words_so_far(slow_server: CascadeServer) -> None:
    server = slow_server
    async with CascadeServer(scenario=JUDGE, api_keys=[KEY]) as checker:
        run = live_session(server, checker)
        await run.start()
        try:
            frames = caller_speech(ms=1000, silence_ms=700)
            for f in frames[:55]:  # (a phone's 20 ms pace: the words come back meanwhile)
                run.session.send_audio(f)
            await wait_until(lambda: len(run.of(CallerTranscript)) == 4, 5, "the words")
            for f in frames[55:]:
                run.session.send_audio(f)
            # every word was written before the end of the turn: the check starts at once,
            # while the final transcript is a second away
            await wait_until(lambda: checks(checker), 5, "the early check")
            assert checks(checker) == ["Where is my order?"]
            assert not [e for e in run.of(CallerTranscript) if getattr(e, "final", False)]
            await wait_until(lambda: run.of(ToolCall), 5, "answered")
            assert checks(checker) == ["Where is my order?"]  # its answer was used
        finally:
            await run.stop()


async def test_turn_check_judges_the_final_words_when_they_differ(
    slow_server: CascadeServer,
) -> None:
    server = slow_server
    async with CascadeServer(scenario=JUDGE, api_keys=[KEY]) as checker:
        run = live_session(server, checker)
        await run.start()
        try:
            # 600 ms of speech: three words written before the end of the turn
            frames = caller_speech(ms=600, silence_ms=700)
            for f in frames[:40]:
                run.session.send_audio(f)
            await wait_until(lambda: len(run.of(CallerTranscript)) == 3, 5, "the words")
            for f in frames[40:]:
                run.session.send_audio(f)
            await wait_until(lambda: checks(checker), 5, "the early check")
            assert checks(checker) == ["Where is my"]
            await wait_until(lambda: run.of(ToolCall), 5, "answered")
            # the final transcript says more: it is checked itself, and answered
            assert checks(checker) == ["Where is my", "Where is my order?"]
            model_req = next(r for r in server.requests if r.path == "/v1/responses").json()
            assert model_req["input"][-1] == {"role": "user", "content": "Where is my order?"}
        finally:
            await run.stop()


async def test_bridge_shows_the_callers_words_while_they_speak(server: CascadeServer) -> None:
    """Through a CallBridge on a memory call (the pacer's real 20 ms): the live view the
    console reads (``partial_transcript``) has the caller's words before the end of turn."""
    from w3sipagent.agent.bridge import CallBridge
    from w3sipagent.agent.memcall import MemoryCall
    from w3sipagent.agent.options import BridgeOptions

    run = live_session(server)
    cfg = run.session.config
    call = MemoryCall()
    bridge = CallBridge(
        call, lambda _c: run.session, cfg, options=BridgeOptions(caller_silence_timeout=None)
    )
    task = asyncio.create_task(bridge.run())
    try:
        await wait_until(lambda: bridge.session is not None, 5, "session up")
        frames = caller_speech(ms=2000, silence_ms=700)
        speaking = asyncio.create_task(call.play(frames[:100]))  # 2 s of speech, real time

        def caller_so_far() -> str:
            lines = [ln for ln in bridge.partial_transcript if ln["speaker"] == "caller"]
            return str(lines[0]["text"]) if lines else ""

        await wait_until(lambda: caller_so_far() == "Where is my order?", 5, "caller words")
        assert not speaking.done()  # the caller is still talking
        await speaking
        await call.play(frames[100:])
        await wait_until(lambda: not caller_so_far(), 5, "final transcript replaced it")
    finally:
        call.remote_hangup()
        await asyncio.wait_for(task, 10)


async def test_live_words_follow_the_turn_when_the_commit_names_another_item() -> None:
    """Should the service name the committed item otherwise than its live deltas (not
    documented either way), the words already written and the rest stay one turn."""
    from websockets.asyncio.server import ServerConnection, serve

    from w3sipagent.cascade.stt_stream import StreamingSpeechToText

    async def service(ws: ServerConnection) -> None:
        async def send(ev: dict) -> None:  # type: ignore[type-arg]
            await ws.send(json.dumps(ev))

        await send({"type": "session.created", "session": {}})
        async for raw in ws:
            kind = json.loads(raw)["type"]
            if kind == "session.update":
                await send({"type": "session.updated", "session": {}})
            elif kind == "input_audio_buffer.append":  # words while the audio comes
                await send({"type": "conversation.item.input_audio_transcription.delta",
                            "item_id": "item_live", "content_index": 0, "delta": "Hello"})  # fmt: skip
            elif kind == "input_audio_buffer.commit":
                await send({"type": "input_audio_buffer.committed", "item_id": "item_2",
                            "previous_item_id": None})  # fmt: skip
                await send({"type": "conversation.item.input_audio_transcription.delta",
                            "item_id": "item_2", "content_index": 0, "delta": " there"})  # fmt: skip
                await send({"type": "conversation.item.input_audio_transcription.completed",
                            "item_id": "item_2", "content_index": 0,
                            "transcript": "Hello there"})  # fmt: skip

    async with serve(service, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        ep = StageEndpoint(f"http://127.0.0.1:{port}/v1", "gpt-realtime-whisper", KEY, timeout=5)
        stt = StreamingSpeechToText(ep, "audio/pcmu")
        await stt.connect()
        try:
            got: list[str] = []
            stt.begin(got.append)
            await stt.append(bytes(160))
            await wait_until(lambda: stt.live_text == "Hello", 5, "the live word")
            pending = await stt.send_commit(got.append)
            assert await stt.transcript(pending) == "Hello there"
            assert got == ["Hello", " there"]
            assert pending is not None and pending.text == "Hello there"  # one turn's words
        finally:
            await stt.aclose()
