"""Barge-in policy: when the caller's speech cuts the agent, and what the cut does (pure).

:class:`BargeInPolicy` is told what happens (a response started or ended, the caller
started or stopped speaking, whether the agent is audible) and answers with decisions;
it reads no clock, arms no timer and sends nothing. The turn handler
(:mod:`w3sipagent.agent.turns`) carries the decisions out.

- With ``enabled`` off (``BridgeOptions.barge_in``) caller speech never cuts the agent.
- Caller speech while the agent is audible cuts at once (:attr:`Reaction.CUT`), or, with
  a guard of ``guard_ms``, only if the caller is still speaking when the guard elapses
  (:attr:`Reaction.GUARD`; a speech stop before that is a false interruption).
- A cut (:meth:`BargeInPolicy.cut`) truncates the item being heard at the milliseconds
  actually handed to the pacer, unless it was heard completely or the back end truncates
  by itself; it cancels the active response unless the back end stops it by itself; the
  late audio of the cut responses is dropped from then on.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from w3sipagent.agent.playout import PlayoutItem

__all__ = ["BargeIn", "BargeInPolicy", "Cut", "Reaction"]


@dataclass(slots=True)
class BargeIn:
    """One cut of the agent's audio (for tests, the CDR and the benchmark)."""

    speech_at: float
    """Clock time SpeechStarted reached the bridge."""
    cut_at: float
    """Clock time the playout queue was cleared."""
    item_id: str | None
    heard_ms: int | None
    """audio_end_ms sent with the truncate (None: no truncate)."""
    dropped_frames: int
    cancelled: bool


class Reaction(enum.Enum):
    """What to do when the caller starts speaking."""

    IGNORE = "ignore"
    """The agent is not audible (or a guard already runs)."""
    CUT = "cut"
    """Cut the agent now."""
    GUARD = "guard"
    """Arm the guard; ask :meth:`BargeInPolicy.guard_elapsed` when it fires."""


@dataclass(frozen=True, slots=True)
class Cut:
    """What a cut does: truncate ``item_id`` at ``heard_ms`` (None: no truncate) and
    cancel ``response_id`` (None: no cancel)."""

    item_id: str | None
    heard_ms: int | None
    response_id: str | None


class BargeInPolicy:
    """Decides barge-in for one call (see the module docstring).

    ``guard_ms``: the caller must speak this long before the agent is cut (0: at once).
    ``backend_cancels``: the back end stops its own response on caller speech.
    ``memory``: how many cut response ids are remembered to drop their late audio.
    ``enabled``: False: caller speech never cuts the agent (``BridgeOptions.barge_in``).
    """

    def __init__(
        self,
        guard_ms: int = 0,
        backend_cancels: bool = True,
        memory: int = 64,
        enabled: bool = True,
    ) -> None:
        self.guard_ms = guard_ms
        self.backend_cancels = backend_cancels
        self.enabled = enabled
        self._active: str | None = None
        self._dropped: deque[str] = deque(maxlen=memory)
        self._speaking = False
        self._guarding = False

    @property
    def active_response(self) -> str | None:
        """The response the back end is producing, if any."""
        return self._active

    @property
    def caller_speaking(self) -> bool:
        return self._speaking

    @property
    def guarding(self) -> bool:
        """A guard runs: the caller started speaking over the agent, not yet long enough."""
        return self._guarding

    # ------------------------------------------------------------ responses

    def response_started(self, response_id: str) -> None:
        self._active = response_id

    def response_done(self, response_id: str) -> None:
        if self._active == response_id:
            self._active = None

    def forget_response(self) -> None:
        """The session was lost: no response is active any more."""
        self._active = None

    def dropped(self, response_id: str) -> bool:
        """Audio of ``response_id`` must be dropped (it was cut)."""
        return response_id in self._dropped

    # ------------------------------------------------------------ caller speech

    def speech_started(self, agent_audible: bool) -> Reaction:
        """The caller started speaking."""
        self._speaking = True
        if not agent_audible or not self.enabled:
            return Reaction.IGNORE
        if self.guard_ms > 0:
            if self._guarding:
                return Reaction.IGNORE
            self._guarding = True
            return Reaction.GUARD
        return Reaction.CUT

    def guard_elapsed(self, agent_audible: bool) -> bool:
        """The guard ran out while the caller kept speaking: True to cut now."""
        self._guarding = False
        return agent_audible

    def speech_stopped(self) -> bool:
        """The caller stopped speaking; True when that ends a false interruption (the
        guard was still running: the caller did not speak long enough to cut)."""
        self._speaking = False
        if self._guarding:
            self._guarding = False
            return True
        return False

    # ------------------------------------------------------------ the cut

    def cut(self, item: PlayoutItem | None, truncates_itself: bool) -> Cut:
        """Cut the agent: ``item`` is the one being heard (``PlayoutQueue.current()``,
        taken before the queue is cleared). The cut responses' late audio is dropped."""
        rid = self._active
        for r in (rid, item.response_id if item is not None else None):
            if r is not None and r not in self._dropped:
                self._dropped.append(r)
        heard: int | None = None
        if item is not None and not item.finished and not truncates_itself:
            heard = min(item.sent_ms, item.queued_ms)
        cancel = rid if rid is not None and not self.backend_cancels else None
        return Cut(item.item_id if item is not None else None, heard, cancel)

    def cancelled(self, response_id: str) -> None:
        """The bridge cancelled ``response_id``."""
        if self._active == response_id:
            self._active = None
