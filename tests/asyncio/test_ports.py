"""RTP port range: direct bind, even/odd pairs, exhaustion, release."""

from __future__ import annotations

import socket

import pytest

from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.errors import ConfigError, PortsExhausted

BASE = 30500  # below the ephemeral range (32768+) and other tests' ranges


def test_pairs_are_even_odd_and_bound() -> None:
    r = RtpPortRange(BASE + 1, BASE + 40)
    a = r.allocate("127.0.0.1")
    try:
        assert a.port % 2 == 0 and BASE + 2 <= a.port < BASE + 40
        assert a.rtp.getsockname() == ("127.0.0.1", a.port)
        assert a.rtcp is not None and a.rtcp.getsockname() == ("127.0.0.1", a.port + 1)
        assert a.rtcp_port == a.port + 1
        assert r.in_use == 1
    finally:
        a.release()
    assert r.in_use == 0 and a.rtp.fileno() == -1
    a.release()  # idempotent


def test_exhaustion_and_release() -> None:
    r = RtpPortRange(BASE + 100, BASE + 104)  # RTP 100, 102 (104 has no RTCP port)
    assert r.capacity == 2
    got = [r.allocate("127.0.0.1"), r.allocate("127.0.0.1", rtcp=False)]
    try:
        assert sorted(g.port for g in got) == [BASE + 100, BASE + 102]
        assert got[1].rtcp is None
        with pytest.raises(PortsExhausted, match="no free RTP port"):
            r.allocate("127.0.0.1")
        got[0].release()
        again = r.allocate("127.0.0.1")
        assert again.port == got[0].port
        got.append(again)
    finally:
        for g in got:
            g.release()


def test_ports_taken_by_others_are_skipped() -> None:
    r = RtpPortRange(BASE + 200, BASE + 206)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", BASE + 201))  # the RTCP port of the first pair
    try:
        a = r.allocate("127.0.0.1")
        assert a.port == BASE + 202
        a.release()
    finally:
        blocker.close()


def test_rotation_avoids_immediate_reuse() -> None:
    r = RtpPortRange(BASE + 300, BASE + 320)
    a = r.allocate("127.0.0.1")
    a.release()
    b = r.allocate("127.0.0.1")
    b.release()
    assert a.port != b.port


def test_bad_ranges() -> None:
    with pytest.raises(ConfigError):
        RtpPortRange(30000, 20000)
    with pytest.raises(ConfigError):
        RtpPortRange(80, 100)
    with pytest.raises(ConfigError):
        RtpPortRange(40001, 40002)
