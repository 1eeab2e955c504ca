"""Audio conversions the local Realtime server needs.

The server speaks the three GA formats (``audio/pcmu``, ``audio/pcma``,
``audio/pcm`` at 24 kHz). Internally it synthesizes and analyses 16-bit
little-endian mono PCM; this module converts between the two and reads and
writes WAV files. G.711 is the ITU-T G.711 segment algorithm on numpy arrays
from :mod:`w3sipagent.codecs` (bit-exact with ITU-T G.191).
"""

from __future__ import annotations

import functools
import io
import struct
import wave

import numpy as np
import numpy.typing as npt

from w3sipagent.ai.session import AudioFormat
from w3sipagent.codecs.g711 import (
    ALAW_DECODE_TABLE,
    ULAW_DECODE_TABLE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)
from w3sipagent.codecs.resample import Resampler
from w3sipagent.errors import CodecError

__all__ = [
    "PCM_RATE",
    "WavError",
    "alaw_decode",
    "alaw_encode",
    "codes_energy",
    "converted_output",
    "dbfs_energy",
    "frames_energy",
    "from_pcm24k",
    "g711_squares",
    "parse_wav",
    "resample",
    "rms_dbfs",
    "samples",
    "silence",
    "to_pcm16",
    "tone",
    "ulaw_decode",
    "ulaw_encode",
    "wav_bytes",
]

Int16Array = npt.NDArray[np.int16]

PCM_RATE = 24000
"""Sample rate of GA ``audio/pcm`` (the only rate the service accepts)."""


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample a whole mono 16-bit PCM buffer (the project's polyphase resampler)."""
    if src_rate == dst_rate or not pcm:
        return pcm
    r = Resampler(src_rate, dst_rate)
    return r.process(pcm) + r.flush()


def to_pcm16(data: bytes, fmt: AudioFormat) -> bytes:
    """Decode audio in a session format to 16-bit PCM at the format's own rate."""
    if fmt is AudioFormat.PCMU:
        return ulaw_decode(data)
    if fmt is AudioFormat.PCMA:
        return alaw_decode(data)
    return data[: len(data) - len(data) % 2]


def from_pcm24k(pcm24k: bytes, fmt: AudioFormat) -> bytes:
    """Convert 24 kHz 16-bit PCM to a session output format."""
    if fmt is AudioFormat.PCM24K:
        return pcm24k
    pcm8k = resample(pcm24k, PCM_RATE, 8000)
    return ulaw_encode(pcm8k) if fmt is AudioFormat.PCMU else alaw_encode(pcm8k)


@functools.lru_cache(maxsize=64)
def converted_output(pcm24k: bytes, fmt: AudioFormat) -> bytes:
    """:func:`from_pcm24k`, kept for the last 64 inputs: a scenario's lines come from the
    synthesizer's cache as the same bytes again and again, and resampling one to 8 kHz
    costs milliseconds (the key's hash is computed once per bytes object)."""
    return from_pcm24k(pcm24k, fmt)


def samples(pcm: bytes) -> Int16Array:
    """16-bit PCM bytes as an int16 numpy array (a copy-free view)."""
    return np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of 16-bit PCM in dB relative to full scale (-120.0 for silence)."""
    x = samples(pcm).astype(np.float64)
    if x.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(x * x)))
    if rms <= 0.0:
        return -120.0
    return max(-120.0, 20.0 * float(np.log10(rms / 32768.0)))


def frames_energy(pcm: bytes, frame_samples: int) -> npt.NDArray[np.int64]:
    """The sum of squared samples of each ``frame_samples``-long frame of 16-bit PCM, exact,
    in one pass (``pcm`` holds whole frames). A frame is at least ``L`` dBFS
    (:func:`rms_dbfs`) when its energy is at least :func:`dbfs_energy` of ``L``."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int64).reshape(-1, frame_samples)
    energy: npt.NDArray[np.int64] = (x * x).sum(axis=1)  # cheaper than einsum at this size
    return energy


def _squares(table: npt.NDArray[np.int16]) -> npt.NDArray[np.int64]:
    sq: npt.NDArray[np.int64] = table.astype(np.int64) ** 2
    sq.setflags(write=False)
    return sq


_SQUARES = {
    AudioFormat.PCMU: _squares(ULAW_DECODE_TABLE),
    AudioFormat.PCMA: _squares(ALAW_DECODE_TABLE),
}


def g711_squares(fmt: AudioFormat) -> npt.NDArray[np.int64] | None:
    """The square of each G.711 code's decoded sample (256 entries), None for PCM."""
    return _SQUARES.get(fmt)


def codes_energy(
    data: bytes, squares: npt.NDArray[np.int64], frame_samples: int
) -> npt.NDArray[np.int64]:
    """:func:`frames_energy` of G.711 codes without decoding them: the sum of the squares
    (``squares``: :func:`g711_squares`) of each frame's samples, exactly the energy of the
    decoded PCM. ``data`` holds whole frames."""
    energy: npt.NDArray[np.int64] = (
        squares.take(np.frombuffer(data, dtype=np.uint8)).reshape(-1, frame_samples).sum(axis=1)
    )
    return energy


def dbfs_energy(dbfs: float, frame_samples: int) -> float:
    """The frame energy (sum of squares) of an RMS level of ``dbfs``; ``-1`` at or below
    -120 dBFS, where :func:`rms_dbfs` counts every frame (even silence) as loud enough."""
    if dbfs <= -120.0:
        return -1.0
    return float(frame_samples * 32768.0**2 * 10.0 ** (dbfs / 10.0))


class WavError(CodecError, ValueError):
    """A WAV file is malformed or not 16-bit PCM."""


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """A mono 16-bit WAV file holding ``pcm``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def parse_wav(data: bytes) -> tuple[bytes, int, int]:
    """Parse a PCM WAV (as espeak-ng writes it to stdout, sizes possibly unset).

    Returns ``(pcm16_mono, sample_rate, channels)``; multi-channel input is
    down-mixed to mono. Raises :class:`WavError` when it is not 16-bit PCM WAV.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    pos = 12
    rate = channels = bits = 0
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise WavError("WAV fmt chunk too short")
            fmt_tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body : body + 16])
            if fmt_tag != 1 or bits != 16 or channels < 1:
                raise WavError(f"WAV is not 16-bit PCM (format {fmt_tag}, {bits} bits)")
        elif cid == b"data":
            if rate == 0:
                raise WavError("WAV data chunk before fmt chunk")
            end = len(data) if size in (0, 0xFFFFFFFF, 0x7FFFFFFF) else min(len(data), body + size)
            pcm = data[body:end]
            pcm = pcm[: len(pcm) - len(pcm) % (2 * channels)]
            if channels > 1:
                x = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels).astype(np.int32)
                pcm = x.mean(axis=1).astype("<i2").tobytes()
            return pcm, rate, channels
        pos = body + size + (size & 1)
    raise WavError("WAV has no data chunk")


def tone(freq: float, ms: int, rate: int = PCM_RATE, dbfs: float = -20.0) -> bytes:
    """A sine tone of ``ms`` milliseconds at ``dbfs`` RMS level, 16-bit PCM."""
    n = rate * ms // 1000
    amp = 32768.0 * (10 ** (dbfs / 20.0)) * np.sqrt(2.0)
    t = np.arange(n) / rate
    return bytes(np.round(amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes())


def silence(ms: int, rate: int = PCM_RATE) -> bytes:
    """``ms`` milliseconds of 16-bit PCM silence."""
    return bytes(2 * (rate * ms // 1000))
