"""Prompts played without the AI: a tenant's fallback WAV and the recording announcement.

:func:`load_prompt_frames` reads a WAV file (8/16-bit PCM, any rate, mono or stereo: the
channels are mixed) and encodes it into RTP payloads of the call's codec, one frame each,
ready for the playout queue. It reads a file and runs codecs, so the bridge calls it
through ``asyncio.to_thread`` (never on the event loop). Errors are :class:`PromptError`
naming the file and the defect.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from w3sipagent.codecs.base import Codec
from w3sipagent.codecs.resample import Resampler
from w3sipagent.errors import W3SipError

__all__ = ["MAX_PROMPT_SECONDS", "PromptError", "load_prompt_frames", "read_wav_pcm16"]

MAX_PROMPT_SECONDS = 300.0
"""Longer prompt files are refused (a misconfigured file must not eat memory)."""


class PromptError(W3SipError, ValueError):
    """A prompt WAV cannot be read or is not usable audio."""


def read_wav_pcm16(path: Path, *, max_seconds: float = MAX_PROMPT_SECONDS) -> tuple[bytes, int]:
    """``(PCM16 mono bytes, sample rate)`` of a WAV file."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            if rate <= 0 or n / rate > max_seconds:
                raise PromptError(f"prompt {path}: {n} frames at {rate} Hz is too long or invalid")
            raw = w.readframes(n)
    except FileNotFoundError:
        raise PromptError(f"prompt {path}: file not found") from None
    except (wave.Error, EOFError) as exc:
        raise PromptError(f"prompt {path}: not a PCM WAV file ({exc})") from None
    except OSError as exc:
        raise PromptError(f"prompt {path}: cannot be read ({exc.strerror or exc})") from None
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    else:
        raise PromptError(f"prompt {path}: {8 * width}-bit samples (8 or 16-bit PCM needed)")
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1).astype(np.int32)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes(), rate


def load_prompt_frames(path: Path, codec: Codec) -> list[bytes]:
    """The WAV at ``path`` as RTP payloads of ``codec``, one frame each (last one padded)."""
    pcm, rate = read_wav_pcm16(path)
    if rate != codec.sample_rate:
        rs = Resampler(rate, codec.sample_rate)
        pcm = rs.process(pcm) + rs.flush()
    spf = codec.samples_per_frame
    step = 2 * spf
    if len(pcm) % step:
        pcm += bytes(step - len(pcm) % step)
    enc = codec.encoder()
    return [enc.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
