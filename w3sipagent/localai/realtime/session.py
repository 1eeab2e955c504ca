"""One Realtime session of the local server: the GA protocol engine.

Transport-agnostic: the WebSocket endpoint (:mod:`.ws`) and the WebRTC
endpoint (:mod:`.webrtc`) feed client events in with :meth:`ServerSession.handle_text`
and give it a :class:`Transport` to send server events on. Over WebRTC the
session also gets an :class:`AudioPlayer` (the outgoing Opus track): response
audio goes there instead of ``response.output_audio.delta`` events, and the
player reports playout so the server can emit ``output_audio_buffer.*`` and
truncate by itself, as the service does for WebRTC and SIP calls.

Event order follows the GA reference (docs/realtime-server.md lists it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from w3sipagent.ai.session import AudioFormat
from w3sipagent.ids import SecureIdSource
from w3sipagent.localai.audio import from_pcm24k, to_pcm16
from w3sipagent.localai.realtime.protocol import (
    CLIENT_EVENTS,
    RealtimeProtocolError,
    apply_session_update,
    bad_type,
    bad_value,
    default_session,
    format_enum,
    missing,
    validate_response_params,
)
from w3sipagent.localai.recorder import CancelRecord, SessionRecording, TruncateRecord
from w3sipagent.localai.scenario import FunctionCall, Injection, Scenario
from w3sipagent.localai.tts import Synthesizer
from w3sipagent.localai.vad import EnergyVad, VadSpeechStarted, VadSpeechStopped
from w3sipagent.ids import IdSource

log = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
_SEMANTIC_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 300}


class Transport(Protocol):
    """Where a session sends its server events."""

    kind: str

    async def send_json(self, event: dict[str, Any]) -> None:
        """Send one server event."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close cleanly with a WebSocket close code (or end the call)."""
        ...

    def abort(self) -> None:
        """Drop the connection without any closing handshake."""
        ...


class AudioPlayer(Protocol):
    """The WebRTC output: plays response audio at real time and reports playout."""

    def enqueue(self, response_id: str, item_id: str, pcm24k: bytes) -> None:
        """Queue 24 kHz PCM of an item for playout."""
        ...

    def end_response(self, response_id: str) -> None:
        """No more audio will come for ``response_id``."""
        ...

    def clear(self) -> dict[str, int]:
        """Drop queued audio; returns milliseconds played per item of the cleared response."""
        ...

    @property
    def playing_response(self) -> str | None:
        """The response whose audio is queued or playing, if any."""
        ...


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Timing and behaviour knobs of the local server (all have defaults).

    ``realtime_pacing`` sends response audio at 1x real time; otherwise at
    ``burst_speed`` x real time, or as fast as possible when that is None
    (the service sends audio faster than real time; clients must queue it).
    ``vad_keep_ms``: with turn detection on, input audio older than this (plus the
    prefix padding) is dropped from the buffer while the caller is silent, so a long
    silence does not grow it.
    """

    realtime_pacing: bool = False
    burst_speed: float | None = None
    chunk_ms: int = 100
    first_audio_delay_s: float = 0.0
    transcription_delay_s: float = 0.0
    session_duration_s: float = 3600.0
    vad_min_speech_ms: int = 30
    token_limit: int = 40000
    vad_keep_ms: int = 2000


@dataclass
class _Item:
    id: str
    data: dict[str, Any]
    audio: bytearray = field(default_factory=bytearray)
    audio_format: AudioFormat | None = None
    turn: int | None = None

    def audio_ms(self) -> int:
        if self.audio_format is None:
            return 0
        return len(self.audio) // self.audio_format.bytes_per_ms

    def public(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))  # type: ignore[no-any-return]


@dataclass
class _Plan:
    say: str
    call: FunctionCall | None
    turn: int


@dataclass
class _Response:
    id: str
    turn: int
    modalities: list[str]
    fmt: dict[str, Any]
    voice: Any
    conversation: bool
    metadata: Any
    max_output_tokens: Any
    tools: list[dict[str, Any]]
    tool_choice: Any
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    fail: Injection | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    out_text: str = ""
    out_audio_ms: int = 0
    input_ms_at_start: float = 0.0

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None


class SessionEnded(Exception):
    """Raised inside the session when an injection closed the transport."""


class ServerSession:
    """The state of one GA Realtime session and its handling of client events."""

    def __init__(
        self,
        transport: Transport,
        *,
        scenario: Scenario,
        synthesizer: Synthesizer,
        options: ServerOptions,
        model: str = "gpt-realtime",
        ids: IdSource | None = None,
        player: AudioPlayer | None = None,
        recording: SessionRecording | None = None,
    ) -> None:
        self.transport = transport
        self.scenario = scenario
        self.tts = synthesizer
        self.options = options
        self.ids: IdSource = ids or SecureIdSource()
        self.player = player
        self.id = "sess_" + self.ids.token(11)
        self.created_at = int(time.time())
        self.config = default_session(
            self.id, model, self.created_at + int(options.session_duration_s)
        )
        if scenario.instructions:
            self.config["instructions"] = scenario.instructions
        self.recording = recording or SessionRecording(self.id, transport.kind, model)
        self.items: list[_Item] = []
        self._by_id: dict[str, _Item] = {}
        self._buf = bytearray()
        self._buf_start_ms = 0.0
        self._input_ms = 0.0
        self._input_fmt = self._fmt_in()
        self._vad: EnergyVad | None = self._make_vad()
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._idle_from_ms: float | None = 0.0  # idle_timeout_ms counts from here (None: off)
        self.active: _Response | None = None
        self.user_turns = 0
        self._answered_turn = 0
        self._greeted = False
        self._pending_calls: dict[str, tuple[FunctionCall, int]] = {}
        self._after: list[tuple[str, int]] = []
        self.assistant_audio_sent = False
        self._fired: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._prev_input_tokens = 0
        self._expiry: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Send ``session.created`` and arm the session-length limit."""
        await self._emit({"type": "session.created", "session": self._session_obj()})
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(
            self.options.session_duration_s, lambda: self._spawn(self._expire())
        )
        await self._inject("session.created", None)

    async def _expire(self) -> None:
        minutes = round(self.options.session_duration_s / 60)
        await self._emit_error(
            RealtimeProtocolError(
                f"Your session hit the maximum duration of {minutes} minutes.",
                code="session_expired",
            ),
            None,
        )
        await self.transport.close(1000, "session expired")

    def closed(self, reason: str = "") -> None:
        """The transport went away: stop everything."""
        if self._closed:
            return
        self._closed = True
        self.recording.closed = True
        self.recording.close_reason = reason
        if self._expiry is not None:
            self._expiry.cancel()
        if self.active is not None:
            self.active.cancel_reason = self.active.cancel_reason or "client_cancelled"
            self.active.cancel_event.set()
            if self.active.task is not None:
                self.active.task.cancel()
        for t in list(self._tasks):
            t.cancel()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, SessionEnded | ConnectionError):
                log.debug("session %s task failed: %r", self.id, exc)

    # ------------------------------------------------------------ helpers

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.ids.token(11)}"

    def _session_obj(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.config))  # type: ignore[no-any-return]

    def _fmt_in(self) -> AudioFormat:
        if self.transport.kind == "webrtc":
            return AudioFormat.PCM24K
        return format_enum(self.config["audio"]["input"]["format"])

    def _make_vad(self) -> EnergyVad | None:
        td = self.config["audio"]["input"]["turn_detection"]
        if td is None:
            return None
        if td["type"] == "server_vad":
            return EnergyVad(
                threshold=td["threshold"],
                prefix_padding_ms=td["prefix_padding_ms"],
                silence_duration_ms=td["silence_duration_ms"],
                min_speech_ms=self.options.vad_min_speech_ms,
                start_ms=int(self._input_ms),
            )
        return EnergyVad(
            threshold=0.5,
            prefix_padding_ms=300,
            silence_duration_ms=_SEMANTIC_SILENCE_MS[td["eagerness"]],
            min_speech_ms=self.options.vad_min_speech_ms,
            start_ms=int(self._input_ms),
        )

    async def _emit(self, event: dict[str, Any]) -> None:
        if self._closed:
            raise SessionEnded()
        ev = {
            "type": event["type"],
            "event_id": self._new_id("event"),
            **{k: v for k, v in event.items() if k != "type"},
        }
        self.recording.record_sent(ev)
        await self.transport.send_json(ev)

    async def _emit_error(self, err: RealtimeProtocolError, client_event_id: str | None) -> None:
        await self._emit({"type": "error", "error": err.to_error(client_event_id)})

    def _last_item_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def _add_item(
        self, item: _Item, previous_item_id: str | None = None, *, append: bool = True
    ) -> str | None:
        """Insert into the conversation; returns the previous item's id."""
        if not append and previous_item_id is not None:
            if previous_item_id == "root":
                self.items.insert(0, item)
                prev = None
            else:
                idx = next(i for i, it in enumerate(self.items) if it.id == previous_item_id)
                self.items.insert(idx + 1, item)
                prev = previous_item_id
        else:
            prev = self._last_item_id()
            self.items.append(item)
        self._by_id[item.id] = item
        return prev

    # ------------------------------------------------------------ client events

    async def handle_text(self, text: str | bytes) -> None:
        """Handle one client frame (JSON text); errors become ``error`` events."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                await self._emit_error(
                    RealtimeProtocolError(
                        "Binary frames are not supported; send JSON text.", code="invalid_json"
                    ),
                    None,
                )
                return
        try:
            ev = json.loads(text)
        except json.JSONDecodeError as exc:
            await self._emit_error(
                RealtimeProtocolError(
                    f"We could not parse the JSON body of your request. ({exc.msg})",
                    code="invalid_json",
                ),
                None,
            )
            return
        if not isinstance(ev, dict):
            await self._emit_error(bad_type("event", "an object", ev), None)
            return
        self.recording.record_event(ev)
        cid = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
        try:
            etype = ev.get("type")
            if etype is None:
                raise missing("type")
            if etype not in CLIENT_EVENTS:
                raise bad_value("type", etype, CLIENT_EVENTS)
            handler = getattr(self, "_on_" + etype.replace(".", "_"))
            await handler(ev, cid)
        except RealtimeProtocolError as err:
            await self._emit_error(err, cid)

    async def _on_session_update(self, ev: dict[str, Any], cid: str | None) -> None:
        self.update_config(ev.get("session"))
        await self._emit({"type": "session.updated", "session": self._session_obj()})

    def update_config(self, update: Any) -> None:
        """Apply a GA ``session`` object (a ``session.update``, or the WebRTC ``session``
        field before the call starts); raises :class:`RealtimeProtocolError`."""
        old_td = self.config["audio"]["input"]["turn_detection"]
        old_fmt = self.config["audio"]["input"]["format"]
        self.config = apply_session_update(
            self.config, update, audio_sent=self.assistant_audio_sent
        )
        if self.config["audio"]["input"]["turn_detection"] != old_td:
            self._vad = self._make_vad()
            self._speech_item = None
            self._idle_from_ms = self._input_ms
        if self.config["audio"]["input"]["format"] != old_fmt and self.transport.kind != "webrtc":
            self._input_fmt = self._fmt_in()
            self._buf.clear()
            self._buf_start_ms = self._input_ms
            if self._vad is not None:
                self._vad = self._make_vad()

    async def _on_input_audio_buffer_append(self, ev: dict[str, Any], cid: str | None) -> None:
        audio = ev.get("audio")
        if audio is None:
            raise missing("audio")
        if not isinstance(audio, str):
            raise bad_type("audio", "a string", audio)
        if len(audio) > 15 * 1024 * 1024 * 4 // 3 + 4:
            raise RealtimeProtocolError(
                "Invalid 'audio': the audio chunk exceeds the maximum of 15 MiB.", param="audio"
            )
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeProtocolError(
                "Invalid 'audio': expected base64-encoded audio bytes.", param="audio"
            ) from None
        await self.append_audio(raw, self._input_fmt)

    async def append_audio(self, raw: bytes, fmt: AudioFormat) -> None:
        """Input audio from the client (append) or the WebRTC track, in ``fmt``."""
        self.recording.record_audio(raw, fmt)
        self._buf += raw
        self._input_ms += len(raw) / fmt.bytes_per_ms
        if self._vad is None:
            return
        for vev in self._vad.feed(to_pcm16(raw, fmt), fmt.sample_rate):
            if isinstance(vev, VadSpeechStarted):
                await self._speech_started(vev.audio_start_ms)
            elif isinstance(vev, VadSpeechStopped):
                await self._speech_stopped(vev.audio_end_ms)
        if self._speech_item is None and not self._vad.speaking:
            self._trim_silence()
            await self._check_idle()

    def _trim_silence(self) -> None:
        """Drop input audio that can no longer be part of a turn (bounded buffer)."""
        td = self.config["audio"]["input"]["turn_detection"]
        keep_ms = self.options.vad_keep_ms + int(td.get("prefix_padding_ms", 300))
        bpm = self._input_fmt.bytes_per_ms
        excess = len(self._buf) - keep_ms * bpm
        if excess > self.options.vad_keep_ms * bpm // 2:  # trim in steps, not per frame
            drop = excess - excess % bpm
            del self._buf[:drop]
            self._buf_start_ms += drop / bpm

    async def _check_idle(self) -> None:
        """server_vad ``idle_timeout_ms``: the caller stayed silent after the agent spoke.

        Measured on the input audio clock from the end of the last response's audio
        (``response.done`` plus what was still to play) or the end of the last turn:
        ``input_audio_buffer.timeout_triggered``, the silent audio committed as a user
        item, and a response (the scenario's ``idle`` text), as the service does.
        """
        td = self.config["audio"]["input"]["turn_detection"]
        timeout = td.get("idle_timeout_ms") if td is not None else None
        start = self._idle_from_ms
        if timeout is None or start is None or self.active is not None:
            return
        if self._input_ms - start < timeout:
            return
        self._idle_from_ms = None  # re-armed when the prompt's response is done
        item_id = self._new_id("item")
        await self._emit(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": int(start),
                "audio_end_ms": int(self._input_ms),
                "item_id": item_id,
            }
        )
        audio = bytes(self._buf)
        self._buf.clear()
        self._buf_start_ms = self._input_ms
        await self._commit(item_id, audio, caller_turn=False)
        idle = self.scenario.idle or self.scenario.fallback
        await self._start_response({}, _Plan(idle, None, self._answered_turn))

    async def _speech_started(self, audio_start_ms: int) -> None:
        self._speech_item = self._new_id("item")
        self._speech_start_ms = audio_start_ms
        self._idle_from_ms = None
        await self._emit(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": self._speech_item,
            }
        )
        td = self.config["audio"]["input"]["turn_detection"]
        if td is not None and td["interrupt_response"]:
            if self.active is not None and not self.active.cancelled:
                self.recording.cancels.append(
                    CancelRecord(self.recording.now(), self.active.id, "turn_detected", True)
                )
                self._cancel(self.active, "turn_detected")
            elif self.player is not None and self.player.playing_response is not None:
                await self._clear_playout()

    async def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._speech_item or self._new_id("item")
        self._speech_item = None
        await self._emit(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": audio_end_ms,
                "item_id": item_id,
            }
        )
        bpm = self._input_fmt.bytes_per_ms
        start = max(0, int((self._speech_start_ms - self._buf_start_ms) * bpm))
        end = max(start, int((audio_end_ms - self._buf_start_ms) * bpm))
        audio = bytes(self._buf[start:end])
        del self._buf[:end]
        self._buf_start_ms = float(audio_end_ms)
        self._idle_from_ms = float(audio_end_ms)
        await self._commit(item_id, audio)
        td = self.config["audio"]["input"]["turn_detection"]
        if td is not None and td["create_response"]:
            prev = self.active
            if prev is not None and prev.cancelled and prev.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(prev.task)
            if self.active is None:
                await self._start_response({})

    async def _on_input_audio_buffer_commit(self, ev: dict[str, Any], cid: str | None) -> None:
        ms = len(self._buf) / self._input_fmt.bytes_per_ms
        if ms < MIN_COMMIT_MS:
            raise RealtimeProtocolError(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        item_id = self._speech_item or self._new_id("item")
        self._speech_item = None
        if self._vad is not None:
            self._vad.reset()
        audio = bytes(self._buf)
        self._buf.clear()
        self._buf_start_ms = self._input_ms
        self._idle_from_ms = self._input_ms
        await self._commit(item_id, audio)

    async def _commit(self, item_id: str, audio: bytes, *, caller_turn: bool = True) -> None:
        """Commit input audio as a user item; ``caller_turn`` False (idle timeout) does
        not advance the scenario's turns."""
        turn: int | None = None
        if caller_turn:
            self.user_turns += 1
            turn = self.user_turns
        data = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        item = _Item(item_id, data, bytearray(audio), self._input_fmt, turn)
        prev = self._add_item(item)
        await self._emit(
            {"type": "input_audio_buffer.committed", "previous_item_id": prev, "item_id": item_id}
        )
        await self._emit(
            {"type": "conversation.item.added", "previous_item_id": prev, "item": item.public()}
        )
        await self._emit(
            {"type": "conversation.item.done", "previous_item_id": prev, "item": item.public()}
        )
        if turn is not None:
            await self._inject("committed", turn)
        if self.config["audio"]["input"]["transcription"] is not None:
            if self.options.transcription_delay_s > 0:
                self._spawn(self._transcribe(item, self.options.transcription_delay_s))
            else:
                await self._transcribe(item, 0.0)

    async def _transcribe(self, item: _Item, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        entry = self.scenario.turn(item.turn or 0)
        text = entry.caller if entry is not None and entry.caller is not None else ""
        words = text.split(" ")
        for i, w in enumerate(words):
            if not w:
                continue
            await self._emit(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item.id,
                    "content_index": 0,
                    "delta": w if i == 0 else " " + w,
                }
            )
        item.data["content"][0]["transcript"] = text
        await self._emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item.id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "duration", "seconds": round(item.audio_ms() / 1000.0, 3)},
            }
        )

    async def _on_input_audio_buffer_clear(self, ev: dict[str, Any], cid: str | None) -> None:
        self._buf.clear()
        self._buf_start_ms = self._input_ms
        self._speech_item = None
        self._idle_from_ms = self._input_ms
        if self._vad is not None:
            self._vad.reset()
        await self._emit({"type": "input_audio_buffer.cleared"})

    async def _on_conversation_item_create(self, ev: dict[str, Any], cid: str | None) -> None:
        raw = ev.get("item")
        if raw is None:
            raise missing("item")
        if not isinstance(raw, dict):
            raise bad_type("item", "an object", raw)
        prev_id = ev.get("previous_item_id")
        if prev_id is not None and prev_id != "root" and prev_id not in self._by_id:
            raise RealtimeProtocolError(
                f"Previous item with id '{prev_id}' not found.", param="previous_item_id"
            )
        item = self._validate_item(raw)
        if item.id in self._by_id:
            raise RealtimeProtocolError(
                f"Item with id '{item.id}' already exists.",
                code="duplicate_item_id",
                param="item.id",
            )
        prev = self._add_item(item, prev_id, append=prev_id is None)
        if item.data["type"] == "function_call_output":
            pending = self._pending_calls.pop(item.data["call_id"], None)
            if pending is not None and pending[0].after:
                self._after.append((pending[0].after, pending[1]))
        await self._emit(
            {"type": "conversation.item.added", "previous_item_id": prev, "item": item.public()}
        )
        await self._emit(
            {"type": "conversation.item.done", "previous_item_id": prev, "item": item.public()}
        )

    def _validate_item(self, raw: dict[str, Any]) -> _Item:
        kind = raw.get("type")
        if kind is None:
            raise missing("item.type")
        item_id = raw.get("id") or self._new_id("item")
        if not isinstance(item_id, str):
            raise bad_type("item.id", "a string", item_id)
        if kind == "message":
            role = raw.get("role")
            if role not in ("user", "assistant", "system"):
                raise bad_value("item.role", role, ("user", "assistant", "system"))
            content = raw.get("content")
            if not isinstance(content, list):
                raise missing("item.content")
            allowed = {
                "user": ("input_text", "input_audio", "input_image"),
                "system": ("input_text",),
                "assistant": ("output_text", "output_audio"),
            }[role]
            parts = []
            audio = bytearray()
            for i, part in enumerate(content):
                if not isinstance(part, dict):
                    raise bad_type(f"item.content[{i}]", "an object", part)
                ptype = part.get("type")
                if ptype not in allowed:
                    raise bad_value(f"item.content[{i}].type", ptype, allowed)
                if role == "assistant" and ptype == "output_audio" and part.get("audio"):
                    raise RealtimeProtocolError(
                        "Assistant audio content cannot be created.", param=f"item.content[{i}]"
                    )
                p = {k: v for k, v in part.items() if k != "audio"}
                if ptype == "input_audio":
                    try:
                        audio += base64.b64decode(part.get("audio") or "", validate=True)
                    except (binascii.Error, ValueError):
                        raise RealtimeProtocolError(
                            "Invalid 'audio': expected base64-encoded audio bytes.",
                            param=f"item.content[{i}].audio",
                        ) from None
                    p.setdefault("transcript", None)
                parts.append(p)
            data = {
                "id": item_id,
                "type": "message",
                "object": "realtime.item",
                "status": "completed",
                "role": role,
                "content": parts,
            }
            item = _Item(item_id, data, audio, self._input_fmt if audio else None)
            if role == "user":
                self.user_turns += 1
                item.turn = self.user_turns
            return item
        if kind == "function_call":
            for key in ("call_id", "name"):
                if not isinstance(raw.get(key), str):
                    raise missing(f"item.{key}")
            data = {
                "id": item_id,
                "type": "function_call",
                "object": "realtime.item",
                "status": "completed",
                "call_id": raw["call_id"],
                "name": raw["name"],
                "arguments": raw.get("arguments", ""),
            }
            return _Item(item_id, data)
        if kind == "function_call_output":
            if not isinstance(raw.get("call_id"), str):
                raise missing("item.call_id")
            output = raw.get("output")
            if not isinstance(output, str):
                raise (
                    missing("item.output")
                    if output is None
                    else bad_type("item.output", "a string", output)
                )
            data = {
                "id": item_id,
                "type": "function_call_output",
                "object": "realtime.item",
                "status": "completed",
                "call_id": raw["call_id"],
                "output": output,
            }
            return _Item(item_id, data)
        raise bad_value("item.type", kind, ("message", "function_call", "function_call_output"))

    def _item_or_error(self, ev: dict[str, Any]) -> _Item:
        item_id = ev.get("item_id")
        if item_id is None:
            raise missing("item_id")
        item = self._by_id.get(item_id) if isinstance(item_id, str) else None
        if item is None:
            raise RealtimeProtocolError(
                f"Item with item_id '{item_id}' not found.", param="item_id"
            )
        return item

    async def _on_conversation_item_retrieve(self, ev: dict[str, Any], cid: str | None) -> None:
        item = self._item_or_error(ev)
        data = item.public()
        if item.audio and data.get("content"):
            data["content"][0]["audio"] = base64.b64encode(bytes(item.audio)).decode("ascii")
        await self._emit({"type": "conversation.item.retrieved", "item": data})

    async def _on_conversation_item_delete(self, ev: dict[str, Any], cid: str | None) -> None:
        item = self._item_or_error(ev)
        self.items.remove(item)
        del self._by_id[item.id]
        await self._emit({"type": "conversation.item.deleted", "item_id": item.id})

    async def _on_conversation_item_truncate(self, ev: dict[str, Any], cid: str | None) -> None:
        end = ev.get("audio_end_ms")
        ci = ev.get("content_index", 0)
        now = self.recording.now()
        try:
            item = self._item_or_error(ev)
            if end is None:
                raise missing("audio_end_ms")
            if isinstance(end, bool) or not isinstance(end, int):
                raise bad_type("audio_end_ms", "an integer", end)
            if end < 0:
                raise RealtimeProtocolError(
                    f"Invalid 'audio_end_ms': integer below minimum value. Expected a value >= 0, but got {end} instead.",
                    code="integer_below_min_value",
                    param="audio_end_ms",
                )
            if ci != 0:
                raise bad_value("content_index", ci, ["0"])
            if item.data.get("role") != "assistant" or item.audio_format is None:
                raise RealtimeProtocolError(
                    "Only assistant messages with audio can be truncated.", param="item_id"
                )
            have = item.audio_ms()
            if end > have:
                raise RealtimeProtocolError(
                    f"Audio content of {have}ms is already shorter than {end}ms",
                    param="audio_end_ms",
                )
        except RealtimeProtocolError:
            self.recording.truncates.append(
                TruncateRecord(
                    now,
                    str(ev.get("item_id")),
                    ci if isinstance(ci, int) else -1,
                    end if isinstance(end, int) else -1,
                    False,
                    None,
                )
            )
            raise
        self.recording.truncates.append(TruncateRecord(now, item.id, ci, end, True, have))
        await self._truncate(item, end)

    async def _truncate(self, item: _Item, end_ms: int) -> None:
        assert item.audio_format is not None
        have = item.audio_ms()
        del item.audio[end_ms * item.audio_format.bytes_per_ms :]
        content = item.data.get("content") or [{}]
        transcript = content[0].get("transcript") or ""
        if have > 0 and transcript:
            words = transcript.split()
            keep = int(len(words) * min(1.0, end_ms / have))
            content[0]["transcript"] = " ".join(words[:keep])
        await self._emit(
            {
                "type": "conversation.item.truncated",
                "item_id": item.id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    async def _on_response_create(self, ev: dict[str, Any], cid: str | None) -> None:
        if self.active is not None:
            raise RealtimeProtocolError(
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        params = validate_response_params(ev.get("response"))
        await self._start_response(params)

    async def _on_response_cancel(self, ev: dict[str, Any], cid: str | None) -> None:
        rid = ev.get("response_id")
        act = self.active
        if act is None or act.cancelled or (rid is not None and rid != act.id):
            self.recording.cancels.append(
                CancelRecord(self.recording.now(), rid, "client_cancelled", False)
            )
            raise RealtimeProtocolError(
                "Cancellation failed: no active response found", code="response_cancel_not_active"
            )
        self.recording.cancels.append(
            CancelRecord(self.recording.now(), act.id, "client_cancelled", True)
        )
        self._cancel(act, "client_cancelled")

    async def _on_output_audio_buffer_clear(self, ev: dict[str, Any], cid: str | None) -> None:
        if self.player is None:
            raise RealtimeProtocolError(
                "output_audio_buffer.clear is only supported for WebRTC and SIP sessions.",
                param="type",
            )
        await self._clear_playout(always=True)

    # ------------------------------------------------------------ responses

    def _cancel(self, resp: _Response, reason: str) -> None:
        resp.cancel_reason = reason
        resp.cancel_event.set()

    async def _clear_playout(self, always: bool = False) -> None:
        if self.player is None:
            return
        rid = self.player.playing_response
        played = self.player.clear()
        if rid is None and not always:
            return
        await self._emit({"type": "output_audio_buffer.cleared", "response_id": rid})
        for item_id, ms in played.items():
            item = self._by_id.get(item_id)
            if item is not None and item.audio_format is not None and ms < item.audio_ms():
                await self._truncate(item, ms)

    def _plan(self, params: dict[str, Any]) -> _Plan:
        if params.get("conversation") == "none" or "input" in params:
            return _Plan(self.scenario.fallback, None, self._answered_turn)
        if self._after:
            texts = [t for t, _ in self._after]
            turn = self._after[-1][1]
            self._after.clear()
            return _Plan(" ".join(texts), None, turn)
        if self._answered_turn < self.user_turns:
            self._answered_turn = self.user_turns
            self._greeted = True
            entry = self.scenario.turn(self.user_turns)
            if entry is None:
                return _Plan(self.scenario.fallback, None, self.user_turns)
            return _Plan(entry.say, entry.call, self.user_turns)
        if not self._greeted:
            self._greeted = True
            return _Plan(self.scenario.greeting or self.scenario.fallback, None, 0)
        return _Plan(self.scenario.fallback, None, self._answered_turn)

    async def _start_response(self, params: dict[str, Any], plan: _Plan | None = None) -> None:
        out_cfg = self.config["audio"]["output"]
        resp = _Response(
            id=self._new_id("resp"),
            turn=0,
            modalities=params.get("output_modalities", self.config["output_modalities"]),
            fmt=params.get("format", out_cfg["format"]),
            voice=params.get("voice", out_cfg["voice"]),
            conversation=params.get("conversation", "auto") == "auto" and "input" not in params,
            metadata=params.get("metadata"),
            max_output_tokens=params.get("max_output_tokens", self.config["max_output_tokens"]),
            tools=params.get("tools", self.config["tools"]),
            tool_choice=params.get("tool_choice", self.config["tool_choice"]),
        )
        plan = plan or self._plan(params)
        resp.turn = plan.turn
        resp.input_ms_at_start = self._input_ms
        self.active = resp
        resp.task = self._spawn(self._run_response(resp, plan))

    def _response_obj(self, resp: _Response, status: str) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": resp.cancel_reason}
        elif status == "failed" and resp.fail is not None:
            details = {"type": "failed", "error": {"type": resp.fail.type, "code": resp.fail.code}}
        return {
            "object": "realtime.response",
            "id": resp.id,
            "status": status,
            "status_details": details,
            "output": json.loads(json.dumps(resp.output)),
            "conversation_id": ("conv_" + self.id[5:]) if resp.conversation else None,
            "output_modalities": resp.modalities,
            "max_output_tokens": resp.max_output_tokens,
            "audio": {"output": {"format": resp.fmt, "voice": resp.voice}},
            "usage": None,
            "metadata": resp.metadata,
        }

    def _input_tokens(self) -> tuple[int, int]:
        text_chars = len(self.config["instructions"]) + len(json.dumps(self.config["tools"])) * int(
            bool(self.config["tools"])
        )
        audio_ms = 0
        for it in self.items:
            if it.data.get("role") == "user" and it.audio:
                audio_ms += it.audio_ms()
            for part in it.data.get("content") or []:
                text_chars += len(part.get("text") or part.get("transcript") or "")
            text_chars += len(it.data.get("arguments", "")) + len(it.data.get("output", ""))
        return math.ceil(text_chars / 4), math.ceil(audio_ms / 100)

    def _usage(self, resp: _Response) -> dict[str, Any]:
        text_in, audio_in = self._input_tokens()
        total_in = text_in + audio_in
        cached = (self._prev_input_tokens // 64) * 64 if self._prev_input_tokens >= 1024 else 0
        cached = min(cached, total_in)
        self._prev_input_tokens = total_in
        text_out = math.ceil(len(resp.out_text) / 4)
        audio_out = math.ceil(resp.out_audio_ms / 50)
        return {
            "total_tokens": total_in + text_out + audio_out,
            "input_tokens": total_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "cached_tokens": cached,
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens_details": {
                    "text_tokens": min(cached, text_in),
                    "audio_tokens": max(0, cached - text_in),
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    async def _run_response(self, resp: _Response, plan: _Plan) -> None:
        try:
            await self._emit(
                {"type": "response.created", "response": self._response_obj(resp, "in_progress")}
            )
            text_in, audio_in = self._input_tokens()
            reserve = (
                text_in
                + audio_in
                + (4096 if resp.max_output_tokens == "inf" else int(resp.max_output_tokens))
            )
            await self._emit(
                {
                    "type": "rate_limits.updated",
                    "rate_limits": [
                        {
                            "name": "tokens",
                            "limit": self.options.token_limit,
                            "remaining": max(0, self.options.token_limit - reserve),
                            "reset_seconds": round(reserve / self.options.token_limit * 60, 3),
                        }
                    ],
                }
            )
            await self._inject("response.created", plan.turn, resp)
            if self.options.first_audio_delay_s > 0 and resp.fail is None:
                await self._wait_cancel(resp, self.options.first_audio_delay_s)
            index = 0
            call = plan.call if self._tool_allowed(resp, plan.call) else None
            if resp.fail is None and not resp.cancelled and (plan.say or call is None):
                await self._message(resp, plan.say or self.scenario.fallback, index, plan.turn)
                index += 1
            if resp.fail is None and not resp.cancelled and call is not None:
                await self._function_call(resp, call, index, plan.turn)
            status = (
                "failed"
                if resp.fail is not None
                else "cancelled"
                if resp.cancelled
                else "completed"
            )
            done = self._response_obj(resp, status)
            done["usage"] = self._usage(resp)
            if self.active is resp:
                self.active = None
                # idle_timeout_ms counts from the end of this response's playout
                played_out = resp.input_ms_at_start + resp.out_audio_ms
                if self._speech_item is None:
                    self._idle_from_ms = max(self._input_ms, played_out)
            await self._emit({"type": "response.done", "response": done})
            if self.player is not None:
                self.player.end_response(resp.id)
            await self._inject("response.done", plan.turn, resp)
        except (SessionEnded, ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # a transport failure: the session is over
            log.debug("response %s aborted: %r", resp.id, exc)
        finally:
            if self.active is resp:
                self.active = None

    def _tool_allowed(self, resp: _Response, call: FunctionCall | None) -> bool:
        if call is None:
            return False
        names = {t.get("name") for t in resp.tools if t.get("type") == "function"}
        if resp.tool_choice == "none" or call.name not in names:
            log.warning(
                "scenario calls %r but the session does not offer it (tools %s, tool_choice %r): not called",
                call.name,
                sorted(n for n in names if n),
                resp.tool_choice,
            )
            return False
        return True

    async def _wait_cancel(self, resp: _Response, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # never swallows a cancellation (3.11)
                await resp.cancel_event.wait()

    async def _output_item_added(self, resp: _Response, item: _Item, index: int) -> str | None:
        """``response.output_item.added`` then, in the conversation, ``conversation.item.added``."""
        await self._emit(
            {
                "type": "response.output_item.added",
                "response_id": resp.id,
                "output_index": index,
                "item": item.public(),
            }
        )
        if not resp.conversation:
            return None
        prev = self._add_item(item)
        await self._emit(
            {"type": "conversation.item.added", "previous_item_id": prev, "item": item.public()}
        )
        return prev

    async def _output_item_done(
        self, resp: _Response, item: _Item, index: int, prev: str | None
    ) -> None:
        """``response.output_item.done`` then, in the conversation, ``conversation.item.done``."""
        await self._emit(
            {
                "type": "response.output_item.done",
                "response_id": resp.id,
                "output_index": index,
                "item": item.public(),
            }
        )
        if resp.conversation:
            await self._emit(
                {"type": "conversation.item.done", "previous_item_id": prev, "item": item.public()}
            )

    async def _message(self, resp: _Response, text: str, index: int, turn: int) -> None:
        audio_mode = resp.modalities == ["audio"]
        fmt = format_enum(resp.fmt)
        pcm = b""
        if audio_mode:
            pcm = await self.tts.synthesize(
                text,
                resp.voice if isinstance(resp.voice, str) else "marin",
                float(self.config["audio"]["output"]["speed"]),
            )
        item_id = self._new_id("item")
        base = {
            "response_id": resp.id,
            "item_id": item_id,
            "output_index": index,
            "content_index": 0,
        }
        data: dict[str, Any] = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        item = _Item(item_id, data, bytearray(), fmt if audio_mode else None, turn)
        prev = await self._output_item_added(resp, item, index)
        part_type = "audio" if audio_mode else "text"
        key = "transcript" if audio_mode else "text"
        await self._emit(
            {"type": "response.content_part.added", **base, "part": {"type": part_type, key: ""}}
        )
        words = text.split(" ")
        said: list[str] = []
        if audio_mode:
            out = from_pcm24k(pcm, fmt)
            bpm = fmt.bytes_per_ms
            chunk = max(1, self.options.chunk_ms) * bpm
            n_chunks = max(1, math.ceil(len(out) / chunk))
            speed = 1.0 if self.options.realtime_pacing else self.options.burst_speed
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for k in range(n_chunks):
                due = math.ceil(len(words) * (k + 1) / n_chunks)
                if len(said) < due:
                    delta = " ".join(words[len(said) : due])
                    delta = delta if not said else " " + delta
                    said.extend(words[len(said) : due])
                    await self._emit(
                        {"type": "response.output_audio_transcript.delta", **base, "delta": delta}
                    )
                piece = out[k * chunk : (k + 1) * chunk]
                if piece:
                    item.audio += piece
                    self.assistant_audio_sent = True
                    resp.out_audio_ms += len(piece) // bpm
                    if self.player is not None:
                        self.player.enqueue(
                            resp.id,
                            item_id,
                            pcm[
                                k * self.options.chunk_ms * 48 : (k + 1)
                                * self.options.chunk_ms
                                * 48
                            ],
                        )
                    else:
                        await self._emit(
                            {
                                "type": "response.output_audio.delta",
                                **base,
                                "delta": base64.b64encode(piece).decode("ascii"),
                            }
                        )
                if k == 0:
                    await self._inject("first_audio", turn, resp)
                if resp.cancelled or resp.fail is not None:
                    break
                if speed:
                    wait = t0 + (k + 1) * self.options.chunk_ms / 1000.0 / speed - loop.time()
                    await self._wait_cancel(resp, wait)
                else:
                    await asyncio.sleep(0)
                if resp.cancelled:
                    break
            transcript = " ".join(said)
            await self._emit({"type": "response.output_audio.done", **base})
            await self._emit(
                {"type": "response.output_audio_transcript.done", **base, "transcript": transcript}
            )
        else:
            for i, w in enumerate(words):
                if resp.cancelled:
                    break
                said.append(w)
                await self._emit(
                    {
                        "type": "response.output_text.delta",
                        **base,
                        "delta": w if i == 0 else " " + w,
                    }
                )
                await asyncio.sleep(0)
            transcript = " ".join(said)
            await self._emit({"type": "response.output_text.done", **base, "text": transcript})
        resp.out_text += transcript
        part = {"type": part_type, key: transcript}
        await self._emit({"type": "response.content_part.done", **base, "part": part})
        data["status"] = "incomplete" if resp.cancelled else "completed"
        data["content"] = [
            {"type": "output_audio" if audio_mode else "output_text", key: transcript}
        ]
        resp.output.append(item.public())
        await self._output_item_done(resp, item, index, prev)
        if resp.cancelled and self.player is not None and resp.cancel_reason == "turn_detected":
            await self._clear_playout()

    async def _function_call(
        self, resp: _Response, call: FunctionCall, index: int, turn: int
    ) -> None:
        item_id = self._new_id("item")
        call_id = call.call_id or self._new_id("call")
        data: dict[str, Any] = {
            "id": item_id,
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "call_id": call_id,
            "name": call.name,
            "arguments": "",
        }
        item = _Item(item_id, data, turn=turn)
        prev = await self._output_item_added(resp, item, index)
        args = call.arguments
        step = max(1, math.ceil(len(args) / 3))
        base = {
            "response_id": resp.id,
            "item_id": item_id,
            "output_index": index,
            "call_id": call_id,
        }
        for i in range(0, len(args), step):
            await self._emit(
                {
                    "type": "response.function_call_arguments.delta",
                    **base,
                    "delta": args[i : i + step],
                }
            )
            await asyncio.sleep(0)
        await self._emit(
            {
                "type": "response.function_call_arguments.done",
                **base,
                "name": call.name,
                "arguments": args,
            }
        )
        data["arguments"] = args
        data["status"] = "completed"
        resp.out_text += args
        resp.output.append(item.public())
        await self._output_item_done(resp, item, index, prev)
        self._pending_calls[call_id] = (call, turn)

    # ------------------------------------------------------------ injections

    async def _inject(self, at: str, turn: int | None, resp: _Response | None = None) -> None:
        for inj in self.scenario.injections(at, turn):
            key = id(inj)
            if key in self._fired:
                continue
            self._fired.add(key)
            log.info("session %s: injecting %s at %s (turn %s)", self.id, inj.action, at, turn)
            if inj.action == "error":
                await self._emit_error(
                    RealtimeProtocolError(inj.message, code=inj.code, type=inj.type), None
                )
            elif inj.action == "fail":
                if resp is not None:
                    resp.fail = inj
            elif inj.action == "close":
                await self.transport.close(inj.close_code, inj.close_reason)
                self.closed("injected close")
                raise SessionEnded()
            elif inj.action == "abort":
                self.transport.abort()
                self.closed("injected abort")
                raise SessionEnded()

    # ------------------------------------------------------------ WebRTC playout

    def playout_started(self, response_id: str) -> None:
        """Called by the player when the first frame of a response plays."""
        if not self._closed:
            self._spawn(
                self._emit({"type": "output_audio_buffer.started", "response_id": response_id})
            )

    def playout_stopped(self, response_id: str) -> None:
        """Called by the player when a finished response's audio has drained."""
        if not self._closed:
            self._spawn(
                self._emit({"type": "output_audio_buffer.stopped", "response_id": response_id})
            )
