"""Streaming speech-to-text over the Realtime transcription session (WebSocket).

``stt_mode = "stream"``: one WebSocket per call to ``{base_url}/realtime?intent=
transcription`` (ws/wss), configured with ``session.update`` (``type: "transcription"``,
the call's audio format: ``audio/pcmu`` / ``audio/pcma`` straight from the G.711 payload
or ``audio/pcm`` at 24 kHz, ``transcription {model, language, prompt, delay}``,
``turn_detection: null``: our own VAD decides the turn). The caller's audio is appended
while the caller speaks (from the speech onset, its padding first), so when the turn ends
only ``input_audio_buffer.commit`` remains; the service streams
``conversation.item.input_audio_transcription.delta`` and ``.completed`` for the item
(``.failed`` and ``error`` become :class:`~w3sipagent.cascade.stages.StageError`).

A streaming model (:data:`LIVE_MODELS`: ``gpt-realtime-whisper``, ``gpt-live-transcribe``)
writes deltas while the audio still arrives, before any commit: they belong to the turn
opened by :meth:`StreamingSpeechToText.begin` (the item the next commit reports), so the
caller's words so far reach the session while the caller speaks
(:attr:`~StreamingSpeechToText.live_text`). The committed-turn models (``gpt-4o-*``,
``gpt-transcribe``, ``whisper-1``) write only after the commit.
Event names and shapes: the OpenAI Python SDK's GA ``types/realtime`` (docs/backends-cascade.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from w3sipagent.cascade.config import StageEndpoint
from w3sipagent.cascade.stages import StageError

log = logging.getLogger(__name__)

LIVE_MODELS = ("gpt-realtime-whisper", "gpt-live-transcribe")
"""Models that transcribe while the audio arrives (OpenAI's realtime transcription guide)."""
NO_PROMPT_MODELS = ("gpt-realtime-whisper",)
"""Models that take no ``prompt`` (the SDK: "not supported with gpt-realtime-whisper")."""

STREAM_FORMATS = {
    "audio/pcmu": {"type": "audio/pcmu"},
    "audio/pcma": {"type": "audio/pcma"},
    "audio/pcm": {"type": "audio/pcm", "rate": 24000},
}


def realtime_url(base_url: str) -> str:
    """``http(s)://…/v1`` → ``ws(s)://…/v1/realtime?intent=transcription``."""
    url = base_url.rstrip("/")
    if url.startswith("https://"):
        url = "wss://" + url[8:]
    elif url.startswith("http://"):
        url = "ws://" + url[7:]
    return url + "/realtime?intent=transcription"


class Pending:
    """One turn's transcript: written while the caller speaks (a streaming model), or
    after the commit; ``text`` is what the deltas said so far."""

    def __init__(self, on_delta: Callable[[str], None] | None) -> None:
        self.on_delta = on_delta
        self.item_id: str | None = None
        self.text = ""
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def delta(self, text: str) -> None:
        self.text += text
        if self.on_delta is not None:
            self.on_delta(text)


class StreamingSpeechToText:
    """A transcription session for one call: :meth:`append` while the caller speaks,
    :meth:`commit` at the end of the turn (returns the transcript)."""

    name = "stt"

    def __init__(
        self,
        endpoint: StageEndpoint,
        audio_format: str,
        *,
        language: str | None = None,
        prompt: str | None = None,
        delay: str | None = None,
    ) -> None:
        if audio_format not in STREAM_FORMATS:
            raise ValueError(f"no transcription format {audio_format!r}")
        self.endpoint = endpoint
        self.audio_format = audio_format
        self.language = language
        self.prompt = prompt
        self.delay = delay
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._live: Pending | None = None  # the turn being spoken (begin), not committed
        self._waiting: deque[Pending] = deque()  # committed, item id not yet known
        self._by_item: dict[str, Pending] = {}
        self._failed: StageError | None = None
        self._appended = 0

    async def connect(self) -> None:
        """Open the WebSocket and configure the session (raises StageError)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        ep = self.endpoint
        headers = {"Authorization": f"Bearer {ep.api_key}"} if ep.api_key else {}
        try:
            self._ws = await asyncio.wait_for(
                connect(realtime_url(ep.base_url), additional_headers=headers, max_size=None),
                ep.timeout,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            message, code = f"HTTP {status}", None
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                err = json.loads(exc.response.body or b"")["error"]
                message, code = str(err.get("message") or message), err.get("code")
            raise StageError(self.name, message, status=status, code=code) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise StageError(self.name, f"{type(exc).__name__}: {exc}") from exc
        transcription: dict[str, Any] = {"model": ep.model}
        if self.language:
            transcription["language"] = self.language
        if self.prompt and ep.model not in NO_PROMPT_MODELS:
            transcription["prompt"] = self.prompt
        if self.delay:
            transcription["delay"] = self.delay
        update = {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": STREAM_FORMATS[self.audio_format],
                        "transcription": transcription,
                        "turn_detection": None,
                    }
                },
            },
        }
        await self._send(update)
        # session.created comes first, then session.updated (or an error refusing the update)
        try:
            async with asyncio.timeout(ep.timeout):
                while True:
                    ev = await self._recv()
                    if ev.get("type") in ("session.updated", "transcription_session.updated"):
                        break  # (the second: the beta name, sent by some compatible servers)
                    if ev.get("type") == "error":
                        raise _error(ev.get("error") or {})
        except TimeoutError:
            await self.aclose()
            raise StageError(
                self.name, "no session.updated from the transcription session"
            ) from None
        except StageError:
            await self.aclose()
            raise
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="cascade-stt-ws")

    async def _send(self, ev: dict[str, Any]) -> None:
        from websockets.exceptions import WebSocketException

        try:
            await self._ws.send(json.dumps(ev, separators=(",", ":")))
        except WebSocketException as exc:
            raise StageError(self.name, f"transcription session lost: {exc}") from exc

    async def _recv(self) -> dict[str, Any]:
        from websockets.exceptions import WebSocketException

        try:
            raw = await self._ws.recv()
        except WebSocketException as exc:
            raise StageError(self.name, f"transcription session lost: {exc}") from exc
        try:
            ev = json.loads(raw)
        except ValueError as exc:
            raise StageError(self.name, f"unreadable event: {exc}") from exc
        return ev if isinstance(ev, dict) else {}

    async def append(self, audio: bytes) -> None:
        """Caller audio in the session's format (G.711 bytes or 24 kHz PCM)."""
        if self._failed is not None:
            raise self._failed
        if audio:
            self._appended += len(audio)
            await self._send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}
            )

    @property
    def streams_words(self) -> bool:
        """The model writes while the audio arrives (:data:`LIVE_MODELS`)."""
        return self.endpoint.model in LIVE_MODELS

    def begin(self, on_delta: Callable[[str], None] | None = None) -> None:
        """A caller turn starts: deltas of an item not committed yet are its words."""
        self._live = Pending(on_delta)

    @property
    def live_text(self) -> str:
        """What the service wrote of the turn under way (before its commit)."""
        return self._live.text.strip() if self._live is not None else ""

    async def send_commit(self, on_delta: Callable[[str], None] | None = None) -> Pending | None:
        """Commit what was appended (None: nothing was); await :meth:`transcript` for it."""
        if self._failed is not None:
            raise self._failed
        live, self._live = self._live, None
        if self._appended == 0:
            return None
        self._appended = 0
        pending = live if live is not None else Pending(on_delta)
        if pending.on_delta is None:
            pending.on_delta = on_delta
        self._waiting.append(pending)
        await self._send({"type": "input_audio_buffer.commit"})
        return pending

    async def transcript(self, pending: Pending | None) -> str:
        """The transcript of a committed item (raises StageError)."""
        if pending is None:
            return ""
        try:
            async with asyncio.timeout(self.endpoint.timeout):
                return await asyncio.shield(pending.done)
        except TimeoutError:
            raise StageError(self.name, "no transcript in time") from None

    async def _read(self) -> None:
        try:
            while True:
                self._dispatch(await self._recv())
        except StageError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(StageError(self.name, "transcription session closed"))
            raise

    def _dispatch(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "input_audio_buffer.committed":
            if self._waiting:
                p = self._waiting.popleft()
                if p.item_id is not None:  # named by its live deltas
                    self._by_item.pop(p.item_id, None)
                p.item_id = str(ev.get("item_id"))
                self._by_item[p.item_id] = p
        elif kind == "conversation.item.input_audio_transcription.delta":
            item = str(ev.get("item_id"))
            got = self._by_item.get(item)
            live = self._live
            if got is None and live is not None and live.item_id in (None, item):
                live.item_id = item  # written while the caller speaks: the turn under way
                got = self._by_item[item] = live
            if got is not None and ev.get("delta"):
                got.delta(str(ev["delta"]))
        elif kind == "conversation.item.input_audio_transcription.completed":
            done = self._by_item.pop(str(ev.get("item_id")), None)
            if done is not None and not done.done.done():
                done.done.set_result(str(ev.get("transcript") or "").strip())
        elif kind == "conversation.item.input_audio_transcription.failed":
            failed = self._by_item.pop(str(ev.get("item_id")), None)
            if failed is not None and not failed.done.done():
                failed.done.set_exception(_error(ev.get("error") or {}))
        elif kind == "error":
            err = ev.get("error") or {}
            if err.get("code") == "input_audio_buffer_commit_empty" and self._waiting:
                p = self._waiting.popleft()  # too little audio: nothing was said
                if not p.done.done():
                    p.done.set_result("")
                return
            raise _error(err)

    def _fail(self, exc: StageError) -> None:
        self._failed = exc
        for p in [*self._waiting, *self._by_item.values()]:
            if not p.done.done():
                p.done.set_exception(exc)
                p.done.exception()  # retrieved: nobody may be waiting any more
        self._waiting.clear()
        self._by_item.clear()
        self._live = None

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None


def _error(err: dict[str, Any]) -> StageError:
    return StageError(
        "stt", str(err.get("message") or "transcription failed"), code=err.get("code")
    )


class StreamFeed:
    """Feeds a :class:`StreamingSpeechToText` from synchronous code (the session's
    ``send_audio``): caller PCM at the listener's rate is queued, converted to the
    session's format (G.711 re-encoded with our tables; 16 → 24 kHz resampled) and
    appended by one task, in order with the commits. ``on_error``: a failed append."""

    def __init__(
        self,
        stt: StreamingSpeechToText,
        on_error: Callable[[StageError], None],
    ) -> None:
        from w3sipagent.codecs.g711 import alaw_encode, ulaw_encode
        from w3sipagent.codecs.resample import Resampler

        self.stt = stt
        self._on_error = on_error
        fmt = stt.audio_format
        self._encode: Callable[[bytes], bytes]
        if fmt == "audio/pcmu":
            self._encode = ulaw_encode
        elif fmt == "audio/pcma":
            self._encode = alaw_encode
        else:
            self._encode = Resampler(16000, 24000).process
        self._q: asyncio.Queue[
            bytes | _Begin | tuple[asyncio.Future[Pending | None], Callable[[str], None] | None]
        ] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._pump(), name="cascade-stt-feed")

    def audio(self, pcm: bytes) -> None:
        if pcm:
            self._q.put_nowait(pcm)

    def begin(self, on_delta: Callable[[str], None] | None) -> None:
        """A caller turn starts (in order with its audio): a streaming model's deltas
        before the commit go to ``on_delta``."""
        self._q.put_nowait(_Begin(on_delta))

    @property
    def live_text(self) -> str:
        """The words a streaming model wrote so far of the turn not committed yet."""
        return self.stt.live_text

    def commit(
        self, on_delta: Callable[[str], None] | None = None
    ) -> asyncio.Future[Pending | None]:
        fut: asyncio.Future[Pending | None] = asyncio.get_running_loop().create_future()
        self._q.put_nowait((fut, on_delta))
        return fut

    async def transcript(self, fut: asyncio.Future[Pending | None]) -> str:
        return await self.stt.transcript(await fut)

    async def _pump(self) -> None:
        failed: StageError | None = None
        while True:
            item = await self._q.get()
            if isinstance(item, bytes):
                if failed is None:
                    try:
                        await self.stt.append(self._encode(item))
                    except StageError as exc:
                        failed = exc
                        self._on_error(exc)
                continue
            if isinstance(item, _Begin):
                self.stt.begin(item.on_delta)
                continue
            fut, on_delta = item
            if failed is not None:
                fut.set_exception(failed)
                continue
            try:
                fut.set_result(await self.stt.send_commit(on_delta))
            except StageError as exc:
                failed = exc
                fut.set_exception(exc)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.stt.aclose()


class _Begin:
    def __init__(self, on_delta: Callable[[str], None] | None) -> None:
        self.on_delta = on_delta


async def open_feed(
    endpoint: StageEndpoint,
    audio_format: str,
    *,
    language: str | None,
    prompt: str | None,
    on_error: Callable[[StageError], None],
    delay: str | None = None,
) -> StreamFeed:
    """Connect a transcription session for a call's ``audio_format`` (``audio/pcmu``,
    ``audio/pcma`` or ``audio/pcm``) and the feed in front of it (raises StageError)."""
    stt = StreamingSpeechToText(
        endpoint, audio_format, language=language, prompt=prompt, delay=delay
    )
    await stt.connect()
    return StreamFeed(stt, on_error)
