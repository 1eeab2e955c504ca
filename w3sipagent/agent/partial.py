"""What is being said and is not final yet, for the console's live view.

The back ends send transcripts as deltas while an utterance goes on (the agent's as its
answer is generated, the caller's when the speech-to-text streams) and the whole text when
it is final; the CDR keeps only the final text. :class:`PartialTranscript` keeps the text
so far of each utterance not final yet, so a live view can show the words as they come:
a final transcript replaces its item, the end of a response (done or cancelled by a
barge-in) drops what is left of it, and at most ``limit`` items are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from w3sipagent.ai.session import AgentTranscript, AIEvent, CallerTranscript, ResponseDone

__all__ = ["PartialTranscript"]


@dataclass(slots=True)
class _Item:
    speaker: str
    response_id: str | None
    text: str
    at: float


class PartialTranscript:
    """The text so far of each utterance not final yet (``offset()``: seconds since the
    INVITE, stamped on an item's first delta)."""

    def __init__(self, offset: Callable[[], float], limit: int = 8) -> None:
        self._offset = offset
        self._limit = limit
        self._items: dict[str, _Item] = {}

    def feed(self, ev: AIEvent) -> None:
        """Take one event (those that are not transcripts or a response's end are ignored)."""
        if isinstance(ev, AgentTranscript | CallerTranscript):
            if ev.final:
                self._items.pop(ev.item_id, None)
                return
            item = self._items.get(ev.item_id)
            if item is None:
                speaker = "agent" if isinstance(ev, AgentTranscript) else "caller"
                rid = ev.response_id if isinstance(ev, AgentTranscript) else None
                item = self._items[ev.item_id] = _Item(speaker, rid, "", self._offset())
                while len(self._items) > self._limit:
                    self._items.pop(next(iter(self._items)))
            item.text += ev.text
        elif isinstance(ev, ResponseDone):
            for key in [k for k, v in self._items.items() if v.response_id == ev.response_id]:
                del self._items[key]

    def clear(self) -> None:
        """Forget everything (the session was lost)."""
        self._items.clear()

    def lines(self) -> list[dict[str, Any]]:
        """The utterances under way, oldest first: speaker, text so far, at, item_id."""
        return [
            {"speaker": v.speaker, "text": v.text.strip(), "at": v.at, "item_id": k}
            for k, v in self._items.items()
            if v.text.strip()
        ]
