"""The Realtime transcription session of the local cascade server (``GET /v1/realtime
?intent=transcription``, a WebSocket on the same port as the HTTP routes).

Event shapes follow the OpenAI Python SDK (GA ``types/realtime``): the client sends
``session.update`` with a ``session`` of ``type: "transcription"`` (checked in
transcription_config.py: ``audio.input.format`` ``audio/pcm`` at 24 kHz, ``audio/pcmu`` or
``audio/pcma``; ``audio.input.transcription`` ``{model, language, prompt, delay, keywords,
languages}`` as each model takes them; ``audio.input.turn_detection`` ``server_vad`` (the
default) or null), ``input_audio_buffer.append`` (base64 audio),
``input_audio_buffer.commit`` and ``input_audio_buffer.clear``. The server answers
``session.created`` on connect, ``session.updated``, the buffer's events
(transcription_input.py: ``speech_started`` / ``speech_stopped`` with server VAD,
``committed {item_id, previous_item_id}``, ``cleared``), and for each item
``conversation.item.input_audio_transcription.delta`` (word by word; while the audio
arrives for a streaming model) and ``.completed {transcript, usage}``, or ``.failed
{error}``; a bad client event gets an ``error`` event with the service's ``type``,
``code``, ``message``, ``param`` and the client's ``event_id``. The transcript of the N-th
item of an API key is the scenario's turn-N caller line, counted together with
``/v1/audio/transcriptions``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from w3sipagent.ids import IdSource
from w3sipagent.localai.cascade.embeddings import token_count
from w3sipagent.localai.cascade.http import HttpRequest
from w3sipagent.localai.cascade.transcription_config import MODELS, default_config, update_config
from w3sipagent.localai.cascade.transcription_input import InputBuffer, Job
from w3sipagent.localai.realtime.errors import RealtimeProtocolError

__all__ = ["TRANSCRIBE_MODELS", "TranscriptionSocket"]

log = logging.getLogger(__name__)

TRANSCRIBE_MODELS = tuple(MODELS)
_Refused = RealtimeProtocolError


class TranscriptionSocket:
    """One transcription session over a WebSocket (sans-IO ``websockets`` protocol).

    ``transcript``: gives the next caller line of this API key (and counts it);
    ``failure``: pops a queued ``(code, message)`` the next item fails with, if any.
    """

    def __init__(
        self,
        req: HttpRequest,
        ids: IdSource,
        transcript: Callable[[], str],
        failure: Callable[[], tuple[str, str] | None],
        *,
        delta_delay: float = 0.0,
        commit_delay: float = 0.0,
        word_ms: int = 200,
    ) -> None:
        self._req = req
        self._ids = ids
        self._failure = failure
        self._delay = delta_delay
        self._commit_delay = commit_delay
        self._proto = ServerProtocol(max_size=16 * 1024 * 1024)
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.events_in: list[dict[str, Any]] = []
        """Every client event received (for tests)."""
        self.events_out: list[dict[str, Any]] = []
        """Every server event sent, in order (for tests)."""
        self.config: dict[str, Any] = default_config("sess_" + ids.token(12))
        self.input = InputBuffer(
            self.config["audio"]["input"],
            lambda: "item_" + ids.token(12),
            transcript,
            word_ms=word_ms,
        )
        """The input audio buffer (server VAD, commits, a streaming model's words)."""

    # ------------------------------------------------------------ connection

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Do the handshake, then serve client events until either side closes."""
        self._writer = writer
        req = self._req
        query = "&".join(f"{k}={v}" for k, vs in req.query.items() for v in vs)
        head = f"GET {req.path}{'?' + query if query else ''} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
        self._proto.receive_data(head.encode("latin-1"))
        request = next(e for e in self._proto.events_received() if isinstance(e, Request))
        self._proto.send_response(self._proto.accept(request))
        await self._flush()
        if self._proto.state is not State.OPEN:
            return
        await self._send({"type": "session.created", "session": self.config})
        try:
            while self._proto.state is State.OPEN:
                data = await reader.read(65536)
                if not data:
                    self._proto.receive_eof()
                    break
                self._proto.receive_data(data)
                for frame in self._proto.events_received():
                    if isinstance(frame, Frame) and frame.opcode is Opcode.TEXT:
                        await self._event(bytes(frame.data))
                await self._flush()
        finally:
            for t in list(self._tasks):
                t.cancel()
            await self._flush()

    async def _flush(self) -> None:
        w = self._writer
        assert w is not None
        out = self._proto.data_to_send()
        for chunk in out:
            if chunk:
                w.write(chunk)
        with contextlib.suppress(ConnectionError):
            await w.drain()

    async def _send(self, ev: dict[str, Any]) -> None:
        if self._proto.state is not State.OPEN:
            return
        ev = {"event_id": "event_" + self._ids.token(12), **ev}
        self.events_out.append(ev)
        self._proto.send_text(json.dumps(ev, separators=(",", ":")).encode())
        await self._flush()

    async def _error(self, exc: _Refused, event_id: Any) -> None:
        await self._send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": exc.code,
                    "message": str(exc),
                    "param": exc.param,
                    "event_id": event_id if isinstance(event_id, str) else None,
                },
            }
        )

    # ------------------------------------------------------------ client events

    async def _event(self, raw: bytes) -> None:
        try:
            ev = json.loads(raw)
        except ValueError:
            await self._error(
                _Refused(
                    "The server could not parse the event: invalid JSON.", code="invalid_json"
                ),
                None,
            )
            return
        if not isinstance(ev, dict):
            await self._error(_Refused("An event must be a JSON object."), None)
            return
        self.events_in.append(ev)
        kind = ev.get("type")
        try:
            if kind == "session.update":
                update_config(self.config, ev.get("session"))
                self.input.configure(self.config["audio"]["input"])
                await self._send({"type": "session.updated", "session": self.config})
            elif kind == "input_audio_buffer.append":
                await self._out(self.input.append(self._audio(ev.get("audio"))))
            elif kind == "input_audio_buffer.commit":
                await self._out(self.input.commit())
            elif kind == "input_audio_buffer.clear":
                await self._out(self.input.clear())
            else:
                raise _Refused(
                    f"Invalid value: '{kind}'. Supported values are: 'session.update', "
                    "'input_audio_buffer.append', 'input_audio_buffer.commit' and "
                    "'input_audio_buffer.clear'.",
                    param="type",
                )
        except _Refused as exc:
            await self._error(exc, ev.get("event_id"))

    @staticmethod
    def _audio(audio: Any) -> bytes:
        if not isinstance(audio, str):
            raise _Refused(
                "Missing required parameter: 'audio'.",
                code="missing_required_parameter",
                param="audio",
            )
        try:
            return base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused(
                "Invalid 'audio'. Expected base64-encoded audio bytes.", param="audio"
            ) from None

    async def _out(self, out: list[dict[str, Any] | Job]) -> None:
        """Send the buffer's events in order; a committed item is transcribed by a task."""
        for ev in out:
            if isinstance(ev, Job):
                task = asyncio.get_running_loop().create_task(self._transcribe(ev))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                await self._send(ev)

    async def _transcribe(self, job: Job) -> None:
        if self._commit_delay:
            await asyncio.sleep(self._commit_delay)
        failure = self._failure()
        text = job.text
        if failure is not None:
            code, message = failure
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": job.item_id,
                    "content_index": 0,
                    "error": {"type": "server_error", "code": code, "message": message,
                              "param": None},
                }
            )  # fmt: skip
            return
        words = [w for w in text.split(" ") if w]
        if job.traits.one_delta:
            rest = [text] if text else []
        else:
            rest = [w if i == 0 else " " + w for i, w in enumerate(words)][job.sent_words :]
        for piece in rest:
            if self._delay:
                await asyncio.sleep(self._delay)
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": job.item_id,
                    "content_index": 0,
                    "delta": piece,
                }
            )
        ms = job.ms
        if job.traits.usage == "duration":
            usage: dict[str, Any] = {"type": "duration", "seconds": round(ms / 1000.0, 3)}
        else:
            audio_tokens = max(1, round(ms / 100))
            out = token_count(text) if text else 0
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "output_tokens": out,
                "total_tokens": audio_tokens + out,
                "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
            }
        await self._send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": job.item_id,
                "content_index": 0,
                "transcript": text,
                "usage": usage,
            }
        )
