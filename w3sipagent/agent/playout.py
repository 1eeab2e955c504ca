"""The playout queue: the only buffer between the AI's audio and the caller.

The AI sends its audio faster than real time; the bridge cuts it into one-frame RTP
payloads and appends them here. The shared pacer calls :meth:`PlayoutQueue.next_frame`
once per frame period *at the moment it sends*, so the queue knows exactly how many
milliseconds of each AI item went out as RTP: that number is the ``audio_end_ms`` of a
truncate at barge-in. :meth:`PlayoutQueue.clear` drops everything queued, so the next
tick sends silence (the agent stops within one frame).

Frames that belong to no AI item (a fallback prompt, a recording announcement) are
queued with ``item_id=None``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PlayoutItem", "PlayoutQueue"]


@dataclass(slots=True)
class PlayoutItem:
    """Bookkeeping of one AI item (one assistant message) going out as RTP."""

    item_id: str
    response_id: str | None
    queued_ms: int = 0
    """Milliseconds of this item handed to the queue so far."""
    sent_ms: int = 0
    """Milliseconds of this item handed to the pacer (actually sent as RTP)."""
    audio_done: bool = False
    """No more audio will come for this item."""
    first_sent_at: float | None = None
    """Clock time of its first frame sent."""
    cut: bool = False
    """Barge-in dropped the rest of it."""

    @property
    def finished(self) -> bool:
        """All of its audio arrived and was sent (the caller heard it completely)."""
        return self.audio_done and self.sent_ms >= self.queued_ms


FrameSent = Callable[[bytes, "PlayoutItem | None", float], None]


class PlayoutQueue:
    """A :class:`~w3sipagent.asyncio.call_api.FrameSource` counting milliseconds per AI item.

    ``frame_ms``: duration of one payload. ``clock``: monotonic seconds (the loop's clock by
    default). ``on_sent`` is called for every frame handed to the pacer (recording, latency)
    with the payload, its item (or None) and the time; keep it cheap. ``max_items``: how many
    items' counters are kept (older ones are forgotten).
    """

    def __init__(
        self,
        frame_ms: int = 20,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_sent: FrameSent | None = None,
        max_items: int = 64,
    ) -> None:
        if frame_ms <= 0:
            raise ValueError(f"playout: frame duration {frame_ms} ms")
        self.frame_ms = frame_ms
        self.on_sent = on_sent
        self._clock = clock
        self._frames: deque[tuple[bytes, PlayoutItem | None]] = deque()
        self._items: OrderedDict[str, PlayoutItem] = OrderedDict()
        self._max_items = max_items
        self._drained = asyncio.Event()
        self._drained.set()
        self.last_item: PlayoutItem | None = None
        """The item of the last frame sent (None for a prompt frame or before any)."""
        self.frames_sent = 0
        self.frames_dropped = 0
        self.silent_ticks = 0
        """Calls that found the queue empty: a tick that sent silence, or a kicked talk
        spurt trying its frame slot again a pacer slot later."""
        self.last_sent_at: float | None = None
        """Clock time of the last frame handed to the pacer."""
        self.on_ready: Callable[[], object] | None = None
        """Called when :meth:`push` makes an empty queue non-empty (after queueing), e.g.
        the call's ``kick_audio`` to send the talk spurt's first frame at once."""

    # -------------------------------------------------------------- feeding

    def item(self, item_id: str) -> PlayoutItem | None:
        """The counters of ``item_id`` (None if unknown or forgotten)."""
        return self._items.get(item_id)

    def _get_item(self, item_id: str, response_id: str | None) -> PlayoutItem:
        it = self._items.get(item_id)
        if it is None:
            it = self._items[item_id] = PlayoutItem(item_id, response_id)
            while len(self._items) > self._max_items:
                self._items.popitem(last=False)
        return it

    def push(
        self, frames: list[bytes], item_id: str | None = None, response_id: str | None = None
    ) -> None:
        """Queue payloads of one frame each, belonging to ``item_id`` (None: a prompt)."""
        if not frames:
            if item_id is not None:
                self._get_item(item_id, response_id)
            return
        it = None if item_id is None else self._get_item(item_id, response_id)
        if it is not None:
            it.queued_ms += self.frame_ms * len(frames)
        q = self._frames
        was_empty = not q
        for f in frames:
            q.append((f, it))
        self._drained.clear()
        if was_empty and self.on_ready is not None:
            self.on_ready()

    def mark_done(self, item_id: str) -> None:
        """No more audio will come for ``item_id``."""
        it = self._items.get(item_id)
        if it is not None:
            it.audio_done = True

    # -------------------------------------------------------------- the pacer's side

    def next_frame(self) -> bytes | None:
        """The payload to send now, or None (silence). Called by the pacer when it sends."""
        q = self._frames
        if not q:
            self.silent_ticks += 1
            return None
        payload, it = q.popleft()
        self.frames_sent += 1
        now = self._clock()
        self.last_sent_at = now
        if it is not None:
            it.sent_ms += self.frame_ms
            if it.first_sent_at is None:
                it.first_sent_at = now
        self.last_item = it
        if not q:
            self._drained.set()
        if self.on_sent is not None:
            self.on_sent(payload, it, now)
        return payload

    # -------------------------------------------------------------- barge-in

    @property
    def busy(self) -> bool:
        """Frames are waiting to be sent."""
        return bool(self._frames)

    @property
    def queued_frames(self) -> int:
        """Frames waiting to be sent."""
        return len(self._frames)

    def current(self) -> PlayoutItem | None:
        """The AI item the caller is hearing (or about to hear), else None.

        The item of the last frame sent while it is not finished; otherwise the item at
        the head of the queue; None when everything sent was heard completely.
        """
        last = self.last_item
        if last is not None and not last.finished and not last.cut:
            return last
        for _, it in self._frames:
            if it is not None:
                return it
        return None

    def clear(self) -> int:
        """Drop every queued frame (the next tick sends silence); returns how many."""
        n = len(self._frames)
        for _, it in self._frames:
            if it is not None:
                it.cut = True
        if self.last_item is not None and not self.last_item.finished:
            self.last_item.cut = True
        self._frames.clear()
        self.frames_dropped += n
        self._drained.set()
        return n

    def trim(self, max_frames: int) -> int:
        """Drop the oldest queued frames beyond ``max_frames`` (a back end that sends at real
        time must not be played late); returns how many were dropped."""
        n = len(self._frames) - max(0, max_frames)
        for _ in range(max(0, n)):
            _, it = self._frames.popleft()
            if it is not None:
                it.queued_ms -= self.frame_ms  # never sent, so never to be heard
        if n > 0:
            self.frames_dropped += n
        return max(0, n)

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` handed to the pacer (0 if unknown)."""
        it = self._items.get(item_id)
        return 0 if it is None else it.sent_ms

    async def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued; False when ``timeout`` passed first."""
        if not self._frames:
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True
