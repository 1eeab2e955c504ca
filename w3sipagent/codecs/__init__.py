"""Audio codecs: G.711 (numpy tables), G.722 and Opus, L16, resampling, passthrough.

:func:`get_codec` turns an SDP ``a=rtpmap`` / ``a=fmtp`` pair into a :class:`Codec`;
the registry is open: :func:`register_codec` adds or replaces an encoding.

>>> codec = get_codec("pcmu", 8000)
>>> codec.payload_type, codec.samples_per_frame, codec.timestamp_increment
(0, 160, 160)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from w3sipagent.codecs.base import Codec, Decoder, Encoder, fmtp_int, parse_fmtp
from w3sipagent.codecs.g711 import (
    G711Codec,
    alaw_decode,
    alaw_encode,
    alaw_to_ulaw,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_alaw,
)
from w3sipagent.codecs.l16 import L16Codec
from w3sipagent.errors import CodecError

__all__ = [
    "Codec",
    "CodecFactory",
    "Decoder",
    "Encoder",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "get_codec",
    "parse_fmtp",
    "register_codec",
    "registered_codecs",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_alaw",
]

#: Builds a codec from (clock rate, channels, fmtp parameters, frame duration in ms).
#: Raises :class:`CodecError` for a combination it cannot serve.
CodecFactory = Callable[[int, int, dict[str, str], int], Codec]

_REGISTRY: dict[str, CodecFactory] = {}


def register_codec(encoding: str, factory: CodecFactory, *, replace: bool = False) -> None:
    """Make ``encoding`` (case-insensitive) available to :func:`get_codec`.

    Raises :class:`CodecError` when it is registered already, unless ``replace``.
    """
    key = encoding.strip().lower()
    if not key:
        raise CodecError("codec registration needs an encoding name")
    if key in _REGISTRY and not replace:
        raise CodecError(f"codec {encoding!r} is registered already (pass replace=True)")
    _REGISTRY[key] = factory


def registered_codecs() -> list[str]:
    """The registered encoding names (lower case)."""
    return sorted(_REGISTRY)


def get_codec(
    encoding: str,
    clock_rate: int,
    channels: int = 1,
    fmtp: str | Mapping[str, str] | None = None,
    *,
    frame_ms: int | None = None,
) -> Codec:
    """The codec for an SDP ``a=rtpmap:<pt> <encoding>/<clock_rate>[/<channels>]``.

    ``fmtp`` is the ``a=fmtp`` parameter string or a mapping. ``frame_ms`` defaults
    to the fmtp ``ptime`` when given (RFC 7587), else 20. Raises :class:`CodecError`
    for an unknown encoding or an unsupported clock rate / channel count.
    """
    factory = _REGISTRY.get(encoding.strip().lower())
    if factory is None:
        raise CodecError(
            f"unsupported codec {encoding}/{clock_rate}/{channels} "
            f"(known: {', '.join(registered_codecs())})"
        )
    params = parse_fmtp(fmtp)
    if frame_ms is None:
        frame_ms = fmtp_int(params, "ptime", encoding, 1, 120) or 20
    if channels < 1:
        raise CodecError(f"{encoding}: {channels} channels")
    return factory(clock_rate, channels, params, frame_ms)


def _need(encoding: str, clock_rate: int, channels: int, rate: int, max_channels: int) -> None:
    if clock_rate != rate:
        raise CodecError(f"{encoding}: clock rate {clock_rate} unsupported (must be {rate})")
    if channels > max_channels:
        raise CodecError(f"{encoding}: {channels} channels unsupported (at most {max_channels})")


def _pcmu(clock_rate: int, channels: int, fmtp: dict[str, str], frame_ms: int) -> Codec:
    _need("PCMU", clock_rate, channels, 8000, 1)
    return G711Codec("PCMU", frame_ms=frame_ms, fmtp=fmtp)


def _pcma(clock_rate: int, channels: int, fmtp: dict[str, str], frame_ms: int) -> Codec:
    _need("PCMA", clock_rate, channels, 8000, 1)
    return G711Codec("PCMA", frame_ms=frame_ms, fmtp=fmtp)


def _l16(clock_rate: int, channels: int, fmtp: dict[str, str], frame_ms: int) -> Codec:
    return L16Codec(clock_rate, channels, frame_ms=frame_ms, fmtp=fmtp)


def _g722(clock_rate: int, channels: int, fmtp: dict[str, str], frame_ms: int) -> Codec:
    _need("G722", clock_rate, channels, 8000, 1)  # RFC 3551: clock 8000 for 16 kHz audio
    from w3sipagent.codecs.g722 import G722Codec  # imports PyAV on first use

    return G722Codec(frame_ms=frame_ms, fmtp=fmtp)


def _opus(clock_rate: int, channels: int, fmtp: dict[str, str], frame_ms: int) -> Codec:
    _need("opus", clock_rate, channels, 48000, 2)  # RFC 7587: always opus/48000/2
    from w3sipagent.codecs.opus import OpusCodec  # loads libopus on first use

    return OpusCodec(channels, frame_ms=frame_ms, fmtp=fmtp)


register_codec("PCMU", _pcmu)
register_codec("PCMA", _pcma)
register_codec("L16", _l16)
register_codec("G722", _g722)
register_codec("opus", _opus)
