"""RFC 4733 telephone-events (DTMF): payload format, receiver and sender.

Receiver (:class:`DtmfReceiver`): an event is identified by its RTP timestamp
(fixed for all packets of one event). It reports exactly one
:class:`DtmfReceived` per event, when the first end packet arrives (the
retransmitted end packets are ignored), when a packet of a new event arrives
before any end packet of the current one (lost end packets), or when nothing
came for ``end_timeout`` seconds (:meth:`DtmfReceiver.poll`). A lost start packet
does not matter: any packet with a new timestamp starts an event.

Sender (:class:`DtmfSender`): one packet per frame period, driven by the
pacer: a start packet with the marker bit, updates with the duration growing
by one frame, then the end packet three times with the final duration. All
packets of an event carry the timestamp at which it started. While an event
is being sent or digits are queued, :attr:`DtmfSender.active` is True; every
frame period that carries a telephone-event packet carries no
audio (RFC 4733 §2.5.1.3).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from w3sipagent.errors import RtpError

EVENT_CODES = "0123456789*#ABCD!"  # event 16 = flash (shown as "!")
_PAYLOAD = struct.Struct("!BBH")


def digit_to_event(digit: str) -> int:
    """``'0'..'9' '*' '#' 'A'..'D'`` or ``'!'``/``'flash'`` -> event code 0..16."""
    if digit.lower() == "flash":
        return 16
    i = EVENT_CODES.find(digit.upper()) if len(digit) == 1 else -1
    if i < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return i


def event_to_digit(event: int) -> str:
    """Event code 0..16 -> its digit (16 -> ``'!'``, flash)."""
    if not 0 <= event <= 16:
        raise ValueError(f"telephone-event {event} is not a DTMF event (0..16)")
    return EVENT_CODES[event]


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte RFC 4733 §2.3 payload."""

    event: int
    end: bool
    volume: int  # 0..63, power level in -dBm0
    duration: int  # timestamp units

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse a telephone-event payload (extra bytes, e.g. redundancy, are ignored)."""
        if len(payload) < 4:
            raise RtpError(f"telephone-event payload is {len(payload)} bytes, expected 4")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return _PAYLOAD.pack(
            self.event & 0xFF,
            (0x80 if self.end else 0) | (self.volume & 0x3F),
            self.duration & 0xFFFF,
        )


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """One received DTMF event."""

    digit: str
    event: int
    duration: int  # timestamp units
    duration_ms: int
    volume: int
    timestamp: int  # RTP timestamp of the event start
    ended_by: str  # "end" packet, "new_event", "timeout"


class DtmfReceiver:
    """Turns telephone-event packets into one :class:`DtmfReceived` per event."""

    def __init__(
        self, clock_rate: int = 8000, *, end_timeout: float = 0.5, history: int = 16
    ) -> None:
        self.clock_rate = clock_rate
        self.end_timeout = end_timeout
        self.ignored = 0  # events outside 0..16
        self._current: int | None = None  # timestamp of the event in progress
        self._event = 0
        self._volume = 0
        self._duration = 0
        self._last_time = 0.0
        self._done: deque[int] = deque(maxlen=history)  # timestamps already reported

    def _finish(self, how: str) -> DtmfReceived:
        assert self._current is not None
        ev = DtmfReceived(
            event_to_digit(self._event),
            self._event,
            self._duration,
            self._duration * 1000 // self.clock_rate,
            self._volume,
            self._current,
            how,
        )
        self._done.append(self._current)
        self._current = None
        return ev

    def receive(self, timestamp: int, payload: bytes, now: float) -> list[DtmfReceived]:
        """Feed one telephone-event packet; returns the events it completed.

        Raises :class:`RtpError` for a payload shorter than 4 bytes.
        """
        te = TelephoneEvent.parse(payload)
        out: list[DtmfReceived] = []
        if te.event > 16:
            self.ignored += 1
            return out
        if timestamp in self._done:
            return out  # retransmitted end packet / late update of a finished event
        if self._current is not None and timestamp != self._current:
            out.append(self._finish("new_event"))
        if self._current is None:
            self._current = timestamp
            self._event = te.event
            self._duration = 0
        self._volume = te.volume
        if te.duration > self._duration:
            self._duration = te.duration
        self._last_time = now
        if te.end:
            out.append(self._finish("end"))
        return out

    def poll(self, now: float) -> list[DtmfReceived]:
        """Finish an event whose end packets were all lost (call periodically)."""
        if self._current is not None and now - self._last_time >= self.end_timeout:
            return [self._finish("timeout")]
        return []

    def next_deadline(self) -> float | None:
        """When :meth:`poll` could finish the event in progress (``None``: none)."""
        return None if self._current is None else self._last_time + self.end_timeout

    def reset(self) -> list[DtmfReceived]:
        """New source: finish what is in progress."""
        return [self._finish("new_event")] if self._current is not None else []


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """A telephone-event packet the sender wants on the wire now."""

    payload: bytes
    marker: bool
    timestamp: int  # the event's start timestamp (fixed for the event)
    end: bool


class DtmfSender:
    """Plans the telephone-event packets of queued digits, one per frame period."""

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        frame_ms: int = 20,
        volume: int = 10,
        gap_ms: int = 60,
        end_repeats: int = 3,
    ) -> None:
        self.clock_rate = clock_rate
        self.step = clock_rate * frame_ms // 1000
        self.frame_ms = frame_ms
        self.volume = volume
        self.gap_frames = max(0, -(-gap_ms // frame_ms))
        self.end_repeats = end_repeats
        self._queue: deque[tuple[int, int]] = deque()  # (event, duration in samples)
        self._event: int | None = None
        self._target = 0
        self._duration = 0
        self._start_ts = 0
        self._ends_left = 0
        self._gap_left = 0

    @property
    def active(self) -> bool:
        """True while an event is being sent or digits are queued: call :meth:`next_packet`."""
        return self._event is not None or bool(self._queue)

    def send(self, digits: str, duration_ms: int = 100) -> None:
        """Queue digits (``0-9 * # A-D``; ``!`` = flash) of ``duration_ms`` each (40..5000)."""
        if not 40 <= duration_ms <= 5000:
            raise ValueError(f"DTMF duration {duration_ms} ms out of range 40..5000")
        events = [digit_to_event(d) for d in digits]
        samples = duration_ms * self.clock_rate // 1000
        if samples > 0xFFFF:
            raise ValueError(
                f"DTMF duration {duration_ms} ms too long for clock rate {self.clock_rate}"
            )
        self._queue.extend((e, samples) for e in events)

    def next_packet(self, timestamp: int) -> DtmfPacket | None:
        """The packet for this frame period (``timestamp``: the stream's current one).

        Returns ``None`` during the inter-digit gap (``gap_ms``) and when idle: the
        media layer then sends audio as usual. Call once per frame period while
        :attr:`active`; audio is paused whenever a packet is returned.
        """
        if self._event is None:
            if self._gap_left > 0:
                self._gap_left -= 1
                return None
            if not self._queue:
                return None
            self._event, self._target = self._queue.popleft()
            self._start_ts = timestamp
            self._duration = 0
            self._ends_left = self.end_repeats
        assert self._event is not None
        marker = self._duration == 0
        if self._duration < self._target:
            self._duration = min(self._target, self._duration + self.step)
        end = self._duration >= self._target
        pkt = DtmfPacket(
            bytes(TelephoneEvent(self._event, end, self.volume, self._duration)),
            marker,
            self._start_ts,
            end,
        )
        if end:
            self._ends_left -= 1
            if self._ends_left <= 0:
                self._event = None
                self._gap_left = self.gap_frames
        return pkt
