"""Opus (RFC 6716, RTP payload format RFC 7587) through libopus.

On the wire Opus is always ``opus/48000/2``; our PCM is mono. The decoder is a mono
libopus decoder, which downmixes stereo packets itself. Lost frames are concealed by
libopus (``opus_decode`` without data) or, when the jitter buffer already holds the next
packet, rebuilt from that packet's in-band FEC (LBRR) data.

fmtp parameters honoured (RFC 7587 §6.1): ``useinbandfec`` (our encoder adds FEC when the
peer asks for it), ``maxaveragebitrate`` (caps our bitrate), ``maxplaybackrate`` (caps our
coded bandwidth), ``cbr``, ``usedtx``, ``ptime`` (frame duration, via
:func:`w3sipagent.codecs.get_codec`), ``stereo`` / ``sprop-stereo`` (recorded; we send mono,
which RFC 7587 allows, and decode anything to mono).

libopus is used through ctypes rather than PyAV: FFmpeg's wrapper exposes neither
concealment nor FEC, and building an ``AudioFrame`` per 20 ms costs more than the call.
"""

from __future__ import annotations

from collections.abc import Mapping

from w3sipagent.codecs.base import BaseCodec, check_pcm, fmtp_flag, fmtp_int
from w3sipagent.codecs.libopus import (
    APPLICATION_VOIP,
    OpusDecoderHandle,
    OpusEncoderHandle,
    load_libopus,
)
from w3sipagent.errors import CodecError

__all__ = ["OpusCodec", "OpusDecoder", "OpusEncoder"]

#: Frame durations Opus can code (ms); 2.5 and 5 ms are not offered for RTP here.
FRAME_MS = (10, 20, 40, 60, 80, 100, 120)
#: Sample rates libopus codes natively.
PCM_RATES = (8000, 12000, 16000, 24000, 48000)
DEFAULT_BITRATE = 24000
DEFAULT_COMPLEXITY = 5

# OPUS_BANDWIDTH_NARROWBAND..SUPERWIDEBAND for maxplaybackrate
_BANDWIDTHS = ((8000, 1101), (12000, 1102), (16000, 1103), (24000, 1104))


class OpusEncoder:
    """Mono PCM frames -> Opus packets (one libopus encoder per stream)."""

    def __init__(self, codec: OpusCodec) -> None:
        self._frame_samples = codec.samples_per_frame
        self._frame_bytes = codec.frame_bytes
        self._handle = OpusEncoderHandle(
            codec.sample_rate,
            1,
            application=APPLICATION_VOIP,
            bitrate=codec.bitrate,
            inband_fec=codec.inband_fec,
            packet_loss_perc=codec.packet_loss_perc,
            dtx=codec.dtx,
            vbr=codec.vbr,
            complexity=codec.complexity,
            max_bandwidth=codec.max_bandwidth,
        )

    def encode(self, pcm: bytes) -> bytes:
        """Exactly one frame of s16le mono PCM -> one Opus packet."""
        if len(pcm) != self._frame_bytes:
            check_pcm(pcm, "opus")
            raise CodecError(
                f"opus: frame of {len(pcm) // 2} samples, expected {self._frame_samples}"
            )
        return self._handle.encode(pcm, self._frame_samples)

    def set_bitrate(self, bitrate: int) -> None:
        """Change the target bitrate (bits per second), e.g. on RTCP loss reports."""
        self._handle.set_bitrate(bitrate)

    def close(self) -> None:
        """Free libopus state now."""
        self._handle.close()


class OpusDecoder:
    """Opus packets (mono or stereo) -> mono PCM, with libopus PLC and in-band FEC."""

    def __init__(self, codec: OpusCodec) -> None:
        self._frame_samples = codec.samples_per_frame
        self._handle = OpusDecoderHandle(codec.sample_rate, 1)
        self._last_samples = codec.samples_per_frame
        self.fec_recovered = 0
        self.concealed = 0

    def decode(self, payload: bytes) -> bytes:
        """One Opus packet -> s16le mono PCM; an empty payload is treated as lost."""
        if not payload:
            return self.conceal()
        pcm = self._handle.decode(payload)
        self._last_samples = len(pcm) // 2
        return pcm

    def conceal(self, next_payload: bytes | None = None) -> bytes:
        """One lost frame: FEC from ``next_payload`` when it carries some, else libopus PLC.

        The frame has the duration of the last decoded packet.
        """
        duration = self._last_samples
        if next_payload:
            try:
                pcm = self._handle.decode(next_payload, duration, fec=True)
            except CodecError:
                pass
            else:
                self.fec_recovered += 1
                return pcm
        self.concealed += 1
        return self._handle.decode(None, duration)

    def reset(self) -> None:
        """Forget the stream state (SSRC change)."""
        self._handle.reset()

    def close(self) -> None:
        """Free libopus state now."""
        self._handle.close()


class OpusCodec(BaseCodec):
    """Opus as negotiated by ``a=rtpmap:<pt> opus/48000/2`` and its ``a=fmtp``."""

    def __init__(
        self,
        channels: int = 2,
        *,
        frame_ms: int = 20,
        fmtp: Mapping[str, str] | None = None,
        pcm_rate: int = 48000,
        bitrate: int = DEFAULT_BITRATE,
        complexity: int = DEFAULT_COMPLEXITY,
        packet_loss_perc: int = 10,
        inband_fec: bool | None = None,
    ) -> None:
        if frame_ms not in FRAME_MS:
            raise CodecError(f"opus: frame duration {frame_ms} ms not one of {FRAME_MS}")
        if pcm_rate not in PCM_RATES:
            raise CodecError(f"opus: PCM rate {pcm_rate} not one of {PCM_RATES}")
        if channels not in (1, 2):
            raise CodecError(f"opus: {channels} channels (RFC 7587 says opus/48000/2)")
        super().__init__(
            "opus",
            rtp_clock_rate=48000,
            sample_rate=pcm_rate,
            channels=channels,
            frame_ms=frame_ms,
            payload_type=None,
            fmtp=fmtp,
        )
        f = self.fmtp
        cap = fmtp_int(f, "maxaveragebitrate", "opus", 6000, 510000)
        self.bitrate = min(bitrate, cap) if cap else bitrate
        self.inband_fec = fmtp_flag(f, "useinbandfec") if inband_fec is None else inband_fec
        self.packet_loss_perc = packet_loss_perc
        self.complexity = complexity
        self.vbr = not fmtp_flag(f, "cbr")
        self.dtx = fmtp_flag(f, "usedtx")
        self.stereo = fmtp_flag(f, "stereo")
        self.sprop_stereo = fmtp_flag(f, "sprop-stereo")
        playback = fmtp_int(f, "maxplaybackrate", "opus", 8000, 48000)
        self.max_bandwidth: int | None = None
        if playback is not None:
            for rate, bandwidth in _BANDWIDTHS:
                if playback <= rate:
                    self.max_bandwidth = bandwidth
                    break
        self._requested_bitrate = bitrate
        load_libopus()  # fail at negotiation time, with the package name, not mid-call

    def with_pcm_rate(self, pcm_rate: int) -> OpusCodec:
        """The same negotiated codec with PCM at ``pcm_rate`` (libopus codes 8/12/16/24/48 kHz
        natively: a bridge to 24 kHz audio then needs no resampler)."""
        return OpusCodec(
            self.channels,
            frame_ms=self.frame_ms,
            fmtp=self.fmtp,
            pcm_rate=pcm_rate,
            bitrate=self._requested_bitrate,
            complexity=self.complexity,
            packet_loss_perc=self.packet_loss_perc,
            inband_fec=self.inband_fec,
        )

    def encoder(self) -> OpusEncoder:
        return OpusEncoder(self)

    def decoder(self) -> OpusDecoder:
        return OpusDecoder(self)
