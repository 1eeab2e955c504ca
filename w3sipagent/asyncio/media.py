"""The RTP endpoint of one call: a thin asyncio layer over the sans-IO :mod:`w3sipagent.rtp`.

Receive path (``datagram_received``): RTCP demultiplexing (RFC 5761), media
source policy, parse, payload-type check, RFC 3550 statistics, jitter buffer,
then telephone-events to the DTMF receiver and everything else to the frame
callback. Malformed packets, unknown payload types and packets from a
foreign source are dropped and counted in :attr:`RtpEndpoint.stats`; nothing
raises out of the receive path.

Send path: the shared :class:`~w3sipagent.asyncio.pacer.Pacer` calls
:meth:`RtpEndpoint.on_pacer_tick` once per frame period. The endpoint takes one
payload from its source (:meth:`RtpEndpoint.set_source`); ``None`` means
"nothing to say" and the endpoint sends the configured silence payload
(default: continuous RTP), a comfort-noise packet, or nothing. After each
source frame actually sent, the ``on_sent`` hook is called: that is how the
bridge knows how much of an AI item really went out (the barge-in truncate
point). Queued DTMF (:meth:`RtpEndpoint.send_dtmf`) replaces audio while it
is sent.

Talk-spurt kick (:meth:`RtpEndpoint.kick`): when the source gets audio after a
tick that sent none, the first frame need not wait up to a period for the next
tick: ``kick`` sends it at once (marker bit, RFC 3550 talk-spurt start) and moves
the stream in the pacer so its next tick is one period later (±half a pacer slot).
The kicked frame takes the next timestamp (over continuous silence the current
20 ms is already covered by a silence packet), so the talk spurt runs ahead of its
timestamps by less than a frame (the "lead"); the lead is bounded (no kick that would exceed one frame). It
is the slack the tick path would have had, and it is spent the same way: when the
source runs dry mid spurt, the frame slot is retried a pacer slot later while the
stream is ahead of its clock, instead of sending silence. What is left is taken back
while silent, one pacer slot per silence packet, so the stream clock never drifts and
no packet goes out after its timestamp's time.

Source policy (``MediaConfig.source_policy``):

- ``"strict"``: only the address the SDP names;
- ``"latch"`` (default): also a new address/port from the SDP's IP or the IP of
  the call's SIP signalling; the endpoint then sends there (symmetric RTP);
- ``"latch-any"``: latch to any source (least safe: RTP injection).

The endpoint is codec-agnostic: it deals in payload bytes; the codec layer
sits above it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, cast

from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import PortAllocation, RtpPortRange
from w3sipagent.errors import RtpError
from w3sipagent.rtp.dtmf import DtmfReceived, DtmfReceiver, DtmfSender
from w3sipagent.rtp.jitter import Frame, JitterBuffer
from w3sipagent.rtp.packet import RtpPacket
from w3sipagent.rtp.rtcp import RtcpByePacket, RtcpSession
from w3sipagent.rtp.session import RtpSession
from w3sipagent.rtp.stats import ReceiverStatistics, StreamStats
from w3sipagent.sip.ids import IdSource

log = logging.getLogger(__name__)

Address = tuple[str, int]
SourcePolicy = Literal["latch", "strict", "latch-any"]
SilenceMode = Literal["silence", "comfort-noise", "none"]
Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]

CN_PAYLOAD_TYPE = 13
_MAX_DATAGRAM = 65536  # read size of the batched RTP reads (asyncio's transport reads 256 KB)


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Tunables of an RTP endpoint (every timer is here, with its default)."""

    source_policy: SourcePolicy = "latch"
    inactivity_timeout: float = 30.0
    rtcp_interval: float = 5.0
    silence: SilenceMode = "silence"
    #: Let ``kick()`` start a talk spurt between ticks (the first frame of a turn goes out
    #: when it arrives instead of at the next tick). Over continuous silence the spurt then
    #: runs up to one frame ahead of its timestamps and is pulled back while silent.
    kick: bool = True
    #: Step of a kicked stream's way back onto its clock (seconds; at least one pacer slot,
    #: 2 ms by default): a retry of a frame slot waiting for the source, or the shift of one
    #: silence packet.
    kick_pullback: float = 0.002
    comfort_noise_level: int = 70  # -dBov (RFC 3389)
    comfort_noise_every: int = 10  # frames between CN updates while silent
    jitter_max_delay: float = 0.2
    jitter_window: int = 100
    jitter_max_conceal: int | None = None  # None: conceal every lost frame of a gap
    dtmf_end_timeout: float = 0.5
    dtmf_volume: int = 10
    dtmf_gap_ms: int = 60
    receive_buffer: int | None = 16384
    """SO_RCVBUF asked for on the RTP/RTCP sockets (bytes; None: the system default, 208 KB
    on Linux). Linux doubles the request and counts each queued datagram at its buffer size
    (~800 bytes for a 20 ms G.711 packet), so the default 16384 gives 32 KB ≈ 40 packets
    ≈ 0.8 s of audio: an agent starved of CPU drops stale audio instead of lagging ~5 s."""
    receive_batch: int = 32
    """Datagrams read from an RTP socket per readiness event, until it is empty. asyncio's
    datagram transport reads one per event loop iteration: a backlog queued during a pause
    (GC, a burst of work, CPU taken by other processes) then drains only one packet per call
    per iteration, which at a few hundred calls is barely faster than packets arrive, and
    the small :attr:`receive_buffer` overflows. 1 keeps the transport's behaviour."""

    def __post_init__(self) -> None:
        if self.source_policy not in ("latch", "strict", "latch-any"):
            raise ValueError(f"source_policy {self.source_policy!r}: latch, strict or latch-any")
        if self.silence not in ("silence", "comfort-noise", "none"):
            raise ValueError(f"silence {self.silence!r}: silence, comfort-noise or none")
        if self.inactivity_timeout <= 0 or self.rtcp_interval <= 0:
            raise ValueError("inactivity_timeout and rtcp_interval must be positive")
        if not 0 < self.kick_pullback <= 0.02:
            raise ValueError(f"kick_pullback {self.kick_pullback!r}: above 0, at most 0.02 s")
        if self.receive_buffer is not None and not 1024 <= self.receive_buffer <= 1 << 26:
            raise ValueError(
                f"receive_buffer {self.receive_buffer}: 1024 to 67108864 bytes, or None"
            )
        if not 1 <= self.receive_batch <= 1024:
            raise ValueError(f"receive_batch {self.receive_batch}: 1 to 1024 datagrams")


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """Base class of endpoint events."""


@dataclass(frozen=True, slots=True)
class RtpTimeout(MediaEvent):
    """No RTP for ``seconds`` (never reported while the peer holds the call)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class SourceLatched(MediaEvent):
    """The endpoint now sends to ``address`` (symmetric RTP latching)."""

    address: Address
    rtcp: bool = False


@dataclass(frozen=True, slots=True)
class RtcpByeReceived(MediaEvent):
    """The peer said goodbye in RTCP."""


def source_allowed(
    policy: SourcePolicy, addr: Address, sdp: Address | None, signalling_ip: str | None
) -> bool:
    """Whether a packet from ``addr`` is accepted (and latched to) under ``policy``.

    The SDP's address is always accepted. ``latch`` also accepts any port of the
    SDP's IP and of the SIP signalling IP; ``latch-any`` accepts everything;
    ``strict`` nothing else.
    """
    if addr == sdp:
        return True
    if policy == "strict":
        return False
    if policy == "latch-any":
        return True
    return (sdp is not None and addr[0] == sdp[0]) or addr[0] == signalling_ip


class _Rtcp(asyncio.DatagramProtocol):
    def __init__(self, endpoint: RtpEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.endpoint._receive_rtcp(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtcp socket error: %s", exc)


class RtpEndpoint(asyncio.DatagramProtocol):
    """One call's RTP (+RTCP) sockets, receive pipeline and paced sender.

    Create with :meth:`open`; close with :meth:`close` (or ``async with``).
    """

    def __init__(
        self,
        allocation: PortAllocation,
        pacer: Pacer,
        ids: IdSource,
        *,
        payload_type: int,
        clock_rate: int,
        ptime_ms: int = 20,
        payload_types: Iterable[int] = (),
        telephone_event_pt: int | None = None,
        rtcp_mux: bool = False,
        signalling_ip: str | None = None,
        cname: str | None = None,
        config: MediaConfig | None = None,
    ) -> None:
        self.config = config or MediaConfig()
        self.allocation = allocation
        self.local_port = allocation.port
        self._sock = allocation.rtp  # sends go straight to the socket (see _sendto)
        self.pacer = pacer
        self.rtcp_mux = rtcp_mux
        self.signalling_ip = signalling_ip
        self.stats = StreamStats()
        self.session = RtpSession(payload_type, clock_rate, ids, ptime_ms=ptime_ms)
        self.rtcp = RtcpSession(
            self.session.ssrc,
            cname or f"w3sip-{ids.token(6)}",
            clock_rate,
            interval=self.config.rtcp_interval,
            ids=ids,
        )
        self.clock_rate = clock_rate
        self._set_payload_types(payload_type, payload_types, telephone_event_pt)
        self.jitter = self._new_jitter(clock_rate, ptime_ms)
        self._new_dtmf(clock_rate, ptime_ms)
        self._rx_stats: ReceiverStatistics | None = None
        # addresses
        self.sdp_address: Address | None = None
        self.sdp_rtcp_address: Address | None = None
        self.send_address: Address | None = None
        self.rtcp_send_address: Address | None = None
        self._rx_addr: Address | None = None
        self._rtcp_rx_addr: Address | None = None
        # direction / hold
        self._send_enabled = True
        self._expect_rx = True
        # callbacks
        self.on_frame: Callable[[Frame], None] | None = None
        self.on_dtmf: Callable[[DtmfReceived], None] | None = None
        self.on_event: Callable[[MediaEvent], None] | None = None
        self._source: Callable[[], bytes | None] | None = None
        self._on_sent: Callable[[bytes], None] | None = None
        self.silence_payload: bytes | None = None
        self._silent_frames = 0
        # io
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._housekeeping: asyncio.TimerHandle | None = None
        self._housekeeping_at = 0.0
        self._inactivity: asyncio.TimerHandle | None = None
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._last_rx = self._loop.time()
        self._timeout_reported = False
        self._paced = False
        self._credit = 0  # ms of pacer time not yet used by a frame (ptime != period)
        self._tick_audio = False  # the last tick sent a source payload
        self._tick_silence = False  # the last tick sent the silence payload (continuous RTP)
        self._frame_at = 0.0  # deadline of the last frame sent or skipped
        self.kicks = 0
        self.deferrals = 0  # frame slots retried while a kicked spurt waited for its source
        self._lead = 0.0  # s the pacer's ticks run ahead of the stream clock (after a kick)
        self.closed = False

    def _set_payload_types(
        self, payload_type: int, others: Iterable[int], telephone_event_pt: int | None
    ) -> None:
        self.telephone_event_pt = telephone_event_pt
        te = [] if telephone_event_pt is None else [telephone_event_pt]
        self._payload_types: frozenset[int] = frozenset([payload_type, *others, *te])

    def _new_dtmf(self, clock_rate: int, ptime_ms: int) -> None:
        c = self.config
        self.dtmf_receiver = DtmfReceiver(clock_rate, end_timeout=c.dtmf_end_timeout)
        self.dtmf_sender = DtmfSender(
            clock_rate, frame_ms=ptime_ms, volume=c.dtmf_volume, gap_ms=c.dtmf_gap_ms
        )

    def _new_jitter(self, clock_rate: int, ptime_ms: int) -> JitterBuffer:
        c = self.config
        return JitterBuffer(
            clock_rate=clock_rate,
            frame_ms=ptime_ms,
            max_delay=c.jitter_max_delay,
            window=c.jitter_window,
            max_conceal=c.jitter_max_conceal,
        )

    # ------------------------------------------------------------ lifecycle
    @classmethod
    async def open(
        cls,
        ports: RtpPortRange,
        host: str,
        pacer: Pacer,
        ids: IdSource,
        *,
        payload_type: int,
        clock_rate: int,
        ptime_ms: int = 20,
        payload_types: Iterable[int] = (),
        telephone_event_pt: int | None = None,
        rtcp_mux: bool = False,
        signalling_ip: str | None = None,
        cname: str | None = None,
        config: MediaConfig | None = None,
    ) -> RtpEndpoint:
        """Bind a port pair from ``ports`` on ``host`` and start receiving.

        Raises :class:`~w3sipagent.errors.PortsExhausted` when the range is full.
        The ports are released if anything fails here, and by :meth:`close`.
        """
        allocation = ports.allocate(host, rtcp=not rtcp_mux)
        try:
            loop = asyncio.get_running_loop()
            endpoint = cls(
                allocation,
                pacer,
                ids,
                payload_type=payload_type,
                clock_rate=clock_rate,
                ptime_ms=ptime_ms,
                payload_types=payload_types,
                telephone_event_pt=telephone_event_pt,
                rtcp_mux=rtcp_mux,
                signalling_ip=signalling_ip,
                cname=cname,
                config=config,
            )
            rcvbuf = endpoint.config.receive_buffer
            if rcvbuf is not None:
                for sock in (allocation.rtp, allocation.rtcp):
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            await loop.create_datagram_endpoint(lambda: endpoint, sock=allocation.rtp)
            if allocation.rtcp is not None:
                rtcp_transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Rtcp(endpoint), sock=allocation.rtcp
                )
                endpoint._rtcp_transport = rtcp_transport
        except BaseException:
            allocation.release()
            raise
        endpoint._arm_inactivity()
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket error on port %d: %s", self.local_port, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    async def __aenter__(self) -> RtpEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self, reason: str = "") -> None:
        """Stop sending, send an RTCP BYE, close the sockets, release the ports. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.pacer.remove(self)
        for h in (self._housekeeping, self._inactivity, self._rtcp_timer):
            if h is not None:
                h.cancel()
        try:
            if self.rtcp_send_address is not None or self.send_address is not None:
                data = self.rtcp.build_bye(self._loop.time(), time.time(), reason)
                self._send_rtcp(data)
        except Exception:
            log.debug("rtcp bye failed", exc_info=True)
        for t in (self._transport, self._rtcp_transport):
            if t is not None:
                t.close()
        self.allocation.release()

    # ------------------------------------------------------------ control
    @property
    def rtcp_port(self) -> int:
        """The local RTCP port (the RTP port itself with rtcp-mux)."""
        return self.allocation.rtcp_port or self.local_port

    @property
    def receive_buffer(self) -> int:
        """The RTP socket's receive buffer as granted by the kernel (bytes; Linux doubles
        :attr:`MediaConfig.receive_buffer`)."""
        return int(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def set_remote(self, address: Address, rtcp_address: Address | None = None) -> None:
        """The address the SDP names (call set-up or re-INVITE re-targeting); starts sending."""
        self.sdp_address = address
        self.send_address = address
        self._rx_addr = None
        if rtcp_address is None:
            rtcp_address = address if self.rtcp_mux else (address[0], address[1] + 1)
        self.sdp_rtcp_address = rtcp_address
        self.rtcp_send_address = rtcp_address
        self._rtcp_rx_addr = None
        if not self._paced and not self.closed:
            self._paced = True
            self.pacer.add(self)
            self._rtcp_timer = self._loop.call_at(
                self.rtcp.scheduler.start(self._loop.time()), self._rtcp_due
            )

    def set_codec(
        self,
        payload_type: int,
        clock_rate: int,
        *,
        ptime_ms: int | None = None,
        payload_types: Iterable[int] = (),
        telephone_event_pt: int | None = None,
        silence_payload: bytes | None = None,
    ) -> None:
        """Swap the payload type / codec clock (re-INVITE). The receive side restarts cleanly."""
        old_ptime = self.session.ptime_ms
        self.session.set_codec(payload_type, clock_rate, ptime_ms)
        ptime = self.session.ptime_ms
        if clock_rate == self.clock_rate and ptime != old_ptime:
            self.jitter.frame_time = ptime / 1000.0
            self.dtmf_sender = DtmfSender(
                clock_rate,
                frame_ms=ptime,
                volume=self.config.dtmf_volume,
                gap_ms=self.config.dtmf_gap_ms,
            )
        if clock_rate != self.clock_rate:
            self.clock_rate = clock_rate
            self.rtcp.clock_rate = clock_rate
            for f in self.jitter.flush():
                self._deliver(f, self._loop.time())
            self.jitter = self._new_jitter(clock_rate, ptime)
            self._new_dtmf(clock_rate, ptime)
            self._rx_stats = None
        self._set_payload_types(payload_type, payload_types, telephone_event_pt)
        self.silence_payload = silence_payload

    def set_source(
        self,
        next_frame: Callable[[], bytes | None] | None,
        on_sent: Callable[[bytes], None] | None = None,
    ) -> None:
        """Where outbound payloads come from (called once per frame period by the pacer).

        ``on_sent(payload)`` is called right after each source payload was handed to
        the socket (not for silence / comfort noise / DTMF).
        """
        self._source = next_frame
        self._on_sent = on_sent

    def set_remote_direction(self, direction: Direction) -> None:
        """The peer's SDP direction: we send unless it is sendonly/inactive; the
        inactivity timeout runs only while the peer sends (sendrecv)."""
        self._send_enabled = direction in ("sendrecv", "recvonly")
        was = self._expect_rx
        self._expect_rx = direction == "sendrecv"
        if self._expect_rx and not was:
            self._last_rx = self._loop.time()
            self._timeout_reported = False
            self._arm_inactivity()

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 digits; audio pauses while they are sent.

        Raises ValueError for a bad digit / duration or when no telephone-event
        payload type was negotiated.
        """
        if self.telephone_event_pt is None:
            raise ValueError("no telephone-event payload type negotiated")
        self.dtmf_sender.send(digits, duration_ms)
        self.stats.dtmf_sent += len(digits)

    def snapshot(self) -> StreamStats:
        """The stream statistics, refreshed from the jitter buffer and RFC 3550 state."""
        s = self.stats
        jb = self.jitter
        s.lost, s.concealed, s.late = jb.lost, jb.concealed, jb.late
        s.duplicates, s.out_of_order, s.ssrc_changes = (
            jb.duplicates,
            jb.out_of_order,
            jb.ssrc_changes,
        )
        if self._rx_stats is not None:
            s.jitter_ms = self._rx_stats.jitter * 1000.0 / self.clock_rate
            s.max_jitter_ms = max(s.max_jitter_ms, s.jitter_ms)
        s.packets_sent = self.session.packets_sent
        s.bytes_sent = self.session.octets_sent
        if self.rtcp.rtt is not None:
            s.rtt_ms = self.rtcp.rtt * 1000.0
        if self.rtcp.peer_fraction_lost is not None:
            s.peer_fraction_lost = self.rtcp.peer_fraction_lost / 256.0
        return s

    # ------------------------------------------------------------ receive
    def _accept(self, addr: Address, rtcp: bool) -> bool:
        sdp = self.sdp_rtcp_address if rtcp else self.sdp_address
        if not source_allowed(self.config.source_policy, addr, sdp, self.signalling_ip):
            return False
        self._latch(addr, rtcp)
        return True

    def _latch(self, addr: Address, rtcp: bool) -> None:
        if rtcp:
            self._rtcp_rx_addr = addr
            if self.rtcp_send_address != addr:
                self.rtcp_send_address = addr
                self._emit(SourceLatched(addr, True))
        else:
            self._rx_addr = addr
            if self.send_address != addr:
                self.send_address = addr
                if self.rtcp_mux:
                    self.rtcp_send_address = addr
                self._emit(SourceLatched(addr))

    def datagram_received(self, data: bytes, addr: Address) -> None:
        # The transport read one datagram; whatever else is queued on the socket is read
        # here too (up to receive_batch), so a backlog drains in one loop iteration.
        self._receive(data, addr)
        batch = self.config.receive_batch
        if batch <= 1:
            return
        recvfrom = self._sock.recvfrom
        receive = self._receive
        for _ in range(batch - 1):
            if self.closed:
                return
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable of an earlier send
                self.error_received(exc)
                return
            receive(data, addr)

    def _receive(self, data: bytes, addr: Address) -> None:
        # The per-packet path (50 a second per call): locals instead of repeated
        # attribute lookups, audio frames handed to on_frame without a call hop.
        try:
            if len(data) > 1 and 192 <= data[1] <= 223:
                self._receive_rtcp(data, addr)
                return
            if addr != self._rx_addr and not self._accept(addr, False):
                self.stats.wrong_source += 1
                return
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                self.stats.malformed += 1
                return
            if packet.payload_type not in self._payload_types:
                self.stats.unknown_payload_type += 1
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

    def _receive_rtcp(self, data: bytes, addr: Address) -> None:
        try:
            if addr != self._rtcp_rx_addr and not self._accept(addr, True):
                self.stats.wrong_source += 1
                return
            try:
                packets = self.rtcp.receive(data, self._loop.time(), time.time())
            except RtpError:
                self.stats.malformed += 1
                return
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

    def _arm_inactivity(self, at: float | None = None) -> None:
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
            self._arm_inactivity(now + timeout)
        else:
            self._arm_inactivity()

    def _rtcp_due(self) -> None:
        self._rtcp_timer = None
        if self.closed:
            return
        now = self._loop.time()
        try:
            self._send_rtcp(self.rtcp.build_report(now, time.time()))
        except Exception:
            log.exception("rtcp report failed")
        nxt = self.rtcp.scheduler.next_time or now + self.config.rtcp_interval
        self._rtcp_timer = self._loop.call_at(nxt, self._rtcp_due)

    def _send_rtcp(self, data: bytes) -> None:
        if self.rtcp_mux or self._rtcp_transport is None:
            transport, addr = self._transport, self.send_address
        else:
            transport, addr = self._rtcp_transport, self.rtcp_send_address
        if transport is not None and addr is not None:
            transport.sendto(data, addr)
            self.stats.rtcp_sent += 1

    def _emit(self, event: MediaEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("media event handler failed")

    # ------------------------------------------------------------ send (pacer)
    def on_pacer_tick(self, deadline: float) -> None:
        """Send this period's packet(s) (called by the shared pacer every period).

        With a ptime other than the pacer's period (a=ptime:30 / 40 from the peer) the
        frames are sent at their own rate: a 40 ms stream every other period, a 30 ms
        one on the nearest period (1 frame per 30 ms on average, 10 ms jitter at most);
        the RTP timestamp advances by one frame per frame, never per period.
        """
        ptime = self.session.ptime_ms
        period = self._period_ms
        if ptime == period:
            self._send_frame(deadline)
            return
        credit = self._credit + period
        while credit >= ptime:
            credit -= ptime
            self._send_frame(deadline)
        self._credit = credit

    def kick(self) -> bool:
        """Send the source's first frame of a talk spurt now instead of at the next tick.

        Only when the last tick sent no source audio (the source was empty), the call
        is not on hold, no DTMF is being sent, and the source has a frame now. The
        packet carries the marker bit and the next timestamp (after a silence packet
        nothing else is possible), so the frame goes out before its time: that lead is at
        most one frame (a kick that would exceed it is refused and the frame waits for its
        tick), absorbs a late frame later in the spurt (:meth:`_defer`) and is taken back
        at its end or while silent (:meth:`_pull_back`). With a ptime other than the
        pacer's period the timestamp is instead the stream clock of this moment. The
        stream is re-phased in the pacer so the next frame follows one ptime later.
        Returns True if a packet was sent.
        """
        session = self.session
        addr = self.send_address
        source = self._source
        if (
            self._tick_audio
            or not self.config.kick
            or not self._paced
            or self.closed
            or self._transport is None
            or addr is None
            or source is None
            or not self._send_enabled
            or self.dtmf_sender.active
            or (self._tick_silence and session.ptime_ms != self._period_ms)
        ):
            return False
        now = self._loop.time()
        ptime = session.ptime_ms / 1000.0
        ahead = self._frame_at + ptime + self._lead - now  # to the next timestamp's time
        back = 0
        if not self._tick_silence and ahead > 0 and session.ptime_ms != self._period_ms:
            # an odd ptime (30 / 40 ms) has no frame-slot retry: stamp the frame with the
            # stream clock of this moment instead (nothing sent covers it)
            back = min(int(ahead * session.clock_rate), session.samples_per_frame - 1)
        nominal = now + ahead - back / session.clock_rate  # when the timestamp says it starts
        if nominal - now > ptime + self.pacer.tick / 2:
            return False  # still pulling back an earlier kick: this one would run too far ahead
        payload = source()
        if payload is None:
            return False
        ts = (session.timestamp - back) & 0xFFFFFFFF
        session.talkspurt()
        self._silent_frames = 0
        self._sendto(session.packet(payload, timestamp=ts), addr)
        self.rtcp.on_rtp_sent(ts, len(payload), now)
        session.timestamp = ts
        session.advance()
        self._tick_audio = True
        self._tick_silence = False
        self._credit = 0
        self.kicks += 1
        nxt = self.pacer.rephase(self, now)
        if nxt and session.ptime_ms == self._period_ms:
            self._lead = nominal + ptime - nxt  # the next tick sends the frame due then
        if self._on_sent is not None:
            self._on_sent(payload)
        return True

    @property
    def lead(self) -> float:
        """Seconds this stream's packets go out ahead of their timestamps (after a kick over
        continuous silence; 0 once pulled back, within half a pacer slot)."""
        return self._lead

    @property
    def _step(self) -> float:
        """How far a kicked stream moves back towards its clock at a time (>= a pacer slot)."""
        return max(self.config.kick_pullback, self.pacer.tick)

    @property
    def _period_ms(self) -> int:
        return round(self.pacer.period * 1000)

    def _send_frame(self, deadline: float) -> None:
        session = self.session
        addr = self.send_address
        mid_spurt = self._tick_audio
        self._frame_at = deadline
        self._tick_audio = self._tick_silence = False
        if self._transport is None or addr is None or not self._send_enabled:
            session.advance()
            return
        deferred = False
        try:
            if self.dtmf_sender.active and self._send_dtmf(addr, deadline):
                return
            source = self._source
            payload = source() if source is not None else None
            if payload is not None:
                self._tick_audio = True
                if self._silent_frames:
                    if not (self.config.silence == "silence" and self.silence_payload is not None):
                        session.talkspurt()  # we stopped sending: mark the new talk spurt
                    self._silent_frames = 0
                self._sendto(session.packet(payload), addr)
                self.rtcp.on_rtp_sent(session.timestamp, len(payload), deadline)
                if self._on_sent is not None:
                    self._on_sent(payload)
            elif mid_spurt and self._defer(deadline):
                deferred = True  # the same frame slot is tried again a pacer slot later
                self._tick_audio = True  # still in the talk spurt: no kick meanwhile
            else:
                self._send_silence(addr, deadline)
                if abs(self._lead) > self.pacer.tick / 2:
                    self._pull_back(deadline)
        finally:
            if not deferred:
                session.advance()

    def _defer(self, deadline: float) -> bool:
        """The source ran dry mid talk spurt while the stream is ahead of its clock (a
        kicked spurt): spend that lead waiting for the audio instead of sending silence.
        The frame slot is tried again one pacer slot later (never later than the frame's
        timestamp says), so a source that delivers in real time (slightly jittered) plays
        without a gap, exactly as it would have without the kick. False: no lead left."""
        lead = self._lead
        if lead <= self.pacer.tick / 2 or self.session.ptime_ms != self._period_ms:
            return False
        shift = min(self._step, lead)
        nxt = self.pacer.rephase(self, deadline + shift - self.pacer.period)
        if not nxt or nxt <= deadline:
            return False
        self._lead = lead - (nxt - deadline)
        self.deferrals += 1
        return True

    def _pull_back(self, deadline: float) -> None:
        """While silent, move the stream's ticks back onto its clock (a kicked talk spurt
        runs up to a frame ahead): the next tick is one period plus at most one step
        (``MediaConfig.kick_pullback``, at least a pacer slot) away, so a receiver sees
        jitter of a slot, never a missing packet."""
        lead = self._lead
        step = self._step
        shift = max(-step, min(step, lead))
        nxt = self.pacer.rephase(self, deadline + shift)
        if nxt:
            self._lead = lead - (nxt - (deadline + self.pacer.period))

    def _sendto(self, data: bytes, addr: Address) -> None:
        """One datagram straight to the socket: the transport's ``sendto`` checks and
        wrappers cost more than the system call itself on this per-packet path. When the
        socket buffer is full the transport queues it instead (and keeps the order)."""
        transport = self._transport
        if transport is None:
            return
        if transport.get_write_buffer_size():  # type: ignore[attr-defined]  # both loops have it
            transport.sendto(data, addr)
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            transport.sendto(data, addr)
        except OSError as exc:  # e.g. ICMP port unreachable reported on a later send
            self.error_received(exc)

    def _send_dtmf(self, addr: Address, deadline: float) -> bool:
        session = self.session
        p = self.dtmf_sender.next_packet(session.timestamp)
        if p is None or self.telephone_event_pt is None:
            return False
        self._sendto(
            session.packet(
                p.payload,
                marker=p.marker,
                payload_type=self.telephone_event_pt,
                timestamp=p.timestamp,
            ),
            addr,
        )
        self.rtcp.on_rtp_sent(p.timestamp, len(p.payload), deadline)
        return True

    def _send_silence(self, addr: Address, now: float) -> None:
        mode = self.config.silence
        session = self.session
        n = self._silent_frames
        self._silent_frames = n + 1
        if mode == "silence" and self.silence_payload is not None:
            self._tick_silence = True
            self._sendto(session.packet(self.silence_payload), addr)
            self.rtcp.on_rtp_sent(session.timestamp, len(self.silence_payload), now)
        elif mode == "comfort-noise" and n % self.config.comfort_noise_every == 0:
            level = bytes([self.config.comfort_noise_level & 0x7F])
            self._sendto(session.packet(level, payload_type=CN_PAYLOAD_TYPE, marker=n == 0), addr)
            self.rtcp.on_rtp_sent(session.timestamp, 1, now)

    def on_pacer_skip(self, periods: int) -> None:
        """The loop stalled: advance the stream clock without sending a burst."""
        frames, self._credit = divmod(
            self._credit + periods * self._period_ms, self.session.ptime_ms
        )
        self.session.advance(frames)
        self.session.talkspurt()
