"""Arrival-driven jitter buffer that adds no delay on a clean network.

Theory of operation
-------------------
A packet whose sequence number is the next expected one is released at once,
together with every buffered packet that follows it without a gap: on a
loopback or LAN stream the buffer never holds anything and adds no delay
(depth 0). Only when a sequence number is *missing* does the buffer hold the
packets after the gap, for at most :attr:`JitterBuffer.wait` seconds, hoping the
missing one was merely reordered. When the wait expires the missing packets
are declared lost and one :class:`Frame` with ``payload=None`` is emitted per
lost packet so the codec layer runs its packet loss concealment (G.711
repeat/fade, Opus PLC). The lost frame right before the packet that ends the gap
carries that packet's payload in :attr:`Frame.next_payload`, so an Opus decoder
can rebuild it from the in-band FEC (``Decoder.conceal(frame.next_payload)``).

Every lost slot of a gap is emitted (a gap is at most ``window`` packets; a
larger jump restarts the stream instead), so the consumer's audio time stays
equal to the sender's: 200 ms lost = 10 frames concealed, and an AI fed with
these frames keeps the same timeline as the wall clock (``audio_end_ms`` of a
turn matches what was said). ``max_conceal`` can cap this (the rest is then
counted in :attr:`JitterBuffer.lost` but not filled; timing then shrinks).

The wait adapts: it is ``jitter_factor`` x the measured interarrival jitter
(RFC 3550 A.8, in seconds) plus a reorder allowance that grows by one frame
each time a packet arrives after its slot was concealed ("late") and shrinks
by one frame per ``reorder_decay`` seconds without late packets; it is
capped at ``max_delay``. Packets that arrive in order are never held, whatever
the wait.

Stream changes: a new SSRC, a forward sequence jump larger than ``window``, or a
large backward jump whose timestamp moved forward (a sender that restarted its
numbering, as FreeSWITCH does on bridge / transfer / media re-INVITE) flush what
is buffered in order and restart on the new packet, which is released at once.
A stray packet of the previous SSRC within ``ssrc_grace`` seconds is dropped as late.
Timestamp jumps with continuous sequence numbers are passed through; a transit
change above ``resync_threshold`` seconds resynchronises the jitter estimate
instead of counting as jitter.

Interface: :meth:`JitterBuffer.push` ``(packet, now)``, then :meth:`JitterBuffer.pop`
``(now)`` returns the frames ready; :meth:`JitterBuffer.next_deadline` tells
when ``pop`` must be called again to conceal a loss even if nothing arrives.
"""

from __future__ import annotations

from w3sipagent.rtp.packet import RtpPacket, seq_diff, ts_diff


class Frame:
    """One frame out of the jitter buffer; ``payload is None`` means lost (conceal it)."""

    __slots__ = (
        "marker",
        "next_payload",
        "payload",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        payload: bytes | None,
        timestamp: int,
        sequence_number: int,
        payload_type: int,
        marker: bool,
        ssrc: int,
        next_payload: bytes | None = None,
    ) -> None:
        self.payload = payload
        #: For a lost frame: the payload of the packet right after it, when that one
        #: arrived (Opus in-band FEC for this frame travels in it); else None.
        self.next_payload = next_payload
        self.timestamp = timestamp
        self.sequence_number = sequence_number
        self.payload_type = payload_type
        self.marker = marker
        self.ssrc = ssrc

    @property
    def lost(self) -> bool:
        """True for a concealment slot (the packet never arrived in time)."""
        return self.payload is None

    def __repr__(self) -> str:
        what = "LOST" if self.payload is None else f"{len(self.payload)} bytes"
        return f"Frame(seq={self.sequence_number}, ts={self.timestamp}, pt={self.payload_type}, {what})"


class JitterBuffer:
    """Reorders, drops duplicates and late packets, and marks losses for concealment.

    ``clock_rate`` / ``frame_ms`` give the expected timestamp step of a frame
    (learned from the stream afterwards); all times are seconds. ``reorder_wait`` is the
    starting value of the hold learned from late packets (one frame more per late packet,
    one less every ``reorder_decay`` seconds without one).
    """

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        frame_ms: int = 20,
        max_delay: float = 0.2,
        window: int = 100,
        max_conceal: int | None = None,
        jitter_factor: float = 2.0,
        reorder_decay: float = 5.0,
        ssrc_grace: float = 0.5,
        resync_threshold: float = 0.5,
        reorder_wait: float = 0.0,
    ) -> None:
        if clock_rate <= 0 or frame_ms <= 0 or window <= 1 or max_delay < 0:
            raise ValueError(
                "jitter buffer: clock_rate, frame_ms, window and max_delay must be positive"
            )
        self.clock_rate = clock_rate
        self.frame_time = frame_ms / 1000.0
        self.max_delay = max_delay
        self.window = window
        self.max_conceal = max_conceal
        self.jitter_factor = jitter_factor
        self.reorder_decay = reorder_decay
        self.ssrc_grace = ssrc_grace
        self.resync_threshold = resync_threshold
        # counters
        self.received = 0
        self.lost = 0
        self.concealed = 0
        self.late = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.ssrc_changes = 0
        self.restarts = 0
        # state
        self._ssrc: int | None = None
        self._old_ssrc: int | None = None
        self._ssrc_change_time = 0.0
        self._next: int | None = None  # next expected sequence number
        self._buf: dict[int, tuple[RtpPacket, float]] = {}
        self._gap_since = 0.0
        self._lost_recent: dict[int, None] = {}
        self._ready: list[Frame] = []
        self._last_ts: int | None = None
        self._last_pt = 0
        self._ts_step = clock_rate * frame_ms // 1000
        self._transit: float | None = None
        self.jitter = 0.0  # seconds
        self._reorder_wait = reorder_wait
        self._last_late = 0.0

    # ------------------------------------------------------------------ state
    @property
    def wait(self) -> float:
        """How long a gap is held open before its packets are declared lost (seconds)."""
        w = self.jitter_factor * self.jitter + self._reorder_wait
        return w if w < self.max_delay else self.max_delay

    @property
    def reorder_wait(self) -> float:
        """The part of :attr:`wait` learned from late (reordered) packets (seconds)."""
        return self._reorder_wait

    @property
    def depth(self) -> int:
        """Target depth in whole frames (0 on a clean network)."""
        return int(self.wait / self.frame_time)

    def __len__(self) -> int:
        return len(self._buf)

    def next_deadline(self) -> float | None:
        """When :meth:`pop` must run to conceal a pending gap (``None``: nothing pending)."""
        if not self._buf:
            return None
        return self._gap_since + self.wait

    # ------------------------------------------------------------------ input
    def push(self, packet: RtpPacket, now: float) -> None:
        """Add one received packet (already parsed and accepted by the source policy)."""
        seq = packet.sequence_number
        ssrc = packet.ssrc
        if ssrc != self._ssrc:
            if (
                ssrc == self._old_ssrc
                and self._old_ssrc is not None
                and now - self._ssrc_change_time < self.ssrc_grace
            ):
                self.late += 1
                return
            if self._ssrc is not None:
                self.ssrc_changes += 1
                self._old_ssrc = self._ssrc
                self._ssrc_change_time = now
            self._restart(packet, now)
            return
        nxt = self._next
        assert nxt is not None
        if seq == nxt and not self._buf:  # the usual case: in order, nothing held
            self.received += 1
            self._track(packet, now)
            self._emit(packet)
            self._next = (seq + 1) & 0xFFFF
            return
        d = seq_diff(seq, nxt)
        if d == 0:
            self.received += 1
            if self._buf:
                self.out_of_order += 1
            self._track(packet, now)
            self._emit(packet)
            self._next = (seq + 1) & 0xFFFF
            if self._buf:
                self._drain()
        elif d > 0:
            if d > self.window:
                self.restarts += 1
                self._restart(packet, now)
                return
            if seq in self._buf:
                self.duplicates += 1
                return
            self.received += 1
            self._track(packet, now)
            if not self._buf:
                self._gap_since = now
            self._buf[seq] = (packet, now)
        else:
            if seq in self._lost_recent:
                del self._lost_recent[seq]
                self.late += 1
                self.lost -= 1  # it did arrive, only too late
                self._reorder_wait = min(self.max_delay, self._reorder_wait + self.frame_time)
                self._last_late = now
            elif (
                d < -self.window
                and self._last_ts is not None
                and ts_diff(packet.timestamp, self._last_ts) > 0
            ):
                self.restarts += 1
                self._restart(packet, now)
            else:
                self.duplicates += 1

    def _restart(self, packet: RtpPacket, now: float) -> None:
        self._flush_buffered()
        self._ssrc = packet.ssrc
        self._lost_recent.clear()
        self._transit = None
        self._last_ts = None
        self.received += 1
        self._track(packet, now)
        self._emit(packet)
        self._next = (packet.sequence_number + 1) & 0xFFFF

    def _track(self, packet: RtpPacket, now: float) -> None:
        """Update the jitter estimate (RFC 3550 A.8, in seconds)."""
        transit = now - packet.timestamp / self.clock_rate
        prev = self._transit
        self._transit = transit
        if prev is not None:
            d = transit - prev
            if d < 0:
                d = -d
            if d > self.resync_threshold:
                return  # timestamp jump: resynchronise, do not count it as jitter
            self.jitter += (d - self.jitter) / 16.0
        if self._reorder_wait and now - self._last_late > self.reorder_decay:
            self._reorder_wait = max(0.0, self._reorder_wait - self.frame_time)
            self._last_late = now

    def _emit(self, packet: RtpPacket) -> None:
        last = self._last_ts
        ts = packet.timestamp
        pt = packet.payload_type
        if last is not None and pt == self._last_pt:
            step = (ts - last) & 0xFFFFFFFF  # forward steps only (a backward one is huge)
            if 0 < step <= self.clock_rate // 10:
                self._ts_step = step
        self._last_ts = ts
        self._last_pt = pt
        self._ready.append(
            Frame(packet.payload, ts, packet.sequence_number, pt, packet.marker, packet.ssrc)
        )

    def _drain(self) -> None:
        buf = self._buf
        nxt = self._next
        while nxt in buf:
            packet, _ = buf.pop(nxt)
            self._emit(packet)
            nxt = (nxt + 1) & 0xFFFF
        self._next = nxt
        if buf:
            self._gap_since = min(t for _, t in buf.values())

    def _skip_gap(self) -> None:
        """Declare the packets up to the first buffered one lost, and release it."""
        nxt = self._next
        assert nxt is not None
        first = min(self._buf, key=lambda s: seq_diff(s, nxt))
        missing = seq_diff(first, nxt)
        self.lost += missing
        ts = self._last_ts
        ssrc = self._ssrc or 0
        fill = missing if self.max_conceal is None else min(missing, self.max_conceal)
        following = self._buf[first][0]
        fec = following.payload if following.payload_type == self._last_pt else None
        for i in range(missing):
            s = (nxt + i) & 0xFFFF
            self._lost_recent[s] = None
            if i < fill:
                self.concealed += 1
                t = 0 if ts is None else (ts + (i + 1) * self._ts_step) & 0xFFFFFFFF
                nextp = fec if i == missing - 1 else None
                self._ready.append(Frame(None, t, s, self._last_pt, False, ssrc, nextp))
        if len(self._lost_recent) > 4 * self.window:
            for s in list(self._lost_recent)[: len(self._lost_recent) - 2 * self.window]:
                del self._lost_recent[s]
        self._next = first
        self._drain()

    def _flush_buffered(self) -> None:
        """Release buffered packets in order without concealment (stream change)."""
        while self._buf:
            nxt = self._next
            assert nxt is not None
            first = min(self._buf, key=lambda s: seq_diff(s, nxt))
            self._next = first
            self._drain()

    # ----------------------------------------------------------------- output
    def pop(self, now: float) -> list[Frame]:
        """Frames ready at ``now`` in playout order (lost slots have ``payload=None``)."""
        if self._buf:
            wait = self.wait
            while self._buf and (now >= self._gap_since + wait or len(self._buf) > self.window):
                self._skip_gap()
        out = self._ready
        if out:
            self._ready = []
        return out

    def flush(self) -> list[Frame]:
        """Release everything buffered, in order (end of call / hold)."""
        self._flush_buffered()
        out, self._ready = self._ready, []
        return out
