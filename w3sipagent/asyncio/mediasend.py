"""The send side of an RTP endpoint: one frame per pacer tick, and the talk-spurt kick.

The shared :class:`~w3sipagent.asyncio.pacer.Pacer` ticks the endpoint once per frame
period and the endpoint hands the tick to :meth:`RtpSender.on_pacer_tick`. The sender
takes one payload from its source (:attr:`RtpSender.source`); ``None`` means "nothing
to say" and the sender sends the configured silence payload (default: continuous RTP),
a comfort-noise packet, or nothing. After each source frame actually sent, the
``on_sent`` hook is called: that is how the bridge knows how much of an AI item really
went out (the barge-in truncate point). Queued DTMF (:attr:`RtpSender.dtmf_sender`)
replaces audio while it is sent.

Talk-spurt kick (:meth:`RtpSender.kick`): when the source gets audio after a tick that
sent none, the first frame need not wait up to a period for the next tick: ``kick``
sends it at once (marker bit, RFC 3550 talk-spurt start) and moves the stream in the
pacer so its next tick is one period later (±half a pacer slot). The kicked frame takes
the next timestamp (over continuous silence the current 20 ms is already covered by a
silence packet), so the talk spurt runs ahead of its timestamps by less than a frame
(the "lead"); the lead is bounded (no kick that would exceed one frame). It is the slack
the tick path would have had, and it is spent the same way: when the source runs dry
mid spurt, the frame slot is retried a pacer slot later while the stream is ahead of
its clock, instead of sending silence. What is left is taken back while silent, one
pacer slot per silence packet, so the stream clock never drifts and no packet goes out
after its timestamp's time.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from w3sipagent.asyncio.mediaconfig import CN_PAYLOAD_TYPE, Address, MediaConfig, PeerAddresses
from w3sipagent.asyncio.pacer import PacedStream, Pacer
from w3sipagent.rtp.dtmf import DtmfSender
from w3sipagent.rtp.rtcp import RtcpSession
from w3sipagent.rtp.session import RtpSession


class RtpSender:
    """One call's paced sender. ``stream`` is what the pacer ticks on its behalf (the
    endpoint): the kick and the pull-back re-phase it."""

    def __init__(
        self,
        config: MediaConfig,
        loop: asyncio.AbstractEventLoop,
        *,
        session: RtpSession,
        rtcp: RtcpSession,
        peer: PeerAddresses,
        pacer: Pacer,
        stream: PacedStream,
        sock: socket.socket,
        telephone_event_pt: int | None,
        on_error: Callable[[Exception], None],
    ) -> None:
        self.config = config
        self.session = session
        self.rtcp = rtcp
        self.peer = peer
        self.pacer = pacer
        self.stream = stream
        self.sock = sock  # sends go straight to the socket (see sendto)
        self.transport: asyncio.DatagramTransport | None = None
        self.telephone_event_pt = telephone_event_pt
        self.dtmf_sender = self.new_dtmf_sender(session.clock_rate, session.ptime_ms)
        self._on_error = on_error
        self._loop = loop
        self.source: Callable[[], bytes | None] | None = None
        self.on_sent: Callable[[bytes], None] | None = None
        self.silence_payload: bytes | None = None
        self.enabled = True  # False while the peer holds the call (sendonly / inactive)
        self.paced = False  # in the pacer (from the first remote address on)
        self.closed = False
        self._silent_frames = 0
        self._credit = 0  # ms of pacer time not yet used by a frame (ptime != period)
        self._tick_audio = False  # the last tick sent a source payload
        self._tick_silence = False  # the last tick sent the silence payload (continuous RTP)
        self._frame_at = 0.0  # deadline of the last frame sent or skipped
        self.kicks = 0
        self.deferrals = 0  # frame slots retried while a kicked spurt waited for its source
        self._lead = 0.0  # s the pacer's ticks run ahead of the stream clock (after a kick)

    def new_dtmf_sender(self, clock_rate: int, ptime_ms: int) -> DtmfSender:
        """An RFC 4733 sender for this codec clock and frame time (the configured volume/gap)."""
        c = self.config
        return DtmfSender(clock_rate, frame_ms=ptime_ms, volume=c.dtmf_volume, gap_ms=c.dtmf_gap_ms)

    @property
    def lead(self) -> float:
        """Seconds this stream's packets go out ahead of their timestamps (after a kick over
        continuous silence; 0 once pulled back, within half a pacer slot)."""
        return self._lead

    @property
    def credit(self) -> int:
        """Milliseconds of pacer time not yet used by a frame (a ptime other than the period)."""
        return self._credit

    @property
    def _step(self) -> float:
        """How far a kicked stream moves back towards its clock at a time (>= a pacer slot)."""
        return max(self.config.kick_pullback, self.pacer.tick)

    @property
    def _period_ms(self) -> int:
        return round(self.pacer.period * 1000)

    # ------------------------------------------------------------ pacer
    def on_pacer_tick(self, deadline: float) -> None:
        """Send this period's packet(s) (the shared pacer's tick, every period).

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

    def on_pacer_skip(self, periods: int) -> None:
        """The loop stalled: advance the stream clock without sending a burst."""
        frames, self._credit = divmod(
            self._credit + periods * self._period_ms, self.session.ptime_ms
        )
        self.session.advance(frames)
        self.session.talkspurt()

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
        addr = self.peer.send
        source = self.source
        if (
            self._tick_audio
            or not self.config.kick
            or not self.paced
            or self.closed
            or self.transport is None
            or addr is None
            or source is None
            or not self.enabled
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
        self.sendto(session.packet(payload, timestamp=ts), addr)
        self.rtcp.on_rtp_sent(ts, len(payload), now)
        session.timestamp = ts
        session.advance()
        self._tick_audio = True
        self._tick_silence = False
        self._credit = 0
        self.kicks += 1
        nxt = self.pacer.rephase(self.stream, now)
        if nxt and session.ptime_ms == self._period_ms:
            self._lead = nominal + ptime - nxt  # the next tick sends the frame due then
        if self.on_sent is not None:
            self.on_sent(payload)
        return True

    def _send_frame(self, deadline: float) -> None:
        session = self.session
        addr = self.peer.send
        mid_spurt = self._tick_audio
        self._frame_at = deadline
        self._tick_audio = self._tick_silence = False
        if self.transport is None or addr is None or not self.enabled:
            session.advance()
            return
        deferred = False
        try:
            if self.dtmf_sender.active and self._send_dtmf(addr, deadline):
                return
            source = self.source
            payload = source() if source is not None else None
            if payload is not None:
                self._tick_audio = True
                if self._silent_frames:
                    if not (self.config.silence == "silence" and self.silence_payload is not None):
                        session.talkspurt()  # we stopped sending: mark the new talk spurt
                    self._silent_frames = 0
                self.sendto(session.packet(payload), addr)
                self.rtcp.on_rtp_sent(session.timestamp, len(payload), deadline)
                if self.on_sent is not None:
                    self.on_sent(payload)
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
        nxt = self.pacer.rephase(self.stream, deadline + shift - self.pacer.period)
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
        nxt = self.pacer.rephase(self.stream, deadline + shift)
        if nxt:
            self._lead = lead - (nxt - (deadline + self.pacer.period))

    # ------------------------------------------------------------ packets
    def sendto(self, data: bytes, addr: Address) -> None:
        """One datagram straight to the socket: the transport's ``sendto`` checks and
        wrappers cost more than the system call itself on this per-packet path. When the
        socket buffer is full the transport queues it instead (and keeps the order)."""
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():  # type: ignore[attr-defined]  # both loops have it
            transport.sendto(data, addr)
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            transport.sendto(data, addr)
        except OSError as exc:  # e.g. ICMP port unreachable reported on a later send
            self._on_error(exc)

    def _send_dtmf(self, addr: Address, deadline: float) -> bool:
        session = self.session
        p = self.dtmf_sender.next_packet(session.timestamp)
        if p is None or self.telephone_event_pt is None:
            return False
        self.sendto(
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
            self.sendto(session.packet(self.silence_payload), addr)
            self.rtcp.on_rtp_sent(session.timestamp, len(self.silence_payload), now)
        elif mode == "comfort-noise" and n % self.config.comfort_noise_every == 0:
            level = bytes([self.config.comfort_noise_level & 0x7F])
            self.sendto(session.packet(level, payload_type=CN_PAYLOAD_TYPE, marker=n == 0), addr)
            self.rtcp.on_rtp_sent(session.timestamp, 1, now)
