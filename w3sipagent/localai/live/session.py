"""One session of the local GPT-Live server, driven by the same scenario as the Realtime one.

The session waits for a valid ``session.start`` (nothing else is taken before it), answers
``session.started`` with ``id`` / ``expires_at``, and then acts the scenario out the
GPT-Live way: the first ``session.instructions.append`` makes it say the greeting; each
caller turn the energy VAD detects advances to the next ``[[turns]]`` entry, reported as
``session.input_transcript.delta`` (the entry's ``caller`` text); the answer is spoken as
``session.output_transcript.delta`` and ``session.output_audio.delta`` paced at real
time; a turn's ``call`` becomes ``session.delegation.created`` and a nested Responses
stream (``response.event``) ending in a completed ``function_call`` item, and once the
client answered it (``response.item.create`` + ``response.create``) the ``after`` text is
spoken. Caller speech while the model speaks stops the model (it owns barge-in).
``session.usage.updated`` reports the input seconds; ``session.closed`` ends the session
(``close_requested``, ``expired``, or as a scenario injects). Injection points map onto
this flow: ``session.created`` (after ``session.started``), ``committed`` (a caller turn
ended), ``response.created`` / ``first_audio`` / ``response.done`` (an answer's speech).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any

from w3sipagent.ai.session import AudioFormat
from w3sipagent.ids import IdSource
from w3sipagent.localai.audio import from_pcm24k, to_pcm16
from w3sipagent.localai.live.ports import LiveServerOptions, LiveTransport, Player
from w3sipagent.localai.live.validate import FORMATS, LiveRequestError, check_start, check_update
from w3sipagent.localai.recorder import CancelRecord, SessionRecording
from w3sipagent.localai.scenario import Scenario, Turn
from w3sipagent.localai.tasks import TaskSet
from w3sipagent.localai.tts import Synthesizer
from w3sipagent.localai.vad import EnergyVad, VadSpeechStarted, VadSpeechStopped

__all__ = ["LiveServerSession"]

log = logging.getLogger(__name__)


class _Ended(Exception):
    """The session ended (closed or aborted) while handling an event."""


class LiveServerSession:
    """One GPT-Live session (see the module docstring)."""

    def __init__(
        self,
        transport: LiveTransport,
        *,
        scenario: Scenario,
        synthesizer: Synthesizer,
        options: LiveServerOptions,
        ids: IdSource,
        player: Player | None = None,
    ) -> None:
        self.transport = transport
        self.player = player
        """WebRTC: the output track the model's speech is played on (no audio events)."""
        self.scenario = scenario
        self.tts = synthesizer
        self.options = options
        self.ids = ids
        self.id = "live_" + ids.token(16)
        self.recording = SessionRecording(self.id, "websocket", "")
        self.config: dict[str, Any] = {}
        self.started = False
        self.fmt: AudioFormat = AudioFormat.PCM24K
        self.rate = 24000
        self.input_ms = 0
        self.expires_at = 0
        self.turn = 0
        self.greeted = False
        self.closed_reason: str | None = None
        self._vad = EnergyVad(
            threshold=options.vad_threshold,
            prefix_padding_ms=0,
            silence_duration_ms=options.vad_silence_ms,
            min_speech_ms=options.vad_min_speech_ms,
        )
        self._speech: asyncio.Task[None] | None = None
        self._pending: dict[str, tuple[Turn, int]] = {}  # call_id -> (turn entry, turn)
        self._answered: set[str] = set()
        self._tasks = TaskSet(expected=(_Ended, ConnectionError), report=self._task_failed)
        self._fired: set[int] = set()
        self._next_event = 0

    # ------------------------------------------------------------ plumbing

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a server event (with an ``event_id``); raises ConnectionError when gone."""
        self._next_event += 1
        event = {"event_id": f"event_{self.id[5:13]}_{self._next_event}", **event}
        body = dict(event)
        if body.get("type") == "session.output_audio.delta":
            body["delta"] = f"<{len(body.get('delta', ''))} base64 chars>"
        self.recording.sent.append(body)
        await self.transport.send(json.dumps(event, separators=(",", ":")))

    async def _error(self, err: LiveRequestError, event: dict[str, Any] | None) -> None:
        body: dict[str, Any] = {
            "type": "invalid_request_error",
            "code": err.code,
            "message": err.message,
            "param": err.param,
        }
        if event is not None and event.get("event_id"):
            body["client_event_id"] = event["event_id"]
        await self.emit({"type": "error", "error": body})

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    def _task_failed(self, exc: BaseException) -> None:
        log.error("live session %s: task failed: %r", self.id, exc)

    def closed(self, reason: str) -> None:
        """The connection is gone: stop every task."""
        if not self.recording.closed:
            self.recording.closed = True
            self.recording.close_reason = reason
        self._tasks.cancel_all()

    def _usage(self) -> dict[str, Any]:
        return {"seconds": round(self.input_ms / 1000.0, 3)}

    async def end(self, reason: str, code: int = 1000) -> None:
        """``session.closed`` with ``reason``, then the socket closes."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        session = {**self.config, "id": self.id, "status": "closed"}
        await self.emit(
            {"type": "session.closed", "reason": reason, "session": session, "usage": self._usage()}
        )
        await self.transport.close(code, reason)
        self.closed(reason)
        raise _Ended()

    # ------------------------------------------------------------ client events

    async def handle_text(self, text: str | bytes) -> None:
        """One client message."""
        if isinstance(text, bytes):
            await self._error(
                LiveRequestError("invalid_event", "Binary frames are not accepted."), None
            )
            return
        try:
            event = json.loads(text)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError:
            await self._error(
                LiveRequestError("invalid_json", "The event is not a JSON object."), None
            )
            return
        self._record(event)
        try:
            await self._handle(event)
        except LiveRequestError as err:
            await self._error(err, event)
        except _Ended:
            raise ConnectionError("session ended") from None

    def _record(self, event: dict[str, Any]) -> None:
        body = dict(event)
        if body.get("type") == "session.input_audio.append" and isinstance(body.get("audio"), str):
            body["audio"] = f"<{len(body['audio'])} base64 chars>"
        self.recording.record_event(body)

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if not self.started:
            if kind != "session.start":
                raise LiveRequestError(
                    "session_not_started", f"'{kind}' was sent before session.started."
                )
            await self._start(event.get("session"))
            return
        if kind == "session.input_audio.append":
            await self._audio(event.get("audio"))
        elif kind in (
            "session.instructions.append",
            "session.thinking.append",
            "session.commentary.append",
        ):
            await self._append(str(kind), event)
        elif kind == "response.item.create":
            self._item(event.get("item"))
        elif kind == "response.create":
            await self._continue()
        elif kind == "session.update":
            self.config = check_update(self.config, event.get("session"))
            await self.emit({"type": "session.updated", "session": self._session_obj()})
        elif kind == "session.close":
            await self.end("close_requested")
        elif kind == "session.start":
            raise LiveRequestError("session_already_started", "The session has already started.")
        elif kind in ("session.input_audio.mute", "session.input_audio.unmute"):
            await self.emit({"type": kind.replace("mute", "muted")})
        else:
            raise LiveRequestError("invalid_event", f"Unknown event type '{kind}'.", "type")

    def _session_obj(self) -> dict[str, Any]:
        return {**self.config, "id": self.id, "expires_at": self.expires_at, "status": "active"}

    async def _start(self, session: Any) -> None:
        self.create(session)
        await self.announce()

    def create(self, session: Any, *, webrtc: bool = False) -> dict[str, Any]:
        """Validate and take the session (``session.start``, or the WebRTC create body);
        returns the session object (with ``id`` and ``expires_at``)."""
        self.config, fmt = check_start(session, webrtc=webrtc)
        self.fmt = FORMATS[fmt] or AudioFormat.PCM24K
        self.rate = fmt[1]
        if webrtc:
            self.recording.transport = "webrtc"
        self.recording.model = str(self.config.get("model"))
        self.started = True
        self.expires_at = int(time.time() + self.options.session_duration_s)
        return self._session_obj()

    async def announce(self) -> None:
        """``session.started``; the usage reports and the expiry begin."""
        await self.emit({"type": "session.started", "session": self._session_obj()})
        self.spawn(self._usage_loop())
        self.spawn(self._expire_later())
        await self.inject("session.created", None)

    async def _usage_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.usage_interval_s)
            await self.emit({"type": "session.usage.updated", "usage": self._usage()})

    async def _expire_later(self) -> None:
        await asyncio.sleep(self.options.session_duration_s)
        await self.end("expired")

    async def _audio(self, audio: Any) -> None:
        try:
            data = base64.b64decode(str(audio or ""), validate=True)
        except (binascii.Error, ValueError):
            raise LiveRequestError(
                "invalid_audio", "The audio is not valid base64.", "audio"
            ) from None
        if self.fmt is AudioFormat.PCM24K and len(data) % 2:
            raise LiveRequestError("invalid_audio", "PCM16 audio needs whole samples.", "audio")
        self.recording.record_audio(data, self.fmt)
        await self.input_pcm(to_pcm16(data, self.fmt), self.rate)

    async def input_pcm(self, pcm: bytes, rate: int) -> None:
        """Caller audio as 16-bit PCM (decoded appends, or the WebRTC track's frames)."""
        self.input_ms += len(pcm) * 1000 // (2 * rate)
        for ev in self._vad.feed(pcm, rate):
            speaking = self._speech is not None and not self._speech.done()
            if isinstance(ev, VadSpeechStarted) and speaking and self._speech is not None:
                self._speech.cancel()  # the model hears the caller and stops
                self._speech = None
                if self.player is not None:
                    self.player.clear()
                self.recording.cancels.append(
                    CancelRecord(self.recording.now(), None, "caller_speech", True)
                )
            elif isinstance(ev, VadSpeechStopped):
                self.turn += 1
                await self._caller_turn(self.turn, ev.audio_end_ms)

    async def _append(self, kind: str, event: dict[str, Any]) -> None:
        content = event.get("content")
        if not isinstance(content, str) or "delegation_id" not in event:
            raise LiveRequestError(
                "invalid_value",
                f"'{kind}' needs 'content' (string) and 'delegation_id'.",
                "content",
            )
        await self.emit(
            {
                "type": kind.replace(".append", ".appended"),
                "start_ms": self.input_ms,
                "end_ms": self.input_ms,
            }
        )
        if kind == "session.instructions.append" and not self.greeted:
            self.greeted = True
            if self.scenario.greeting:
                self._speak(self.scenario.greeting, 0)

    # ------------------------------------------------------------ the scenario

    async def _caller_turn(self, n: int, end_ms: int) -> None:
        entry = self.scenario.turn(n) or Turn(say=self.scenario.fallback)
        await self.inject("committed", n)
        if entry.caller:
            await self.emit(
                {
                    "type": "session.input_transcript.delta",
                    "delta": entry.caller,
                    "start_ms": max(0, end_ms - 1000),
                    "end_ms": end_ms,
                }
            )
        if entry.call is None:
            self._speak(entry.say, n)
            return
        if entry.say:
            self._speak(entry.say, n)
        await self._delegate(entry, n)

    async def _nested(self, delegation_id: str, event: dict[str, Any]) -> None:
        await self.emit({"type": "response.event", "delegation_id": delegation_id, "event": event})

    async def _delegate(self, entry: Turn, n: int) -> None:
        call = entry.call
        assert call is not None
        delegation_id = "del_" + self.ids.token(12)
        resp_id = "resp_" + self.ids.token(16)
        call_id = call.call_id or "call_" + self.ids.token(12)
        await self.emit(
            {
                "type": "session.delegation.created",
                "offset_ms": self.input_ms,
                "delegation": {
                    "id": delegation_id,
                    "type": "delegation",
                    "target": "responses",
                    "response_id": resp_id,
                },
            }
        )
        snapshot = {"id": resp_id, "object": "response", "status": "in_progress", "output": []}
        await self._nested(delegation_id, {"type": "response.created", "response": snapshot})
        item = {
            "type": "function_call",
            "id": "fc_" + self.ids.token(12),
            "call_id": call_id,
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
        await self._nested(
            delegation_id,
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress", "arguments": ""},
            },
        )
        await self._nested(
            delegation_id, {"type": "response.output_item.done", "output_index": 0, "item": item}
        )
        self._pending[call_id] = (entry, n)
        await self._nested(
            delegation_id,
            {"type": "response.completed", "response": {**snapshot, "status": "completed"}},
        )

    def _item(self, item: Any) -> None:
        if not isinstance(item, dict) or item.get("type") != "function_call_output":
            raise LiveRequestError(
                "invalid_value", "Expected a function_call_output item.", "item.type"
            )
        call_id = item.get("call_id")
        if call_id not in self._pending:
            raise LiveRequestError(
                "invalid_value", f"No function call with call_id '{call_id}'.", "item.call_id"
            )
        if not isinstance(item.get("output"), str):
            raise LiveRequestError(
                "invalid_value", "'item.output' must be a string.", "item.output"
            )
        self._answered.add(str(call_id))

    async def _continue(self) -> None:
        done = [cid for cid in self._pending if cid in self._answered]
        if not done:
            raise LiveRequestError(
                "invalid_request_error",
                "response.create without a function_call_output to continue.",
            )
        for cid in done:
            entry, n = self._pending.pop(cid)
            self._answered.discard(cid)
            assert entry.call is not None
            if entry.call.after:
                self._speak(entry.call.after, n)

    def _speak(self, text: str, turn: int) -> None:
        """Say ``text`` after what is being said (caller speech cancels the whole chain)."""
        if not text:
            return
        self._speech = self.spawn(self._say_after(self._speech, text, turn))

    async def _say_after(self, before: asyncio.Task[None] | None, text: str, turn: int) -> None:
        if before is not None and not before.done():
            await before
        await self._say(text, turn)

    async def _say(self, text: str, turn: int) -> None:
        await self.inject("response.created", turn)
        voice = ((self.config.get("audio") or {}).get("output") or {}).get("voice", "marin")
        pcm24k = await self.tts.synthesize(text, voice if isinstance(voice, str) else "marin")
        fmt = self.fmt
        data = from_pcm24k(pcm24k, fmt)
        await self.emit(
            {
                "type": "session.output_transcript.delta",
                "delta": text,
                "start_ms": self.input_ms,
                "end_ms": self.input_ms + fmt.duration_ms(len(data)),
            }
        )
        if self.player is not None:  # WebRTC: the track plays it at real time
            await self._play(pcm24k, turn)
            return
        step = fmt.bytes_per_ms * self.options.chunk_ms
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, off in enumerate(range(0, len(data), step)):
            delay = t0 + i * self.options.chunk_ms / 1000.0 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = data[off : off + step]
            await self.emit(
                {"type": "session.output_audio.delta", "delta": base64.b64encode(chunk).decode()}
            )
            if i == 0:
                await self.inject("first_audio", turn)
        await self.inject("response.done", turn)

    async def _play(self, pcm24k: bytes, turn: int) -> None:
        assert self.player is not None
        self.player.enqueue(f"speech_{turn}", f"speech_{turn}", pcm24k)
        await self.inject("first_audio", turn)
        try:
            await asyncio.sleep(len(pcm24k) / 48000)  # while it plays
        except asyncio.CancelledError:
            self.player.clear()
            raise
        await self.inject("response.done", turn)

    # ------------------------------------------------------------ injections

    async def inject(self, at: str, turn: int | None) -> None:
        """Fire the scenario's injections for ``at`` (each at most once)."""
        for inj in self.scenario.injections(at, turn):
            if id(inj) in self._fired:
                continue
            self._fired.add(id(inj))
            log.info("live session %s: injecting %s at %s (turn %s)", self.id, inj.action, at, turn)
            if inj.action in ("error", "fail"):
                body = {"type": inj.type, "code": inj.code, "message": inj.message, "param": None}
                await self.emit({"type": "error", "error": body})
            elif inj.action == "expire":
                await self.end("expired")
            elif inj.action == "close":
                await self.end(inj.close_reason or "content", inj.close_code)
            elif inj.action == "abort":
                self.transport.abort()
                self.closed("injected abort")
                raise _Ended()
