"""One assistant message as it is spoken (its sentences as segments) and a barge-in's cut."""

from __future__ import annotations

from dataclasses import dataclass, field

from w3sipagent.cascade.stages import Message
from w3sipagent.cascade.text import Segment

DEFAULT_MS_PER_CHAR = 65.0
"""Speech time of a character of text (about 15 characters a second) before any is known."""


@dataclass(slots=True)
class Answer:
    """One assistant message being spoken: its text, sentences spoken, and the cut."""

    item_id: str
    message: Message
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    truncated: bool = False
    speaking: str | None = None
    """The sentence being synthesised now (not yet a segment) and the ms of it sent."""
    speaking_ms: float = 0.0

    def spoken_segments(self) -> list[Segment]:
        """The segments, with the sentence still being synthesised as a last segment whose
        length is estimated from the speech rate so far (at least what was sent of it)."""
        segs = list(self.segments)
        if self.speaking is not None:
            chars = sum(len(s.text) for s in segs)
            rate = sum(s.audio_ms for s in segs) / chars if chars else DEFAULT_MS_PER_CHAR
            segs.append(Segment(self.speaking, max(self.speaking_ms, len(self.speaking) * rate)))
        return segs


@dataclass(frozen=True, slots=True)
class Cut:
    """A barge-in's cut: the item, the audio the caller heard, the text kept in history."""

    item_id: str
    played_ms: int
    text: str
    full_text: str
