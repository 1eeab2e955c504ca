"""Per-turn latency: caller speech end → first agent RTP packet of the answer actually sent.

A turn opens when the back end reports the caller stopped speaking (``SpeechStopped``
reaches the bridge) and closes when the first frame of agent audio after it is handed to
the pacer. On the way the tracker notes when the response was created and when its first
audio delta arrived, so each turn breaks down into:

- ``to_response_ms``: speech stopped → response started (the back end's turn decision);
- ``to_first_delta_ms``: response started → first audio delta (model time to first audio);
- ``to_first_rtp_ms``: first delta → first RTP frame sent (the bridge and the pacer tick).

A caller who starts speaking again before any answer was heard abandons the turn.

A back end that sees the stages of a turn (the cascade) reports their clock times
(:class:`~w3sipagent.ai.session.TurnStages`); :meth:`TurnTiming.stages_ms` gives them in
ms from the caller's speech end, with the first RTP packet last.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TurnTiming:
    """Times (clock seconds) of one caller turn and the start of its answer."""

    speech_stopped_at: float
    response_started_at: float | None = None
    first_delta_at: float | None = None
    first_rtp_at: float | None = None
    stage_times: dict[str, float] = field(default_factory=dict)
    """Clock times of the back end's stages (``caller_speech_end``, ``end_of_turn``...)."""

    def stages_ms(self) -> dict[str, float]:
        """Each stage in ms from the caller's speech end, then ``first_rtp`` (empty when
        the back end reported no stages)."""
        t = dict(self.stage_times)
        if not t:
            return {}
        if self.first_rtp_at is not None:
            t["first_rtp"] = self.first_rtp_at
        origin = t.get("caller_speech_end", self.speech_stopped_at)
        return {k: round((v - origin) * 1000.0, 3) for k, v in t.items()}

    @property
    def total_ms(self) -> float | None:
        """Speech stopped → first RTP frame, in ms (None while open)."""
        if self.first_rtp_at is None:
            return None
        return (self.first_rtp_at - self.speech_stopped_at) * 1000.0

    def breakdown(self) -> dict[str, float | None]:
        """The parts of the turn, in ms (None for a step not seen)."""

        def span(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round((b - a) * 1000.0, 3)

        return {
            "total_ms": None if self.total_ms is None else round(self.total_ms, 3),
            "to_response_ms": span(self.speech_stopped_at, self.response_started_at),
            "to_first_delta_ms": span(
                self.response_started_at or self.speech_stopped_at, self.first_delta_at
            ),
            "to_first_rtp_ms": span(self.first_delta_at, self.first_rtp_at),
        }


class LatencyTracker:
    """Collects :class:`TurnTiming` per turn; the bridge calls the hooks with clock times."""

    def __init__(self) -> None:
        self.turns: list[TurnTiming] = []
        """Completed turns, in order."""
        self._open: TurnTiming | None = None
        self.abandoned = 0

    @property
    def pending(self) -> TurnTiming | None:
        """The turn waiting for its answer, if any."""
        return self._open

    def speech_started(self) -> None:
        """The caller speaks again: a turn with no audible answer yet is abandoned."""
        if self._open is not None:
            self.abandoned += 1
            self._open = None

    def speech_stopped(self, now: float) -> None:
        """The caller finished a turn."""
        self._open = TurnTiming(now)

    def stages(self, times: dict[str, float]) -> None:
        """The back end's stage times of the open turn."""
        if self._open is not None:
            self._open.stage_times.update(times)

    def response_started(self, now: float) -> None:
        """A response began (the first one after the turn counts)."""
        t = self._open
        if t is not None and t.response_started_at is None:
            t.response_started_at = now

    def audio_delta(self, now: float) -> None:
        """Agent audio arrived (the first after the turn counts)."""
        t = self._open
        if t is not None and t.first_delta_at is None:
            t.first_delta_at = now

    def frame_sent(self, now: float) -> TurnTiming | None:
        """An agent frame went out; closes the open turn and returns it."""
        t = self._open
        if t is None:
            return None
        t.first_rtp_at = now
        self._open = None
        self.turns.append(t)
        return t

    def totals_ms(self) -> list[float]:
        """Total latency of every completed turn, in ms."""
        return [round(t.total_ms, 3) for t in self.turns if t.total_ms is not None]
