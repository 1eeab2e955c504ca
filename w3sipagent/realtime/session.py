"""The transport-neutral runner of an OpenAI Realtime (GA) session.

Slightly over 500 lines: one session's lifecycle (start, reconnect, close) reads best as one unit.

:class:`RealtimeSessionBase` runs a :class:`~w3sipagent.realtime.protocol.RealtimeProtocol`
over a :class:`Channel` (a reader task, a writer queue), implements the
:class:`~w3sipagent.ai.session.AISession` API and renews the session before the
60-minute limit. Transports subclass it: :class:`~w3sipagent.realtime.client.RealtimeClient`
(WebSocket) and :class:`~w3sipagent.realtime.webrtc.RealtimeWebRTCClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Literal

from w3sipagent.ai import session as ai
from w3sipagent.ai.channel import (
    Channel,
    ChannelClosed,
    SessionLink,
    close_channel,
    write_events,
)
from w3sipagent.errors import AIError
from w3sipagent.realtime import events as ev
from w3sipagent.realtime.protocol import RealtimeProtocol

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-realtime"


class RealtimeRefused(AIError):
    """The service refused the session at set-up: ``code`` (``invalid_api_key``,
    ``invalid_model``, ``missing_model``, ``beta_api_shape_disabled``, ``invalid_value``…)
    and ``param`` say why. The message holds no key, not even the masked fragment."""

    def __init__(self, message: str, code: str | None, param: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


_SETUP_HINTS = {
    "invalid_api_key": "check the API key",
    "invalid_model": "check the agent's model",
    "missing_model": "check the agent's model",
    "beta_api_shape_disabled": "the beta interface is gone: use the GA one",
}


class Link(SessionLink[RealtimeProtocol]):
    """One connection of a session: protocol state, channel, writer queue, tasks; whether
    the server expired it and the timer bounding the wait for an automatic response."""

    def __init__(self, proto: RealtimeProtocol) -> None:
        super().__init__(proto)
        self.expired = False
        self.auto_timer: asyncio.TimerHandle | None = None


class RealtimeSessionBase:
    """An :class:`~w3sipagent.ai.session.AISession` over some Realtime transport.

    Subclasses provide :meth:`_open_channel`. Timers: ``session_timeout`` for
    session.updated, ``close_timeout`` for closing, ``renew_margin_s`` before
    ``expires_at`` to start looking for an idle moment to renew (no response, caller
    silent), ``renew_deadline_s`` before it to renew regardless; never more often than
    ``renew_min_interval_s``. ``auto_response_wait_s``: how long a ``create_response()``
    made just after the caller's turn ended waits for the server's own response to the
    turn before it is sent anyway.
    """

    _wire_audio = True
    _send_session_update = True

    def __init__(
        self,
        config: ai.AISessionConfig,
        *,
        session_timeout: float = 10.0,
        close_timeout: float = 2.0,
        auto_renew: bool = True,
        renew_margin_s: float = 300.0,
        renew_deadline_s: float = 15.0,
        renew_min_interval_s: float = 60.0,
        idle_poll_s: float = 0.1,
        min_commit_ms: int = 100,
        max_held_audio_ms: int = 10_000,
        history_limit: int = 20,
        auto_response_wait_s: float = 2.0,
        append_ms: int = 0,
    ) -> None:
        self._config = config
        self.auto_response_wait_s = auto_response_wait_s
        self.session_timeout = session_timeout
        self.close_timeout = close_timeout
        self.auto_renew = auto_renew
        self.renew_margin_s = renew_margin_s
        self.renew_deadline_s = renew_deadline_s
        self.renew_min_interval_s = renew_min_interval_s
        self._last_attempt = 0.0  # wall clock of the last session start or renewal attempt
        self.idle_poll_s = idle_poll_s
        self._proto_options = {
            "min_commit_ms": min_commit_ms,
            "max_held_audio_ms": max_held_audio_ms,
            "history_limit": history_limit,
            "append_ms": append_ms,
        }
        self._events: asyncio.Queue[ai.AIEvent] = asyncio.Queue()
        self._link: Link | None = None
        self._audio_link: Link | None = None
        self._early_audio: list[bytes] = []  # before start(); the protocol holds it after
        self.max_early_chunks = max(1, max_held_audio_ms // 20)
        self._started = False
        self._closed = False
        self._renewing = False
        self._renew_task: asyncio.Task[None] | None = None
        self._usage = ai.Usage()
        self.renewals = 0

    # ------------------------------------------------------------ properties

    @property
    def config(self) -> ai.AISessionConfig:
        return self._config

    @property
    def truncates_itself(self) -> bool:
        return False

    @property
    def append_ms(self) -> int:
        """Caller audio is sent in appends of at least this many ms (0: every chunk)."""
        return int(self._proto_options["append_ms"])

    @property
    def usage(self) -> ai.Usage:
        """Token usage of all responses so far (across renewals)."""
        return self._usage

    @property
    def history(self) -> tuple[ai.HistoryItem, ...]:
        """The recent conversation as text, to seed a replacement session."""
        return self._link.proto.history() if self._link else self._config.history

    @property
    def server_session(self) -> dict[str, Any] | None:
        """The effective session object the server last reported (session.created/updated)."""
        link = self._link
        return link.proto.session.raw if link and link.proto.session else None

    @property
    def expires_at(self) -> int | None:
        """Unix time at which the server will end the current session."""
        return self._link.proto.expires_at if self._link else None

    # ------------------------------------------------------------ transport hooks

    async def _open_channel(self, link: Link) -> Channel:
        raise NotImplementedError

    def _send_audio_on(self, link: Link, audio: bytes) -> None:
        link.proto.append_audio(audio)
        self._flush(link)

    def _on_ready(self, link: Link) -> None:
        """Called once the link's session is configured (WebRTC feeds held audio here)."""

    def _observe(self, link: Link, event: ev.ServerEvent) -> None:
        """Sees every server event before the protocol does (WebRTC audio gating)."""

    async def _close_channel(self, link: Link) -> None:
        await close_channel(link.channel, self.close_timeout)

    # ------------------------------------------------------------ plumbing

    def _new_link(self, config: ai.AISessionConfig) -> Link:
        proto = RealtimeProtocol(config, wire_audio=self._wire_audio, **self._proto_options)
        return Link(proto)

    def _flush(self, link: Link) -> None:
        for event in link.proto.take_outgoing():
            link.queue.put_nowait(event.to_json())

    def _emit(self, event: ai.AIEvent) -> None:
        if isinstance(event, ai.ResponseDone) and event.usage is not None:
            self._usage = self._usage + event.usage
        self._events.put_nowait(event)

    def _dispatch(self, link: Link, event: ai.AIEvent) -> None:
        """Forward an AI event of ``link`` if it is the current link."""
        if isinstance(event, ai.AIErrorEvent) and event.code == "session_expired":
            link.expired = True
            if self.auto_renew and link is self._link and not self._closed:
                log.info("Realtime session expired; renewing")
                self._start_renewal(force=True)
                return
        if link is self._link and not self._closed:
            self._emit(event)

    async def _write(self, link: Link) -> None:
        assert link.channel is not None
        await write_events(link.queue, link.channel)

    async def _read(self, link: Link) -> None:
        assert link.channel is not None
        reason = "connection closed"
        try:
            while True:
                text = await link.channel.recv()
                try:
                    event = ev.parse_server_event(text)
                except ev.EventParseError as exc:
                    log.warning("ignoring malformed Realtime event: %s", exc)
                    continue
                if event is None:
                    continue
                self._observe(link, event)
                was_ready = link.proto.ready
                out = link.proto.receive(event)
                self._flush(link)
                if link.proto.ready and not was_ready:
                    self._on_ready(link)
                if not link.ready.done() and (link.proto.ready or link.proto.setup_error):
                    link.ready.set_result(None)
                self._watch_auto_response(link)
                for a in out:
                    self._dispatch(link, a)
        except ChannelClosed as exc:
            reason = exc.reason
        except Exception as exc:  # a bug must end the session visibly, not hang it
            log.exception("Realtime reader failed")
            reason = f"internal error: {type(exc).__name__}"
        self._link_ended(link, reason)

    def _watch_auto_response(self, link: Link) -> None:
        """Bound the wait for the server's response to a caller turn (see the protocol)."""
        if link.proto.awaiting_auto_response:
            if link.auto_timer is None:
                link.auto_timer = asyncio.get_running_loop().call_later(
                    self.auto_response_wait_s, self._auto_response_overdue, link
                )
        elif link.auto_timer is not None:
            link.auto_timer.cancel()
            link.auto_timer = None

    def _auto_response_overdue(self, link: Link) -> None:
        link.auto_timer = None
        if link.closing or self._closed:
            return
        log.debug("no response.created after the caller's turn; not waiting any longer")
        link.proto.auto_response_overdue()
        self._flush(link)

    def _link_ended(self, link: Link, reason: str) -> None:
        if not link.ready.done():
            link.ready.set_exception(AIError(f"Realtime session ended during set-up: {reason}"))
            link.ready.exception()  # retrieved: no "never retrieved" warning
        if link.closing or self._closed or link is not self._link:
            return
        if link.expired and self.auto_renew:
            return  # the renewal takes over (and reports Closed if it fails)
        log.warning("Realtime session lost: %s", reason)
        self._closed = True
        self._cancel_renewal()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._emit(ai.Closed(reason, error=True))

    async def _open(self, link: Link) -> None:
        """Connect ``link``, configure it and wait for the session to be ready."""
        link.channel = await self._open_channel(link)
        link.proto.configure(send_update=self._send_session_update)
        link.tasks = [
            asyncio.create_task(self._read(link), name="realtime-reader"),
            asyncio.create_task(self._write(link), name="realtime-writer"),
        ]
        self._flush(link)
        try:
            await asyncio.wait_for(asyncio.shield(link.ready), self.session_timeout)
        except TimeoutError:
            await self._drop(link)
            raise AIError(
                f"no session.updated from the Realtime server within {self.session_timeout:g} s"
            ) from None
        except AIError:
            await self._drop(link)
            raise
        err = link.proto.setup_error
        if err is not None:
            await self._drop(link)
            where = f" ({err.param})" if err.param else ""
            hint = f" ({_SETUP_HINTS[err.code]})" if err.code in _SETUP_HINTS else ""
            raise RealtimeRefused(
                f"Realtime session rejected: {err.code or err.type}{where}: {err.message}{hint}",
                err.code,
                err.param,
            )

    async def _drop(self, link: Link) -> None:
        link.closing = True
        if link.auto_timer is not None:
            link.auto_timer.cancel()
        for task in link.tasks:
            task.cancel()
        await self._close_channel(link)
        for task in link.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------ AISession API

    async def start(self) -> None:
        """Connect and configure; returns once audio can be sent. Raises AIError."""
        if self._started:
            raise AIError("Realtime session already started")
        self._started = True
        link = self._new_link(self._config)
        self._link = self._audio_link = link
        for chunk in self._early_audio:
            self._send_audio_on(link, chunk)
        self._early_audio.clear()
        try:
            await self._open(link)
        except BaseException:
            # failed or cancelled (a caller who left): the link goes too, else its reader,
            # writer and socket outlive the session (close() returns at once once closed)
            self._closed = True
            if not link.closing:
                await self._drop(link)
            raise
        self._last_attempt = time.time()
        self._schedule_renewal()

    def send_audio(self, audio: bytes) -> None:
        """Append caller audio (input format) at once; held until the session is ready."""
        if self._closed:
            return
        link = self._audio_link
        if link is None:
            if len(self._early_audio) < self.max_early_chunks:
                self._early_audio.append(audio)
            return
        self._send_audio_on(link, audio)

    def events(self) -> AsyncIterator[ai.AIEvent]:
        """The events of the session, ending after :class:`~w3sipagent.ai.session.Closed`."""
        return ai.events_until_closed(self._events)

    def _act(self, action: Callable[[RealtimeProtocol], object]) -> None:
        link = self._link
        if link is None:
            raise AIError("Realtime session not started")
        if self._closed:
            log.debug("ignoring an action on a closed Realtime session")
            return
        action(link.proto)
        self._flush(link)

    async def create_response(self, instructions: str | None = None) -> None:
        """Ask the agent to speak now; waits for the active response to end first."""
        self._act(lambda p: p.create_response(instructions))

    async def add_message(self, text: str, role: Literal["user", "system"] = "system") -> None:
        """Add a text item to the conversation."""
        self._act(lambda p: p.add_message(text, role))

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Tell the server the caller heard only ``audio_end_ms`` of an agent item (clamped)."""
        self._act(lambda p: p.truncate(item_id, audio_end_ms))

    async def cancel_response(self) -> None:
        """Stop the active response, if any; its late deltas are dropped."""
        self._act(lambda p: p.cancel_response())

    async def send_tool_result(self, call_id: str, output: str, *, respond: bool = True) -> None:
        """Return a tool's output; with ``respond`` the agent speaks about it."""
        self._act(lambda p: p.send_tool_result(call_id, output, respond=respond))

    async def close(self) -> None:
        """End the session; idempotent. Emits Closed(error=False) if nothing else did."""
        if self._closed:
            return
        self._closed = True
        self._cancel_renewal()
        link = self._link
        if link is not None:
            await self._drop(link)
        self._events.put_nowait(ai.Closed("closed by client", error=False))

    # ------------------------------------------------------------ renewal

    def _cancel_renewal(self) -> None:
        task = self._renew_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._renew_task = None

    def _schedule_renewal(self) -> None:
        if self.auto_renew and self.expires_at is not None and not self._closed:
            self._renew_task = asyncio.create_task(self._renew_when_due(), name="realtime-renew")

    def _start_renewal(self, *, force: bool) -> None:
        if self._renewing:
            return
        self._cancel_renewal()
        self._renew_task = asyncio.create_task(self._renew_now(), name="realtime-renew")

    async def _renew_when_due(self) -> None:
        expires_at = self.expires_at
        assert expires_at is not None
        due = max(expires_at - self.renew_margin_s, self._last_attempt + self.renew_min_interval_s)
        await asyncio.sleep(max(0.0, due - time.time()))
        while self._link is not None and not self._link.proto.idle:
            if time.time() >= expires_at - self.renew_deadline_s:
                break
            await asyncio.sleep(self.idle_poll_s)
        await self._renew_now()

    async def _renew_now(self) -> None:
        try:
            await self.renew()
        except AIError as exc:
            log.warning("Realtime session renewal failed: %s", exc)
            old = self._link
            if old is not None and old.expired and not self._closed:
                self._closed = True
                await self._drop(old)
                self._emit(ai.Closed(f"session expired and renewal failed: {exc}", error=True))
            elif not self._closed:
                self._schedule_renewal()  # retry after renew_min_interval_s

    async def renew(self) -> None:
        """Open a new session seeded with the recent conversation and switch to it.

        Runs by itself before ``expires_at`` (and on ``session_expired``) when
        ``auto_renew``; callable by hand. Item ids of the old session are gone
        afterwards. Raises AIError if the new session cannot be opened.
        """
        old = self._link
        if old is None or self._closed:
            raise AIError("Realtime session not running")
        if self._renewing:
            return
        self._renewing = True
        self._last_attempt = time.time()
        try:
            new = self._new_link(replace(self._config, history=old.proto.history()))
            if old.expired:
                self._audio_link = new  # held until the new session is ready
            await self._open(new)
            if self._closed:
                await self._drop(new)
                return
            self._link = self._audio_link = new
            self.renewals += 1
            log.info("Realtime session renewed (%d items re-seeded)", len(new.proto.config.history))
        finally:
            self._renewing = False
        await self._drop(old)
        self._schedule_renewal()


# ---------------------------------------------------------------- WebSocket
