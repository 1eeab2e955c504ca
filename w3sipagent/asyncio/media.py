"""The RTP endpoint of one call: a thin asyncio layer over the sans-IO :mod:`w3sipagent.rtp`.

:class:`RtpEndpoint` owns the call's RTP (+RTCP) sockets and their life cycle, the
peer's addresses, the RTCP report timer, and the controls a call uses (remote address,
codec, source, direction, DTMF, statistics). Each of its two paths is a part of its own:

- receive (:class:`~w3sipagent.asyncio.mediareceive.RtpReceiver`): each datagram read
  from the RTP socket (in batches: ``MediaConfig.receive_batch``): source policy, parse,
  statistics, jitter buffer, DTMF, frames to :attr:`RtpEndpoint.on_frame`;
- send (:class:`~w3sipagent.asyncio.mediasend.RtpSender`): the shared
  :class:`~w3sipagent.asyncio.pacer.Pacer` ticks the endpoint once per frame period and
  the sender sends a frame, silence or DTMF; :meth:`RtpEndpoint.kick` starts a talk
  spurt between ticks.

The endpoint is codec-agnostic (payload bytes; the codec layer sits above it). Its
configuration, events and source policy (:mod:`w3sipagent.asyncio.mediaconfig`) are
re-exported here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import cast

from w3sipagent.asyncio.mediaconfig import (
    CN_PAYLOAD_TYPE,
    Address,
    Direction,
    MediaConfig,
    MediaEvent,
    PeerAddresses,
    RtcpByeReceived,
    RtpTimeout,
    SilenceMode,
    SourceLatched,
    SourcePolicy,
    source_allowed,
)
from w3sipagent.asyncio.mediareceive import RtpReceiver
from w3sipagent.asyncio.mediasend import RtpSender
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import PortAllocation, RtpPortRange
from w3sipagent.rtp.dtmf import DtmfReceived
from w3sipagent.rtp.jitter import Frame, JitterBuffer
from w3sipagent.rtp.rtcp import RtcpSession
from w3sipagent.rtp.session import RtpSession
from w3sipagent.rtp.stats import StreamStats
from w3sipagent.sip.ids import IdSource

__all__ = [
    "CN_PAYLOAD_TYPE",
    "Address",
    "Direction",
    "MediaConfig",
    "MediaEvent",
    "RtcpByeReceived",
    "RtpEndpoint",
    "RtpTimeout",
    "SilenceMode",
    "SourceLatched",
    "SourcePolicy",
    "source_allowed",
]

log = logging.getLogger(__name__)


class _Rtcp(asyncio.DatagramProtocol):
    def __init__(self, receiver: RtpReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.receiver.receive_rtcp(data, addr)

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
        self._sock = allocation.rtp
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
        self._peer = PeerAddresses(rtcp_mux)
        self._loop = asyncio.get_running_loop()
        #: The receive pipeline (source policy, jitter buffer, DTMF, inactivity).
        self.receiver = RtpReceiver(
            self.config,
            self._loop,
            stats=self.stats,
            rtcp=self.rtcp,
            peer=self._peer,
            emit=self._emit,
            clock_rate=clock_rate,
            ptime_ms=ptime_ms,
            payload_type=payload_type,
            payload_types=_payload_types(payload_type, payload_types, telephone_event_pt),
            telephone_event_pt=telephone_event_pt,
            signalling_ip=signalling_ip,
            sock=allocation.rtp,
            on_error=self.error_received,
        )
        #: The paced sender (frames, silence, DTMF, the talk-spurt kick).
        self.sender = RtpSender(
            self.config,
            self._loop,
            session=self.session,
            rtcp=self.rtcp,
            peer=self._peer,
            pacer=pacer,
            stream=self,
            sock=allocation.rtp,
            telephone_event_pt=telephone_event_pt,
            on_error=self.error_received,
        )
        self.on_event: Callable[[MediaEvent], None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self.closed = False

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
            await endpoint._start()
        except BaseException:
            allocation.release()
            raise
        endpoint.receiver.arm_inactivity()
        return endpoint

    async def _start(self) -> None:
        allocation = self.allocation
        rcvbuf = self.config.receive_buffer
        if rcvbuf is not None:
            for sock in (allocation.rtp, allocation.rtcp):
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        loop = self._loop
        await loop.create_datagram_endpoint(lambda: self, sock=allocation.rtp)
        if allocation.rtcp is not None:
            receiver = self.receiver
            rtcp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _Rtcp(receiver), sock=allocation.rtcp
            )
            self._rtcp_transport = rtcp_transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self.sender.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket error on port %d: %s", self.local_port, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = self.sender.transport = None

    async def __aenter__(self) -> RtpEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self, reason: str = "") -> None:
        """Stop sending, send an RTCP BYE, close the sockets, release the ports. Idempotent."""
        if self.closed:
            return
        self.closed = self.sender.closed = True
        self.pacer.remove(self)
        self.receiver.close()
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
        try:
            if self._peer.rtcp_send is not None or self._peer.send is not None:
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
        self._peer.set_sdp(address, rtcp_address)
        if not self.sender.paced and not self.closed:
            self.sender.paced = True
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
        rate_changed = clock_rate != self.receiver.clock_rate
        sender = self.sender
        if rate_changed or ptime != old_ptime:
            sender.dtmf_sender = sender.new_dtmf_sender(clock_rate, ptime)
        if rate_changed:
            self.rtcp.clock_rate = clock_rate
        self.receiver.set_codec(
            clock_rate,
            ptime,
            ptime != old_ptime,
            payload_type,
            _payload_types(payload_type, payload_types, telephone_event_pt),
            telephone_event_pt,
        )
        sender.telephone_event_pt = telephone_event_pt
        sender.silence_payload = silence_payload

    def set_source(
        self,
        next_frame: Callable[[], bytes | None] | None,
        on_sent: Callable[[bytes], None] | None = None,
    ) -> None:
        """Where outbound payloads come from (called once per frame period by the pacer).

        ``on_sent(payload)`` is called right after each source payload was handed to
        the socket (not for silence / comfort noise / DTMF).
        """
        self.sender.source = next_frame
        self.sender.on_sent = on_sent

    def set_remote_direction(self, direction: Direction) -> None:
        """The peer's SDP direction: we send unless it is sendonly/inactive; the
        inactivity timeout runs only while the peer sends (sendrecv)."""
        self.sender.enabled = direction in ("sendrecv", "recvonly")
        self.receiver.expect(direction == "sendrecv")

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 digits; audio pauses while they are sent.

        Raises ValueError for a bad digit / duration or when no telephone-event
        payload type was negotiated.
        """
        if self.telephone_event_pt is None:
            raise ValueError("no telephone-event payload type negotiated")
        self.sender.dtmf_sender.send(digits, duration_ms)
        self.stats.dtmf_sent += len(digits)

    def kick(self) -> bool:
        """Send the source's first frame of a talk spurt now, not at the next tick (see
        :meth:`~w3sipagent.asyncio.mediasend.RtpSender.kick`). True if a packet was sent."""
        return self.sender.kick()

    def snapshot(self) -> StreamStats:
        """The stream statistics, refreshed from the jitter buffer and RFC 3550 state."""
        s = self.stats
        jb = self.receiver.jitter
        s.lost, s.concealed, s.late = jb.lost, jb.concealed, jb.late
        s.duplicates, s.out_of_order, s.ssrc_changes = (
            jb.duplicates,
            jb.out_of_order,
            jb.ssrc_changes,
        )
        rx_stats = self.receiver.rx_stats
        if rx_stats is not None:
            s.jitter_ms = rx_stats.jitter * 1000.0 / self.receiver.clock_rate
            s.max_jitter_ms = max(s.max_jitter_ms, s.jitter_ms)
        s.packets_sent = self.session.packets_sent
        s.bytes_sent = self.session.octets_sent
        if self.rtcp.rtt is not None:
            s.rtt_ms = self.rtcp.rtt * 1000.0
        if self.rtcp.peer_fraction_lost is not None:
            s.peer_fraction_lost = self.rtcp.peer_fraction_lost / 256.0
        return s

    # ------------------------------------------------------------ the two paths
    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.receiver.datagram_received(data, addr)

    def on_pacer_tick(self, deadline: float) -> None:
        """Send this period's packet(s) (the shared pacer ticks the endpoint every period)."""
        self.sender.on_pacer_tick(deadline)

    def on_pacer_skip(self, periods: int) -> None:
        """The loop stalled: advance the stream clock without sending a burst."""
        self.sender.on_pacer_skip(periods)

    # ------------------------------------------------------------ RTCP and events
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
            transport, addr = self._transport, self._peer.send
        else:
            transport, addr = self._rtcp_transport, self._peer.rtcp_send
        if transport is not None and addr is not None:
            transport.sendto(data, addr)
            self.stats.rtcp_sent += 1

    def _emit(self, event: MediaEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("media event handler failed")

    # ------------------------------------------------------------ the parts' state
    @property
    def clock_rate(self) -> int:
        """The codec clock of the stream (Hz)."""
        return self.receiver.clock_rate

    @property
    def telephone_event_pt(self) -> int | None:
        """The negotiated RFC 4733 payload type (None: no DTMF events)."""
        return self.receiver.telephone_event_pt

    @property
    def peer(self) -> PeerAddresses:
        """The peer's addresses: as the SDP names them, latched, sent to (read-only)."""
        return self._peer

    @property
    def sdp_address(self) -> Address | None:
        """The peer's RTP address as the SDP names it."""
        return self._peer.sdp

    @property
    def send_address(self) -> Address | None:
        """Where RTP goes (the SDP's address, or the latched source)."""
        return self._peer.send

    @property
    def jitter(self) -> JitterBuffer:
        """The receive side's jitter buffer."""
        return self.receiver.jitter

    @property
    def on_frame(self) -> Callable[[Frame], None] | None:
        """Called with each audio frame out of the jitter buffer."""
        return self.receiver.on_frame

    @on_frame.setter
    def on_frame(self, callback: Callable[[Frame], None] | None) -> None:
        self.receiver.on_frame = callback

    @property
    def on_dtmf(self) -> Callable[[DtmfReceived], None] | None:
        """Called with each RFC 4733 digit received."""
        return self.receiver.on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, callback: Callable[[DtmfReceived], None] | None) -> None:
        self.receiver.on_dtmf = callback

    @property
    def silence_payload(self) -> bytes | None:
        """The payload sent while the source is silent (``MediaConfig.silence="silence"``)."""
        return self.sender.silence_payload

    @silence_payload.setter
    def silence_payload(self, payload: bytes | None) -> None:
        self.sender.silence_payload = payload

    @property
    def kicks(self) -> int:
        """Talk spurts started by :meth:`kick`."""
        return self.sender.kicks

    @property
    def deferrals(self) -> int:
        """Frame slots retried while a kicked spurt waited for its source."""
        return self.sender.deferrals

    @property
    def lead(self) -> float:
        """Seconds this stream's packets go out ahead of their timestamps (after a kick over
        continuous silence; 0 once pulled back, within half a pacer slot)."""
        return self.sender.lead


def _payload_types(
    payload_type: int, others: Iterable[int], telephone_event_pt: int | None
) -> frozenset[int]:
    te = [] if telephone_event_pt is None else [telephone_event_pt]
    return frozenset([payload_type, *others, *te])
