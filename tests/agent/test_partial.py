"""The utterances under way that the console's live view shows before they are final."""

from __future__ import annotations

from w3sipagent.agent.partial import PartialTranscript
from w3sipagent.ai.session import AgentTranscript, CallerTranscript, ResponseDone


def test_deltas_grow_until_the_final_replaces_them() -> None:
    now = [1.0]
    p = PartialTranscript(lambda: now[0])
    p.feed(AgentTranscript("r1", "a1", "Hello", final=False))
    now[0] = 1.5
    p.feed(AgentTranscript("r1", "a1", " there,", final=False))
    p.feed(CallerTranscript("c1", "I'd like", final=False))
    assert p.lines() == [
        {"speaker": "agent", "text": "Hello there,", "at": 1.0, "item_id": "a1"},
        {"speaker": "caller", "text": "I'd like", "at": 1.5, "item_id": "c1"},
    ]
    p.feed(AgentTranscript("r1", "a1", "Hello there, welcome.", final=True))
    p.feed(CallerTranscript("c1", "I'd like a table.", final=True))
    assert p.lines() == []


def test_a_response_that_ends_drops_its_words() -> None:
    p = PartialTranscript(lambda: 0.0)
    p.feed(AgentTranscript("r1", "a1", "Let me", final=False))  # cut by a barge-in
    p.feed(CallerTranscript("c1", "wait", final=False))
    p.feed(ResponseDone("r1", status="cancelled"))
    assert [x["item_id"] for x in p.lines()] == ["c1"]
    p.clear()
    assert p.lines() == []


def test_bounded_and_blank_deltas_not_shown() -> None:
    p = PartialTranscript(lambda: 0.0, limit=3)
    for i in range(5):
        p.feed(CallerTranscript(f"c{i}", f"word{i}", final=False))
    p.feed(CallerTranscript("c9", "  ", final=False))
    assert [x["item_id"] for x in p.lines()] == ["c3", "c4"]
