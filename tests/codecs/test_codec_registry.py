"""The codec registry: lookup by SDP name, fmtp parsing, registration."""

from __future__ import annotations

import pytest

from w3sipagent.codecs import get_codec, parse_fmtp, register_codec, registered_codecs
from w3sipagent.codecs.base import Codec
from w3sipagent.codecs.l16 import L16Codec
from w3sipagent.errors import CodecError


def test_lookup_is_case_insensitive() -> None:
    assert get_codec("pcmu", 8000).name == "PCMU"
    assert get_codec("Pcma", 8000).payload_type == 8
    assert {"pcmu", "pcma", "l16"} <= set(registered_codecs())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("iLBC", 8000), "unsupported codec iLBC/8000/1"),
        (("PCMU", 16000), "clock rate 16000"),
        (("PCMA", 8000, 2), "2 channels"),
        (("PCMU", 8000, 0), "0 channels"),
    ],
)
def test_unsupported_combinations_raise_codec_error(args: tuple, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        get_codec(*args)


def test_parse_fmtp() -> None:
    assert parse_fmtp("useinbandfec=1; maxaveragebitrate=20000;stereo=0") == {
        "useinbandfec": "1",
        "maxaveragebitrate": "20000",
        "stereo": "0",
    }
    assert parse_fmtp("0-15") == {"0-15": ""}
    assert parse_fmtp({"PTime": 40}) == {"ptime": "40"}  # type: ignore[dict-item]
    assert parse_fmtp(None) == {}
    assert parse_fmtp(" ; ;") == {}


def test_ptime_in_fmtp_sets_frame_duration() -> None:
    assert get_codec("PCMU", 8000, fmtp="ptime=30").samples_per_frame == 240
    assert get_codec("PCMU", 8000, fmtp="ptime=30", frame_ms=10).samples_per_frame == 80
    with pytest.raises(CodecError, match="ptime='x'"):
        get_codec("PCMU", 8000, fmtp="ptime=x")
    with pytest.raises(CodecError, match="out of range"):
        get_codec("PCMU", 8000, fmtp="ptime=1000")


def test_register_codec() -> None:
    def factory(rate: int, channels: int, fmtp: dict[str, str], frame_ms: int) -> Codec:
        return L16Codec(rate, channels, frame_ms=frame_ms, fmtp=fmtp)

    register_codec("X-TEST-L16", factory)
    try:
        codec = get_codec("x-test-l16", 12000, fmtp="a=b")
        assert (codec.sample_rate, codec.samples_per_frame) == (12000, 240)
        with pytest.raises(CodecError, match="registered already"):
            register_codec("x-test-L16", factory)
        register_codec("x-test-L16", factory, replace=True)
    finally:
        from w3sipagent.codecs import _REGISTRY

        _REGISTRY.pop("x-test-l16", None)
    with pytest.raises(CodecError):
        get_codec("x-test-l16", 12000)
