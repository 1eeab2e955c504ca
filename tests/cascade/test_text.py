"""The sentence splitter and the text a caller heard (pure)."""

from __future__ import annotations

from w3sipagent.cascade.text import Segment, SentenceSplitter, heard_text


def test_sentences_come_out_as_soon_as_complete() -> None:
    sp = SentenceSplitter()
    got: list[str] = []
    for delta in ["Hel", "lo. How ", "can I help", "? Call 3.5 ", "times!", " Bye"]:
        got += sp.feed(delta)
    assert got == ["Hello.", "How can I help?", "Call 3.5 times!"]
    assert sp.flush() == "Bye"
    assert sp.flush() is None


def test_sentence_needs_following_space_and_lines_break() -> None:
    sp = SentenceSplitter()
    assert sp.feed("Price: 3.50 euros") == ["Price:"]
    assert sp.feed("\nNext line") == ["3.50 euros"]
    assert sp.flush() == "Next line"


SEGS = [Segment("Hello there.", 1000.0), Segment("Your order shipped today.", 2000.0)]


def test_heard_text_whole_segments() -> None:
    assert heard_text(SEGS, 0) == ""
    assert heard_text(SEGS, 999) == "Hello"  # "Hello" ends at 5/12 of the segment
    assert heard_text(SEGS, 1000) == "Hello there."
    assert heard_text(SEGS, 3000) == "Hello there. Your order shipped today."
    assert heard_text(SEGS, 10_000) == "Hello there. Your order shipped today."


def test_heard_text_partial_segment_by_characters() -> None:
    # "Your order" ends at char 10 of 25 = 40 %: heard after 800 ms of the 2000 ms segment
    assert heard_text(SEGS, 1000 + 799) == "Hello there. Your"
    assert heard_text(SEGS, 1000 + 800) == "Hello there. Your order"
    assert heard_text(SEGS, 100) == ""
