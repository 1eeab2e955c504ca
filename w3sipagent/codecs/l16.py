"""L16: linear 16-bit PCM on the wire, big-endian (RFC 3551 §4.5.11), at any rate.

Our PCM between modules is little-endian (as OpenAI Realtime's ``audio/pcm``), so L16
coding is a byte swap. Multi-channel L16 is decoded to mono by averaging the channels
and encoded by duplicating the mono signal.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from w3sipagent.codecs.base import SAMPLE_BYTES, BaseCodec, check_pcm
from w3sipagent.codecs.plc import Concealer
from w3sipagent.errors import CodecError

__all__ = ["L16Codec", "L16Decoder", "L16Encoder"]

# RFC 3551 static payload types: L16/44100/2 = 10, L16/44100/1 = 11.
_STATIC_PT = {(44100, 2): 10, (44100, 1): 11}


class L16Encoder:
    """s16le mono -> big-endian L16 (duplicated into every channel)."""

    def __init__(self, channels: int) -> None:
        self._channels = channels

    def encode(self, pcm: bytes) -> bytes:
        """s16le mono PCM -> L16 payload."""
        check_pcm(pcm, "L16")
        samples = np.frombuffer(pcm, dtype="<i2")
        if self._channels > 1:
            samples = np.repeat(samples, self._channels)
        return samples.astype(">i2").tobytes()


class L16Decoder:
    """Big-endian L16 -> s16le mono, with fade-out concealment."""

    def __init__(self, channels: int, sample_rate: int, frame_samples: int) -> None:
        self._channels = channels
        self._plc = Concealer(sample_rate, frame_samples)

    def decode(self, payload: bytes) -> bytes:
        """L16 payload -> s16le mono PCM."""
        frame = SAMPLE_BYTES * self._channels
        if len(payload) % frame:
            raise CodecError(
                f"L16: payload of {len(payload)} bytes is not whole {self._channels}-channel samples"
            )
        samples = np.frombuffer(payload, dtype=">i2")
        if self._channels > 1:
            mono = samples.reshape(-1, self._channels).astype(np.int32).sum(axis=1)
            pcm = (mono // self._channels).astype("<i2")
        else:
            pcm = samples.astype("<i2")
        return self._plc.remember(pcm).tobytes()

    def conceal(self, next_payload: bytes | None = None) -> bytes:
        """One frame of fade-out concealment."""
        return self._plc.conceal().tobytes()

    def reset(self) -> None:
        """Forget the concealment history (new stream: SSRC change)."""
        self._plc.reset()


class L16Codec(BaseCodec):
    """L16 at ``clock_rate`` (the PCM rate equals the RTP clock rate)."""

    def __init__(
        self,
        clock_rate: int,
        channels: int = 1,
        *,
        frame_ms: int = 20,
        fmtp: Mapping[str, str] | None = None,
    ) -> None:
        if not 1000 <= clock_rate <= 192000:
            raise CodecError(f"L16: clock rate {clock_rate} out of range 1000..192000")
        if not 1 <= channels <= 8:
            raise CodecError(f"L16: {channels} channels out of range 1..8")
        super().__init__(
            "L16",
            rtp_clock_rate=clock_rate,
            sample_rate=clock_rate,
            channels=channels,
            frame_ms=frame_ms,
            payload_type=_STATIC_PT.get((clock_rate, channels)),
            fmtp=fmtp,
        )

    def encoder(self) -> L16Encoder:
        return L16Encoder(self.channels)

    def decoder(self) -> L16Decoder:
        return L16Decoder(self.channels, self.sample_rate, self.samples_per_frame)
