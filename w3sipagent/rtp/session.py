"""Sans-IO RTP sender state: SSRC, sequence number and timestamp of one outbound stream.

The random starting values (RFC 3550 §5.1) come from an injected
:class:`~w3sipagent.sip.ids.IdSource`. The timestamp advances by one frame
(:attr:`RtpSession.samples_per_frame`) per frame period whether or not a
packet is sent, so the stream clock never drifts from the pacer's clock:
160 per 20 ms at 8 kHz (PCMU / PCMA, and G.722 whose RTP clock is 8000 although
it carries 16 kHz audio, RFC 3551 §4.5.2), 960 per 20 ms for Opus (48000).
"""

from __future__ import annotations

import struct

from w3sipagent.sip.ids import IdSource

_HEADER = struct.Struct("!BBHII")


class RtpSession:
    """Builds the outbound packets of one stream."""

    __slots__ = (
        "_need_marker",
        "clock_rate",
        "octets_sent",
        "packets_sent",
        "payload_type",
        "ptime_ms",
        "samples_per_frame",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        payload_type: int,
        clock_rate: int,
        ids: IdSource,
        *,
        ptime_ms: int = 20,
        ssrc: int | None = None,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RTP payload type {payload_type} out of range 0..127")
        if clock_rate <= 0 or ptime_ms <= 0:
            raise ValueError("clock rate and ptime must be positive")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ptime_ms = ptime_ms
        self.samples_per_frame = clock_rate * ptime_ms // 1000
        self.ssrc = ids.randbits(32) if ssrc is None else ssrc
        self.sequence_number = ids.randbits(16)
        self.timestamp = ids.randbits(32)
        self.packets_sent = 0
        self.octets_sent = 0
        self._need_marker = True  # first packet of the stream starts a talk spurt

    def set_codec(self, payload_type: int, clock_rate: int, ptime_ms: int | None = None) -> None:
        """Switch payload type / clock (re-INVITE); the next packet carries the marker bit."""
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RTP payload type {payload_type} out of range 0..127")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        if ptime_ms is not None:
            self.ptime_ms = ptime_ms
        self.samples_per_frame = clock_rate * self.ptime_ms // 1000
        self._need_marker = True

    def packet(
        self,
        payload: bytes,
        *,
        marker: bool = False,
        payload_type: int | None = None,
        timestamp: int | None = None,
    ) -> bytes:
        """The next packet (consumes one sequence number, does not advance the timestamp).

        ``timestamp`` overrides the stream timestamp (telephone-events carry their
        start timestamp); ``payload_type`` overrides the stream's (telephone-event, CN).
        """
        if self._need_marker:
            marker = True
            self._need_marker = False
        pt = self.payload_type if payload_type is None else payload_type
        data = (
            _HEADER.pack(
                0x80,
                pt | 0x80 if marker else pt,
                self.sequence_number,
                self.timestamp if timestamp is None else timestamp & 0xFFFFFFFF,
                self.ssrc,
            )
            + payload
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return data

    def advance(self, frames: int = 1) -> None:
        """Advance the timestamp by ``frames`` frame periods (call once per period)."""
        self.timestamp = (self.timestamp + frames * self.samples_per_frame) & 0xFFFFFFFF

    def talkspurt(self) -> None:
        """The next packet starts a talk spurt (after a pause in sending): set the marker."""
        self._need_marker = True
