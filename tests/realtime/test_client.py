"""The WebSocket Realtime client against a tiny scripted GA server on 127.0.0.1.

The scripted server plays GA server events and records every client event, so the
tests assert the exact frames the client sent and the AI events it yielded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from w3sipagent.ai import session as ai
from w3sipagent.errors import AIError
from w3sipagent.realtime import events as ev
from w3sipagent.realtime.client import RealtimeClient

Handler = Callable[["Conn", ev.ClientEvent], Awaitable[None]]


@dataclass
class Conn:
    """One accepted connection: what it received, and a way to send server events."""

    ws: ServerConnection
    path: str
    headers: Headers
    received: list[ev.ClientEvent] = field(default_factory=list)
    seq: int = 0

    async def send(self, type_: str, **fields: Any) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({"type": type_, "event_id": f"event_{self.seq}", **fields}))

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    def of(self, cls: type[ev.ClientEvent]) -> list[Any]:
        return [e for e in self.received if isinstance(e, cls)]

    async def audio_delta(self, rid: str, item: str, audio: bytes) -> None:
        await self.send(
            "response.output_audio.delta",
            response_id=rid,
            item_id=item,
            output_index=0,
            content_index=0,
            delta=base64.b64encode(audio).decode(),
        )

    async def response_done(self, rid: str, status: str = "completed", **resp: Any) -> None:
        await self.send(
            "response.done",
            response={"id": rid, "object": "realtime.response", "status": status, **resp},
        )


async def default_handler(conn: Conn, event: ev.ClientEvent) -> None:
    """session.update -> session.updated (expires in an hour); nothing else."""
    if isinstance(event, ev.SessionUpdate):
        await conn.send("session.updated", session=session_of(event.session))


def session_of(update: dict[str, Any], expires_in: float = 3600) -> dict[str, Any]:
    return {
        "id": "sess_test",
        "object": "realtime.session",
        "model": "gpt-realtime",
        "expires_at": int(time.time() + expires_in),
        **update,
    }


class ScriptedServer:
    """``async with ScriptedServer(handler) as srv``: ``srv.url`` is the client's base URL."""

    def __init__(
        self,
        handler: Handler = default_handler,
        *,
        reject_status: int | None = None,
        reject_body: bytes = b"",
        send_created: bool = True,
    ) -> None:
        self.handler = handler
        self.reject_status = reject_status
        self.reject_body = reject_body
        self.send_created = send_created
        self.conns: list[Conn] = []
        self.connected = asyncio.Event()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1"

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if self.reject_status is not None:
            return Response(
                self.reject_status,
                "Unauthorized",
                Headers({"Content-Type": "application/json"}),
                self.reject_body,
            )
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        conn = Conn(ws, ws.request.path, ws.request.headers)
        self.conns.append(conn)
        self.connected.set()
        if self.send_created:
            await conn.send("session.created", session=session_of({"type": "realtime"}))
        async for text in ws:
            event = ev.parse_client_event(text)
            assert event is not None, text
            conn.received.append(event)
            await self.handler(conn, event)

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(
            self._serve, "127.0.0.1", 0, process_request=self._process_request, compression=None
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait_for(
        self, pred: Callable[[], bool], timeout: float = 2.0, what: str = "condition"
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.005)


# ---------------------------------------------------------------- helpers

KEY = "sk-test-0123456789abcdefSECRET"
FRAME = bytes(range(160))  # 20 ms of PCMU


def make_client(url: str, **kw: Any) -> RealtimeClient:
    config = kw.pop("config", None) or ai.AISessionConfig(instructions="Be brief.", voice="marin")
    kw.setdefault("session_timeout", 2.0)
    kw.setdefault("proxy", None)
    return RealtimeClient(config, api_key=KEY, base_url=url, **kw)


async def next_events(client: RealtimeClient, n: int, timeout: float = 2.0) -> list[ai.AIEvent]:
    out: list[ai.AIEvent] = []
    it = client.events().__aiter__()

    async def collect() -> None:
        while len(out) < n:
            out.append(await it.__anext__())

    await asyncio.wait_for(collect(), timeout)
    return out


async def events_until(
    client: RealtimeClient, pred: Callable[[ai.AIEvent], bool], timeout: float = 2.0
) -> list[ai.AIEvent]:
    out: list[ai.AIEvent] = []

    async def collect() -> None:
        async for e in client.events():
            out.append(e)
            if pred(e):
                return

    await asyncio.wait_for(collect(), timeout)
    return out


# ---------------------------------------------------------------- connection and configuration


@pytest.mark.parametrize(
    ("fmt", "wire"),
    [
        (ai.AudioFormat.PCMU, {"type": "audio/pcmu"}),
        (ai.AudioFormat.PCMA, {"type": "audio/pcma"}),
        (ai.AudioFormat.PCM24K, {"type": "audio/pcm", "rate": 24000}),
    ],
)
async def test_connect_and_full_ga_session_update(
    fmt: ai.AudioFormat, wire: dict[str, Any]
) -> None:
    config = ai.AISessionConfig(
        instructions="You answer the phone for ACME.",
        voice="cedar",
        speed=1.1,
        input_format=fmt,
        output_format=fmt,
        turn_detection=ai.TurnDetection(
            threshold=0.6, prefix_padding_ms=200, silence_duration_ms=400, idle_timeout_ms=6000
        ),
        transcription_language="de",
        noise_reduction="near_field",
        tools=(
            ai.ToolSpec(
                "transfer",
                "Transfer the call",
                {"type": "object", "properties": {"to": {"type": "string"}}},
            ),
        ),
        tool_choice="auto",
        max_output_tokens=800,
        truncation={"type": "retention_ratio", "retention_ratio": 0.8},
    )
    async with ScriptedServer() as srv:
        client = make_client(srv.url, config=config)
        await client.start()
        first = await next_events(client, 1)
        assert first == [ai.SessionReady()]
        conn = srv.conns[0]
        assert conn.path == "/v1/realtime?model=gpt-realtime"
        assert conn.headers["Authorization"] == f"Bearer {KEY}"
        assert "OpenAI-Beta" not in conn.headers
        (update,) = conn.of(ev.SessionUpdate)
        s = update.session
        assert s["type"] == "realtime"
        assert s["output_modalities"] == ["audio"]
        assert s["instructions"] == "You answer the phone for ACME."
        assert s["audio"]["input"]["format"] == wire
        assert s["audio"]["output"] == {"format": wire, "voice": "cedar", "speed": 1.1}
        assert s["audio"]["input"]["turn_detection"] == {
            "type": "server_vad",
            "threshold": 0.6,
            "prefix_padding_ms": 200,
            "silence_duration_ms": 400,
            "create_response": True,
            "interrupt_response": True,
            "idle_timeout_ms": 6000,
        }
        assert s["audio"]["input"]["transcription"] == {
            "model": "gpt-4o-mini-transcribe",
            "language": "de",
        }
        assert s["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
        assert s["tools"] == [
            {
                "type": "function",
                "name": "transfer",
                "description": "Transfer the call",
                "parameters": {"type": "object", "properties": {"to": {"type": "string"}}},
            }
        ]
        assert s["tool_choice"] == "auto"
        assert s["max_output_tokens"] == 800
        assert s["truncation"] == {"type": "retention_ratio", "retention_ratio": 0.8}
        assert "model" not in s  # in the URL, not updatable
        await client.close()


async def test_semantic_vad_and_no_turn_detection() -> None:
    sem = ai.AISessionConfig(
        turn_detection=ai.TurnDetection(type="semantic_vad", eagerness="low"),
        tool_choice="lookup",
        transcription_model=None,
    )
    off = ai.AISessionConfig(turn_detection=None)
    async with ScriptedServer() as srv:
        for config in (sem, off):
            client = make_client(srv.url, config=config)
            await client.start()
            await client.close()
        s1 = srv.conns[0].of(ev.SessionUpdate)[0].session
        s2 = srv.conns[1].of(ev.SessionUpdate)[0].session
    assert s1["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert s1["tool_choice"] == {"type": "function", "name": "lookup"}
    assert s1["audio"]["input"]["transcription"] is None
    assert s2["audio"]["input"]["turn_detection"] is None
    assert s2["max_output_tokens"] == "inf"
    assert "truncation" not in s1 and "truncation" not in s2  # None: the service default


async def test_rejected_session_update_raises_with_code_and_message() -> None:
    async def reject(conn: Conn, event: ev.ClientEvent) -> None:
        if isinstance(event, ev.SessionUpdate):
            await conn.send(
                "error",
                error={
                    "type": "invalid_request_error",
                    "code": "invalid_value",
                    "message": "Invalid value: 'fable'.",
                    "param": "session.audio.output.voice",
                    "event_id": event.event_id,
                },
            )

    async with ScriptedServer(reject) as srv:
        client = make_client(srv.url)
        with pytest.raises(
            AIError,
            match=r"invalid_value \(session\.audio\.output\.voice\): Invalid value: 'fable'\.",
        ):
            await client.start()
        await srv.wait_for(lambda: srv.conns[0].ws.state.name == "CLOSED", what="socket closed")


async def test_no_session_updated_times_out() -> None:
    async def mute(conn: Conn, event: ev.ClientEvent) -> None:
        return None

    async with ScriptedServer(mute) as srv:
        client = make_client(srv.url, session_timeout=0.2)
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(AIError, match=r"no session\.updated"):
            await client.start()
        assert asyncio.get_running_loop().time() - t0 < 1.5


async def test_start_cancelled_mid_setup_closes_the_socket_and_its_tasks() -> None:
    """An early session whose caller left (the service cancels its start): the WebSocket
    and the reader / writer tasks go with it, and a later close() is harmless. Before, the
    cancelled start marked the session closed without dropping its link: both tasks and
    the socket stayed open for good (found by the suite's release check)."""

    async def mute(conn: Conn, event: ev.ClientEvent) -> None:
        return None

    async with ScriptedServer(mute) as srv:
        client = make_client(srv.url, session_timeout=30)
        before = asyncio.all_tasks()
        starting = asyncio.ensure_future(client.start())
        await srv.wait_for(lambda: len(srv.conns) == 1, what="connected")
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        mine = [t for t in asyncio.all_tasks() - before if t.get_name().startswith("realtime-")]
        assert mine == [], [t.get_name() for t in mine]
        await srv.wait_for(lambda: srv.conns[0].ws.state.name == "CLOSED", what="socket closed")
        await client.close()


async def test_auth_failure_never_shows_the_key(caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(
        {
            "error": {
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "message": f"Incorrect API key provided: {KEY}.",
            }
        }
    ).encode()
    caplog.set_level(logging.DEBUG)
    async with ScriptedServer(reject_status=401, reject_body=body) as srv:
        client = make_client(srv.url)
        with pytest.raises(AIError) as info:
            await client.start()
    text = str(info.value)
    assert "HTTP 401" in text and "invalid_api_key" in text
    assert KEY not in text and KEY[:12] not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    ours = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")
    )
    assert "Authorization: [redacted]" in ours  # the client handshake was logged at debug...
    assert KEY not in ours  # ...without the key
    assert KEY not in repr(client)


async def test_connection_refused_is_aierror() -> None:
    async with ScriptedServer() as srv:
        url = srv.url
    client = make_client(url, connect_timeout=1.0)
    with pytest.raises(AIError, match="cannot connect"):
        await client.start()


# ---------------------------------------------------------------- audio


async def test_audio_frames_sent_one_by_one_in_order_including_before_start() -> None:
    async with ScriptedServer() as srv:
        client = make_client(srv.url)
        frames = [bytes([i]) * 160 for i in range(12)]
        for f in frames[:5]:
            client.send_audio(f)  # before start(): held
        start = asyncio.create_task(client.start())
        await srv.connected.wait()
        for f in frames[5:8]:
            client.send_audio(f)  # during start: held
        await start
        for f in frames[8:]:
            client.send_audio(f)
        conn = srv.conns[0]
        await srv.wait_for(lambda: len(conn.of(ev.InputAudioBufferAppend)) == 12, what="12 appends")
        appends = conn.of(ev.InputAudioBufferAppend)
        assert [a.audio for a in appends] == frames  # one append per frame, never batched
        assert isinstance(conn.received[0], ev.SessionUpdate)  # config first
        await client.close()


async def test_send_audio_does_not_block() -> None:
    async with ScriptedServer() as srv:
        client = make_client(srv.url)
        await client.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(500):  # 10 s of audio, no await in between
            client.send_audio(FRAME)
        assert loop.time() - t0 < 0.5
        conn = srv.conns[0]
        await srv.wait_for(
            lambda: len(conn.of(ev.InputAudioBufferAppend)) == 500, what="500 appends"
        )
        await client.close()


# ---------------------------------------------------------------- responses and hygiene


def responder(script: Callable[[Conn, str], Awaitable[None]] | None = None) -> Handler:
    """A handler that answers response.create with response.created (id resp_N) and runs script."""

    async def handle(conn: Conn, event: ev.ClientEvent) -> None:
        await default_handler(conn, event)
        if isinstance(event, ev.ResponseCreate):
            rid = f"resp_{len(conn.of(ev.ResponseCreate))}"
            await conn.send(
                "response.created",
                response={
                    "id": rid,
                    "object": "realtime.response",
                    "status": "in_progress",
                    "output": [],
                },
            )
            if script is not None:
                await script(conn, rid)

    return handle


async def test_never_two_response_creates_while_active() -> None:
    async with ScriptedServer(responder()) as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        await client.create_response("Greet the caller.")
        await srv.wait_for(lambda: len(conn.of(ev.ResponseCreate)) == 1)
        await client.create_response()
        await client.send_tool_result("call_1", '{"ok":true}')
        await srv.wait_for(lambda: len(conn.of(ev.ConversationItemCreate)) == 1, what="tool output")
        await asyncio.sleep(0.05)
        assert len(conn.of(ev.ResponseCreate)) == 1  # still one: resp_1 is active
        item = conn.of(ev.ConversationItemCreate)[0].item
        assert (item.type, item.call_id, item.output) == (
            "function_call_output",
            "call_1",
            '{"ok":true}',
        )
        assert conn.of(ev.ResponseCreate)[0].response == {"instructions": "Greet the caller."}
        await conn.response_done("resp_1")
        await srv.wait_for(lambda: len(conn.of(ev.ResponseCreate)) == 2, what="queued create")
        await asyncio.sleep(0.05)
        assert len(conn.of(ev.ResponseCreate)) == 2  # one queued create, not two
        await client.close()


async def test_commit_only_with_100ms_of_audio() -> None:
    config = ai.AISessionConfig(turn_detection=None)

    async def handle(conn: Conn, event: ev.ClientEvent) -> None:
        await responder()(conn, event)
        if isinstance(event, ev.ResponseCreate):
            await conn.response_done(f"resp_{len(conn.of(ev.ResponseCreate))}")

    async with ScriptedServer(handle) as srv:
        client = make_client(srv.url, config=config)
        await client.start()
        conn = srv.conns[0]
        for _ in range(4):
            client.send_audio(FRAME)  # 80 ms
        await client.create_response()
        await srv.wait_for(lambda: len(conn.of(ev.ResponseCreate)) == 1)
        assert conn.of(ev.InputAudioBufferCommit) == []
        for _ in range(2):
            client.send_audio(FRAME)  # 120 ms since the last commit
        await asyncio.sleep(0.05)
        await client.create_response()
        await srv.wait_for(lambda: len(conn.of(ev.ResponseCreate)) == 2)
        kinds = [
            type(e).__name__ for e in conn.received if not isinstance(e, ev.InputAudioBufferAppend)
        ]
        assert kinds == [
            "SessionUpdate",
            "ResponseCreate",
            "InputAudioBufferCommit",
            "ResponseCreate",
        ]
        await client.close()


async def test_full_turn_maps_to_ai_events_with_usage() -> None:
    usage = {
        "total_tokens": 30,
        "input_tokens": 20,
        "output_tokens": 10,
        "input_token_details": {"cached_tokens": 4, "text_tokens": 5, "audio_tokens": 15},
        "output_token_details": {"text_tokens": 2, "audio_tokens": 8},
    }

    async def turn(conn: Conn, rid: str) -> None:
        await conn.send(
            "response.output_item.added",
            response_id=rid,
            output_index=0,
            item={
                "id": "item_a",
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            },
        )
        await conn.audio_delta(rid, "item_a", b"\xff" * 160)
        await conn.send(
            "response.output_audio_transcript.delta",
            response_id=rid,
            item_id="item_a",
            output_index=0,
            content_index=0,
            delta="Hello",
        )
        await conn.audio_delta(rid, "item_a", b"\x7f" * 160)
        await conn.send(
            "response.output_audio.done",
            response_id=rid,
            item_id="item_a",
            output_index=0,
            content_index=0,
        )
        await conn.send(
            "response.output_audio_transcript.done",
            response_id=rid,
            item_id="item_a",
            output_index=0,
            content_index=0,
            transcript="Hello there",
        )
        await conn.response_done(rid, usage=usage)

    manual = ai.AISessionConfig(turn_detection=ai.TurnDetection(create_response=False))
    async with ScriptedServer(responder(turn)) as srv:
        client = make_client(srv.url, config=manual)
        await client.start()
        conn = srv.conns[0]
        await conn.send("input_audio_buffer.speech_started", audio_start_ms=1200, item_id="item_u")
        await conn.send("input_audio_buffer.speech_stopped", audio_end_ms=2400, item_id="item_u")
        await conn.send("input_audio_buffer.committed", item_id="item_u", previous_item_id=None)
        await conn.send(
            "conversation.item.input_audio_transcription.delta",
            item_id="item_u",
            content_index=0,
            delta="Hi",
        )
        await conn.send(
            "conversation.item.input_audio_transcription.completed",
            item_id="item_u",
            content_index=0,
            transcript="Hi there.",
            usage={"type": "duration", "seconds": 1.2},
        )
        got = await events_until(client, lambda e: isinstance(e, ai.CallerTranscript) and e.final)
        await client.create_response()
        got += await events_until(client, lambda e: isinstance(e, ai.ResponseDone))
        await client.create_response()
        got += await events_until(client, lambda e: isinstance(e, ai.ResponseDone))
        u = ai.Usage(
            input_tokens=20,
            output_tokens=10,
            total_tokens=30,
            input_audio_tokens=15,
            output_audio_tokens=8,
            cached_tokens=4,
        )
        assert got[:12] == [
            ai.SessionReady(),
            ai.SpeechStarted(1200, "item_u"),
            ai.SpeechStopped(2400, "item_u"),
            ai.CallerTranscript("item_u", "Hi", final=False),
            ai.CallerTranscript("item_u", "Hi there.", final=True),
            ai.ResponseStarted("resp_1"),
            ai.AudioDelta("resp_1", "item_a", b"\xff" * 160),
            ai.AgentTranscript("resp_1", "item_a", "Hello", final=False),
            ai.AudioDelta("resp_1", "item_a", b"\x7f" * 160),
            ai.AudioDone("resp_1", "item_a"),
            ai.AgentTranscript("resp_1", "item_a", "Hello there", final=True),
            ai.ResponseDone("resp_1", "completed", u, None),
        ]
        assert client.usage == u + u
        assert [(h.role, h.text) for h in client.history] == [
            ("user", "Hi there."),
            ("assistant", "Hello there"),
        ]
        await client.close()


async def test_truncate_is_clamped_and_drops_the_rest_of_the_response() -> None:
    async def stream(conn: Conn, rid: str) -> None:
        for _ in range(3):
            await conn.audio_delta(rid, "item_a", FRAME)  # 3 x 20 ms of PCMU

    async with ScriptedServer(responder(stream)) as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        await client.create_response()
        got = await events_until(client, lambda e: isinstance(e, ai.AudioDelta))
        got += await next_events(client, 2)
        assert [type(e) for e in got] == [ai.SessionReady, ai.ResponseStarted] + [ai.AudioDelta] * 3
        await client.truncate("item_a", 5000)  # the caller cannot have heard more than 60 ms
        await client.truncate("item_unknown", 100)  # nothing received for it: not sent
        await srv.wait_for(lambda: len(conn.of(ev.ConversationItemTruncate)) == 1)
        (tr,) = conn.of(ev.ConversationItemTruncate)
        assert (tr.item_id, tr.content_index, tr.audio_end_ms) == ("item_a", 0, 60)
        await conn.audio_delta("resp_1", "item_a", FRAME)  # late delta of the truncated response
        await conn.send(
            "conversation.item.truncated", item_id="item_a", content_index=0, audio_end_ms=60
        )
        await conn.response_done(
            "resp_1",
            "cancelled",
            status_details={"type": "cancelled", "reason": "client_cancelled"},
        )
        rest = await events_until(client, lambda e: isinstance(e, ai.ResponseDone))
        assert rest == [ai.ResponseDone("resp_1", "cancelled", None, "client_cancelled")]
        await asyncio.sleep(0.05)
        assert len(conn.of(ev.ConversationItemTruncate)) == 1
        await client.close()


async def test_cancel_response_drops_late_deltas() -> None:
    async def one(conn: Conn, rid: str) -> None:
        await conn.audio_delta(rid, "item_a", FRAME)

    async with ScriptedServer(responder(one)) as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        await client.cancel_response()  # nothing active: nothing sent
        await client.create_response()
        got = await events_until(client, lambda e: isinstance(e, ai.AudioDelta))
        await client.cancel_response()
        await srv.wait_for(lambda: len(conn.of(ev.ResponseCancel)) == 1)
        assert conn.of(ev.ResponseCancel)[0].response_id == "resp_1"
        await conn.audio_delta("resp_1", "item_a", FRAME)
        await conn.send(
            "response.output_audio_transcript.delta",
            response_id="resp_1",
            item_id="item_a",
            output_index=0,
            content_index=0,
            delta="late",
        )
        await conn.response_done(
            "resp_1",
            "cancelled",
            status_details={"type": "cancelled", "reason": "client_cancelled"},
        )
        got = await events_until(client, lambda e: isinstance(e, ai.ResponseDone))
        assert got == [ai.ResponseDone("resp_1", "cancelled", None, "client_cancelled")]
        await client.close()


async def test_barge_in_drops_deltas_of_the_interrupted_response() -> None:
    async with ScriptedServer(responder()) as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        await client.create_response()
        await events_until(client, lambda e: isinstance(e, ai.ResponseStarted))
        await conn.audio_delta("resp_1", "item_a", FRAME)
        await conn.send("input_audio_buffer.speech_started", audio_start_ms=300, item_id="item_u")
        await conn.audio_delta("resp_1", "item_a", FRAME)  # in flight when the server cancelled
        await conn.response_done(
            "resp_1", "cancelled", status_details={"type": "cancelled", "reason": "turn_detected"}
        )
        got = await events_until(client, lambda e: isinstance(e, ai.ResponseDone))
        assert [type(e) for e in got] == [ai.AudioDelta, ai.SpeechStarted, ai.ResponseDone]
        await client.close()


async def test_tool_call_reported_once() -> None:
    async def call(conn: Conn, rid: str) -> None:
        fc = {
            "id": "item_f",
            "type": "function_call",
            "call_id": "call_7",
            "name": "transfer",
            "arguments": '{"to":"sales"}',
            "status": "completed",
        }
        await conn.send(
            "response.output_item.added",
            response_id=rid,
            output_index=0,
            item={**fc, "arguments": "", "status": "in_progress"},
        )
        await conn.send(
            "response.function_call_arguments.delta",
            response_id=rid,
            item_id="item_f",
            output_index=0,
            call_id="call_7",
            delta='{"to":',
        )
        await conn.send(
            "response.function_call_arguments.done",
            response_id=rid,
            item_id="item_f",
            output_index=0,
            call_id="call_7",
            name="transfer",
            arguments='{"to":"sales"}',
        )
        await conn.send("response.output_item.done", response_id=rid, output_index=0, item=fc)
        await conn.response_done(rid, output=[fc])

    async with ScriptedServer(responder(call)) as srv:
        client = make_client(srv.url)
        await client.start()
        await client.create_response()
        got = await events_until(client, lambda e: isinstance(e, ai.ResponseDone))
        calls = [e for e in got if isinstance(e, ai.ToolCall)]
        assert calls == [ai.ToolCall("call_7", "transfer", '{"to":"sales"}', "resp_1")]
        await client.close()


# ---------------------------------------------------------------- failures


async def test_unknown_beta_and_malformed_events_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="w3sipagent.realtime")
    async with ScriptedServer() as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        await conn.send(
            "response.audio.delta", response_id="r", item_id="i", delta="AAAA"
        )  # beta name
        await conn.send("some.future.event", foo=1)
        await conn.send_raw("not json")
        await conn.send_raw("[1,2]")
        await conn.send("input_audio_buffer.speech_started", audio_start_ms="soon")
        await conn.send("input_audio_buffer.speech_stopped", audio_end_ms=900, item_id="item_u")
        got = await events_until(client, lambda e: isinstance(e, ai.SpeechStopped))
        assert got == [ai.SessionReady(), ai.SpeechStopped(900, "item_u")]
        assert "some.future.event" in caplog.text and "response.audio.delta" in caplog.text
        assert "audio_start_ms" in caplog.text
        await client.close()


async def test_error_event_surfaced_and_session_survives() -> None:
    async with ScriptedServer(responder()) as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        await conn.send(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "input_audio_buffer_commit_empty",
                "message": "buffer too small.",
                "param": None,
                "event_id": None,
            },
        )
        got = await events_until(client, lambda e: isinstance(e, ai.AIErrorEvent))
        assert got[-1] == ai.AIErrorEvent(
            "input_audio_buffer_commit_empty", "buffer too small.", fatal=False
        )
        await client.create_response()
        await srv.wait_for(lambda: len(conn.of(ev.ResponseCreate)) == 1)
        await client.close()


async def test_refused_create_does_not_block_the_next() -> None:
    async def refuse(conn: Conn, event: ev.ClientEvent) -> None:
        await default_handler(conn, event)
        if isinstance(event, ev.ResponseCreate) and len(conn.of(ev.ResponseCreate)) == 1:
            await conn.send(
                "error",
                error={
                    "type": "invalid_request_error",
                    "code": "conversation_already_has_active_response",
                    "message": "Conversation already has an active response",
                    "event_id": event.event_id,
                },
            )

    async with ScriptedServer(refuse) as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        await client.create_response()
        await events_until(client, lambda e: isinstance(e, ai.AIErrorEvent))
        await client.create_response()
        await srv.wait_for(lambda: len(conn.of(ev.ResponseCreate)) == 2)
        await client.close()


@pytest.mark.parametrize("how", ["close_1011", "abort"])
async def test_dropped_connection_reported_promptly(how: str) -> None:
    async with ScriptedServer() as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        t0 = asyncio.get_running_loop().time()
        if how == "abort":
            conn.ws.transport.abort()
        else:
            await conn.ws.close(1011, "keepalive ping timeout")
        got = await events_until(client, lambda e: isinstance(e, ai.Closed), timeout=2.0)
        assert asyncio.get_running_loop().time() - t0 < 0.5
        closed = got[-1]
        assert isinstance(closed, ai.Closed) and closed.error
        if how == "close_1011":
            assert "1011" in closed.reason and "keepalive ping timeout" in closed.reason
        else:
            assert "lost" in closed.reason
        client.send_audio(FRAME)  # after the loss: ignored, no exception
        await client.close()  # idempotent after a failure


async def test_dead_peer_detected_by_keepalive() -> None:
    async with ScriptedServer() as srv:
        # detection time = ping_interval + ping_timeout + close_timeout
        client = make_client(srv.url, ping_interval=0.1, ping_timeout=0.2, close_timeout=0.2)
        await client.start()
        srv.conns[0].ws.transport.pause_reading()  # a black hole: no pong, no close
        t0 = asyncio.get_running_loop().time()
        got = await events_until(client, lambda e: isinstance(e, ai.Closed), timeout=3.0)
        assert asyncio.get_running_loop().time() - t0 < 1.5
        assert got[-1] == ai.Closed(got[-1].reason, error=True)  # type: ignore[attr-defined]
        srv.conns[0].ws.transport.resume_reading()
        await client.close()


async def test_close_is_idempotent_and_ends_events() -> None:
    async with ScriptedServer() as srv:
        client = make_client(srv.url)
        await client.start()
        await client.close()
        await client.close()
        got = await events_until(client, lambda e: isinstance(e, ai.Closed))
        assert got == [ai.SessionReady(), ai.Closed("closed by client", error=False)]
        await srv.wait_for(
            lambda: srv.conns[0].ws.state.name == "CLOSED", what="server side closed"
        )


# ---------------------------------------------------------------- session limit


async def _one_turn(conn: Conn) -> None:
    await conn.send(
        "conversation.item.added",
        previous_item_id=None,
        item={
            "id": "item_u",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        },
    )
    await conn.send(
        "conversation.item.input_audio_transcription.completed",
        item_id="item_u",
        content_index=0,
        transcript="What are your hours?",
    )
    await conn.send("response.created", response={"id": "resp_9", "status": "in_progress"})
    await conn.send(
        "response.output_item.added",
        response_id="resp_9",
        output_index=0,
        item={"id": "item_a", "type": "message", "role": "assistant", "content": []},
    )
    await conn.send(
        "response.output_audio_transcript.done",
        response_id="resp_9",
        item_id="item_a",
        output_index=0,
        content_index=0,
        transcript="Nine to five.",
    )
    await conn.response_done("resp_9")


async def test_session_expired_renews_and_reseeds_history() -> None:
    config = ai.AISessionConfig(history=(ai.HistoryItem("system", "Caller is a VIP."),))
    async with ScriptedServer() as srv:
        client = make_client(srv.url, config=config)
        await client.start()
        first = srv.conns[0]
        await _one_turn(first)
        await events_until(client, lambda e: isinstance(e, ai.ResponseDone))
        await first.send(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "session_expired",
                "message": "Your session hit the maximum duration of 60 minutes.",
            },
        )
        await srv.wait_for(lambda: len(srv.conns) == 2, what="second connection")
        client.send_audio(FRAME)  # while renewing: held for the new session
        await srv.wait_for(lambda: client.renewals == 1, what="renewal")
        second = srv.conns[1]
        client.send_audio(FRAME)
        await srv.wait_for(
            lambda: len(second.of(ev.InputAudioBufferAppend)) == 2, what="audio on new session"
        )
        seeded = [(e.item.role, e.item.text) for e in second.of(ev.ConversationItemCreate)]
        assert seeded == [
            ("system", "Caller is a VIP."),
            ("user", "What are your hours?"),
            ("assistant", "Nine to five."),
        ]
        assert second.of(ev.ConversationItemCreate)[2].item.content[0].type == "output_text"
        await second.send("input_audio_buffer.speech_started", audio_start_ms=10, item_id="x")
        got = await events_until(client, lambda e: isinstance(e, ai.SpeechStarted))
        assert not any(isinstance(e, ai.Closed | ai.AIErrorEvent) for e in got)
        await srv.wait_for(lambda: first.ws.state.name == "CLOSED", what="old session closed")
        await client.close()


async def test_renews_before_expiry_at_an_idle_moment() -> None:
    async def short(conn: Conn, event: ev.ClientEvent) -> None:
        if isinstance(event, ev.SessionUpdate):
            await conn.send("session.updated", session=session_of(event.session, expires_in=31))

    async with ScriptedServer(short) as srv:
        client = make_client(srv.url, renew_margin_s=29.5, renew_min_interval_s=0, idle_poll_s=0.01)
        await client.start()
        conn = srv.conns[0]
        await conn.send("input_audio_buffer.speech_started", audio_start_ms=0, item_id="u")
        await asyncio.sleep(0.8)
        assert len(srv.conns) == 1  # the caller is speaking: wait
        await conn.send("input_audio_buffer.speech_stopped", audio_end_ms=900, item_id="u")
        await asyncio.sleep(0.3)
        assert len(srv.conns) == 1  # the server is about to answer the turn: wait
        await conn.send("response.created", response={"id": "resp_v", "status": "in_progress"})
        await asyncio.sleep(0.3)
        assert len(srv.conns) == 1  # the response is active: wait
        await conn.response_done("resp_v")
        await srv.wait_for(lambda: client.renewals == 1, timeout=2.0, what="renewal")
        assert len(srv.conns) == 2
        assert client.expires_at is not None and client.expires_at > time.time() + 29
        await client.close()


# ---------------------------------------------------------------- against the local Realtime server

server_mod = pytest.importorskip("w3sipagent.localai")
RealtimeServer = server_mod.RealtimeServer
Scenario, Turn, FunctionCall, Injection = (
    server_mod.Scenario,
    server_mod.Turn,
    server_mod.FunctionCall,
    server_mod.Injection,
)
ServerOptions = server_mod.ServerOptions

SCRIPT = Scenario(
    name="test",
    greeting="Hello, this is the test line.",
    turns=(
        Turn(caller="What time do you open?", say="We open at nine."),
        Turn(
            caller="Is my order ready?",
            say="Let me check.",
            call=FunctionCall(name="check_order", arguments='{"order":"42"}', after="It is ready."),
        ),
    ),
)


def g711_or_pcm(pcm: bytes, fmt: ai.AudioFormat) -> bytes:
    from w3sipagent.realtime.webrtc import from_pcm16

    return from_pcm16(pcm, fmt)


def frames(fmt: ai.AudioFormat, ms: int, amp: int) -> list[bytes]:
    """20 ms frames of a 300 Hz tone (amp 0: silence) in ``fmt``."""
    import numpy as np

    rate = fmt.sample_rate
    t = np.arange(rate * ms // 1000) / rate
    pcm = (amp * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    step = rate // 50 * 2
    return [g711_or_pcm(pcm[i : i + step], fmt) for i in range(0, len(pcm), step)]


def energy(audio: bytes, fmt: ai.AudioFormat) -> float:
    import numpy as np

    from w3sipagent.realtime.webrtc import to_pcm16

    x = np.frombuffer(to_pcm16(audio, fmt), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def local(srv: Any, config: ai.AISessionConfig, **kw: Any) -> RealtimeClient:
    kw.setdefault("session_timeout", 5.0)
    kw.setdefault("proxy", None)
    return RealtimeClient(config, api_key=KEY, base_url=srv.http_url.replace("http", "ws"), **kw)


@pytest.mark.parametrize("fmt", list(ai.AudioFormat), ids=lambda f: f.name)
async def test_local_server_audio_both_ways_and_a_vad_turn(fmt: ai.AudioFormat) -> None:
    config = ai.AISessionConfig(
        instructions="Test agent.",
        voice="cedar",
        input_format=fmt,
        output_format=fmt,
        turn_detection=ai.TurnDetection(
            threshold=0.5, prefix_padding_ms=100, silence_duration_ms=300
        ),
    )
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone") as srv:
        client = local(srv, config)
        await client.start()
        eff = client.server_session
        assert eff is not None
        wire = (
            {"type": "audio/pcm", "rate": 24000}
            if fmt is ai.AudioFormat.PCM24K
            else {"type": fmt.value}
        )
        assert eff["audio"]["input"]["format"] == wire and eff["audio"]["output"]["format"] == wire
        assert eff["audio"]["output"]["voice"] == "cedar" and eff["instructions"] == "Test agent."
        assert eff["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 300

        await client.create_response()
        got = await events_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        audio = b"".join(e.audio for e in got if isinstance(e, ai.AudioDelta))
        assert fmt.duration_ms(len(audio)) >= 300 and energy(audio, fmt) > 300
        assert any(
            isinstance(e, ai.AgentTranscript) and e.final and e.text == SCRIPT.greeting for e in got
        )

        sent = frames(fmt, 200, 0) + frames(fmt, 600, 8000) + frames(fmt, 800, 0)
        for f in sent:
            client.send_audio(f)
        turn = await events_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        started = next(e for e in turn if isinstance(e, ai.SpeechStarted))
        stopped = next(e for e in turn if isinstance(e, ai.SpeechStopped))
        assert 0 <= started.audio_start_ms <= 300
        assert 750 <= stopped.audio_end_ms <= 1300
        assert ai.CallerTranscript(stopped.item_id or "", "What time do you open?", True) in turn
        assert any(
            isinstance(e, ai.AgentTranscript) and e.final and e.text == "We open at nine."
            for e in turn
        )
        rec = srv.sessions[0]
        assert bytes(rec.audio) == b"".join(sent)  # every frame arrived, in order, untouched
        assert rec.types().count("input_audio_buffer.append") == len(sent)
        await client.close()


async def test_local_server_function_call_round_trip_manual_turns() -> None:
    tool = ai.ToolSpec("check_order", "Look up an order", {"type": "object", "properties": {}})
    config = ai.AISessionConfig(turn_detection=None, tools=(tool,))
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone") as srv:
        client = local(srv, config)
        await client.start()
        for n in (1, 2):
            for f in frames(ai.AudioFormat.PCMU, 300, 8000):
                client.send_audio(f)
            await asyncio.sleep(0.05)
            await client.create_response()
            got = await events_until(
                client, lambda e: isinstance(e, ai.ResponseDone | ai.ToolCall), timeout=10
            )
            if n == 2:
                call = got[-1]
                assert isinstance(call, ai.ToolCall)
                assert (call.name, json.loads(call.arguments)) == ("check_order", {"order": "42"})
                await client.send_tool_result(call.call_id, '{"status":"ready"}')
                got = await events_until(
                    client,
                    lambda e: (
                        isinstance(e, ai.AgentTranscript) and e.final and e.text == "It is ready."
                    ),
                    timeout=10,
                )
                got += await events_until(
                    client, lambda e: isinstance(e, ai.ResponseDone), timeout=10
                )
            assert not any(isinstance(e, ai.AIErrorEvent) for e in got), got
        types = srv.sessions[0].types()
        assert types.count("input_audio_buffer.commit") == 2
        out = types.index("conversation.item.create")
        assert types[out + 1] == "response.create"  # after the tool output, exactly one create
        await client.close()


async def test_local_server_truncate_is_clamped_and_accepted() -> None:
    opts = ServerOptions(burst_speed=2.0)
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone", options=opts) as srv:
        client = local(srv, ai.AISessionConfig())
        await client.start()
        await client.create_response()
        got = await events_until(client, lambda e: isinstance(e, ai.AudioDelta), timeout=10)
        delta = got[-1]
        assert isinstance(delta, ai.AudioDelta)
        await client.truncate(delta.item_id, 60_000)  # far beyond what arrived
        done = await events_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        assert not any(isinstance(e, ai.AudioDelta | ai.AIErrorEvent) for e in done)
        (tr,) = srv.sessions[0].truncates
        assert tr.accepted and tr.item_id == delta.item_id
        assert 0 < tr.audio_end_ms <= (tr.item_audio_ms or 0) < 60_000
        await client.close()


async def test_local_server_cancel_and_barge_in() -> None:
    opts = ServerOptions(realtime_pacing=True)
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone", options=opts) as srv:
        client = local(srv, ai.AISessionConfig())
        await client.start()
        await client.create_response()
        await events_until(client, lambda e: isinstance(e, ai.AudioDelta), timeout=10)
        await client.cancel_response()
        got = await events_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        assert [type(e) for e in got if isinstance(e, ai.AudioDelta)] == []
        assert got[-1].status == "cancelled"  # type: ignore[attr-defined]
        assert [c.accepted for c in srv.sessions[0].cancels] == [True]
        await client.close()


async def test_local_server_injected_error_then_disconnect() -> None:
    script = Scenario(
        greeting="Hello.",
        turns=(Turn(say="Bye."),),
        inject=(
            Injection(
                at="response.created", action="error", turn=0, code="server_error", message="boom"
            ),
            Injection(
                at="response.done", action="close", turn=0, close_code=1011, close_reason="injected"
            ),
        ),
    )
    async with RealtimeServer(scenario=script, tts_engine="tone") as srv:
        client = local(srv, ai.AISessionConfig())
        await client.start()
        await client.create_response()
        got = await events_until(client, lambda e: isinstance(e, ai.Closed), timeout=10)
        assert ai.AIErrorEvent("server_error", "boom", fatal=False) in got
        closed = got[-1]
        assert isinstance(closed, ai.Closed) and closed.error and "1011" in closed.reason

        # reconnection: a new session seeded with what was said
        again = local(srv, replace_history(client))
        await again.start()
        rec = srv.sessions[1]
        assert rec.types()[:2] == ["session.update", "conversation.item.create"]
        seeded = [
            e.event["item"]["content"][0]["text"]
            for e in rec.events
            if e.type == "conversation.item.create"
        ]
        assert seeded == ["Hello."]
        await again.close()


def replace_history(client: RealtimeClient) -> ai.AISessionConfig:
    from dataclasses import replace

    return replace(client.config, history=client.history)


async def test_local_server_session_expiry_is_renewed() -> None:
    opts = ServerOptions(session_duration_s=0.5)
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone", options=opts) as srv:
        client = local(srv, ai.AISessionConfig(), renew_margin_s=0)
        await client.start()
        await srv.wait_for_sessions(2, timeout=5)
        deadline = asyncio.get_running_loop().time() + 5
        while client.renewals < 1 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert client.renewals == 1
        await client.create_response()
        got = await events_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        assert not any(isinstance(e, ai.Closed) for e in got)
        assert srv.sessions[1].types().count("response.create") == 1
        await client.close()


def test_open_session_selects_the_transport() -> None:
    from w3sipagent.realtime import open_session
    from w3sipagent.realtime.webrtc import RealtimeWebRTCClient

    config = ai.AISessionConfig()
    ws = open_session(config, api_key=KEY)
    assert (
        isinstance(ws, RealtimeClient)
        and ws.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    )
    assert not ws.truncates_itself and isinstance(ws, ai.AISession)
    rtc = open_session(config, api_key=KEY, transport="webrtc")
    assert isinstance(rtc, RealtimeWebRTCClient) and rtc.truncates_itself
    assert rtc.calls_url == "https://api.openai.com/v1/realtime/calls"
    local_rtc = open_session(
        config, api_key=KEY, transport="webrtc", base_url="ws://127.0.0.1:9/v1"
    )
    assert local_rtc.calls_url == "http://127.0.0.1:9/v1/realtime/calls"  # type: ignore[attr-defined]
    assert KEY not in repr(ws) + repr(rtc)
    with pytest.raises(AIError, match="unknown Realtime transport 'sip'"):
        open_session(config, api_key=KEY, transport="sip")  # type: ignore[arg-type]


async def test_expired_and_closed_at_once_still_renews() -> None:
    async with ScriptedServer() as srv:
        client = make_client(srv.url)
        await client.start()
        first = srv.conns[0]
        await first.send(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "session_expired",
                "message": "60 minutes.",
            },
        )
        await first.ws.close(1000, "session expired")  # right behind the error, like the service
        await srv.wait_for(lambda: client.renewals == 1, what="renewal")
        await srv.conns[1].send("input_audio_buffer.speech_stopped", audio_end_ms=5, item_id="x")
        got = await events_until(client, lambda e: isinstance(e, ai.SpeechStopped))
        assert not any(isinstance(e, ai.Closed | ai.AIErrorEvent) for e in got)
        await client.close()


async def test_expired_without_auto_renew_is_reported() -> None:
    async with ScriptedServer() as srv:
        client = make_client(srv.url, auto_renew=False)
        await client.start()
        first = srv.conns[0]
        await first.send(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "session_expired",
                "message": "60 minutes.",
            },
        )
        await first.ws.close(1000, "session expired")
        got = await events_until(client, lambda e: isinstance(e, ai.Closed))
        assert ai.AIErrorEvent("session_expired", "60 minutes.", fatal=True) in got
        assert isinstance(got[-1], ai.Closed) and got[-1].error and "1000" in got[-1].reason
        assert len(srv.conns) == 1


# ---------------------------------------------------------------- review additions


async def test_each_frame_goes_out_on_its_own_before_the_next_arrives() -> None:
    """No batching by count or by time: frame N is on the wire before frame N+1 is given."""
    async with ScriptedServer() as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        latencies = []
        loop = asyncio.get_running_loop()
        for i in range(10):
            t0 = loop.time()
            client.send_audio(bytes([i]) * 160)
            await srv.wait_for(
                lambda i=i: len(conn.of(ev.InputAudioBufferAppend)) == i + 1,  # type: ignore[misc]
                timeout=1.0,
                what=f"frame {i} alone",
            )
            latencies.append(loop.time() - t0)
        assert [a.audio for a in conn.of(ev.InputAudioBufferAppend)] == [
            bytes([i]) * 160 for i in range(10)
        ]
        assert sorted(latencies)[5] < 0.05  # median well under a 20 ms frame period x 2.5
        await client.close()


async def test_no_create_between_the_callers_turn_and_the_vad_response() -> None:
    """A create asked for right after speech_stopped waits; the VAD's response answers it."""
    async with ScriptedServer(responder()) as srv:
        client = make_client(srv.url)
        await client.start()
        conn = srv.conns[0]
        await conn.send("input_audio_buffer.speech_started", audio_start_ms=100, item_id="u1")
        await conn.send("input_audio_buffer.speech_stopped", audio_end_ms=900, item_id="u1")
        await events_until(client, lambda e: isinstance(e, ai.SpeechStopped))
        await client.send_tool_result("call_1", '{"ok":true}')  # respond=True: wants a create
        await srv.wait_for(lambda: len(conn.of(ev.ConversationItemCreate)) == 1, what="output")
        await asyncio.sleep(0.1)
        assert conn.of(ev.ResponseCreate) == []  # the server is about to answer the turn
        await conn.send("response.created", response={"id": "resp_vad", "status": "in_progress"})
        await conn.response_done("resp_vad")
        await events_until(client, lambda e: isinstance(e, ai.ResponseDone))
        await asyncio.sleep(0.1)
        assert conn.of(ev.ResponseCreate) == []  # dropped: the turn's response answered
        await client.close()


async def test_create_sent_when_the_vad_response_never_comes() -> None:
    async with ScriptedServer(responder()) as srv:
        client = make_client(srv.url, auto_response_wait_s=0.2)
        await client.start()
        conn = srv.conns[0]
        await conn.send("input_audio_buffer.speech_stopped", audio_end_ms=900, item_id="u1")
        await events_until(client, lambda e: isinstance(e, ai.SpeechStopped))
        t0 = asyncio.get_running_loop().time()
        await client.create_response("Say something.")
        await srv.wait_for(lambda: len(conn.of(ev.ResponseCreate)) == 1, what="late create")
        assert asyncio.get_running_loop().time() - t0 >= 0.15
        assert conn.of(ev.ResponseCreate)[0].response == {"instructions": "Say something."}
        await client.close()


async def test_local_server_idle_timeout_prompts_the_silent_caller() -> None:
    script = Scenario(greeting="Hello.", idle="Are you still there?")
    config = ai.AISessionConfig(
        turn_detection=ai.TurnDetection(silence_duration_ms=300, idle_timeout_ms=5000)
    )
    async with RealtimeServer(scenario=script, tts_engine="tone") as srv:
        client = local(srv, config)
        await client.start()
        for f in frames(ai.AudioFormat.PCMU, 5100, 0):  # 5.1 s of silence, faster than real time
            client.send_audio(f)
        got = await events_until(client, lambda e: isinstance(e, ai.ResponseDone), timeout=10)
        assert not any(isinstance(e, ai.SpeechStarted | ai.AIErrorEvent) for e in got)
        assert any(
            isinstance(e, ai.AgentTranscript) and e.final and e.text == "Are you still there?"
            for e in got
        )
        assert "input_audio_buffer.timeout_triggered" in [e["type"] for e in srv.sessions[0].sent]
        assert srv.sessions[0].types().count("response.create") == 0  # the server's own response
        await client.close()


async def test_local_server_barge_in_cancels_and_the_bridge_truncates() -> None:
    opts = ServerOptions(realtime_pacing=True)
    config = ai.AISessionConfig(
        turn_detection=ai.TurnDetection(prefix_padding_ms=100, silence_duration_ms=300)
    )
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone", options=opts) as srv:
        client = local(srv, config)
        await client.start()
        await client.create_response()
        got = await events_until(client, lambda e: isinstance(e, ai.AudioDelta), timeout=10)
        first = got[-1]
        assert isinstance(first, ai.AudioDelta)
        for f in frames(ai.AudioFormat.PCMU, 300, 8000):  # the caller talks over the agent
            client.send_audio(f)
        got = await events_until(client, lambda e: isinstance(e, ai.SpeechStarted), timeout=10)
        await client.truncate(first.item_id, 40)  # the caller heard 40 ms of it
        got = await events_until(
            client,
            lambda e: isinstance(e, ai.ResponseDone) and e.response_id == first.response_id,
            timeout=10,
        )
        assert not any(isinstance(e, ai.AudioDelta) for e in got)  # late deltas dropped
        done = got[-1]
        assert isinstance(done, ai.ResponseDone)
        assert (done.status, done.reason) == ("cancelled", "turn_detected")
        rec = srv.sessions[0]
        assert [(c.reason, c.accepted) for c in rec.cancels] == [("turn_detected", True)]
        assert rec.types().count("response.cancel") == 0  # interrupt_response: the server did it
        for _ in range(100):
            if rec.truncates:
                break
            await asyncio.sleep(0.01)
        (tr,) = rec.truncates
        assert tr.accepted and (tr.item_id, tr.audio_end_ms) == (first.item_id, 40)
        await client.close()
