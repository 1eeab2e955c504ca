"""Turn stages: the latency tracker's ms from speech end, the CDR's per-turn list, metrics."""

from __future__ import annotations

from w3sipagent.agent.latency import LatencyTracker
from w3sipagent.metrics import Metrics
from w3sipagent.records.cdr import CallRecord


def test_stages_in_ms_from_caller_speech_end_with_first_rtp() -> None:
    lat = LatencyTracker()
    lat.speech_stopped(10.5)
    lat.stages({"caller_speech_end": 10.0, "end_of_turn": 10.5, "tts_first_byte": 10.75})
    turn = lat.frame_sent(10.76)
    assert turn is not None
    assert turn.stages_ms() == {
        "caller_speech_end": 0.0,
        "end_of_turn": 500.0,
        "tts_first_byte": 750.0,
        "first_rtp": 760.0,
    }
    lat.speech_stopped(20.0)  # a back end without stages: none recorded
    turn = lat.frame_sent(20.3)
    assert turn is not None and turn.stages_ms() == {}


def test_stages_of_an_abandoned_turn_are_dropped() -> None:
    lat = LatencyTracker()
    lat.speech_stopped(1.0)
    lat.stages({"caller_speech_end": 0.5})
    lat.speech_started()
    lat.stages({"caller_speech_end": 0.9})  # no turn open: ignored
    assert lat.pending is None and lat.turns == []


def test_cdr_stages_and_metrics() -> None:
    cdr = CallRecord(call_id="c1", tenant="acme")
    cdr.add_event("turn", total_ms=30.0, stages={"caller_speech_end": 0.0, "first_rtp": 520.0})
    cdr.add_event("turn", total_ms=30.0)
    cdr.add_event("barge_in", heard_ms=100)
    assert cdr.turn_stages_ms() == [{"caller_speech_end": 0.0, "first_rtp": 520.0}]
    m = Metrics()
    m.call_started("acme")
    m.call_ended(cdr)
    get = m.registry.get_sample_value
    labels = {"tenant": "acme", "stage": "first_rtp"}
    assert get("w3sipagent_turn_stage_seconds_count", labels) == 1
    assert get("w3sipagent_turn_stage_seconds_sum", labels) == 0.52
    assert (
        get("w3sipagent_turn_stage_seconds_count", {**labels, "stage": "caller_speech_end"}) is None
    )
