"""RTCP packets (RFC 3550 §6, RFC 4585 feedback) and the sans-IO RTCP session.

:func:`parse_rtcp` splits a compound packet into typed packets; each packet
type has ``parse`` and ``__bytes__`` with ``parse(bytes(p)) == p``.
:class:`RtcpSession` builds the reports we send (SR when we sent media since
the last report, RR otherwise, always followed by SDES CNAME), reads the
peer's reports to compute the round-trip time (RFC 3550 §6.4.1: ``A - LSR -
DLSR``) and decides when the next report is due (:class:`RtcpScheduler`).
Time is passed in: ``now`` (monotonic seconds) and ``wallclock`` (Unix seconds,
for the NTP timestamp of a sender report).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from w3sipagent.errors import RtpError
from w3sipagent.rtp.stats import ReceiverStatistics
from w3sipagent.sip.ids import IdSource

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206

SDES_END = 0
SDES_CNAME = 1

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_SENDER_INFO = struct.Struct("!QIII")
_REPORT_BLOCK = struct.Struct("!IB3sIIII")
_FB = struct.Struct("!II")
_NACK = struct.Struct("!HH")


def ntp_from_unix(t: float) -> int:
    """64-bit NTP timestamp (RFC 5905) of Unix time ``t``."""
    sec = int(t)
    frac = int((t - sec) * (1 << 32)) & 0xFFFFFFFF
    return ((sec + NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32 | frac


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (the LSR / DLSR unit is 1/65536 s)."""
    return (ntp >> 16) & 0xFFFFFFFF


def _pack_packet(ptype: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise RtpError("RTCP packet body is not a multiple of 4 bytes")
    return _HEADER.pack(0x80 | count, ptype, len(body) // 4) + body


@dataclass(slots=True)
class RtcpReportBlock:
    """A reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    packets_lost: int  # cumulative, signed 24-bit
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, timestamp units
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def parse(cls, data: bytes, pos: int = 0) -> RtcpReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost))
        return _REPORT_BLOCK.pack(
            self.ssrc,
            self.fraction_lost & 0xFF,
            lost.to_bytes(3, "big", signed=True),
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )


def _parse_blocks(data: bytes, pos: int, count: int) -> list[RtcpReportBlock]:
    return [RtcpReportBlock.parse(data, pos + 24 * i) for i in range(count)]


@dataclass(slots=True)
class RtcpSenderInfo:
    """The sender information of an SR (RFC 3550 §6.4.1)."""

    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int

    def __bytes__(self) -> bytes:
        return _SENDER_INFO.pack(
            self.ntp_timestamp,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        )


@dataclass(slots=True)
class RtcpSrPacket:
    """Sender report."""

    ssrc: int
    sender_info: RtcpSenderInfo
    reports: list[RtcpReportBlock] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes, count: int) -> RtcpSrPacket:
        if len(body) < 24 + 24 * count:
            raise RtpError("RTCP sender report length is invalid")
        ssrc = _U32.unpack_from(body)[0]
        info = RtcpSenderInfo(*_SENDER_INFO.unpack_from(body, 4))
        return cls(ssrc, info, _parse_blocks(body, 24, count))

    def __bytes__(self) -> bytes:
        body = _U32.pack(self.ssrc) + bytes(self.sender_info)
        body += b"".join(bytes(r) for r in self.reports)
        return _pack_packet(RTCP_SR, len(self.reports), body)


@dataclass(slots=True)
class RtcpRrPacket:
    """Receiver report."""

    ssrc: int
    reports: list[RtcpReportBlock] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes, count: int) -> RtcpRrPacket:
        if len(body) < 4 + 24 * count:
            raise RtpError("RTCP receiver report length is invalid")
        return cls(_U32.unpack_from(body)[0], _parse_blocks(body, 4, count))

    def __bytes__(self) -> bytes:
        body = _U32.pack(self.ssrc) + b"".join(bytes(r) for r in self.reports)
        return _pack_packet(RTCP_RR, len(self.reports), body)


@dataclass(slots=True)
class RtcpSdesChunk:
    """One SDES chunk: a source and its items ``[(type, value), ...]``."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class RtcpSdesPacket:
    """Source description (CNAME...)."""

    chunks: list[RtcpSdesChunk] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes, count: int) -> RtcpSdesPacket:
        chunks = []
        pos, n = 0, len(body)
        for _ in range(count):
            if pos + 4 > n:
                raise RtpError("RTCP SDES source is truncated")
            chunk = RtcpSdesChunk(_U32.unpack_from(body, pos)[0])
            pos += 4
            while pos < n:
                item_type = body[pos]
                if item_type == SDES_END:
                    pos += 1
                    break
                if pos + 2 > n:
                    raise RtpError("RTCP SDES item is truncated")
                length = body[pos + 1]
                if pos + 2 + length > n:
                    raise RtpError("RTCP SDES item is truncated")
                chunk.items.append((item_type, body[pos + 2 : pos + 2 + length]))
                pos += 2 + length
            pos += -pos % 4  # chunks end on a 32-bit boundary
            chunks.append(chunk)
        return cls(chunks)

    def __bytes__(self) -> bytes:
        body = bytearray()
        for chunk in self.chunks:
            body += _U32.pack(chunk.ssrc)
            for item_type, value in chunk.items:
                if len(value) > 255:
                    raise RtpError("RTCP SDES item longer than 255 bytes")
                body += bytes([item_type, len(value)]) + value
            body += b"\x00" * (4 - len(body) % 4)  # END item + padding (always >= 1 zero)
        return _pack_packet(RTCP_SDES, len(self.chunks), bytes(body))

    def cname(self, ssrc: int) -> str | None:
        """The CNAME of ``ssrc``, if present."""
        for chunk in self.chunks:
            if chunk.ssrc == ssrc:
                for t, v in chunk.items:
                    if t == SDES_CNAME:
                        return v.decode("utf-8", "replace")
        return None


@dataclass(slots=True)
class RtcpByePacket:
    """Goodbye."""

    sources: list[int] = field(default_factory=list)
    reason: bytes = b""

    @classmethod
    def parse(cls, body: bytes, count: int) -> RtcpByePacket:
        if len(body) < 4 * count:
            raise RtpError("RTCP bye length is invalid")
        sources = list(struct.unpack_from(f"!{count}I", body))
        reason = b""
        pos = 4 * count
        if pos < len(body):
            length = body[pos]
            if pos + 1 + length > len(body):
                raise RtpError("RTCP bye reason is truncated")
            reason = body[pos + 1 : pos + 1 + length]
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            r = bytes([len(self.reason)]) + self.reason
            body += r + b"\x00" * (-len(r) % 4)
        return _pack_packet(RTCP_BYE, len(self.sources), body)


@dataclass(slots=True)
class RtcpFeedbackPacket:
    """Transport-layer (RTPFB, 205) or payload-specific (PSFB, 206) feedback (RFC 4585)."""

    packet_type: int
    fmt: int
    ssrc: int
    media_ssrc: int
    fci: bytes = b""

    @classmethod
    def parse(cls, body: bytes, ptype: int, fmt: int) -> RtcpFeedbackPacket:
        if len(body) < 8:
            name = "RTP feedback" if ptype == RTCP_RTPFB else "payload-specific feedback"
            raise RtpError(f"RTCP {name} length is invalid")
        ssrc, media_ssrc = _FB.unpack_from(body)
        return cls(ptype, fmt, ssrc, media_ssrc, body[8:])

    def __bytes__(self) -> bytes:
        return _pack_packet(
            self.packet_type, self.fmt, _FB.pack(self.ssrc, self.media_ssrc) + self.fci
        )

    @property
    def nack_lost(self) -> list[int]:
        """Sequence numbers reported lost by a generic NACK (RTPFB fmt 1), in order."""
        if self.packet_type != RTCP_RTPFB or self.fmt != 1:
            return []
        lost = []
        for pos in range(0, len(self.fci) - 3, 4):
            pid, blp = _NACK.unpack_from(self.fci, pos)
            lost.append(pid)
            lost.extend((pid + d + 1) & 0xFFFF for d in range(16) if blp & (1 << d))
        return lost


@dataclass(slots=True)
class RtcpUnknownPacket:
    """An RTCP packet of a type this library does not interpret (APP, XR...)."""

    packet_type: int
    count: int
    body: bytes

    def __bytes__(self) -> bytes:
        return _pack_packet(self.packet_type, self.count, self.body)


RtcpPacket = (
    RtcpSrPacket
    | RtcpRrPacket
    | RtcpSdesPacket
    | RtcpByePacket
    | RtcpFeedbackPacket
    | RtcpUnknownPacket
)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP packet; :class:`RtpError` names the defect."""
    packets: list[RtcpPacket] = []
    pos, n = 0, len(data)
    if n == 0:
        raise RtpError("RTCP packet is empty")
    while pos < n:
        if pos + 4 > n:
            raise RtpError("RTCP packet length is less than 4 bytes")
        b0, ptype, words = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise RtpError(f"RTCP packet has invalid version {b0 >> 6}")
        count = b0 & 0x1F
        pos += 4
        end = pos + 4 * words
        if end > n:
            raise RtpError("RTCP packet is truncated")
        body = data[pos:end]
        pos = end
        if b0 & 0x20:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtpError("RTCP packet padding length is invalid")
            body = body[: -body[-1]]
        packet: RtcpPacket
        if ptype == RTCP_SR:
            packet = RtcpSrPacket.parse(body, count)
        elif ptype == RTCP_RR:
            packet = RtcpRrPacket.parse(body, count)
        elif ptype == RTCP_SDES:
            packet = RtcpSdesPacket.parse(body, count)
        elif ptype == RTCP_BYE:
            packet = RtcpByePacket.parse(body, count)
        elif ptype in (RTCP_RTPFB, RTCP_PSFB):
            packet = RtcpFeedbackPacket.parse(body, ptype, count)
        else:
            packet = RtcpUnknownPacket(ptype, count, body)
        packets.append(packet)
    return packets


def serialize_rtcp(packets: list[RtcpPacket]) -> bytes:
    """Serialize a compound RTCP packet."""
    return b"".join(bytes(p) for p in packets)


class RtcpScheduler:
    """Decides when the next RTCP report is due (RFC 3550 §6.2, §6.3.1 simplified).

    Reports are sent every ``interval`` seconds (default 5 s), randomised to
    [0.5, 1.5] x interval when an :class:`IdSource` is given so that the calls of
    a process do not report in lock-step; the first report comes after half an
    interval.
    """

    def __init__(self, interval: float = 5.0, ids: IdSource | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"RTCP interval must be positive, got {interval}")
        self.interval = interval
        self._ids = ids
        self.next_time: float | None = None

    def _spread(self) -> float:
        if self._ids is None:
            return 1.0
        return 0.5 + self._ids.randbits(16) / 65536.0

    def start(self, now: float) -> float:
        """Start the schedule; returns the time of the first report."""
        self.next_time = now + self.interval * 0.5 * self._spread()
        return self.next_time

    def due(self, now: float) -> bool:
        """True when a report should be sent at ``now``."""
        return self.next_time is not None and now >= self.next_time

    def sent(self, now: float) -> float:
        """Record that a report was sent at ``now``; returns the next report time."""
        self.next_time = now + self.interval * self._spread()
        return self.next_time


class RtcpSession:
    """Sans-IO RTCP state of one RTP session (one local source, one remote source).

    The media layer feeds it: :meth:`on_rtp_sent` for each packet we send,
    :attr:`receiver` (a :class:`ReceiverStatistics`) for each packet we receive,
    :meth:`receive` for each RTCP datagram, and calls :meth:`build_report` when
    :attr:`scheduler` says a report is due.
    """

    def __init__(
        self,
        ssrc: int,
        cname: str,
        clock_rate: int,
        *,
        interval: float = 5.0,
        ids: IdSource | None = None,
    ) -> None:
        self.ssrc = ssrc
        self.cname = cname
        self.clock_rate = clock_rate
        self.scheduler = RtcpScheduler(interval, ids)
        self.receiver: ReceiverStatistics | None = None
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_rtp_timestamp = 0
        self._last_rtp_time: float | None = None
        self._sent_since_report = False
        self._peer_lsr = 0  # middle 32 bits of the peer's last SR NTP timestamp
        self._peer_sr_time: float | None = None  # when (now) we received it
        self.rtt: float | None = None  # seconds, from the last peer report about us
        self.peer_fraction_lost: int | None = None
        self.peer_cumulative_lost: int | None = None
        self.peer_jitter: int | None = None
        self.bye_received = False

    def on_rtp_sent(self, timestamp: int, payload_size: int, now: float) -> None:
        """Count one RTP packet we sent (sender info of the next SR)."""
        self.packets_sent += 1
        self.octets_sent += payload_size
        self.last_rtp_timestamp = timestamp
        self._last_rtp_time = now
        self._sent_since_report = True

    def receive(self, data: bytes, now: float, wallclock: float) -> list[RtcpPacket]:
        """Process one RTCP datagram from the peer; returns its packets.

        Updates the round-trip time from report blocks about our SSRC:
        RTT = A - LSR - DLSR, where A is the arrival time in NTP middle-32 units.
        Raises :class:`RtpError` when the datagram is malformed.
        """
        packets = parse_rtcp(data)
        arrival = ntp_middle32(ntp_from_unix(wallclock))
        for p in packets:
            if isinstance(p, RtcpSrPacket):
                self._peer_lsr = ntp_middle32(p.sender_info.ntp_timestamp)
                self._peer_sr_time = now
            if isinstance(p, RtcpSrPacket | RtcpRrPacket):
                for block in p.reports:
                    if block.ssrc != self.ssrc:
                        continue
                    self.peer_fraction_lost = block.fraction_lost
                    self.peer_cumulative_lost = block.packets_lost
                    self.peer_jitter = block.jitter
                    if block.lsr:
                        rtt = ((arrival - block.lsr - block.dlsr) & 0xFFFFFFFF) / 65536.0
                        if rtt < 60.0:  # ignore nonsense (clock wrap, bogus LSR)
                            self.rtt = rtt
            elif isinstance(p, RtcpByePacket):
                self.bye_received = True
        return packets

    def _report_blocks(self, now: float) -> list[RtcpReportBlock]:
        r = self.receiver
        if r is None or r.received == 0:
            return []
        fraction, cumulative = r.interval_loss()
        lsr, dlsr = 0, 0
        if self._peer_sr_time is not None:
            lsr = self._peer_lsr
            dlsr = int((now - self._peer_sr_time) * 65536)
        return [
            RtcpReportBlock(r.ssrc, fraction, cumulative, r.extended_max, int(r.jitter), lsr, dlsr)
        ]

    def build_report(self, now: float, wallclock: float) -> bytes:
        """A compound SR-or-RR + SDES(CNAME) packet; marks the report as sent.

        ``wallclock`` (Unix seconds) gives the SR's NTP timestamp; its RTP timestamp
        is the last sent one extrapolated to ``now``.
        """
        blocks = self._report_blocks(now)
        first: RtcpPacket
        if self._sent_since_report:
            rtp_ts = self.last_rtp_timestamp
            if self._last_rtp_time is not None:
                rtp_ts += round((now - self._last_rtp_time) * self.clock_rate)
            info = RtcpSenderInfo(
                ntp_from_unix(wallclock), rtp_ts, self.packets_sent, self.octets_sent
            )
            first = RtcpSrPacket(self.ssrc, info, blocks)
        else:
            first = RtcpRrPacket(self.ssrc, blocks)
        sdes = RtcpSdesPacket([RtcpSdesChunk(self.ssrc, [(SDES_CNAME, self.cname.encode())])])
        self._sent_since_report = False
        self.scheduler.sent(now)
        return bytes(first) + bytes(sdes)

    def build_bye(self, now: float, wallclock: float, reason: str = "") -> bytes:
        """A compound report + BYE, to send when the call ends."""
        report = self.build_report(now, wallclock)
        return report + bytes(RtcpByePacket([self.ssrc], reason.encode()[:255]))
