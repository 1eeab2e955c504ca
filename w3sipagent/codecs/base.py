"""What every codec offers: the :class:`Codec`, :class:`Encoder` and :class:`Decoder` protocols.

PCM between modules is ``bytes`` of signed 16-bit little-endian mono samples at the
codec's :attr:`Codec.sample_rate` (8000 for G.711, 16000 for G.722, 48000 for Opus).
A :class:`Codec` is a description (name, rates, frame size, payload type) and a factory
of per-stream :class:`Encoder` / :class:`Decoder` objects, which keep the state of one
direction of one call (predictor state, concealment history).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from w3sipagent.errors import CodecError

#: Bytes in one PCM sample (signed 16-bit little-endian).
SAMPLE_BYTES = 2


@runtime_checkable
class Encoder(Protocol):
    """Encodes PCM frames of one stream (keeps that stream's state)."""

    def encode(self, pcm: bytes) -> bytes:
        """One frame of PCM (s16le mono at the codec's sample rate) -> one RTP payload."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """Decodes the RTP payloads of one stream (keeps that stream's state)."""

    def decode(self, payload: bytes) -> bytes:
        """One RTP payload -> PCM (s16le mono at the codec's sample rate)."""
        ...

    def conceal(self, next_payload: bytes | None = None) -> bytes:
        """PCM standing in for one lost frame.

        ``next_payload`` is the payload of the packet after the lost one when the
        jitter buffer already holds it: codecs with in-band FEC (Opus) rebuild the
        lost frame from it; the others ignore it and use packet loss concealment.
        """
        ...


class Codec(Protocol):
    """A codec as negotiated in SDP: a description and a factory of coders."""

    @property
    def name(self) -> str:
        """Encoding name as in SDP ``a=rtpmap`` (``PCMU``, ``PCMA``, ``G722``, ``opus``, ``L16``)."""
        ...

    @property
    def rtp_clock_rate(self) -> int:
        """RTP timestamp clock rate (8000 for G.722 although it codes 16 kHz audio)."""
        ...

    @property
    def sample_rate(self) -> int:
        """Rate of the PCM the encoder takes and the decoder gives."""
        ...

    @property
    def channels(self) -> int:
        """Channels on the wire (PCM between modules is always mono)."""
        ...

    @property
    def frame_ms(self) -> int:
        """Packetisation time in milliseconds (20 unless negotiated otherwise)."""
        ...

    @property
    def payload_type(self) -> int | None:
        """Static RTP payload type (RFC 3551), or None for a dynamic one."""
        ...

    @property
    def samples_per_frame(self) -> int:
        """PCM samples in one frame at :attr:`sample_rate`."""
        ...

    @property
    def timestamp_increment(self) -> int:
        """RTP timestamp units in one frame (at :attr:`rtp_clock_rate`)."""
        ...

    def encoder(self) -> Encoder:
        """A fresh encoder for one stream."""
        ...

    def decoder(self) -> Decoder:
        """A fresh decoder for one stream."""
        ...


class BaseCodec:
    """Shared implementation of the :class:`Codec` description properties."""

    def __init__(
        self,
        name: str,
        *,
        rtp_clock_rate: int,
        sample_rate: int,
        channels: int = 1,
        frame_ms: int = 20,
        payload_type: int | None = None,
        fmtp: Mapping[str, str] | None = None,
    ) -> None:
        if frame_ms <= 0 or frame_ms > 120:
            raise CodecError(f"{name}: frame duration {frame_ms} ms out of range 1..120")
        if (sample_rate * frame_ms) % 1000 or (rtp_clock_rate * frame_ms) % 1000:
            raise CodecError(f"{name}: {frame_ms} ms is not a whole number of samples")
        self._name = name
        self._rtp_clock_rate = rtp_clock_rate
        self._sample_rate = sample_rate
        self._channels = channels
        self._frame_ms = frame_ms
        self._payload_type = payload_type
        self.fmtp: dict[str, str] = dict(fmtp or {})

    @property
    def name(self) -> str:
        return self._name

    @property
    def rtp_clock_rate(self) -> int:
        return self._rtp_clock_rate

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def frame_ms(self) -> int:
        return self._frame_ms

    @property
    def payload_type(self) -> int | None:
        return self._payload_type

    @property
    def samples_per_frame(self) -> int:
        return self._sample_rate * self._frame_ms // 1000

    @property
    def timestamp_increment(self) -> int:
        return self._rtp_clock_rate * self._frame_ms // 1000

    @property
    def frame_bytes(self) -> int:
        """Bytes of PCM (s16le mono) in one frame."""
        return self.samples_per_frame * SAMPLE_BYTES

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._name}/{self._rtp_clock_rate}/{self._channels} "
            f"pcm {self._sample_rate} Hz, {self._frame_ms} ms>"
        )


def parse_fmtp(fmtp: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"useinbandfec=1; maxaveragebitrate=20000"`` -> ``{"useinbandfec": "1", ...}``.

    Keys are lower-cased; a parameter without ``=`` maps to ``""``. A mapping is
    copied with lower-cased keys and string values.
    """
    if fmtp is None:
        return {}
    if not isinstance(fmtp, str):
        return {str(k).strip().lower(): str(v).strip() for k, v in fmtp.items()}
    out: dict[str, str] = {}
    for part in fmtp.split(";"):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        out[key.strip().lower()] = value.strip()
    return out


def check_pcm(pcm: bytes, codec: str) -> None:
    """Raise :class:`CodecError` when ``pcm`` is not whole 16-bit samples."""
    if len(pcm) % SAMPLE_BYTES:
        raise CodecError(f"{codec}: PCM of {len(pcm)} bytes is not whole 16-bit samples")


def fmtp_int(fmtp: Mapping[str, str], key: str, codec: str, lo: int, hi: int) -> int | None:
    """An integer fmtp parameter within ``lo..hi``, None when absent; CodecError when malformed."""
    raw = fmtp.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise CodecError(f"{codec}: fmtp {key}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise CodecError(f"{codec}: fmtp {key}={value} out of range {lo}..{hi}")
    return value


def fmtp_flag(fmtp: Mapping[str, str], key: str, default: bool = False) -> bool:
    """A 0/1 fmtp flag (RFC 7587 style); anything but ``"1"`` / ``"true"`` is false."""
    raw = fmtp.get(key)
    if raw is None:
        return default
    return raw.strip().lower() in ("1", "true", "yes")
