"""Audio helpers of the GPT-Live client: silence in a session format, the level of a chunk."""

from __future__ import annotations

import numpy as np

from w3sipagent.ai import session as ai
from w3sipagent.codecs.g711 import alaw_decode, ulaw_decode

__all__ = ["level_dbfs", "silence_frame"]


def silence_frame(fmt: ai.AudioFormat, ms: int = 20) -> bytes:
    """``ms`` of digital silence in ``fmt``."""
    n = fmt.bytes_per_ms * ms
    if fmt is ai.AudioFormat.PCMU:
        return b"\xff" * n
    if fmt is ai.AudioFormat.PCMA:
        return b"\xd5" * n
    return bytes(n)


def level_dbfs(data: bytes, fmt: ai.AudioFormat) -> float:
    """RMS level of audio in ``fmt`` in dB relative to full scale (-120 for silence)."""
    if fmt is ai.AudioFormat.PCMU:
        pcm = ulaw_decode(data)
    elif fmt is ai.AudioFormat.PCMA:
        pcm = alaw_decode(data)
    else:
        pcm = data[: len(data) - len(data) % 2]
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if x.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(x * x)))
    return -120.0 if rms < 1.0 else 20.0 * float(np.log10(rms / 32768.0))
