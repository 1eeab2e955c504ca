"""Call limits: the maximum duration and the caller's silence (pure).

:class:`CallWatchdog` is given clock times: when the call started, each sign of activity
(:meth:`CallWatchdog.touch`), and at each housekeeping tick whether the conversation is
busy (someone speaks, the agent plays or answers, a transfer or hold runs, no session is
live). It answers with the reason to end the call, if any.
"""

from __future__ import annotations

__all__ = ["CallWatchdog"]


class CallWatchdog:
    """``max_duration``: seconds from :meth:`start` (None: no limit). ``silence_timeout``:
    seconds without activity while nothing is busy (None: not checked)."""

    def __init__(self, max_duration: float | None, silence_timeout: float | None) -> None:
        self.max_duration = max_duration
        self.silence_timeout = silence_timeout
        self._t0 = 0.0
        self._last_activity = 0.0

    @property
    def last_activity(self) -> float:
        return self._last_activity

    def start(self, now: float) -> None:
        """The bridge started at ``now``."""
        self._t0 = self._last_activity = now

    def touch(self, now: float) -> None:
        """Activity at ``now`` (caller speech, a key, the end of a transfer)."""
        self._last_activity = now

    def check(self, now: float, busy: bool) -> str | None:
        """At a housekeeping tick: ``"max_duration"``, ``"caller_silence"`` or None."""
        if self.max_duration is not None and now - self._t0 >= self.max_duration:
            return "max_duration"
        if busy:
            self._last_activity = now
        elif self.silence_timeout is not None and now - self._last_activity >= self.silence_timeout:
            return "caller_silence"
        return None
