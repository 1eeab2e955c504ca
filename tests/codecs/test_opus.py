"""Opus through libopus (ctypes): fmtp, quality, stereo to mono, PLC and in-band FEC."""

from __future__ import annotations

import numpy as np
import pytest

from tests.codecs.codec_signals import best_lag, chirp, correlation, pcm, rms, samples, sine
from w3sipagent.codecs import get_codec
from w3sipagent.codecs.libopus import OpusEncoderHandle, load_libopus, packet_channels
from w3sipagent.codecs.opus import OpusCodec
from w3sipagent.errors import CodecError

try:
    load_libopus()
except CodecError as exc:  # pragma: no cover - depends on the host
    pytest.skip(f"libopus unavailable: {exc}", allow_module_level=True)


def _run(codec: OpusCodec, x: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    enc, dec = codec.encoder(), codec.decoder()
    n = codec.samples_per_frame
    packets = [enc.encode(pcm(x[i : i + n])) for i in range(0, len(x) - n + 1, n)]
    out = b"".join(dec.decode(p) for p in packets)
    return packets, samples(out)


def test_description_and_fmtp() -> None:
    codec = get_codec(
        "OPUS", 48000, 2, "useinbandfec=1; maxaveragebitrate=16000; stereo=1; sprop-stereo=1; cbr=1"
    )
    assert isinstance(codec, OpusCodec)
    assert (codec.name, codec.rtp_clock_rate, codec.sample_rate, codec.channels) == (
        "opus",
        48000,
        48000,
        2,
    )
    assert codec.payload_type is None
    assert (codec.samples_per_frame, codec.timestamp_increment) == (960, 960)
    assert codec.inband_fec and codec.stereo and codec.sprop_stereo and not codec.vbr
    assert codec.bitrate == 16000
    plain = get_codec("opus", 48000, 2)
    assert isinstance(plain, OpusCodec)
    assert not plain.inband_fec and plain.vbr and plain.bitrate == 24000
    assert get_codec("opus", 48000, 2, "ptime=40").timestamp_increment == 1920
    assert get_codec("opus", 48000, 2, "maxplaybackrate=8000").max_bandwidth == 1101  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fmtp", "match"),
    [
        ("maxaveragebitrate=100", "out of range"),
        ("ptime=25", "frame duration 25"),
        ("maxaveragebitrate=x", "not an integer"),
    ],
)
def test_bad_fmtp_is_a_codec_error(fmtp: str, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        get_codec("opus", 48000, 2, fmtp)


def test_speechlike_audio_survives() -> None:
    codec = get_codec("opus", 48000, 2, "maxaveragebitrate=32000")
    assert isinstance(codec, OpusCodec)
    x = chirp(48000, 48000, f0=200, f1=4000, amp=8000)
    packets, y = _run(codec, x)
    assert len(y) == len(x)
    assert all(len(p) < 200 for p in packets)
    lag = best_lag(x, y, 960)
    assert lag < 480  # encoder look-ahead + decoder delay: 6.5 ms expected
    assert correlation(x[: len(y) - lag], y[lag:]) > 0.9
    assert 0.7 < rms(y) / rms(x) < 1.3


def test_bitrate_follows_maxaveragebitrate() -> None:
    x = chirp(48000, 48000, amp=8000)
    low, _ = _run(get_codec("opus", 48000, 2, "maxaveragebitrate=8000"), x)  # type: ignore[arg-type]
    high, _ = _run(get_codec("opus", 48000, 2, "maxaveragebitrate=64000"), x)  # type: ignore[arg-type]
    assert sum(map(len, low)) * 3 < sum(map(len, high))


def test_stereo_packets_decode_to_mono() -> None:
    stereo_enc = OpusEncoderHandle(48000, 2, bitrate=64000)
    left = sine(440, 48000, 48000 // 2, amp=8000)
    right = sine(660, 48000, 48000 // 2, amp=8000)
    inter = np.empty(2 * len(left), dtype="<i2")
    inter[0::2], inter[1::2] = left, right
    packets = [
        stereo_enc.encode(inter[i : i + 1920].tobytes(), 960) for i in range(0, len(inter), 1920)
    ]
    assert packet_channels(packets[0]) == 2
    dec = get_codec("opus", 48000, 2, "sprop-stereo=1").decoder()
    out = samples(b"".join(dec.decode(p) for p in packets))
    assert len(out) == len(left)  # 960 mono samples a frame, not 1920
    spectrum = np.abs(np.fft.rfft(out[4800:]))
    freqs = np.fft.rfftfreq(len(out) - 4800, 1 / 48000)
    peak440 = spectrum[np.argmin(np.abs(freqs - 440))]
    peak660 = spectrum[np.argmin(np.abs(freqs - 660))]
    assert peak440 > 0.3 * peak660 and peak660 > 0.3 * peak440  # both channels present


def test_plc_fills_a_lost_frame_and_fades() -> None:
    codec = get_codec("opus", 48000, 2)
    enc, dec = codec.encoder(), codec.decoder()
    x = sine(300, 48000, 960 * 12, amp=8000)
    for i in range(10):
        dec.decode(enc.encode(pcm(x[i * 960 : (i + 1) * 960])))
    levels = []
    for _ in range(8):
        frame = samples(dec.conceal())
        assert len(frame) == 960
        assert np.abs(frame).max() < 16000
        levels.append(rms(frame))
    assert levels[0] > 0.3 * rms(x)  # concealment, not silence
    assert levels[-1] < levels[0]  # fades with longer loss
    assert dec.concealed == 8  # type: ignore[attr-defined]


def test_fec_rebuilds_a_lost_frame_from_the_next_packet() -> None:
    codec = get_codec("opus", 48000, 2, "useinbandfec=1")
    enc = codec.encoder()
    x = chirp(48000, 960 * 30, f0=200, f1=2000, amp=8000)
    packets = [enc.encode(pcm(x[i * 960 : (i + 1) * 960])) for i in range(30)]
    ref = codec.decoder()
    clean = [samples(ref.decode(p)) for p in packets]
    lost = 20
    dec_fec, dec_plc = codec.decoder(), codec.decoder()
    for p in packets[:lost]:
        dec_fec.decode(p)
        dec_plc.decode(p)
    fec = samples(dec_fec.conceal(next_payload=packets[lost + 1]))
    plc = samples(dec_plc.conceal())
    assert len(fec) == len(plc) == 960
    assert dec_fec.fec_recovered == 1  # type: ignore[attr-defined]
    # the FEC copy is close to what the lost packet held; PLC only guesses
    assert correlation(fec, clean[lost]) > 0.8
    assert correlation(fec, clean[lost]) > correlation(plc, clean[lost])


def test_decoder_rejects_garbage() -> None:
    dec = get_codec("opus", 48000, 2).decoder()
    with pytest.raises(CodecError, match="opus"):
        dec.decode(b"\xff\xff\xff")  # code 3 packet claiming more frames than it has


def test_encoder_wants_exact_frames() -> None:
    enc = get_codec("opus", 48000, 2).encoder()
    with pytest.raises(CodecError, match="expected 960"):
        enc.encode(b"\x00\x00" * 480)


def test_decode_at_lower_pcm_rate() -> None:
    codec = OpusCodec(pcm_rate=16000)
    assert (codec.samples_per_frame, codec.timestamp_increment) == (320, 960)
    x = sine(500, 16000, 16000, amp=8000)
    _, y = _run(codec, x)
    assert len(y) == len(x)
    assert rms(y[3200:]) > 0.5 * rms(x)


def test_missing_library_names_the_package() -> None:
    with pytest.raises(CodecError, match="libopus0"):
        load_libopus("/nonexistent/libopus.so.0")


def test_jitter_buffer_lost_frame_reaches_fec_with_the_next_packet() -> None:
    """RTP packets -> jitter buffer (one lost) -> ``conceal(frame.next_payload)``: the lost
    frame is rebuilt from the in-band FEC of the packet after it, not guessed by PLC."""
    from w3sipagent.rtp.jitter import JitterBuffer
    from w3sipagent.rtp.packet import RtpPacket

    codec = get_codec("opus", 48000, 2, "useinbandfec=1")
    enc = codec.encoder()
    x = chirp(48000, 960 * 30, f0=200, f1=2000, amp=8000)
    packets = [enc.encode(pcm(x[i * 960 : (i + 1) * 960])) for i in range(30)]
    ref = codec.decoder()
    clean = [samples(ref.decode(p)) for p in packets]
    jb = JitterBuffer(clock_rate=48000)
    dec = codec.decoder()
    out: list[np.ndarray] = []
    for i, p in enumerate(packets):
        if i == 20:
            continue
        jb.push(RtpPacket(111, i, 960 * i, 7, p), i * 0.02)
        for f in jb.pop(i * 0.02):
            out.append(
                samples(
                    dec.decode(f.payload) if f.payload is not None else dec.conceal(f.next_payload)
                )
            )
    assert len(out) == 30  # audio time preserved
    assert dec.fec_recovered == 1  # type: ignore[attr-defined]
    assert correlation(out[20], clean[20]) > 0.8
