"""G.722 (64 kbit/s SB-ADPCM, 16 kHz audio) through PyAV (FFmpeg's ``g722`` coder).

RFC 3551 §4.5.2: the RTP clock rate of G.722 is 8000 although it samples at 16 kHz, so
a 20 ms frame is 320 PCM samples, 160 payload bytes and 160 timestamp units. Static
payload type 9. Lost frames are concealed on the decoded PCM (:mod:`.plc`); FFmpeg's
decoder has no concealment of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

import av
import numpy as np

from w3sipagent.codecs.base import BaseCodec, check_pcm
from w3sipagent.codecs.plc import Concealer
from w3sipagent.errors import CodecError

__all__ = ["G722Codec", "G722Decoder", "G722Encoder"]

_RATE = 16000


class G722Encoder:
    """16 kHz s16le mono -> G.722 payload (one FFmpeg encoder per stream)."""

    def __init__(self, frame_samples: int) -> None:
        ctx = av.CodecContext.create("g722", "w")
        ctx.sample_rate = _RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.options = {"frame_size": str(frame_samples)}  # else PyAV re-chunks to 320 (delay)
        ctx.open()
        self._ctx = ctx
        self._frame_samples = frame_samples
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        """One frame of 16 kHz PCM (an even number of samples) -> G.722 (half a byte a sample)."""
        check_pcm(pcm, "G722")
        samples = len(pcm) // 2
        if samples != self._frame_samples:
            raise CodecError(f"G722: frame of {samples} samples, expected {self._frame_samples}")
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.sample_rate = _RATE
        frame.pts = self._pts
        self._pts += samples
        frame.planes[0].update(pcm)
        try:
            packets = self._ctx.encode(frame)
        except av.FFmpegError as exc:
            raise CodecError(f"G722: encode failed ({exc})") from None
        return b"".join(bytes(p) for p in packets)


class G722Decoder:
    """G.722 payload -> 16 kHz s16le mono, with fade-out concealment."""

    def __init__(self, frame_samples: int, *, fade_frames: int = 4) -> None:
        ctx = av.CodecContext.create("g722", "r")
        ctx.sample_rate = _RATE
        ctx.layout = "mono"
        self._ctx = ctx
        self._plc = Concealer(_RATE, frame_samples, fade_frames=fade_frames)

    def decode(self, payload: bytes) -> bytes:
        """G.722 payload -> PCM (two samples per byte)."""
        if not payload:
            return b""
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except av.FFmpegError as exc:
            raise CodecError(f"G722: decode failed ({exc})") from None
        pcm = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
        return self._plc.remember(np.frombuffer(pcm, dtype="<i2")).tobytes()

    def conceal(self, next_payload: bytes | None = None) -> bytes:
        """One frame repeating the last pitch period, fading to silence over a few losses."""
        return self._plc.conceal().tobytes()

    def reset(self) -> None:
        """Forget the concealment history (new stream)."""
        self._plc.reset()


class G722Codec(BaseCodec):
    """G.722: PCM at 16 kHz, RTP clock 8000, payload type 9."""

    def __init__(self, *, frame_ms: int = 20, fmtp: Mapping[str, str] | None = None) -> None:
        super().__init__(
            "G722",
            rtp_clock_rate=8000,
            sample_rate=_RATE,
            frame_ms=frame_ms,
            payload_type=9,
            fmtp=fmtp,
        )

    def encoder(self) -> G722Encoder:
        return G722Encoder(self.samples_per_frame)

    def decoder(self) -> G722Decoder:
        return G722Decoder(self.samples_per_frame)
