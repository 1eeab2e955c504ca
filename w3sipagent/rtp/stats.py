"""Per-stream statistics: counters for the call / CDR and RFC 3550 receiver statistics.

:class:`StreamStats` is the flat record a call exposes (``as_dict()`` for the
CDR). :class:`ReceiverStatistics` implements RFC 3550 Appendix A.1 (sequence
number validation with probation), A.3 (expected / lost / fraction lost) and
A.8 (interarrival jitter) for one remote SSRC.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
RTP_SEQ_MOD = 1 << 16


@dataclass(slots=True)
class StreamStats:
    """Counters of one call's RTP stream, both directions.

    ``lost`` counts packets never received (sequence gaps the jitter buffer gave
    up on); ``late`` packets arrived after their slot was concealed;
    ``jitter_ms`` is the RFC 3550 interarrival jitter of the current source;
    ``foreign`` counts packets dropped from a source other than the latched one (not RTP,
    another SSRC or payload type, a broken sequence, a re-latch not yet confirmed);
    ``oversize`` packets carried more audio than ``MediaConfig.max_packet_ms``.
    """

    packets_received: int = 0
    bytes_received: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0
    lost: int = 0
    concealed: int = 0
    late: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    malformed: int = 0
    unknown_payload_type: int = 0
    wrong_source: int = 0
    foreign: int = 0
    oversize: int = 0
    ssrc_changes: int = 0
    dtmf_received: int = 0
    dtmf_sent: int = 0
    rtcp_received: int = 0
    rtcp_sent: int = 0
    jitter_ms: float = 0.0
    max_jitter_ms: float = 0.0
    rtt_ms: float | None = None
    peer_fraction_lost: float | None = None

    def as_dict(self) -> dict[str, int | float | None]:
        """A plain dict for JSON / the CDR."""
        return asdict(self)


class ReceiverStatistics:
    """RFC 3550 A.1/A.3/A.8 statistics of one remote source.

    Call :meth:`update` for each received packet with its arrival time in
    timestamp units (``now * clock_rate``). It returns False for a packet the
    A.1 algorithm does not count (source on probation, or a very large jump
    that needs a second packet to confirm a restart).
    """

    __slots__ = (
        "_bad_seq",
        "_expected_prior",
        "_last_transit",
        "_probation",
        "_received_prior",
        "base_seq",
        "cycles",
        "jitter",
        "max_seq",
        "received",
        "ssrc",
    )

    def __init__(self, ssrc: int, seq: int, *, probation: int = 0) -> None:
        self.ssrc = ssrc
        self._probation = probation
        self._init_seq(seq)
        self.max_seq = (seq - 1) & 0xFFFF if probation else seq
        self._last_transit: int | None = None
        self.jitter = 0.0  # timestamp units (RFC 3550 A.8, kept as float)

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def update(self, seq: int, timestamp: int, arrival: int) -> bool:
        """Account for one packet (RFC 3550 A.1 ``update_seq`` + A.8 jitter)."""
        udelta = (seq - self.max_seq) & 0xFFFF
        if self._probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self._probation -= 1
                self.max_seq = seq
                if self._probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    self._jitter(timestamp, arrival)
                    return True
            else:
                self._probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self._bad_seq:
                self._init_seq(seq)  # the source restarted
            else:
                self._bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet
        self.received += 1
        self._jitter(timestamp, arrival)
        return True

    def _jitter(self, timestamp: int, arrival: int) -> None:
        transit = (arrival - timestamp) & 0xFFFFFFFF
        if self._last_transit is not None:
            d = (transit - self._last_transit) & 0xFFFFFFFF
            if d >= 0x80000000:
                d = 0x100000000 - d
            self.jitter += (d - self.jitter) / 16.0
        self._last_transit = transit

    @property
    def extended_max(self) -> int:
        """Extended highest sequence number received (A.3)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected so far (A.3)."""
        return self.extended_max - self.base_seq + 1

    @property
    def cumulative_lost(self) -> int:
        """Packets lost so far (may be negative with duplicates, A.3)."""
        return self.expected - self.received

    def interval_loss(self) -> tuple[int, int]:
        """``(fraction_lost, cumulative_lost)`` for a report; starts a new interval.

        ``fraction_lost`` is the 8-bit fixed point fraction of A.3.
        """
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.received - self._received_prior
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return fraction, self.cumulative_lost
