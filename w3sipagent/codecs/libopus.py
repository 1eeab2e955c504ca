"""A small ctypes binding of libopus: encoder, decoder, packet loss concealment, in-band FEC.

FFmpeg's libopus wrapper (what PyAV offers) exposes neither the decoder's concealment
(``opus_decode`` with no data) nor in-band FEC (``decode_fec=1`` with the next packet), so
the Opus codec talks to libopus directly. A ctypes call is plain computation, not I/O.

The library is loaded lazily on first use: Debian's ``libopus0`` (``libopus.so.0``) by
default, else the copy bundled in PyAV's wheel. When neither is found,
:class:`~w3sipagent.errors.CodecError` names the package to install.
"""

from __future__ import annotations

import ctypes
import glob
import os
import weakref
from typing import Final

from w3sipagent.errors import CodecError

__all__ = [
    "APPLICATION_AUDIO",
    "APPLICATION_VOIP",
    "MAX_FRAME_SAMPLES_48K",
    "OpusDecoderHandle",
    "OpusEncoderHandle",
    "load_libopus",
    "packet_channels",
    "packet_samples",
]

APPLICATION_VOIP: Final = 2048
APPLICATION_AUDIO: Final = 2049

_OPUS_OK: Final = 0
_SET_BITRATE: Final = 4002
_SET_MAX_BANDWIDTH: Final = 4004
_SET_VBR: Final = 4006
_SET_COMPLEXITY: Final = 4010
_SET_INBAND_FEC: Final = 4012
_SET_PACKET_LOSS_PERC: Final = 4014
_SET_DTX: Final = 4016
_SET_SIGNAL: Final = 4024
_RESET_STATE: Final = 4028
_GET_LAST_PACKET_DURATION: Final = 4039
_SIGNAL_VOICE: Final = 3001

#: The longest Opus packet: 120 ms at 48 kHz.
MAX_FRAME_SAMPLES_48K: Final = 5760
_MAX_PACKET_BYTES: Final = 1500

_DEBIAN_NAMES = ("libopus.so.0", "libopus.so", "libopus.0.dylib", "opus.dll")

_lib: ctypes.CDLL | None = None


def _candidates(path: str | None) -> list[str]:
    if path:
        return [path]
    names = list(_DEBIAN_NAMES)
    try:  # the copy bundled in PyAV's manylinux wheel, if any
        import av

        libs = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
        names += sorted(glob.glob(os.path.join(libs, "libopus*.so*")))
    except ImportError:
        pass
    return names


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    p_int = ctypes.POINTER(ctypes.c_int)
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, c_int, c_int, p_int]
    lib.opus_encoder_create.restype = c_void_p
    lib.opus_encoder_destroy.argtypes = [c_void_p]
    lib.opus_encoder_destroy.restype = None
    lib.opus_encode.argtypes = [c_void_p, c_char_p, c_int, c_void_p, ctypes.c_int32]
    lib.opus_encode.restype = ctypes.c_int32
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, c_int, p_int]
    lib.opus_decoder_create.restype = c_void_p
    lib.opus_decoder_destroy.argtypes = [c_void_p]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decode.argtypes = [c_void_p, c_char_p, ctypes.c_int32, c_void_p, c_int, c_int]
    lib.opus_decode.restype = c_int
    lib.opus_packet_get_nb_channels.argtypes = [c_char_p]
    lib.opus_packet_get_nb_channels.restype = c_int
    lib.opus_packet_get_nb_samples.argtypes = [c_char_p, ctypes.c_int32, ctypes.c_int32]
    lib.opus_packet_get_nb_samples.restype = c_int
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_strerror.restype = c_char_p
    lib.opus_get_version_string.argtypes = []
    lib.opus_get_version_string.restype = c_char_p
    # opus_encoder_ctl / opus_decoder_ctl are variadic: called with explicit ctypes arguments


def load_libopus(path: str | None = None) -> ctypes.CDLL:
    """The loaded libopus (cached). ``path`` forces a specific file.

    Raises :class:`CodecError` naming the package to install when it cannot be found.
    """
    global _lib
    if _lib is not None and path is None:
        return _lib
    errors: list[str] = []
    for name in _candidates(path):
        try:
            lib = ctypes.CDLL(name)
            _declare(lib)
        except (OSError, AttributeError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        if path is None:
            _lib = lib
        return lib
    raise CodecError(
        "Opus needs libopus: install the Debian/Ubuntu package libopus0 "
        "(apt-get install libopus0) or libopus on other systems; tried " + "; ".join(errors[:3])
    )


def version() -> str:
    """libopus version string, e.g. ``libopus 1.3.1``."""
    raw: bytes = load_libopus().opus_get_version_string()
    return raw.decode("ascii", "replace")


def _strerror(lib: ctypes.CDLL, code: int) -> str:
    raw: bytes | None = lib.opus_strerror(code)
    return raw.decode("ascii", "replace") if raw else f"error {code}"


def packet_channels(packet: bytes) -> int:
    """Channels coded in an Opus packet (1 or 2, from its TOC byte)."""
    if not packet:
        raise CodecError("opus: empty packet")
    return int(load_libopus().opus_packet_get_nb_channels(packet))


def packet_samples(packet: bytes, sample_rate: int = 48000) -> int:
    """Samples per channel an Opus packet decodes to at ``sample_rate``."""
    lib = load_libopus()
    n = int(lib.opus_packet_get_nb_samples(packet, len(packet), sample_rate))
    if n < 0:
        raise CodecError(f"opus: invalid packet ({_strerror(lib, n)})")
    return n


class OpusEncoderHandle:
    """An ``OpusEncoder*`` with its settings; freed when garbage collected."""

    def __init__(
        self,
        sample_rate: int = 48000,
        channels: int = 1,
        *,
        application: int = APPLICATION_VOIP,
        bitrate: int | None = None,
        inband_fec: bool = True,
        packet_loss_perc: int = 10,
        dtx: bool = False,
        vbr: bool = True,
        complexity: int | None = None,
        max_bandwidth: int | None = None,
        library: ctypes.CDLL | None = None,
    ) -> None:
        lib = library or load_libopus()
        err = ctypes.c_int(0)
        ptr = lib.opus_encoder_create(sample_rate, channels, application, ctypes.byref(err))
        if err.value != _OPUS_OK or not ptr:
            raise CodecError(f"opus: encoder_create failed ({_strerror(lib, err.value)})")
        self._lib = lib
        self._ptr: int = ptr
        self._finalizer = weakref.finalize(self, lib.opus_encoder_destroy, ctypes.c_void_p(ptr))
        self.sample_rate = sample_rate
        self.channels = channels
        self._out = ctypes.create_string_buffer(_MAX_PACKET_BYTES)
        if bitrate is not None:
            self._ctl(_SET_BITRATE, bitrate)
        self._ctl(_SET_INBAND_FEC, 1 if inband_fec else 0)
        self._ctl(_SET_PACKET_LOSS_PERC, packet_loss_perc if inband_fec else 0)
        self._ctl(_SET_DTX, 1 if dtx else 0)
        self._ctl(_SET_VBR, 1 if vbr else 0)
        self._ctl(_SET_SIGNAL, _SIGNAL_VOICE)
        if complexity is not None:
            self._ctl(_SET_COMPLEXITY, complexity)
        if max_bandwidth is not None:
            self._ctl(_SET_MAX_BANDWIDTH, max_bandwidth)

    def _ctl(self, request: int, value: int) -> None:
        rc = int(
            self._lib.opus_encoder_ctl(ctypes.c_void_p(self._ptr), request, ctypes.c_int32(value))
        )
        if rc != _OPUS_OK:
            raise CodecError(
                f"opus: encoder_ctl({request}, {value}) failed ({_strerror(self._lib, rc)})"
            )

    def set_bitrate(self, bitrate: int) -> None:
        """Change the target bitrate (bits per second)."""
        self._ctl(_SET_BITRATE, bitrate)

    def encode(self, pcm: bytes, frame_size: int) -> bytes:
        """Interleaved s16le PCM of ``frame_size`` samples per channel -> one Opus packet."""
        if not self._ptr:
            raise CodecError("opus: encoder used after close()")
        n = int(self._lib.opus_encode(self._ptr, pcm, frame_size, self._out, _MAX_PACKET_BYTES))
        if n < 0:
            raise CodecError(f"opus: encode failed ({_strerror(self._lib, n)})")
        return self._out.raw[:n]

    def close(self) -> None:
        """Free the encoder now (it is freed on garbage collection otherwise)."""
        self._ptr = 0
        self._finalizer()


class OpusDecoderHandle:
    """An ``OpusDecoder*`` (mono or stereo output) with its output buffer."""

    def __init__(
        self, sample_rate: int = 48000, channels: int = 1, *, library: ctypes.CDLL | None = None
    ) -> None:
        lib = library or load_libopus()
        err = ctypes.c_int(0)
        ptr = lib.opus_decoder_create(sample_rate, channels, ctypes.byref(err))
        if err.value != _OPUS_OK or not ptr:
            raise CodecError(f"opus: decoder_create failed ({_strerror(lib, err.value)})")
        self._lib = lib
        self._ptr: int = ptr
        self._finalizer = weakref.finalize(self, lib.opus_decoder_destroy, ctypes.c_void_p(ptr))
        self.sample_rate = sample_rate
        self.channels = channels
        self.max_samples = MAX_FRAME_SAMPLES_48K * sample_rate // 48000
        self._pcm = (ctypes.c_int16 * (self.max_samples * channels))()

    def decode(
        self, packet: bytes | None, frame_size: int | None = None, *, fec: bool = False
    ) -> bytes:
        """Decode one packet, or conceal (``packet`` None), or rebuild from FEC (``fec``).

        ``frame_size`` is the samples per channel to produce for concealment / FEC (the
        duration of the lost audio); for a normal decode it is the buffer limit.
        Returns interleaved s16le PCM.
        """
        if not self._ptr:
            raise CodecError("opus: decoder used after close()")
        size = self.max_samples if frame_size is None else frame_size
        length = len(packet) if packet else 0
        n = int(
            self._lib.opus_decode(
                self._ptr, packet or None, length, self._pcm, size, 1 if fec else 0
            )
        )
        if n < 0:
            raise CodecError(f"opus: decode failed ({_strerror(self._lib, n)})")
        return ctypes.string_at(self._pcm, n * 2 * self.channels)

    def last_packet_duration(self) -> int:
        """Samples per channel of the last decoded (or concealed) packet."""
        value = ctypes.c_int32(0)
        rc = int(
            self._lib.opus_decoder_ctl(
                ctypes.c_void_p(self._ptr), _GET_LAST_PACKET_DURATION, ctypes.byref(value)
            )
        )
        if rc != _OPUS_OK:
            raise CodecError(f"opus: decoder_ctl failed ({_strerror(self._lib, rc)})")
        return int(value.value)

    def reset(self) -> None:
        """Forget the decoder state (new stream)."""
        if self._ptr:
            self._lib.opus_decoder_ctl(ctypes.c_void_p(self._ptr), _RESET_STATE)

    def close(self) -> None:
        """Free the decoder now (it is freed on garbage collection otherwise)."""
        self._ptr = 0
        self._finalizer()
