"""RFC 3550 A.1 / A.3 / A.8 receiver statistics and the stream counters."""

from __future__ import annotations

import json

from w3sipagent.rtp.stats import ReceiverStatistics, StreamStats


def test_clean_stream_no_loss_zero_jitter() -> None:
    r = ReceiverStatistics(1, 100)
    for i in range(100, 300):
        assert r.update(i, 160 * i, 160 * i + 5000)
    assert r.received == 200 and r.expected == 200 and r.cumulative_lost == 0
    assert r.jitter == 0.0
    assert r.interval_loss() == (0, 0)


def test_loss_and_fraction_per_interval() -> None:
    r = ReceiverStatistics(1, 0)
    for i in range(100):
        if i % 10 != 3:
            r.update(i, 160 * i, 160 * i)
    assert r.cumulative_lost == 10
    assert r.interval_loss() == ((10 << 8) // 100, 10)
    for i in range(100, 200):
        r.update(i, 160 * i, 160 * i)
    assert r.interval_loss() == (0, 10)


def test_wraparound_extends_cycles() -> None:
    r = ReceiverStatistics(1, 65000)
    for i in range(65000, 66000):
        r.update(i & 0xFFFF, 160 * i, 160 * i)
    assert r.cycles == 65536
    assert r.extended_max == 65999
    assert r.cumulative_lost == 0


def test_duplicates_make_lost_negative() -> None:
    r = ReceiverStatistics(1, 0)
    for i in [0, 1, 2, 2, 3]:
        r.update(i, 160 * i, 160 * i)
    assert r.cumulative_lost == -1


def test_jitter_converges_to_mean_absolute_deviation() -> None:
    r = ReceiverStatistics(1, 0)
    # transit alternates +-80 timestamp units: D = 160 every packet -> J -> 160
    for i in range(2000):
        r.update(i, 160 * i, 160 * i + (80 if i % 2 else -80) + 10_000)
    assert abs(r.jitter - 160) < 1


def test_restart_needs_two_sequential_packets() -> None:
    r = ReceiverStatistics(1, 10)
    for i in range(10, 20):
        r.update(i, 0, 0)
    assert not r.update(30000, 0, 0)  # a big jump is not believed at once
    assert r.update(30001, 0, 0)  # ...but a second sequential packet restarts
    assert r.base_seq == 30001 and r.received == 1


def test_probation() -> None:
    r = ReceiverStatistics(1, 500, probation=2)
    assert not r.update(500, 0, 0)
    assert r.update(501, 0, 0)
    assert r.received == 1


def test_stream_stats_as_dict_is_json() -> None:
    s = StreamStats(packets_received=3, lost=1, jitter_ms=1.5)
    d = s.as_dict()
    assert d["packets_received"] == 3 and d["lost"] == 1 and d["rtt_ms"] is None
    assert json.loads(json.dumps(d)) == d
    assert {
        "late",
        "duplicates",
        "out_of_order",
        "malformed",
        "unknown_payload_type",
        "wrong_source",
    } <= set(d)
