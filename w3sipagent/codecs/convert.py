"""Audio between the call (RTP payloads) and the AI back end, with G.711 passthrough.

The AI side takes one of three formats, named by string (this module is pure core and
does not import :mod:`w3sipagent.ai`): ``"audio/pcmu"`` and ``"audio/pcma"`` (G.711 bytes,
8 kHz, one byte a sample) or ``"audio/pcm"`` (s16le mono at 24 kHz).

:func:`build_converters` gives the two directions for a negotiated call codec:

* :class:`InboundConverter`: one RTP payload (or one lost frame) -> AI bytes;
* :class:`OutboundConverter`: AI bytes in chunks of any size -> RTP payloads of exactly
  one frame (``codec.frame_ms``), keeping the remainder for the next chunk.

When the call speaks the G.711 law the AI takes, both are **passthrough**: payload bytes
are returned untouched (no decode, resample or encode); only the framing of the AI's
chunks into 20 ms payloads remains. PCMU on one side and PCMA on the other is a byte
translation through the G.711 tables (no linear intermediate).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from w3sipagent.codecs.base import Codec, Decoder, Encoder
from w3sipagent.codecs.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    alaw_to_ulaw,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_alaw,
)
from w3sipagent.codecs.opus import PCM_RATES as OPUS_PCM_RATES
from w3sipagent.codecs.opus import OpusCodec
from w3sipagent.codecs.plc import Concealer
from w3sipagent.codecs.resample import Resampler
from w3sipagent.errors import CodecError

__all__ = [
    "AI_PCM",
    "AI_PCMA",
    "AI_PCMU",
    "Framer",
    "InboundConverter",
    "OutboundConverter",
    "ai_bytes_per_ms",
    "ai_sample_rate",
    "build_converters",
]

AI_PCMU = "audio/pcmu"
AI_PCMA = "audio/pcma"
AI_PCM = "audio/pcm"
_AI_RATES = {AI_PCMU: 8000, AI_PCMA: 8000, AI_PCM: 24000}
_G711_OF_AI = {AI_PCMU: "PCMU", AI_PCMA: "PCMA"}

Transform = Callable[[bytes], bytes]


def _ai_format(fmt: str) -> str:
    key = fmt.strip().lower()
    if key not in _AI_RATES:
        raise CodecError(f"unknown AI audio format {fmt!r} (audio/pcmu, audio/pcma, audio/pcm)")
    return key


def ai_sample_rate(fmt: str) -> int:
    """8000 for ``audio/pcmu`` / ``audio/pcma``, 24000 for ``audio/pcm``."""
    return _AI_RATES[_ai_format(fmt)]


def ai_bytes_per_ms(fmt: str) -> int:
    """Bytes of AI audio in one millisecond (8 for G.711, 48 for 24 kHz PCM16)."""
    fmt = _ai_format(fmt)
    return 48 if fmt == AI_PCM else 8


class Framer:
    """Cuts a byte stream arriving in chunks of any size into frames of ``frame_bytes``.

    >>> f = Framer(160)
    >>> [len(x) for x in f.push(b"\\xff" * 400)], f.pending
    ([160, 160], 80)
    """

    def __init__(self, frame_bytes: int, *, silence: bytes = b"\x00") -> None:
        if frame_bytes <= 0:
            raise CodecError(f"framer: frame size {frame_bytes} bytes")
        self.frame_bytes = frame_bytes
        self._silence = silence
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buf)

    def push(self, data: bytes) -> list[bytes]:
        """Add a chunk; return the whole frames now complete (possibly none)."""
        size = self.frame_bytes
        if not self._buf and len(data) % size == 0:  # aligned: no copy into the buffer
            return [data[i : i + size] for i in range(0, len(data), size)]
        self._buf += data
        whole = len(self._buf) - len(self._buf) % size
        frames = [bytes(self._buf[i : i + size]) for i in range(0, whole, size)]
        del self._buf[:whole]
        return frames

    def flush(self) -> bytes | None:
        """The remainder padded with silence to a whole frame, or None when nothing is held."""
        if not self._buf:
            return None
        pad = self.frame_bytes - len(self._buf)
        fill = (self._silence * (pad // len(self._silence) + 1))[:pad]
        frame = bytes(self._buf) + fill
        self._buf.clear()
        return frame

    def clear(self) -> int:
        """Drop what is held (barge-in); returns the bytes dropped."""
        n = len(self._buf)
        self._buf.clear()
        return n


class InboundConverter:
    """RTP payloads of the call -> audio for the AI."""

    def __init__(
        self,
        *,
        passthrough: bool,
        transform: Transform | None = None,
        decoder: Decoder | None = None,
        resampler: Resampler | None = None,
        to_ai: Transform | None = None,
        g711_law: str | None = None,
        frame_samples: int = 160,
    ) -> None:
        self.passthrough = passthrough
        self._transform = transform
        self._decoder = decoder
        self._resampler = resampler
        self._to_ai = to_ai
        self._law = g711_law
        self._frame_samples = frame_samples
        self._recent: list[bytes] = []
        self._concealer: Concealer | None = None

    def convert(self, payload: bytes) -> bytes:
        """One RTP payload -> AI bytes (the same object in passthrough)."""
        if self._law is not None:  # G.711 on both sides: keep payloads for concealment only
            self._recent.append(payload)
            if len(self._recent) > 3:
                del self._recent[0]
            self._concealer = None
            return payload if self._transform is None else self._transform(payload)
        assert self._decoder is not None
        return self._pcm_to_ai(self._decoder.decode(payload))

    def conceal(self, next_payload: bytes | None = None) -> bytes:
        """AI bytes standing in for one lost frame."""
        if self._law is not None:
            return self._conceal_g711()
        assert self._decoder is not None
        return self._pcm_to_ai(self._decoder.conceal(next_payload))

    def _pcm_to_ai(self, pcm: bytes) -> bytes:
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        return pcm if self._to_ai is None else self._to_ai(pcm)

    def _conceal_g711(self) -> bytes:
        """Decode the last payloads only now, to conceal in the linear domain."""
        law = self._law
        decode = ulaw_decode if law == "PCMU" else alaw_decode
        if self._concealer is None:
            self._concealer = Concealer(8000, self._frame_samples)
            for p in self._recent:
                self._concealer.remember(np.frombuffer(decode(p), dtype="<i2"))
        pcm = self._concealer.conceal().tobytes()
        encoded = ulaw_encode(pcm) if law == "PCMU" else alaw_encode(pcm)
        return encoded if self._transform is None else self._transform(encoded)


class OutboundConverter:
    """AI audio in chunks of any size -> RTP payloads of exactly one codec frame."""

    def __init__(
        self,
        framer: Framer,
        *,
        passthrough: bool,
        transform: Transform | None = None,
        from_ai: Transform | None = None,
        resampler: Resampler | None = None,
        pcm_framer: Framer | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.passthrough = passthrough
        self.framer = framer
        self._transform = transform
        self._from_ai = from_ai
        self._resampler = resampler
        self._pcm_framer = pcm_framer
        self._encoder = encoder

    @property
    def pending_bytes(self) -> int:
        """AI bytes held back waiting for a whole frame."""
        return self.framer.pending

    def push(self, data: bytes) -> list[bytes]:
        """Add AI audio; return the RTP payloads now complete, in order."""
        return self._payloads(self.framer.push(data))

    def flush(self) -> list[bytes]:
        """End of an AI response: the remainder padded with silence into a last payload."""
        last = self.framer.flush()
        out = self._payloads([last]) if last is not None else []
        if self._pcm_framer is not None and self._encoder is not None:
            tail = self._pcm_framer.flush()
            if tail is not None:
                out.append(self._encoder.encode(tail))
        return out

    def clear(self) -> None:
        """Drop held audio (the caller barged in)."""
        self.framer.clear()
        if self._pcm_framer is not None:
            self._pcm_framer.clear()
        if self._resampler is not None:
            self._resampler.reset()

    def _payloads(self, frames: list[bytes]) -> list[bytes]:
        if self._encoder is None:  # passthrough or G.711 translation
            if self._transform is None:
                return frames
            return [self._transform(f) for f in frames]
        assert self._pcm_framer is not None
        out: list[bytes] = []
        for frame in frames:
            pcm = frame if self._from_ai is None else self._from_ai(frame)
            if self._resampler is not None:
                pcm = self._resampler.process(pcm)
            for chunk in self._pcm_framer.push(pcm):
                out.append(self._encoder.encode(chunk))
        return out


def build_converters(
    codec: Codec, ai_format: str, *, resampler_delay_ms: float = 1.5
) -> tuple[InboundConverter, OutboundConverter]:
    """The two converters between a call using ``codec`` and an AI taking ``ai_format``.

    Passthrough (identity, no codec work) when the codec is PCMU and the AI takes
    ``audio/pcmu``, or PCMA and ``audio/pcma``.
    """
    fmt = _ai_format(ai_format)
    ai_rate = _AI_RATES[fmt]
    frame_ms = codec.frame_ms
    ai_frame_bytes = ai_bytes_per_ms(fmt) * frame_ms
    ai_law = _G711_OF_AI.get(fmt)
    silence = bytes([ULAW_SILENCE if ai_law == "PCMU" else ALAW_SILENCE]) if ai_law else b"\x00"
    framer = Framer(ai_frame_bytes, silence=silence)
    call_law = codec.name.upper() if codec.name.upper() in ("PCMU", "PCMA") else None
    spf = codec.samples_per_frame

    if call_law is not None and ai_law is not None:
        same = call_law == ai_law
        to_ai = None if same else (ulaw_to_alaw if call_law == "PCMU" else alaw_to_ulaw)
        to_call = None if same else (alaw_to_ulaw if call_law == "PCMU" else ulaw_to_alaw)
        inbound = InboundConverter(
            passthrough=same, transform=to_ai, g711_law=call_law, frame_samples=spf
        )
        outbound = OutboundConverter(framer, passthrough=same, transform=to_call)
        return inbound, outbound

    if isinstance(codec, OpusCodec) and ai_rate in OPUS_PCM_RATES:
        codec = codec.with_pcm_rate(ai_rate)  # libopus codes 24 kHz itself: no resampling
        spf = codec.samples_per_frame

    def resampler(src: int, dst: int) -> Resampler | None:
        return None if src == dst else Resampler(src, dst, delay_ms=resampler_delay_ms)

    to_ai_bytes: Transform | None = None
    from_ai_bytes: Transform | None = None
    if ai_law == "PCMU":
        to_ai_bytes, from_ai_bytes = ulaw_encode, ulaw_decode
    elif ai_law == "PCMA":
        to_ai_bytes, from_ai_bytes = alaw_encode, alaw_decode
    inbound = InboundConverter(
        passthrough=False,
        decoder=codec.decoder(),
        resampler=resampler(codec.sample_rate, ai_rate),
        to_ai=to_ai_bytes,
    )
    outbound = OutboundConverter(
        framer,
        passthrough=False,
        from_ai=from_ai_bytes,
        resampler=resampler(ai_rate, codec.sample_rate),
        pcm_framer=Framer(spf * 2),
        encoder=codec.encoder(),
    )
    return inbound, outbound
