"""The Realtime transcription session of the local cascade server (``GET /v1/realtime
?intent=transcription``, a WebSocket on the same port as the HTTP routes).

Event shapes follow the OpenAI Python SDK (GA ``types/realtime``): the client sends
``session.update`` with a ``session`` of ``type: "transcription"`` (``audio.input.format``
``audio/pcm`` at 24 kHz, ``audio/pcmu`` or ``audio/pcma``; ``audio.input.transcription``
``{model, language, prompt}``; ``audio.input.turn_detection`` null: the client commits),
``input_audio_buffer.append`` (base64 audio), ``input_audio_buffer.commit`` and
``input_audio_buffer.clear``. The server answers ``session.created`` on connect,
``session.updated``, ``input_audio_buffer.committed {item_id, previous_item_id}``, then for
the item ``conversation.item.input_audio_transcription.delta`` (word by word) and
``.completed {transcript, usage}``, or ``.failed {error}``; a bad client event gets an
``error`` event with the service's ``type``, ``code``, ``message``, ``param`` and the
client's ``event_id``. The transcript of the N-th committed item of an API key is the
scenario's turn-N caller line, counted together with ``/v1/audio/transcriptions``.

Server-side VAD is not imitated: a ``turn_detection`` other than null is refused
(``unsupported_value``), so a client relying on it learns at once.
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

__all__ = ["TRANSCRIBE_MODELS", "TranscriptionSocket"]

log = logging.getLogger(__name__)

TRANSCRIBE_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe", "whisper-1")
MIN_COMMIT_MS = 100
_BYTES_PER_MS = {"audio/pcm": 48, "audio/pcmu": 8, "audio/pcma": 8}


class _Refused(ValueError):
    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


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
    ) -> None:
        self._req = req
        self._ids = ids
        self._transcript = transcript
        self._failure = failure
        self._delay = delta_delay
        self._proto = ServerProtocol(max_size=16 * 1024 * 1024)
        self._writer: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._last_item: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.events_in: list[dict[str, Any]] = []
        """Every client event received (for tests)."""
        self.config: dict[str, Any] = {
            "id": "sess_" + ids.token(12),
            "object": "realtime.transcription_session",
            "type": "transcription",
            "expires_at": 0,
            "include": None,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "noise_reduction": None,
                    "transcription": None,
                    "turn_detection": None,
                }
            },
        }

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
                _Refused("The server could not parse the event: invalid JSON.", "invalid_json"),
                None,
            )
            return
        if not isinstance(ev, dict):
            await self._error(_Refused("An event must be a JSON object.", "invalid_value"), None)
            return
        self.events_in.append(ev)
        kind = ev.get("type")
        try:
            if kind == "session.update":
                self._update(ev.get("session"))
                await self._send({"type": "session.updated", "session": self.config})
            elif kind == "input_audio_buffer.append":
                self._append(ev.get("audio"))
            elif kind == "input_audio_buffer.commit":
                await self._commit()
            elif kind == "input_audio_buffer.clear":
                self._buf.clear()
                await self._send({"type": "input_audio_buffer.cleared"})
            else:
                raise _Refused(
                    f"Invalid value: '{kind}'. Supported values are: 'session.update', "
                    "'input_audio_buffer.append', 'input_audio_buffer.commit' and "
                    "'input_audio_buffer.clear'.",
                    "invalid_value",
                    "type",
                )
        except _Refused as exc:
            await self._error(exc, ev.get("event_id"))

    def _update(self, session: Any) -> None:
        if not isinstance(session, dict):
            raise _Refused(
                "Missing required parameter: 'session'.", "missing_required_parameter", "session"
            )
        if session.get("type") != "transcription":
            raise _Refused(
                f"Invalid value: '{session.get('type')}'. This is a transcription session: "
                "session.type must be 'transcription'.",
                "invalid_value",
                "session.type",
            )
        inp = ((session.get("audio") or {}).get("input")) or {}
        cur = self.config["audio"]["input"]
        if "format" in inp:
            fmt = inp["format"] or {}
            kind = fmt.get("type")
            if kind not in _BYTES_PER_MS:
                raise _Refused(
                    f"Invalid value: '{kind}'. Supported values are: 'audio/pcm', "
                    "'audio/pcmu' and 'audio/pcma'.",
                    "invalid_value",
                    "session.audio.input.format.type",
                )
            if kind == "audio/pcm" and fmt.get("rate", 24000) != 24000:
                raise _Refused(
                    "Only a 24kHz sample rate is supported.",
                    "invalid_value",
                    "session.audio.input.format.rate",
                )
            cur["format"] = {"type": kind, "rate": 24000} if kind == "audio/pcm" else {"type": kind}
        if "transcription" in inp:
            tr = inp["transcription"]
            if tr is not None:
                model = tr.get("model")
                if model not in TRANSCRIBE_MODELS:
                    raise _Refused(
                        f"Invalid value: '{model}'. Supported values are: "
                        + ", ".join(f"'{m}'" for m in TRANSCRIBE_MODELS)
                        + ".",
                        "invalid_value",
                        "session.audio.input.transcription.model",
                    )
                tr = {k: tr.get(k) for k in ("model", "language", "prompt")}
            cur["transcription"] = tr
        if "turn_detection" in inp and inp["turn_detection"] is not None:
            raise _Refused(
                "The local server runs no voice activity detection in transcription "
                "sessions: set turn_detection to null and commit the buffer.",
                "unsupported_value",
                "session.audio.input.turn_detection",
            )
        if "noise_reduction" in inp:
            cur["noise_reduction"] = inp["noise_reduction"]

    def _append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise _Refused(
                "Missing required parameter: 'audio'.", "missing_required_parameter", "audio"
            )
        try:
            self._buf += base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused(
                "Invalid 'audio'. Expected base64-encoded audio bytes.", "invalid_value", "audio"
            ) from None

    async def _commit(self) -> None:
        per_ms = _BYTES_PER_MS[self.config["audio"]["input"]["format"]["type"]]
        ms = len(self._buf) / per_ms
        if ms < MIN_COMMIT_MS:
            raise _Refused(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        self._buf.clear()
        item_id = "item_" + self._ids.token(12)
        prev, self._last_item = self._last_item, item_id
        await self._send(
            {"type": "input_audio_buffer.committed", "previous_item_id": prev, "item_id": item_id}
        )
        tr = self.config["audio"]["input"]["transcription"]
        if tr is None:
            return
        task = asyncio.get_running_loop().create_task(self._transcribe(item_id, tr, ms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _transcribe(self, item_id: str, tr: dict[str, Any], ms: float) -> None:
        failure = self._failure()
        text = self._transcript()
        if failure is not None:
            code, message = failure
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item_id,
                    "content_index": 0,
                    "error": {"type": "server_error", "code": code, "message": message,
                              "param": None},
                }
            )  # fmt: skip
            return
        for i, word in enumerate(w for w in text.split(" ") if w):
            if self._delay:
                await asyncio.sleep(self._delay)
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": word if i == 0 else " " + word,
                }
            )
        if tr["model"] == "whisper-1":
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
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
                "usage": usage,
            }
        )
