"""The DTMF collector alone (pure: clock times are given)."""

from __future__ import annotations

from w3sipagent.agent.dtmf import DtmfAction, DtmfCollector, keypad_message


def test_digits_pressed_close_together_are_one_message() -> None:
    c = DtmfCollector({}, collect_timeout=1.0)
    assert c.press("1", 10.0) is None
    assert c.deadline == 11.0
    assert c.press("2", 10.5) is None
    assert c.deadline == 11.5  # each press restarts the wait
    assert c.due(11.4) is None
    assert c.due(11.5) == "12"
    assert c.digits == "" and c.deadline is None
    assert c.due(20.0) is None


def test_flush_gives_the_digits_now() -> None:
    c = DtmfCollector({}, collect_timeout=1.0)
    c.press("*", 0.0)
    c.press("#", 0.1)
    assert c.flush() == "*#"
    assert c.flush() == ""


def test_mapped_digits_are_actions_and_are_not_collected() -> None:
    acts = {"0": "transfer:human", "9": "message:The caller wants the menu.", "A": "hangup"}
    c = DtmfCollector(acts, collect_timeout=1.0)
    c.press("5", 0.0)
    assert c.press("0", 0.2) == DtmfAction("0", "transfer", "human")
    assert c.press("9", 0.3) == DtmfAction("9", "message", "The caller wants the menu.")
    assert c.press("a", 0.4) == DtmfAction("a", "hangup", "")  # a key pressed as a-d maps too
    assert c.digits == "5" and c.deadline == 1.0  # the collection is untouched


def test_keypad_message() -> None:
    assert keypad_message("12") == "The caller pressed 12 on the keypad."
