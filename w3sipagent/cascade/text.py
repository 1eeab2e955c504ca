"""Text of the agent's answer: sentences for speech, and the words a caller heard (pure).

:class:`SentenceSplitter` cuts the model's streamed text into sentences as soon as one is
complete, so speech starts on the first sentence. :func:`heard_text` maps the audio a
caller heard (ms) back to text through the TTS segment boundaries: every segment played
whole counts whole; in the segment being played the words count in proportion to its
audio played (by characters, the closest to speech time a text gives).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_END = re.compile(r"[.!?…;:]+[\"')\]]*(?=\s)|\n+")


class SentenceSplitter:
    """Feed text deltas; get back each sentence once it is complete.

    A sentence ends at ``.``, ``!``, ``?``, ``…``, ``;`` or ``:`` followed by white space,
    or at a line break. ``min_chars`` merges very short pieces ("Hi.") with the next.
    """

    def __init__(self, min_chars: int = 2) -> None:
        self.min_chars = min_chars
        self._buf = ""

    def feed(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        start = 0
        for m in _END.finditer(self._buf):
            piece = self._buf[start : m.end()].strip()
            if len(piece) < self.min_chars:
                continue
            out.append(piece)
            start = m.end()
        self._buf = self._buf[start:]
        return out

    def flush(self) -> str | None:
        """The rest of the text at the end of the answer (None when blank)."""
        rest, self._buf = self._buf.strip(), ""
        return rest or None


@dataclass(frozen=True, slots=True)
class Segment:
    """One sentence as spoken: its text and the ms of audio its speech took."""

    text: str
    audio_ms: float


def heard_text(segments: Sequence[Segment], played_ms: float) -> str:
    """The text of the first ``played_ms`` of the spoken ``segments`` (see the module)."""
    parts: list[str] = []
    t = 0.0
    for seg in segments:
        if played_ms >= t + seg.audio_ms:
            parts.append(seg.text)
            t += seg.audio_ms
            continue
        if seg.audio_ms > 0 and played_ms > t:
            part = _prefix_words(seg.text, (played_ms - t) / seg.audio_ms)
            if part:
                parts.append(part)
        break
    return " ".join(parts)


def _prefix_words(text: str, fraction: float) -> str:
    """The words of ``text`` whose end lies within ``fraction`` of its characters."""
    limit = len(text) * fraction
    words: list[str] = []
    for m in re.finditer(r"\S+", text):
        if m.end() > limit:
            break
        words.append(m.group())
    return " ".join(words)
