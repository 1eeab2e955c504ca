"""RTP packets (RFC 3550 §5.1) with RFC 8285 header extensions.

:meth:`RtpPacket.parse` and :meth:`RtpPacket.__bytes__` are on the per-packet
path (50 packets a second per call, hundreds of calls), so they use
precompiled :class:`struct.Struct` objects and keep the header extension as
raw bytes; :attr:`RtpPacket.extensions` decodes the RFC 8285 elements only
when asked.

Sequence numbers wrap at 2**16 and timestamps at 2**32: compare them with
:func:`seq_diff` / :func:`ts_diff` (signed distance), never with ``<``.
"""

from __future__ import annotations

import struct

from w3sipagent.errors import RtpError

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000  # 0x100X: the low 4 bits are "appbits"

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_U32 = struct.Struct("!I")

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 16-bit sequence numbers (wrap-aware)."""
    d = (a - b) & 0xFFFF
    return d - SEQ_MOD if d >= 0x8000 else d


def seq_lt(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes before ``b`` (wrap-aware)."""
    return seq_diff(a, b) < 0


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between two 32-bit RTP timestamps (wrap-aware)."""
    d = (a - b) & 0xFFFFFFFF
    return d - TS_MOD if d >= 0x80000000 else d


def ts_lt(a: int, b: int) -> bool:
    """True when timestamp ``a`` comes before ``b`` (wrap-aware)."""
    return ts_diff(a, b) < 0


def encode_extensions(elements: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    """RFC 8285 elements ``[(id, data), ...]`` -> ``(profile, padded data)``.

    The one-byte form (0xBEDE) is used when every id is 1..14 and every element
    1..16 bytes long; otherwise the two-byte form (0x1000), ids 1..255, 0..255 bytes.
    """
    if not elements:
        return 0, b""
    one_byte = all(1 <= i <= 14 and 1 <= len(d) <= 16 for i, d in elements)
    out = bytearray()
    if one_byte:
        for i, d in elements:
            out.append((i << 4) | (len(d) - 1))
            out += d
        profile = ONE_BYTE_PROFILE
    else:
        for i, d in elements:
            if not 1 <= i <= 255 or len(d) > 255:
                raise RtpError(
                    f"RTP header extension element id {i} / length {len(d)} out of range"
                )
            out.append(i)
            out.append(len(d))
            out += d
        profile = TWO_BYTE_PROFILE
    out += b"\x00" * (-len(out) % 4)
    return profile, bytes(out)


def decode_extensions(profile: int, data: bytes) -> list[tuple[int, bytes]]:
    """Decode RFC 8285 one-byte or two-byte header extension elements.

    Raises :class:`RtpError` for a truncated element or an unknown profile.
    """
    elements: list[tuple[int, bytes]] = []
    pos, n = 0, len(data)
    if profile == ONE_BYTE_PROFILE:
        while pos < n:
            b = data[pos]
            if b == 0:  # padding
                pos += 1
                continue
            ext_id, length = b >> 4, (b & 0x0F) + 1
            if ext_id == 15:  # reserved: stop processing (RFC 8285 §4.2)
                break
            pos += 1
            if pos + length > n:
                raise RtpError("RTP one-byte header extension element is truncated")
            elements.append((ext_id, data[pos : pos + length]))
            pos += length
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while pos < n:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > n:
                raise RtpError("RTP two-byte header extension element is truncated")
            length = data[pos + 1]
            pos += 2
            if pos + length > n:
                raise RtpError("RTP two-byte header extension element is truncated")
            elements.append((ext_id, data[pos : pos + length]))
            pos += length
    else:
        raise RtpError(f"RTP header extension profile 0x{profile:04x} is not RFC 8285")
    return elements


class RtpPacket:
    """One RTP packet.

    ``extension_profile`` / ``extension_data`` hold the header extension as on
    the wire (``extension_profile`` is ``None`` when the X bit is clear);
    ``padding_size`` is the number of padding octets (0 = no P bit).
    ``parse(bytes(p)) == p`` for every packet.
    """

    __slots__ = (
        "csrc",
        "extension_data",
        "extension_profile",
        "marker",
        "padding_size",
        "payload",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        payload_type: int = 0,
        sequence_number: int = 0,
        timestamp: int = 0,
        ssrc: int = 0,
        payload: bytes = b"",
        *,
        marker: bool = False,
        csrc: tuple[int, ...] = (),
        extension_profile: int | None = None,
        extension_data: bytes = b"",
        padding_size: int = 0,
    ) -> None:
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.marker = marker
        self.csrc = csrc
        self.extension_profile = extension_profile
        self.extension_data = extension_data
        self.padding_size = padding_size

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; :class:`RtpError` names the defect of a malformed one."""
        n = len(data)
        if n < RTP_HEADER_SIZE:
            raise RtpError("RTP packet length is less than 12 bytes")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 == 0x80:  # the usual packet: no padding, extension or CSRC
            return cls(b1 & 0x7F, seq, ts, ssrc, data[12:], marker=b1 > 0x7F)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP packet has invalid version {b0 >> 6}")
        pos = RTP_HEADER_SIZE
        cc = b0 & 0x0F
        csrc: tuple[int, ...] = ()
        if cc:
            end = pos + 4 * cc
            if end > n:
                raise RtpError("RTP packet has truncated CSRC")
            csrc = struct.unpack_from(f"!{cc}I", data, pos)
            pos = end
        ext_profile: int | None = None
        ext_data = b""
        if b0 & 0x10:
            if pos + 4 > n:
                raise RtpError("RTP packet has truncated extension profile / length")
            ext_profile, ext_words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            end = pos + 4 * ext_words
            if end > n:
                raise RtpError("RTP packet has truncated extension value")
            ext_data = data[pos:end]
            pos = end
        end = n
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or pos + padding > n:
                raise RtpError("RTP packet padding length is invalid")
            end = n - padding
        return cls(
            b1 & 0x7F,
            seq,
            ts,
            ssrc,
            data[pos:end],
            marker=bool(b1 & 0x80),
            csrc=csrc,
            extension_profile=ext_profile,
            extension_data=ext_data,
            padding_size=padding,
        )

    def __bytes__(self) -> bytes:
        b0 = 0x80 | len(self.csrc)
        if self.padding_size:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        header = _HEADER.pack(
            b0,
            (self.payload_type & 0x7F) | (0x80 if self.marker else 0),
            self.sequence_number & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc & 0xFFFFFFFF,
        )
        if b0 == 0x80:
            return header + self.payload
        parts = [header]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            data = self.extension_data + b"\x00" * (-len(self.extension_data) % 4)
            parts.append(_EXT_HEADER.pack(self.extension_profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding_size:
            if not 1 <= self.padding_size <= 255:
                raise RtpError(f"RTP padding size {self.padding_size} out of range 1..255")
            parts.append(b"\x00" * (self.padding_size - 1) + bytes([self.padding_size]))
        return b"".join(parts)

    @property
    def extensions(self) -> list[tuple[int, bytes]]:
        """RFC 8285 header extension elements as ``[(id, data), ...]`` (empty when none)."""
        if self.extension_profile is None:
            return []
        return decode_extensions(self.extension_profile, self.extension_data)

    @extensions.setter
    def extensions(self, elements: list[tuple[int, bytes]]) -> None:
        if not elements:
            self.extension_profile, self.extension_data = None, b""
        else:
            self.extension_profile, self.extension_data = encode_extensions(elements)

    def extension(self, ext_id: int) -> bytes | None:
        """The data of header extension element ``ext_id``, or ``None``."""
        for i, d in self.extensions:
            if i == ext_id:
                return d
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RtpPacket):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"RtpPacket(pt={self.payload_type}, seq={self.sequence_number}, ts={self.timestamp}, "
            f"ssrc=0x{self.ssrc:08x}, marker={self.marker}, payload={len(self.payload)} bytes)"
        )


def build_rtp_header(
    payload_type: int, sequence_number: int, timestamp: int, ssrc: int, marker: bool = False
) -> bytes:
    """The 12-byte fixed header of a plain RTP packet (no CSRC, extension or padding)."""
    return _HEADER.pack(
        0x80,
        (payload_type & 0x7F) | (0x80 if marker else 0),
        sequence_number & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc & 0xFFFFFFFF,
    )


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: True when a datagram on an rtcp-mux port is RTCP.

    RTCP packet types 192..223 occupy the byte where RTP has M + PT; RTP payload
    types 64..95 are therefore never used with rtcp-mux.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223
