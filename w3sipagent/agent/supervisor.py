"""The AI session supervisor: connect, take over an early session, reconnect, give up.

:class:`SessionSupervisor` opens the call's AI session (or takes the one started at
admission, when its configuration is the one the negotiated codec needs), hands it the
caller audio held meanwhile, and makes it live. It reads the session's events: failures
(a fatal error, a connection lost, the event stream ending) are its own business, the
rest goes to the bridge. A session that cannot start, drops or fails fatally is replaced
``reconnect_attempts`` times within ``reconnect_timeout``, re-seeded with the transcript
so far; otherwise the bridge's fallback runs. It sees the AI only through
:class:`~w3sipagent.ai.session.AISession`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from w3sipagent.agent.lifecycle import BridgeLife, LiveSlot
from w3sipagent.agent.media import BridgeMedia
from w3sipagent.agent.options import BridgeOptions, EarlySession, SessionFactory
from w3sipagent.agent.turns import Turns
from w3sipagent.ai.session import (
    AIErrorEvent,
    AIEvent,
    AISession,
    AISessionConfig,
    Closed,
    HistoryItem,
)
from w3sipagent.records.cdr import CallRecord

__all__ = ["SessionSupervisor", "close_early"]

log = logging.getLogger("w3sipagent.agent.bridge")

EventHandler = Callable[[AISession, AIEvent], Awaitable[None]]
"""Takes the live session's events other than failures."""


async def close_early(early: EarlySession, timeout: float) -> None:
    """Stop an early AI session nobody will use: its start cancelled, the session closed
    (never raises; each step bounded by ``timeout``)."""
    early.start.cancel()
    await asyncio.wait({early.start}, timeout=timeout)
    try:
        await asyncio.wait_for(early.session.close(), timeout)
    except Exception as exc:
        log.debug("closing an early AI session: %r", exc)


class SessionSupervisor:
    """The AI sessions of one call (see the module docstring).

    ``on_event``: the live session's events (not its failures); ``on_unavailable``: runs
    the fallback, given why no session can take the call.
    """

    def __init__(
        self,
        factory: SessionFactory,
        config: AISessionConfig,
        options: BridgeOptions,
        cdr: CallRecord,
        *,
        call_id: str,
        media: BridgeMedia,
        turns: Turns,
        live: LiveSlot,
        life: BridgeLife,
        on_event: EventHandler,
        on_unavailable: Callable[[str], Awaitable[None]],
        early: EarlySession | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self.sessions: list[AISession] = []
        """Every session this call opened, in order."""
        self._factory = factory
        self._cdr = cdr
        self._call_id = call_id
        self._media = media
        self._turns = turns
        self._live = live
        self._life = life
        self._on_event = on_event
        self._on_unavailable = on_unavailable
        self._early = early
        self._reconnects_left = options.reconnect_attempts
        self._recovering = False

    # ------------------------------------------------------------ opening

    async def open(self) -> bool:
        """The call's first session: the early one when it fits, else a new one; retried
        up to ``reconnect_attempts`` times. True once a session is live."""
        opts = self.options
        early, self._early = self._early, None
        if early is not None and early.session.config == self.config:
            ok = await self._go_live(early.session, early.start, opts.connect_timeout)
        else:
            if early is not None:  # the negotiated codec needs another format
                await close_early(early, opts.close_timeout)
            ok = await self._connect(history=(), timeout=opts.connect_timeout)
        while not ok and self._reconnects_left > 0 and not self._life.ended:
            self._reconnects_left -= 1
            self._cdr.add_event("ai_retry")
            ok = await self._connect(history=(), timeout=opts.reconnect_timeout)
        return ok

    async def greet(self, instructions: str | None) -> None:
        """The agent speaks first, when there are ``instructions`` and a live session."""
        s = self._live.session
        if instructions and s is not None:
            await s.create_response(instructions)

    async def _connect(self, history: tuple[HistoryItem, ...], timeout: float) -> bool:
        """Open and start a session; on success it goes live with the held audio first."""
        config = replace(self.config, history=history) if history else self.config
        try:
            session = self._factory(config)
        except Exception as exc:
            log.error("call %s: cannot create the AI session: %s", self._call_id, exc)
            self._cdr.add_event("ai_connect_failed", error=str(exc)[:200])
            return False
        return await self._go_live(session, session.start(), timeout)

    async def _go_live(self, session: AISession, starting: Awaitable[None], timeout: float) -> bool:
        """Wait for ``session`` to start; then hand over the held audio and make it live."""
        self.sessions.append(session)
        try:
            await asyncio.wait_for(starting, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else str(exc)[:200]
            log.warning("call %s: AI session did not start: %s", self._call_id, what)
            self._cdr.add_event("ai_connect_failed", error=what)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), self.options.close_timeout)
            return False
        if self._life.ended:
            return False
        self._media.hand_over(session)  # in order, before any newer frame (no yield here)
        self._live.session = session
        self._life.spawn(self._pump(session), "ai-events")
        return True

    def history(self) -> tuple[HistoryItem, ...]:
        """The conversation so far (final transcripts), to re-seed a new session."""
        items = [
            HistoryItem("user" if e.speaker == "caller" else "assistant", e.text)
            for e in self._cdr.transcript
            if e.text
        ]
        return tuple(items[-self.options.history_items :])

    # ------------------------------------------------------------ events and failures

    async def _pump(self, session: AISession) -> None:
        async for ev in session.events():
            if not self._live.is_live(session):
                return
            if isinstance(ev, AIErrorEvent):
                self._cdr.add_event(
                    "ai_error", code=ev.code, message=ev.message[:200], fatal=ev.fatal
                )
                if ev.fatal:
                    self._life.spawn(self.failed(session, f"{ev.code}: {ev.message}"), "ai-failed")
            elif isinstance(ev, Closed):
                if ev.error:
                    self._life.spawn(self.failed(session, ev.reason), "ai-failed")
                return
            else:
                await self._on_event(session, ev)
        if self._live.is_live(session) and not self._life.ended:
            await self.failed(session, "event stream ended")

    async def failed(self, session: AISession, reason: str) -> None:
        """The live ``session`` is lost: reconnect with the history, else fall back."""
        if self._life.ended or self._recovering or not self._live.is_live(session):
            return
        self._recovering = True
        log.warning("call %s: AI session lost: %s", self._call_id, reason)
        self._cdr.add_event("ai_lost", reason=reason[:200])
        was_busy = self._turns.engaged
        self._live.session = None
        self._turns.reset()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.close(), self.options.close_timeout)
        while self._reconnects_left > 0 and not self._life.ended:
            self._reconnects_left -= 1
            if await self._connect(self.history(), self.options.reconnect_timeout):
                self._recovering = False
                self._cdr.add_event("ai_reconnected")
                instr = self.options.resume_instructions
                live = self._live.session
                if was_busy and instr and live is not None:
                    await live.create_response(instr)
                return
        self._recovering = False
        await self._on_unavailable(reason)

    async def close_all(self) -> None:
        """Close every session this call opened (the bridge ends), and the early one when
        the bridge ended before taking it."""
        self._live.session = None
        early, self._early = self._early, None
        if early is not None:
            await close_early(early, self.options.close_timeout)
        for s in self.sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.close(), self.options.close_timeout)
