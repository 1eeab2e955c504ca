"""The mutation fuzzer, short run: SIP over UDP and TCP, SDP and RTP against a running agent
in a loopback-only namespace (:mod:`tests.netns.fuzz_run`). The agent must stay up, log no
traceback, answer every OPTIONS during and after, send nothing to a foreign RTP source,
and end with no more tasks, descriptors, calls or RTP ports than it started with. The long
mode is ``benchmarks/fuzz_bench.py`` (docs/performance.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.netns.fuzz import (
    RTP_MUTATIONS,
    SIP_MUTATIONS,
    RtpStream,
    Target,
    rtp_packet,
    sip_message,
)
from tests.netns.fuzz_run import run

pytestmark = pytest.mark.slow

SEED = 20261207


def test_messages_are_reproducible_from_seed_and_index() -> None:
    target = Target("127.0.0.1", 5090, 40000)
    assert sip_message(SEED, 77, target) == sip_message(SEED, 77, target)
    assert sip_message(SEED, 77, target) != sip_message(SEED, 78, target)
    assert sip_message(SEED, 77, target) != sip_message(SEED + 1, 77, target)
    a, b = RtpStream(ssrc=1), RtpStream(ssrc=1)
    assert [rtp_packet(SEED, i, a) for i in range(50)] == [
        rtp_packet(SEED, i, b) for i in range(50)
    ]
    names = {n for i in range(3000) for n in sip_message(SEED, i, target)[1]}
    assert names == set(SIP_MUTATIONS)
    kinds = {rtp_packet(SEED, i, a)[1] for i in range(3000)}
    assert kinds == set(RTP_MUTATIONS)
    assert all(len(sip_message(SEED, i, target)[0]) <= 65000 for i in range(3000))


@pytest.fixture(scope="module")
def fuzz_report(netns: str) -> dict[str, Any]:
    args = ["--seed", str(SEED), "--udp", "3000", "--tcp", "600", "--rtp", "2000",
            "--rtp-per-call", "500", "--batch", "50"]  # fmt: skip
    return run(netns, args, timeout=150, settle_limit=30, sample_every=3)


def test_agent_survives_the_fuzz(fuzz_report: dict[str, Any]) -> None:
    agent = fuzz_report["agent"]
    print(f"\nfuzz short run: {fuzz_report['counts']} in {fuzz_report['elapsed']:.1f} s")
    assert agent["alive"] and agent["exit_code"] == 0, agent["log_tail"]
    assert not agent["traceback"], agent["log_tail"]
    counts = fuzz_report["counts"]
    assert counts["udp_sent"] == 3000 and counts["tcp_sent"] == 600
    assert counts["rtp_sent"] == 2000 and counts["rtp_calls"] == 4
    assert counts["rtp_bye_answered"] == 4
    assert set(fuzz_report["mutations"]) == set(SIP_MUTATIONS)
    assert set(fuzz_report["rtp_mutations"]) == set(RTP_MUTATIONS)
    # the agent answered the fuzz itself (400s for most, 200s for INVITEs that stayed valid)
    assert fuzz_report["replies"].get("400", 0) > 100 and fuzz_report["replies"].get("200", 0) > 10


def test_options_answered_during_and_after(fuzz_report: dict[str, Any]) -> None:
    probes = fuzz_report["probes"]
    assert probes["sent"] >= 3000 // 50 and probes["answered"] == probes["sent"], probes
    after = fuzz_report["after"]
    assert after["options_udp"] == 200 and after["options_tcp"] == 200, after
    assert after["echo_seconds"] >= 1.0 and after["echo_rms"] > 1000, after


def test_rtp_fuzz_neither_steals_nor_silences_the_stream(fuzz_report: dict[str, Any]) -> None:
    counts = fuzz_report["counts"]
    assert counts.get("rtp_to_foreign_port", 0) == 0  # foreign packets never re-latch
    assert counts["rtp_foreign"] > 100
    assert counts["rtp_echo_packets"] > 0  # the call kept echoing the valid stream


def test_nothing_left_after_the_fuzz(fuzz_report: dict[str, Any]) -> None:
    agent = fuzz_report["agent"]
    before, after = agent["before"], agent["after"]
    assert agent["peak"].get("calls", 0) > 0 or fuzz_report["replies"].get("200", 0) > 0
    assert after["calls"] == 0 and after["rtp_ports"] == 0, after
    assert after["tasks"] <= before["tasks"], (before, after)
    assert after["fds"] <= before["fds"], (before, after)
