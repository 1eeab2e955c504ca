"""PlayoutQueue.trim: real-time audio kept in step (oldest frames beyond the lead dropped)."""

from __future__ import annotations

from w3sipagent.agent.playout import PlayoutQueue


def test_trim_drops_the_oldest_and_keeps_the_item_accounting() -> None:
    q = PlayoutQueue(20, clock=lambda: 0.0)
    q.push([bytes([i]) * 160 for i in range(10)], "item", "resp")
    q.mark_done("item")
    assert q.trim(3) == 7
    assert q.queued_frames == 3 and q.frames_dropped == 7
    assert [q.next_frame() for _ in range(3)] == [bytes([i]) * 160 for i in (7, 8, 9)]
    it = q.item("item")
    assert it is not None and it.queued_ms == 60 and it.sent_ms == 60 and it.finished
    assert q.current() is None  # nothing left unheard: no barge-in target
    assert q.trim(3) == 0 and q.next_frame() is None
