"""The barge-in policy alone (pure: no loop, no clock, no session)."""

from __future__ import annotations

from w3sipagent.agent.bargein import BargeInPolicy, Cut, Reaction
from w3sipagent.agent.playout import PlayoutItem


def playing(sent_ms: int, queued_ms: int, *, done: bool = False) -> PlayoutItem:
    return PlayoutItem("item_1", "resp_1", queued_ms=queued_ms, sent_ms=sent_ms, audio_done=done)


def test_speech_over_silence_is_ignored_and_marks_the_caller_speaking() -> None:
    p = BargeInPolicy()
    assert p.speech_started(agent_audible=False) is Reaction.IGNORE
    assert p.caller_speaking
    assert p.speech_stopped() is False  # no guard ran: not a false interruption
    assert not p.caller_speaking


def test_without_guard_speech_over_the_agent_cuts_at_once() -> None:
    p = BargeInPolicy(guard_ms=0)
    assert p.speech_started(agent_audible=True) is Reaction.CUT
    assert not p.guarding


def test_guard_armed_once_then_cut_only_if_the_agent_is_still_audible() -> None:
    p = BargeInPolicy(guard_ms=150)
    assert p.speech_started(agent_audible=True) is Reaction.GUARD
    assert p.guarding
    assert p.speech_started(agent_audible=True) is Reaction.IGNORE  # one guard at a time
    assert p.guard_elapsed(agent_audible=True) is True
    assert not p.guarding
    assert p.speech_started(agent_audible=True) is Reaction.GUARD
    assert p.guard_elapsed(agent_audible=False) is False  # the agent fell silent meanwhile


def test_speech_stopped_before_the_guard_is_a_false_interruption() -> None:
    p = BargeInPolicy(guard_ms=150)
    assert p.speech_started(agent_audible=True) is Reaction.GUARD
    assert p.speech_stopped() is True
    assert not p.guarding
    assert p.speech_stopped() is False  # reported once


def test_cut_truncates_at_what_was_sent_and_cancels_when_the_backend_does_not() -> None:
    p = BargeInPolicy(backend_cancels=False)
    p.response_started("resp_1")
    cut = p.cut(playing(sent_ms=480, queued_ms=3000), truncates_itself=False)
    assert cut == Cut("item_1", 480, "resp_1")
    assert p.dropped("resp_1")  # its late audio is dropped from now on
    p.cancelled("resp_1")
    assert p.active_response is None


def test_cut_leaves_the_cancel_to_a_backend_that_stops_itself() -> None:
    p = BargeInPolicy(backend_cancels=True)
    p.response_started("resp_1")
    assert p.cut(playing(200, 1000), truncates_itself=False) == Cut("item_1", 200, None)
    assert p.active_response == "resp_1"  # until the back end says it is done
    p.response_done("resp_1")
    assert p.active_response is None


def test_no_truncate_for_an_item_heard_completely_or_a_self_truncating_backend() -> None:
    p = BargeInPolicy(backend_cancels=False)
    heard = playing(1000, 1000, done=True)
    assert p.cut(heard, truncates_itself=False) == Cut("item_1", None, None)
    p.response_started("resp_2")
    assert p.cut(playing(100, 900), truncates_itself=True) == Cut("item_1", None, "resp_2")


def test_truncate_never_claims_more_than_was_queued() -> None:
    p = BargeInPolicy()
    assert p.cut(playing(sent_ms=600, queued_ms=400), False).heard_ms == 400


def test_cut_with_nothing_playing_drops_the_active_response() -> None:
    p = BargeInPolicy(backend_cancels=False)
    p.response_started("resp_9")
    assert p.cut(None, truncates_itself=False) == Cut(None, None, "resp_9")
    assert p.dropped("resp_9") and not p.dropped("resp_1")


def test_dropped_ids_are_bounded() -> None:
    p = BargeInPolicy(memory=2)
    for i in range(3):
        p.response_started(f"r{i}")
        p.cut(None, truncates_itself=False)
    assert [p.dropped(f"r{i}") for i in range(3)] == [False, True, True]


def test_a_lost_session_forgets_its_response() -> None:
    p = BargeInPolicy()
    p.response_started("resp_1")
    p.forget_response()
    assert p.active_response is None
