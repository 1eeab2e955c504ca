"""The receive side of an RTP endpoint: from a datagram to frames, DTMF and events.

:meth:`RtpReceiver.receive` is the per-packet path: RTCP demultiplexing (RFC 5761),
media source policy, parse, payload-type check, payload size bound
(``MediaConfig.max_packet_ms``), latching (a takeover by another source needs
``MediaConfig.relatch_packets`` packets of the established stream, see
:mod:`~w3sipagent.asyncio.mediaconfig`), RFC 3550 statistics, jitter buffer, then
telephone-events to the DTMF receiver and everything else to
:attr:`RtpReceiver.on_frame`. Malformed packets, unknown payload types, oversized
payloads and packets from a foreign source are dropped and counted in the endpoint's
:class:`~w3sipagent.rtp.stats.StreamStats`; nothing raises out of the receive path.

Two timers belong here: housekeeping (the jitter buffer's and the DTMF receiver's
deadlines: a gap concealed, a digit ended without new packets) and inactivity (no
RTP for ``MediaConfig.inactivity_timeout`` while the peer should send).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import weakref
from collections.abc import Callable

from w3sipagent.asyncio.mediaconfig import (
    Address,
    MediaConfig,
    MediaEvent,
    PeerAddresses,
    RtcpByeReceived,
    RtpTimeout,
    SourceLatched,
    source_allowed,
)
from w3sipagent.errors import RtpError
from w3sipagent.rtp.dtmf import DtmfReceived, DtmfReceiver
from w3sipagent.rtp.jitter import Frame, JitterBuffer
from w3sipagent.rtp.packet import RtpPacket
from w3sipagent.rtp.rtcp import RtcpByePacket, RtcpSession
from w3sipagent.rtp.stats import ReceiverStatistics, StreamStats

log = logging.getLogger(__name__)

_MAX_DATAGRAM = 65536  # read size of the batched RTP reads (asyncio's transport reads 256 KB)
_MAX_GAP = 512  # sequence numbers a re-latching stream may skip (packets lost meanwhile)
_ONE_BYTE_PTS = frozenset((0, 8, 9))  # PCMU, PCMA, G.722: one payload byte per clock tick
_MAX_BYTES_PER_TICK = 8  # others: L16 up to 4 channels (Opus is bounded by its 120 ms)


class ReadBudget:
    """The datagrams the endpoints of one event loop may still read in this loop iteration
    beyond one per readiness event (``MediaConfig.receive_budget``); refilled at the start
    of the next iteration (a ``call_soon`` armed by the first read of an iteration)."""

    __slots__ = ("_armed", "_loop", "exhausted", "left", "per_iteration")

    def __init__(self, loop: asyncio.AbstractEventLoop, per_iteration: int) -> None:
        self._loop = loop
        self.per_iteration = per_iteration
        self.left = per_iteration
        self._armed = False
        self.exhausted = 0
        """Iterations in which the budget ran out (reads left for the next one)."""

    def spend(self) -> None:
        """One datagram read."""
        if not self._armed:
            self._armed = True
            self._loop.call_soon(self._refill)
        self.left -= 1
        if not self.left:
            self.exhausted += 1

    def _refill(self) -> None:
        self.left = self.per_iteration
        self._armed = False


_BUDGETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, ReadBudget]] = (
    weakref.WeakKeyDictionary()
)


def read_budget(loop: asyncio.AbstractEventLoop, per_iteration: int) -> ReadBudget | None:
    """The :class:`ReadBudget` the endpoints of ``loop`` share (None: ``per_iteration`` 0,
    no bound)."""
    if per_iteration <= 0:
        return None
    budgets = _BUDGETS.setdefault(loop, {})
    budget = budgets.get(per_iteration)
    if budget is None:
        budget = budgets[per_iteration] = ReadBudget(loop, per_iteration)
    return budget


def max_payload_bytes(
    config: MediaConfig, payload_type: int, clock_rate: int, ptime_ms: int
) -> int:
    """The biggest payload of ``payload_type`` an RTP packet may carry: ``max_packet_ms`` of
    audio (None: twice ``ptime_ms``, at least 60 ms)."""
    ms = config.max_packet_ms or max(2 * ptime_ms, 60)
    per_tick = 1 if payload_type in _ONE_BYTE_PTS else _MAX_BYTES_PER_TICK
    return clock_rate * ms * per_tick // 1000


class RtpReceiver:
    """One call's receive pipeline (fed by :class:`~w3sipagent.asyncio.media.RtpEndpoint`)."""

    def __init__(
        self,
        config: MediaConfig,
        loop: asyncio.AbstractEventLoop,
        *,
        stats: StreamStats,
        rtcp: RtcpSession,
        peer: PeerAddresses,
        emit: Callable[[MediaEvent], None],
        clock_rate: int,
        ptime_ms: int,
        payload_type: int,
        payload_types: frozenset[int],
        telephone_event_pt: int | None,
        signalling_ip: str | None,
        sock: socket.socket,
        on_error: Callable[[Exception], None],
    ) -> None:
        self.config = config
        self.stats = stats
        self.rtcp = rtcp
        self.peer = peer
        self.signalling_ip = signalling_ip
        self.sock = sock  # read in batches (see datagram_received)
        self.budget = read_budget(loop, config.receive_budget)
        self.local_port = int(sock.getsockname()[1])
        self._on_error = on_error
        self._emit = emit
        self._loop = loop
        self.clock_rate = clock_rate
        self.payload_types = payload_types
        self.telephone_event_pt = telephone_event_pt
        self.jitter = self._new_jitter(clock_rate, ptime_ms)
        #: The biggest payload accepted (bytes; see :func:`max_payload_bytes`).
        self.max_payload = max_payload_bytes(config, payload_type, clock_rate, ptime_ms)
        #: A source taking over the established stream: (address, SSRC, last sequence
        #: number, consecutive packets so far).
        self._candidate: tuple[Address, int, int, int] | None = None
        self.dtmf_receiver = DtmfReceiver(clock_rate, end_timeout=config.dtmf_end_timeout)
        self._rx_stats: ReceiverStatistics | None = None
        self.on_frame: Callable[[Frame], None] | None = None
        self.on_dtmf: Callable[[DtmfReceived], None] | None = None
        self._housekeeping: asyncio.TimerHandle | None = None
        self._housekeeping_at = 0.0
        self._inactivity: asyncio.TimerHandle | None = None
        self._expect_rx = True
        self._last_rx = loop.time()
        self._timeout_reported = False
        self.closed = False

    def _new_jitter(self, clock_rate: int, ptime_ms: int) -> JitterBuffer:
        c = self.config
        return JitterBuffer(
            clock_rate=clock_rate,
            frame_ms=ptime_ms,
            max_delay=c.jitter_max_delay,
            window=c.jitter_window,
            max_conceal=c.jitter_max_conceal,
        )

    @property
    def rx_stats(self) -> ReceiverStatistics | None:
        """RFC 3550 receiver statistics of the current source (None before the first packet)."""
        return self._rx_stats

    def set_codec(
        self,
        clock_rate: int,
        ptime_ms: int,
        ptime_changed: bool,
        payload_type: int,
        payload_types: frozenset[int],
        telephone_event_pt: int | None,
    ) -> None:
        """A new codec (re-INVITE): on a new clock rate the buffered frames are delivered
        and the pipeline restarts; on a new ptime alone the jitter buffer's frame changes."""
        self.max_payload = max_payload_bytes(self.config, payload_type, clock_rate, ptime_ms)
        if clock_rate == self.clock_rate and ptime_changed:
            self.jitter.frame_time = ptime_ms / 1000.0
        if clock_rate != self.clock_rate:
            self.clock_rate = clock_rate
            for f in self.jitter.flush():
                self._deliver(f, self._loop.time())
            self.jitter = self._new_jitter(clock_rate, ptime_ms)
            self.dtmf_receiver = DtmfReceiver(clock_rate, end_timeout=self.config.dtmf_end_timeout)
            self._rx_stats = None
        self.telephone_event_pt = telephone_event_pt
        self.payload_types = payload_types

    def close(self) -> None:
        """Stop the timers; nothing is delivered from now on."""
        self.closed = True
        for h in (self._housekeeping, self._inactivity):
            if h is not None:
                h.cancel()

    # ------------------------------------------------------------ packets
    def datagram_received(self, data: bytes, addr: Address) -> None:
        """The RTP socket is readable: ``data`` was read by the transport, the rest queued
        on the socket is read here (up to ``MediaConfig.receive_batch``, within the loop's
        ``MediaConfig.receive_budget``)."""
        # The transport read one datagram; whatever else is queued on the socket is read
        # here too (up to receive_batch), so a backlog drains in few loop iterations; the
        # budget shared by the loop's endpoints bounds one iteration's reads.
        receive = self.receive
        receive(data, addr)
        batch = self.config.receive_batch
        if batch <= 1:
            return
        recvfrom = self.sock.recvfrom
        budget = self.budget
        for _ in range(batch - 1):
            if self.closed or (budget is not None and budget.left <= 0):
                return  # still readable: the rest is read in the next iteration
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable of an earlier send
                self._on_error(exc)
                return
            if budget is not None:
                budget.spend()
            receive(data, addr)

    def receive(self, data: bytes, addr: Address) -> None:
        """One datagram from the RTP socket (RTCP too, with rtcp-mux)."""
        # The per-packet path (50 a second per call): locals instead of repeated
        # attribute lookups, audio frames handed to on_frame without a call hop. A packet
        # of the latched source costs two more comparisons than that (candidate, size).
        try:
            if len(data) > 1 and 192 <= data[1] <= 223:
                self.receive_rtcp(data, addr)
                return
            latched = addr == self.peer.rx
            if not latched and not self._source_allowed(addr):
                self.stats.wrong_source += 1
                self.stats.foreign += 1
                return
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                self.stats.malformed += 1
                if not latched:
                    self.stats.foreign += 1
                return
            if packet.payload_type not in self.payload_types:
                self.stats.unknown_payload_type += 1
                if not latched:
                    self.stats.foreign += 1
                return
            if len(packet.payload) > self.max_payload:
                self.stats.oversize += 1
                return
            if latched:
                if self._candidate is not None:
                    self._candidate = None  # the latched stream goes on: no takeover
            elif not self._relatch(packet, addr):
                self.stats.foreign += 1
                return
            now = self._loop.time()
            stats = self.stats
            stats.packets_received += 1
            stats.bytes_received += len(packet.payload)
            self._last_rx = now
            if self._timeout_reported:
                self._timeout_reported = False  # RTP is back: a new silence is reported again
            rs = self._rx_stats
            if rs is None or rs.ssrc != packet.ssrc:
                rs = self._rx_stats = ReceiverStatistics(packet.ssrc, packet.sequence_number)
                self.rtcp.receiver = rs
            rs.update(packet.sequence_number, packet.timestamp, int(now * self.clock_rate))
            jb = self.jitter
            jb.push(packet, now)
            te_pt = self.telephone_event_pt
            on_frame = self.on_frame
            for frame in jb.pop(now):
                if on_frame is None or frame.payload_type == te_pt:
                    self._deliver(frame, now)
                else:
                    on_frame(frame)
            if len(jb) or self.dtmf_receiver.next_deadline() is not None:
                self._arm_housekeeping()
        except Exception:  # never let anything escape into the event loop
            self.stats.malformed += 1
            log.exception("rtp receive failed on port %d", self.local_port)

    def _source_allowed(self, addr: Address, rtcp: bool = False) -> bool:
        peer = self.peer
        sdp = peer.sdp_rtcp if rtcp else peer.sdp
        return source_allowed(self.config.source_policy, addr, sdp, self.signalling_ip)

    def _relatch(self, packet: RtpPacket, addr: Address) -> bool:
        """A valid RTP packet from an allowed source other than the latched one: latch to
        it when nothing is latched yet; else count it towards a takeover, which needs
        ``relatch_packets`` consecutive packets of the established stream (its SSRC, its
        sequence continued) from that source. True: latched, the packet is accepted."""
        peer = self.peer
        rs = self._rx_stats
        if peer.rx is not None:
            if rs is None:  # a new clock rate restarted the statistics: nothing to continue
                return False
            seq = packet.sequence_number
            cand = self._candidate
            if cand is not None and cand[0] == addr and cand[1] == packet.ssrc:
                base, count = cand[2], cand[3] + 1
            elif packet.ssrc == rs.ssrc:
                base, count = rs.max_seq, 1  # a new candidate continues the established stream
                cand = None
            else:  # another stream: dropped, and no say in a takeover under way
                return False
            if not 0 < (seq - base) & 0xFFFF <= _MAX_GAP:
                if cand is not None:
                    self._candidate = None  # the candidate's own sequence broke
                return False
            if count < self.config.relatch_packets:
                self._candidate = (addr, packet.ssrc, seq, count)
                return False
            log.info("rtp on port %d re-latched to %s:%d", self.local_port, addr[0], addr[1])
        self._candidate = None
        if peer.latch(addr, False):
            self._emit(SourceLatched(addr, False))
        return True

    def _deliver(self, frame: Frame, now: float) -> None:
        if frame.payload_type == self.telephone_event_pt and self.telephone_event_pt is not None:
            if frame.payload is None:
                return
            try:
                events = self.dtmf_receiver.receive(frame.timestamp, frame.payload, now)
            except RtpError:
                self.stats.malformed += 1
                return
            for ev in events:
                self.stats.dtmf_received += 1
                if self.on_dtmf is not None:
                    self.on_dtmf(ev)
            return
        if self.on_frame is not None:
            self.on_frame(frame)

    def receive_rtcp(self, data: bytes, addr: Address) -> None:
        """One RTCP datagram (from the RTCP socket, or demultiplexed from the RTP one)."""
        try:
            known = addr == self.peer.rtcp_rx
            if not known and not self._source_allowed(addr, True):
                self.stats.wrong_source += 1
                return
            try:
                packets = self.rtcp.receive(data, self._loop.time(), time.time())
            except RtpError:
                self.stats.malformed += 1
                return
            if not known and self.peer.latch(addr, True):  # valid RTCP only
                self._emit(SourceLatched(addr, True))
            self.stats.rtcp_received += 1
            if any(isinstance(p, RtcpByePacket) for p in packets):
                self._emit(RtcpByeReceived())
        except Exception:
            self.stats.malformed += 1
            log.exception("rtcp receive failed on port %d", self.local_port)

    # ------------------------------------------------------------ timers
    def _arm_housekeeping(self) -> None:
        deadlines = [
            d for d in (self.jitter.next_deadline(), self.dtmf_receiver.next_deadline()) if d
        ]
        if not deadlines:
            return
        at = min(deadlines)
        if self._housekeeping is not None:
            if self._housekeeping_at <= at:
                return
            self._housekeeping.cancel()
        self._housekeeping_at = at
        self._housekeeping = self._loop.call_at(at, self._on_housekeeping)

    def _on_housekeeping(self) -> None:
        self._housekeeping = None
        if self.closed:
            return
        now = self._loop.time()
        try:
            for frame in self.jitter.pop(now):
                self._deliver(frame, now)
            for ev in self.dtmf_receiver.poll(now):
                self.stats.dtmf_received += 1
                if self.on_dtmf is not None:
                    self.on_dtmf(ev)
        except Exception:
            log.exception("rtp housekeeping failed")
        self._arm_housekeeping()

    def expect(self, sending: bool) -> None:
        """Whether the peer sends (SDP sendrecv): the inactivity timeout runs only then, and
        starts over when the peer resumes."""
        was = self._expect_rx
        self._expect_rx = sending
        if sending and not was:
            self._last_rx = self._loop.time()
            self._timeout_reported = False
            self.arm_inactivity()

    def arm_inactivity(self, at: float | None = None) -> None:
        """(Re)start the inactivity timer: ``at``, or the timeout after the last packet."""
        if self._inactivity is not None:
            self._inactivity.cancel()
        if at is None:
            at = self._last_rx + self.config.inactivity_timeout
        self._inactivity = self._loop.call_at(at, self._on_inactivity)

    def _on_inactivity(self) -> None:
        self._inactivity = None
        if self.closed or not self._expect_rx:
            return
        now = self._loop.time()
        timeout = self.config.inactivity_timeout
        idle = now - self._last_rx
        if idle >= timeout - 1e-6:  # (the timer fires at last_rx + timeout: float slack)
            if not self._timeout_reported:  # once per silence: RTP arriving clears it
                self._timeout_reported = True
                self._emit(RtpTimeout(idle))
            self.arm_inactivity(now + timeout)
        else:
            self.arm_inactivity()
