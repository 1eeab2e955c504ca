"""The asyncio WebSocket client of GPT-Live: an :class:`~w3sipagent.ai.session.AISession`.

:class:`LiveClient` runs a :class:`~w3sipagent.live.protocol.LiveProtocol` over a
websockets connection to ``{base_url}/live/sessions``::

    client = LiveClient(config, api_key=key)        # wss://api.openai.com/v1/live/sessions
    await client.start()                             # session.start … session.started
    client.send_audio(frame)                         # 20 ms in the start format, at once
    async for event in client.events(): ...

What the bridge asks maps onto GPT-Live: ``create_response(text)`` appends instructions
(the greeting), ``create_response()`` alone does nothing (the model decides when to
speak), ``add_message`` appends silent thinking (the caller's keys), ``truncate`` and
``cancel_response`` do nothing (the model owns barge-in), ``send_tool_result`` answers the
delegated run. A ticker streams silence whenever the caller's frames stop (hold, packet
loss), because the session clock only moves with input. Before ``expires_at`` the
session is renewed: a new one is started, seeded with the transcript, and takes over.
API keys are never logged, never in exceptions, never in ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal

from websockets.exceptions import InvalidStatus

from w3sipagent.ai import session as ai
from w3sipagent.ai.channel import close_channel, write_events
from w3sipagent.ai.redaction import redact, wire_logger
from w3sipagent.ai.websocket import WebSocketConnector
from w3sipagent.errors import AIError
from w3sipagent.live.audio import silence_frame
from w3sipagent.live.channel import Channel, ChannelClosed, Conn, WebSocketChannel
from w3sipagent.live.protocol import LiveProtocol

__all__ = ["DEFAULT_BASE_URL", "LiveClient"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://api.openai.com/v1"
_WIRE_LOG = wire_logger("w3sipagent.live.wire")
FRAME_MS = 20


class LiveClient(WebSocketConnector):
    """GPT-Live over a WebSocket (see the module docstring).

    ``base_url`` may point at a compatible server (``ws://127.0.0.1:PORT/v1``).
    ``session_timeout`` bounds the wait for ``session.started``; ``renew_margin_s``: how
    long before ``expires_at`` the replacement session is opened; ``silence_after_ms``:
    a gap in the caller's frames this long is filled with silence. ``protocol_options``
    go to :class:`~w3sipagent.live.protocol.LiveProtocol`.
    """

    _wire_log = _WIRE_LOG
    max_message_bytes = 16 * 1024 * 1024

    def __init__(
        self,
        config: ai.AISessionConfig,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout: float = 10.0,
        session_timeout: float = 10.0,
        close_timeout: float = 2.0,
        ping_interval: float | None = 5.0,
        ping_timeout: float | None = 5.0,
        proxy: str | bool | None = True,
        auto_renew: bool = True,
        renew_margin_s: float = 60.0,
        silence_after_ms: int = 60,
        **protocol_options: Any,
    ) -> None:
        if config.input_format is not config.output_format:
            raise AIError("GPT-Live uses one audio format both ways")
        self._config = config
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.session_timeout = session_timeout
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.proxy: str | Literal[True] | None = True if proxy is True else (proxy or None)
        self.auto_renew = auto_renew
        self.renew_margin_s = renew_margin_s
        self.silence_after_ms = silence_after_ms
        self._protocol_options = protocol_options
        self._events: asyncio.Queue[ai.AIEvent] = asyncio.Queue()
        self._conn: Conn | None = None
        self._early: list[bytes] = []
        self._started = False
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_feed = 0.0
        self._usage = ai.Usage()
        self.renewals = 0
        self.silence_frames = 0
        """Frames of silence the ticker sent for missing caller audio."""

    def __repr__(self) -> str:
        return f"LiveClient(url={self.url!r})"

    # ------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The WebSocket URL (no secret in it; the model is never in the URL)."""
        return f"{self.base_url}/live/sessions"

    @property
    def config(self) -> ai.AISessionConfig:
        return self._config

    @property
    def truncates_itself(self) -> bool:
        """True: there is nothing to truncate, the model knows what it said."""
        return True

    @property
    def session_id(self) -> str | None:
        """The server's ``live_…`` id of the current session."""
        return self._conn.proto.session_id if self._conn else None

    @property
    def expires_at(self) -> int | None:
        """Unix time at which the server ends the current session."""
        return self._conn.proto.expires_at if self._conn else None

    @property
    def usage(self) -> ai.Usage:
        """Billed seconds so far (across renewals)."""
        return self._usage

    @property
    def history(self) -> tuple[ai.HistoryItem, ...]:
        """The conversation so far as text (what a renewal re-seeds)."""
        return self._conn.proto.history() if self._conn else self._config.history

    # ------------------------------------------------------------ connection

    _wire_audio = True
    """Audio travels as events (WebSocket); False: on media tracks (WebRTC)."""

    async def _open_channel(self, conn: Conn) -> Channel:
        """Connect the WebSocket (``Authorization: Bearer``; the model is never in the URL)."""
        ws = await self._connect_websocket()
        return WebSocketChannel(ws)

    def _refused(self, exc: InvalidStatus) -> str:
        status = exc.response.status_code
        hint = ": check the API key" if status in (401, 403) else ""
        return f"GPT-Live server refused {self.url}: HTTP {status}{hint}"

    def _channel_open(self, conn: Conn) -> None:
        """The channel is up: send ``session.start`` (WebRTC: already started by HTTP)."""
        conn.proto.start()

    async def _close_channel(self, conn: Conn) -> None:
        """Close the transport (WebRTC also stops its tracks)."""
        await close_channel(conn.channel, self.close_timeout)

    # _open, _read, _conn_ended and _drop look like realtime/session.py's runner but are not
    # shared on purpose: GPT-Live starts with session.start (WebRTC: with the HTTP answer),
    # reports session.started, renews by seeding a new session on "expired" and drops the
    # connection when set-up is cancelled; the Realtime runner configures with
    # session.update, renews on session_expired and leaves cancellation to start().
    async def _open(self, config: ai.AISessionConfig) -> Conn:
        conn = Conn(LiveProtocol(config, wire_audio=self._wire_audio, **self._protocol_options))
        conn.channel = await self._open_channel(conn)
        self._channel_open(conn)
        if not conn.ready.done() and conn.proto.started:
            conn.ready.set_result(None)
        conn.tasks = [
            asyncio.create_task(self._read(conn), name="live-reader"),
            asyncio.create_task(self._write(conn), name="live-writer"),
        ]
        self._flush(conn)
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), self.session_timeout)
        except TimeoutError:
            await self._drop(conn)
            raise AIError(
                f"no session.started from the GPT-Live server within {self.session_timeout:g} s"
            ) from None
        except BaseException:  # AIError, or cancelled (a caller who left): the link goes too
            await self._drop(conn)
            raise
        err = conn.proto.setup_error
        if err is not None:
            await self._drop(conn)
            where = f" ({err.param})" if err.param else ""
            msg = redact(err.message, self._api_key)
            raise AIError(f"GPT-Live session rejected: {err.code or err.type}{where}: {msg}")
        return conn

    def _flush(self, conn: Conn) -> None:
        for event in conn.proto.take_outgoing():
            conn.queue.put_nowait(json.dumps(event, separators=(",", ":")))

    async def _write(self, conn: Conn) -> None:
        assert conn.channel is not None
        await write_events(conn.queue, conn.channel)

    async def _read(self, conn: Conn) -> None:
        assert conn.channel is not None
        reason = "connection lost"
        try:
            while True:
                message = await conn.channel.recv()
                try:
                    event = json.loads(message)
                except ValueError:
                    log.warning("ignoring a GPT-Live event that is not JSON")
                    continue
                if not isinstance(event, dict):
                    continue
                out = conn.proto.receive(event)
                self._flush(conn)
                if not conn.ready.done() and (conn.proto.started or conn.proto.setup_error):
                    conn.ready.set_result(None)
                self._dispatch(conn, out)
                if conn.proto.closed_reason is not None:
                    reason = f"live session closed: {conn.proto.closed_reason}"
                    break
        except ChannelClosed as exc:
            reason = exc.reason
        except Exception as exc:  # a bug must end the session visibly, not hang it
            log.exception("GPT-Live reader failed")
            reason = f"internal error: {type(exc).__name__}"
        self._conn_ended(conn, reason)

    def _dispatch(self, conn: Conn, events: list[ai.AIEvent]) -> None:
        for event in events:
            if isinstance(event, ai.Closed):
                continue  # reported by _conn_ended (the renewal may take over)
            if isinstance(event, ai.UsageUpdated):
                self._usage = self._usage + event.usage  # every session's seconds count
                if self._closed:
                    continue
            elif conn is not self._conn or self._closed:
                continue
            self._events.put_nowait(event)

    def _conn_ended(self, conn: Conn, reason: str) -> None:
        conn.ended.set()
        if not conn.ready.done():
            conn.ready.set_exception(AIError(f"GPT-Live session ended during set-up: {reason}"))
            conn.ready.exception()
        if conn.closing or self._closed or conn is not self._conn:
            return
        if conn.proto.closed_reason == "expired" and self.auto_renew:
            self._tasks.append(asyncio.create_task(self._renew_or_fail(), name="live-renew"))
            return
        log.warning("GPT-Live session lost: %s", reason)
        self._fail(reason, retry=conn.proto.retry_helps)

    def _fail(self, reason: str, *, retry: bool = True) -> None:
        self._closed = True
        self._cancel_tasks()
        self._events.put_nowait(ai.Closed(reason, error=True, retry=retry))

    async def _drop(self, conn: Conn, *, graceful: bool = False) -> None:
        conn.closing = True
        try:
            if graceful and conn.channel is not None and conn.proto.started:
                conn.proto.close()
                self._flush(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conn.ended.wait(), self.close_timeout)
            for task in conn.tasks:
                task.cancel()
            await self._close_channel(conn)
        except asyncio.CancelledError:
            # the caller gave up on the close (its own bound is shorter): leave nothing behind
            for task in conn.tasks:
                task.cancel()
            abort = getattr(conn.channel, "abort", None)
            if abort is not None:
                abort()
            raise
        for task in conn.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    # ------------------------------------------------------------ AISession API

    async def start(self) -> None:
        """Connect, send ``session.start``, return at ``session.started``. Raises AIError."""
        if self._started:
            raise AIError("GPT-Live session already started")
        self._started = True
        try:
            conn = await self._open(self._config)
        except BaseException:
            self._closed = True
            raise
        if self._closed:  # closed while starting
            await self._drop(conn, graceful=True)
            raise AIError("GPT-Live session closed while starting")
        self._conn = conn
        self._last_feed = time.monotonic()
        early, self._early = self._early, []
        for chunk in early:
            self._feed(conn, chunk)
        self._tasks.append(asyncio.create_task(self._ticker(), name="live-ticker"))
        if self.auto_renew:
            self._tasks.append(asyncio.create_task(self._renew_when_due(), name="live-renew"))

    def send_audio(self, audio: bytes) -> None:
        """Append caller audio (start format) at once; held until the session started."""
        if self._closed:
            return
        conn = self._conn
        if conn is None:
            if len(self._early) < 500:
                self._early.append(audio)
            return
        self._last_feed = time.monotonic()
        self._feed(conn, audio)

    def _feed(self, conn: Conn, audio: bytes) -> None:
        out = conn.proto.append_audio(audio)
        self._flush(conn)
        self._dispatch(conn, out)

    async def _ticker(self) -> None:
        """Silence for the stretches without caller frames: the clock must keep moving."""
        frame = silence_frame(self._config.input_format, FRAME_MS)
        step = FRAME_MS / 1000.0
        gap = self.silence_after_ms / 1000.0
        while True:
            await asyncio.sleep(step)
            conn = self._conn
            if conn is None or self._closed:
                continue
            now = time.monotonic()
            if now - self._last_feed < gap:
                continue
            n = min(int((now - self._last_feed) / step), 50)
            for _ in range(n):
                self._feed(conn, frame)
            self.silence_frames += n
            self._last_feed += n * step

    def events(self) -> AsyncIterator[ai.AIEvent]:
        """The events of the session, ending after :class:`~w3sipagent.ai.session.Closed`."""
        return ai.events_until_closed(self._events)

    def _act(self) -> Conn | None:
        conn = self._conn
        if conn is None:
            raise AIError("GPT-Live session not started")
        return None if self._closed else conn

    async def create_response(self, instructions: str | None = None) -> None:
        """With ``instructions``: tell the model what to do now (the greeting). Without:
        nothing, the model decides when to speak."""
        conn = self._act()
        if conn is not None and instructions:
            conn.proto.instructions(instructions)
            self._flush(conn)

    async def add_message(self, text: str, role: Literal["user", "system"] = "system") -> None:
        """Silent context for the model (``session.thinking.append``)."""
        conn = self._act()
        if conn is not None:
            conn.proto.thinking(text if role == "system" else f"The caller says: {text}")
            self._flush(conn)

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Nothing: GPT-Live has no truncate (the model owns barge-in)."""

    async def cancel_response(self) -> None:
        """Nothing: GPT-Live has no cancel (the model stops by itself)."""

    async def send_tool_result(self, call_id: str, output: str, *, respond: bool = True) -> None:
        """Answer a function call of the delegated run (``response.create`` after the last)."""
        conn = self._act()
        if conn is not None:
            if not conn.proto.tool_result(call_id, output, respond=respond):
                log.debug("dropping the result of unknown call %s", call_id)
            self._flush(conn)

    async def close(self) -> None:
        """``session.close`` and close; idempotent. Emits Closed(error=False)."""
        if self._closed:
            conn = self._conn  # lost (Closed already emitted): its writer still waits
            if conn is not None and not conn.closing:
                await self._drop(conn)
            return
        self._closed = True
        self._cancel_tasks()
        conn = self._conn
        if conn is not None:
            await self._drop(conn, graceful=True)
        self._events.put_nowait(ai.Closed("closed by client", error=False))

    # ------------------------------------------------------------ renewal

    async def _renew_when_due(self) -> None:
        while not self._closed:
            conn = self._conn
            exp = conn.proto.expires_at if conn is not None else None
            if exp is None:
                return
            due = exp - self.renew_margin_s
            await asyncio.sleep(max(0.0, due - time.time()))
            while conn is not None and not conn.proto.idle and time.time() < exp - 2.0:
                await asyncio.sleep(0.1)  # renew between turns when there is one
            try:
                await self.renew()
            except AIError as exc:
                log.warning("GPT-Live renewal failed: %s", exc)
                await asyncio.sleep(min(5.0, max(0.1, exp - time.time() - 1.0)))

    async def _renew_or_fail(self) -> None:
        try:
            await self.renew()
        except AIError as exc:
            if not self._closed:
                self._fail(f"session expired and renewal failed: {exc}")

    async def renew(self) -> None:
        """Start a new session seeded with the transcript (≤ 128 messages) and switch to it.

        Runs by itself before ``expires_at`` (and when the server expired the session);
        raises AIError if the new session cannot be started."""
        old = self._conn
        if old is None or self._closed:
            raise AIError("GPT-Live session not running")
        new = await self._open(replace(self._config, history=old.proto.history()))
        if self._closed:
            await self._drop(new, graceful=True)
            return
        self._conn = new
        self.renewals += 1
        log.info("GPT-Live session renewed (%d messages re-seeded)", len(new.proto.history()))
        await self._drop(old, graceful=not old.ended.is_set())
