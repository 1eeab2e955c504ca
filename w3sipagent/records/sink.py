"""Where the bridge reports calls: the :class:`RecordsSink` protocol (no method ever waits
for storage) and :class:`NullSink`, which keeps nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from w3sipagent.records.cdr import CallRecord

__all__ = ["NullSink", "RecordsSink"]


@runtime_checkable
class RecordsSink(Protocol):
    """Where the bridge reports calls. No method ever waits for storage."""

    async def call_started(self, cdr: CallRecord) -> None:
        """A call was admitted (its row appears as ``in_progress``)."""
        ...

    async def call_event(
        self, call_id: str, kind: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """A notable event of a live call (kept until ``call_ended``)."""
        ...

    async def call_ended(self, cdr: CallRecord) -> None:
        """The call is over; ``cdr`` is final."""
        ...


class NullSink:
    """A records sink that keeps nothing."""

    async def call_started(self, cdr: CallRecord) -> None:
        return None

    async def call_event(
        self, call_id: str, kind: str, data: Mapping[str, Any] | None = None
    ) -> None:
        return None

    async def call_ended(self, cdr: CallRecord) -> None:
        return None
