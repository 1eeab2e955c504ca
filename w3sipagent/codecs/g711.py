"""G.711 mu-law (PCMU) and A-law (PCMA) with numpy lookup tables, bit-exact with ITU-T G.191.

The tables are computed once at import with the rules of the ITU-T G.191 Software Tool
Library (``g711.c``: ``ulaw_compress`` works on the 14 most significant bits, ``alaw_compress``
on the 13 most significant bits, negative values through the one's complement), so every
16-bit input maps to the code the ITU reference gives; tests compare all 65,536 inputs and
all 256 codes with the G.191 sweep files. CPython's ``audioop`` differs (its mu-law encoder
is one code lower for 508 negative inputs).

Hot paths:

* :func:`ulaw_encode` / :func:`alaw_encode`: one ``numpy.take`` through a 65,536-entry
  ``uint8`` table indexed by the ``uint16`` view of the samples;
* :func:`ulaw_decode` / :func:`alaw_decode`: a 256-entry ``int16`` table;
* :func:`ulaw_to_alaw` / :func:`alaw_to_ulaw`: ``bytes.translate`` through the G.711
  Table 3 / Table 4 transcoding maps (no linear intermediate).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from w3sipagent.codecs.base import BaseCodec, check_pcm
from w3sipagent.codecs.plc import Concealer
from w3sipagent.errors import CodecError

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "G711Codec",
    "G711Decoder",
    "G711Encoder",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "pcma",
    "pcmu",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_alaw",
]

#: The code of a zero sample (what silence looks like on the wire).
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _all_int16_by_uint16_index() -> npt.NDArray[np.int32]:
    """Every int16 value, at the index of its uint16 bit pattern."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    x = _all_int16_by_uint16_index()
    absno = np.where(x < 0, (~x) >> 2, x >> 2) + 33
    absno = np.minimum(absno, 0x1FFF)
    segno = np.ones_like(absno)
    i = absno >> 6
    for _ in range(8):
        segno += i != 0
        i >>= 1
    high = 8 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    code = np.where(x >= 0, code | 0x80, code)
    table: npt.NDArray[np.uint8] = code.astype(np.uint8)
    return table


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    x = _all_int16_by_uint16_index()
    ix = np.where(x < 0, (~x) >> 4, x >> 4)
    mant = ix.copy()
    iexp = np.ones_like(ix)
    for _ in range(8):
        big = mant > 31
        mant = np.where(big, mant >> 1, mant)
        iexp += big
    code = np.where(ix > 15, (mant - 16) + (iexp << 4), ix)
    code = np.where(x >= 0, code | 0x80, code)
    table: npt.NDArray[np.uint8] = (code ^ 0x55).astype(np.uint8)
    return table


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    c = np.arange(256, dtype=np.int32)
    sign = np.where(c < 0x80, -1, 1)
    m = ~c
    exponent = (m >> 4) & 0x07
    mantissa = m & 0x0F
    step = 4 << (exponent + 1)
    mag = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    table: npt.NDArray[np.int16] = (sign * mag).astype("<i2")
    return table


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    c = np.arange(256, dtype=np.int32)
    ix = (c ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    mant = np.where(iexp > 0, mant + 16, mant)
    mant = (mant << 4) + 0x08
    mant = np.where(iexp > 1, mant << np.maximum(iexp - 1, 0), mant)
    table: npt.NDArray[np.int16] = np.where(c > 127, mant, -mant).astype("<i2")
    return table


# G.711 (11/88) Table 3 and Table 4 as magnitude maps: entry m is the magnitude index of the
# other law for magnitude index m (0 = smallest magnitude). mu-law magnitude index of code u
# is 0x7F ^ (u & 0x7F); A-law magnitude index of code a is (a ^ 0x55) & 0x7F; sign is kept.
# fmt: off
_U2A_MAGNITUDE = (
    0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7,
    8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
    24, 26, 28, 30, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
    45, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78,
    79, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
)
_A2U_MAGNITUDE = (
    1, 3, 5, 7, 9, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23,
    24, 25, 26, 27, 28, 29, 30, 31, 32, 32, 33, 33, 34, 34, 35, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 48, 49, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 64,
    65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
)
# fmt: on


def _transcode_tables() -> tuple[bytes, bytes]:
    assert len(_U2A_MAGNITUDE) == 128 and len(_A2U_MAGNITUDE) == 128
    u2a = bytearray(256)
    a2u = bytearray(256)
    for code in range(256):
        sign = code & 0x80
        u_mag = 0x7F ^ (code & 0x7F)
        u2a[code] = (_U2A_MAGNITUDE[u_mag] | sign) ^ 0x55
        a_mag = (code ^ 0x55) & 0x7F
        a2u[code] = (0x7F ^ _A2U_MAGNITUDE[a_mag]) | sign
    return bytes(u2a), bytes(a2u)


ULAW_ENCODE_TABLE: npt.NDArray[np.uint8] = _ulaw_encode_table()
ALAW_ENCODE_TABLE: npt.NDArray[np.uint8] = _alaw_encode_table()
ULAW_DECODE_TABLE: npt.NDArray[np.int16] = _ulaw_decode_table()
ALAW_DECODE_TABLE: npt.NDArray[np.int16] = _alaw_decode_table()
ULAW_TO_ALAW, ALAW_TO_ULAW = _transcode_tables()
for _t in (ULAW_ENCODE_TABLE, ALAW_ENCODE_TABLE, ULAW_DECODE_TABLE, ALAW_DECODE_TABLE):
    _t.setflags(write=False)
del _t


def _samples(pcm: bytes, codec: str) -> npt.NDArray[np.uint16]:
    check_pcm(pcm, codec)
    return np.frombuffer(pcm, dtype="<u2")


def ulaw_encode(pcm: bytes) -> bytes:
    """s16le PCM -> mu-law codes (one byte a sample), as ITU-T G.191 ``ulaw_compress``."""
    return ULAW_ENCODE_TABLE.take(_samples(pcm, "PCMU")).tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """s16le PCM -> A-law codes (one byte a sample), as ITU-T G.191 ``alaw_compress``."""
    return ALAW_ENCODE_TABLE.take(_samples(pcm, "PCMA")).tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """mu-law codes -> s16le PCM, as ITU-T G.191 ``ulaw_expand``."""
    return ULAW_DECODE_TABLE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def alaw_decode(data: bytes) -> bytes:
    """A-law codes -> s16le PCM, as ITU-T G.191 ``alaw_expand``."""
    return ALAW_DECODE_TABLE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def ulaw_to_alaw(data: bytes) -> bytes:
    """mu-law codes -> A-law codes through G.711 Table 3 (no linear intermediate)."""
    return data.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    """A-law codes -> mu-law codes through G.711 Table 4 (no linear intermediate)."""
    return data.translate(ALAW_TO_ULAW)


class G711Encoder:
    """Stateless G.711 encoder (one table lookup per frame)."""

    def __init__(self, table: npt.NDArray[np.uint8], name: str) -> None:
        self._table = table
        self._name = name

    def encode(self, pcm: bytes) -> bytes:
        """s16le PCM at 8 kHz (any whole number of samples) -> G.711 payload."""
        return self._table.take(_samples(pcm, self._name)).tobytes()


class G711Decoder:
    """G.711 decoder with fade-out concealment of lost frames."""

    def __init__(
        self,
        table: npt.NDArray[np.int16],
        frame_samples: int,
        *,
        fade_frames: int = 4,
    ) -> None:
        self._table = table
        self._plc = Concealer(8000, frame_samples, fade_frames=fade_frames)

    def decode(self, payload: bytes) -> bytes:
        """G.711 payload -> s16le PCM at 8 kHz (one sample per byte)."""
        pcm = self._table.take(np.frombuffer(payload, dtype=np.uint8))
        return self._plc.remember(pcm).tobytes()

    def conceal(self, next_payload: bytes | None = None) -> bytes:
        """One frame repeating the last pitch period, fading to silence over a few losses."""
        return self._plc.conceal().tobytes()

    def reset(self) -> None:
        """Forget the concealment history (new stream: SSRC change)."""
        self._plc.reset()


class G711Codec(BaseCodec):
    """PCMU (payload type 0) or PCMA (payload type 8): 8 kHz, one byte a sample."""

    def __init__(
        self,
        law: str,
        *,
        frame_ms: int = 20,
        fmtp: Mapping[str, str] | None = None,
        fade_frames: int = 4,
    ) -> None:
        law = law.upper()
        if law not in ("PCMU", "PCMA"):
            raise CodecError(f"G.711: unknown law {law!r} (PCMU or PCMA)")
        super().__init__(
            law,
            rtp_clock_rate=8000,
            sample_rate=8000,
            frame_ms=frame_ms,
            payload_type=0 if law == "PCMU" else 8,
            fmtp=fmtp,
        )
        self.fade_frames = fade_frames
        self.silence_code = ULAW_SILENCE if law == "PCMU" else ALAW_SILENCE

    def encoder(self) -> G711Encoder:
        table = ULAW_ENCODE_TABLE if self.name == "PCMU" else ALAW_ENCODE_TABLE
        return G711Encoder(table, self.name)

    def decoder(self) -> G711Decoder:
        table = ULAW_DECODE_TABLE if self.name == "PCMU" else ALAW_DECODE_TABLE
        return G711Decoder(table, self.samples_per_frame, fade_frames=self.fade_frames)

    def silence(self) -> bytes:
        """One frame of digital silence as a payload."""
        return bytes([self.silence_code]) * self.samples_per_frame


def pcmu(frame_ms: int = 20) -> G711Codec:
    """The PCMU codec (mu-law, static payload type 0)."""
    return G711Codec("PCMU", frame_ms=frame_ms)


def pcma(frame_ms: int = 20) -> G711Codec:
    """The PCMA codec (A-law, static payload type 8)."""
    return G711Codec("PCMA", frame_ms=frame_ms)
