"""The life of one bridge: its tasks, the live AI session, and how the call ends.

The parts of a bridge share three small things, each owned here and reached through
methods:

- :class:`BridgeLife`: the bridge's tasks (a failed task fails the call) and the call's
  outcome (:class:`Outcome`, the first decision wins and ends the bridge);
- :class:`LiveSlot`: the AI session that is live now (None while connecting,
  reconnecting or in fallback); only the session supervisor sets it;
- :func:`outcome_of_call_end`: the outcome of a call that ended on its own (pure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from w3sipagent.ai.session import AISession
from w3sipagent.asyncio.call_api import CallEnded
from w3sipagent.records.cdr import Disposition, HangupSide

__all__ = [
    "ENDED_TRANSFER",
    "BridgeLife",
    "LiveSlot",
    "Outcome",
    "outcome_of_call_end",
    "outcome_of_unhandled",
]

log = logging.getLogger("w3sipagent.agent.bridge")

ENDED_TRANSFER = ("succeeded", "accepted", "timed_out")
"""Transfer outcomes after which our leg is over."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the call ends: disposition, who hung up, reason, whether we must send the
    hangup ourselves, and the SIP code."""

    disposition: Disposition
    by: HangupSide | None
    reason: str
    hangup: bool = True
    sip_code: int | None = None


SHUTDOWN = Outcome(Disposition.SHUTDOWN, "system", "shutdown")


def outcome_of_call_end(ev: CallEnded) -> Outcome:
    """The outcome of a call that ended by itself (no hangup of ours is needed)."""
    reason = ev.reason
    disp: Disposition
    by: HangupSide
    if reason in ("remote_bye", "cancelled") or ev.by == "remote":
        disp, by = Disposition.CALLER_HANGUP, "caller"
    elif reason == "transferred":
        disp, by = Disposition.TRANSFERRED, "agent"
    elif reason == "rtp_timeout":
        disp, by = Disposition.TIMEOUT, "system"
    elif reason == "shutdown":
        disp, by = Disposition.SHUTDOWN, "system"
    elif reason == "local_hangup":
        disp, by = Disposition.COMPLETED, "agent"
    else:
        disp, by = Disposition.FAILED, "system"
    return Outcome(disp, by, reason, hangup=False, sip_code=ev.sip_code)


REFUSED_AFTER_ADMISSION = frozenset({"call_limit", "bad_sdp", "not_acceptable"})
"""Why the user agent refuses an INVITE the admission accepted (486, 400, 488)."""


def outcome_of_unhandled(ev: CallEnded) -> Outcome:
    """The outcome of an admitted call that never reached its bridge: refused after the
    admission (rejected), cancelled (caller), never ACKed (failed), RTP timeout, shutdown."""
    if ev.reason in REFUSED_AFTER_ADMISSION:
        return Outcome(
            Disposition.REJECTED, "system", ev.reason, hangup=False, sip_code=ev.sip_code
        )
    return outcome_of_call_end(ev)


def fallback_outcome(disposition: Disposition, events: list[dict[str, object]]) -> Disposition:
    """A call that went to the fallback and then ended by the caller is a fallback call."""
    if disposition is Disposition.CALLER_HANGUP and any(
        e.get("kind") == "fallback" for e in events
    ):
        return Disposition.FALLBACK
    return disposition


class LiveSlot:
    """The AI session the call talks to now."""

    def __init__(self) -> None:
        self.session: AISession | None = None

    def is_live(self, session: AISession) -> bool:
        return session is self.session


class BridgeLife:
    """The bridge's tasks and its outcome; :meth:`wait` returns once the outcome is decided."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ended: asyncio.Future[None] | None = None
        self._outcome: Outcome | None = None

    @property
    def ended(self) -> bool:
        """The call's outcome is decided."""
        return self._outcome is not None

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    def start(self) -> None:
        """Called once on the running loop before anything is spawned."""
        self._ended = asyncio.get_running_loop().create_future()

    async def wait(self) -> None:
        """Until the outcome is decided."""
        assert self._ended is not None, "start() first"
        await self._ended

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a bridge task: cancelled at the end, its failure fails the call."""
        task = asyncio.create_task(coro, name=f"bridge-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("bridge task %s failed: %r", task.get_name(), exc, exc_info=exc)
            self.finish(
                Outcome(Disposition.FAILED, "system", f"internal error: {type(exc).__name__}")
            )

    def finish(self, outcome: Outcome) -> None:
        """Decide the call's outcome (the first decision wins) and end the bridge."""
        if self._outcome is not None:
            return
        self._outcome = outcome
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def conclude(self) -> Outcome:
        """The final outcome: the one decided, else shutdown (cancelled from outside)."""
        if self._outcome is None:
            self._outcome = SHUTDOWN
        return self._outcome

    async def cancel_tasks(self) -> None:
        """Cancel every task but the current one and wait for them."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
