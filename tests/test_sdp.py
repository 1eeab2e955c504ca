"""SDP parsing and serialization (RFC 8866) against real offers and answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w3sipagent.errors import SdpError
from w3sipagent.sdp import (
    MAX_SDP_SIZE,
    Codec,
    Connection,
    MediaDescription,
    Origin,
    Rtcp,
    SessionDescription,
    assign_version,
    bump_version,
    create_offer,
    negotiate_answer,
)

# Bodies whose serialization is already canonical: str(parse(x)) must give back the same bytes.
NOT_CANONICAL = {
    "telnyx-asterisk_offer_INVITE_RTP-AVPF_to_freeswitch.sip",
    "telnyx-freeswitch_200OK_RTP-AVPF_rtcp-mux.sip",
    "wireshark-sip-rtp-opus-hybrid_02_200OK_from_FreeSWITCH-1.6.12.sip",
}


def sdp_bodies(vectors: Path) -> dict[str, bytes]:
    """Every SDP in the vectors: the .sdp files and the SDP bodies of the FreeSWITCH .sip files."""
    out: dict[str, bytes] = {}
    for f in sorted((vectors / "sdp_offer_answer").glob("*.sdp")):
        out[f.name] = f.read_bytes()
    for f in sorted((vectors / "freeswitch").glob("*.sip")):
        _, _, body = f.read_bytes().partition(b"\r\n\r\n")
        if body.startswith(b"v=0"):
            out[f.name] = body
    return out


def fs_body(vectors: Path, name: str) -> SessionDescription:
    return SessionDescription.parse(sdp_bodies(vectors)[name])


def test_all_vector_bodies_round_trip(vectors: Path) -> None:
    bodies = sdp_bodies(vectors)
    assert len(bodies) == 18 + 6  # 18 pjsip/RFC files + 6 SDP-bearing FreeSWITCH messages
    for name, data in bodies.items():
        sd = SessionDescription.parse(data)
        text = str(sd)
        assert SessionDescription.parse(text) == sd, name
        assert SessionDescription.parse(bytes(sd)) == sd, name
        assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", ""), name
        if name not in NOT_CANONICAL:
            assert text.encode() == data, name
        else:
            assert sorted(text.encode().split(b"\r\n")) == sorted(data.split(b"\r\n")), name


def test_kazoo_freeswitch_offer_fields(vectors: Path) -> None:
    sd = fs_body(vectors, "kazoo-freeswitch_INVITE_G7221_video.sip")
    assert sd.origin == Origin("FreeSWITCH", 1341566127, 1341566128, "IN", "IP4", "192.168.1.45")
    assert sd.name == "FreeSWITCH"
    assert sd.connection == Connection("192.168.1.45")
    assert [(t.start, t.stop) for t in sd.times] == [(0, 0)]
    audio, video = sd.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 29018, "RTP/AVP")
    assert audio.formats == ["99", "100", "9", "0", "8", "3", "101", "13"]
    assert [c.name for c in audio.codecs] == [
        "G7221/32000",
        "G7221/16000",
        "G722/8000",
        "PCMU/8000",
        "PCMA/8000",
        "GSM/8000",
        "telephone-event/8000",
        "CN/8000",
    ]
    g7221 = audio.codec(99)
    assert g7221 is not None and g7221.fmtp == "bitrate=48000"
    assert g7221.fmtp_params() == {"bitrate": "48000"}
    te = audio.telephone_events
    assert [(c.payload_type, c.fmtp) for c in te] == [(101, "0-16")]
    assert te[0].fmtp_params() == {"0-16": ""}
    assert audio.ptime == 20 and audio.maxptime is None
    assert audio.direction == "sendrecv" and audio.connection is None
    assert sd.connection_for(audio) == Connection("192.168.1.45")
    # static payload types listed without rtpmap stay without rtpmap
    assert "a=rtpmap:0 " not in str(sd) and "a=rtpmap:9 " not in str(sd)
    assert [c.name for c in video.codecs] == ["H261/90000", "H263/90000", "H264/90000"]
    assert (video.port, video.formats) == (26066, ["31", "34", "98"])
    assert audio.codec(42) is None


def test_opus_offer_and_freeswitch_answer(vectors: Path) -> None:
    offer = fs_body(vectors, "wireshark-sip-rtp-opus-hybrid_01_INVITE_from_sipp.sip")
    (m,) = offer.media
    assert offer.origin.username == "-" and offer.origin.sess_id == 42
    assert m.codecs == [Codec(99, "opus", 48000, 2)]
    assert m.codecs[0].name == "opus/48000/2" and m.codecs[0].key == "opus/48000/2"
    assert m.direction == "recvonly"
    answer = fs_body(vectors, "wireshark-sip-rtp-opus-hybrid_02_200OK_from_FreeSWITCH-1.6.12.sip")
    (a,) = answer.media
    opus = a.codec(99)
    assert opus is not None and opus.channels == 2
    assert opus.fmtp_params() == {"useinbandfec": "1", "minptime": "10", "maxptime": "40"}
    assert a.direction == "sendonly" and a.ptime == 20
    assert answer.origin.sess_version == answer.origin.sess_id + 1


def test_telnyx_avpf_rtcp_mux(vectors: Path) -> None:
    offer = fs_body(vectors, "telnyx-asterisk_offer_INVITE_RTP-AVPF_to_freeswitch.sip")
    (m,) = offer.media
    assert m.proto == "RTP/AVPF" and m.is_rtp and not m.is_srtp
    assert m.rtcp_mux and m.rtcp is None
    assert (m.ptime, m.maxptime) == (20, 140)
    assert m.direction == "sendrecv" and m.direction_explicit
    answer = fs_body(vectors, "telnyx-freeswitch_200OK_RTP-AVPF_rtcp-mux.sip")
    (a,) = answer.media
    assert a.rtcp == Rtcp(23402) and a.rtcp_mux
    assert a.attributes == [("silenceSupp", "off - - - -")]
    assert a.attribute("silenceSupp") == "off - - - -" and a.attribute("nope") is None
    assert "a=silenceSupp:off - - - -\r\n" in str(answer)


def test_pcma_ptime30(vectors: Path) -> None:
    sd = fs_body(vectors, "sip3-freeswitch_200OK_PCMA_ptime30_CL-MISMATCH.sip")
    (m,) = sd.media
    assert [(c.payload_type, c.name) for c in m.codecs] == [
        (8, "PCMA/8000"),
        (99, "telephone-event/8000"),
    ]
    assert m.ptime == 30


def test_multiple_m_lines_and_port_zero(vectors: Path) -> None:
    sd = SessionDescription.parse(
        (vectors / "sdp_offer_answer/rfc3264_10.1_x2_offer.sdp").read_bytes()
    )
    assert [(m.media, m.port, m.rejected) for m in sd.media] == [
        ("audio", 65422, False),
        ("video", 0, True),
        ("video", 53000, False),
        ("audio", 51434, False),
    ]
    assert sd.media[3].direction == "recvonly"
    assert [m.direction for m in sd.media[:3]] == ["sendrecv"] * 3


MEDIA_LEVEL = (
    "v=0\r\no=- 1 2 IN IP6 2001:db8::1\r\ns=-\r\ni=session info\r\nu=http://example.com/s\r\n"
    "e=ops@example.com\r\np=+1 555 0100\r\nc=IN IP4 224.2.17.12/127/3\r\nb=AS:256\r\n"
    "t=2873397496 2873404696\r\nr=7d 1h 0 25h\r\nz=2882844526 -1h\r\nk=prompt\r\n"
    "a=recvonly\r\na=tool:w3\r\n"
    "m=audio 49170/2 RTP/AVP 0 96 97\r\ni=voice\r\nc=IN IP6 2001:db8::2\r\nc=IN IP6 FF15::101/3\r\n"
    "b=TIAS:64000\r\nk=prompt\r\na=rtpmap:96 L16/16000/2\r\na=fmtp:97 mode=20\r\n"
    "a=rtpmap:98 unused/8000\r\na=rtcp:53020 IN IP6 2001:db8::3\r\na=ptime:22.5\r\n"
    "a=maxptime:60\r\na=ssrc:1 cname:x\r\n"
    "m=video 51372 RTP/AVP 31\r\na=sendrecv\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n"
)


def test_media_level_connection_and_session_level_fields() -> None:
    sd = SessionDescription.parse(MEDIA_LEVEL)
    assert sd.origin.addrtype == "IP6" and sd.origin.address == "2001:db8::1"
    assert (sd.info, sd.uri, sd.emails, sd.phones) == (
        "session info",
        "http://example.com/s",
        ["ops@example.com"],
        ["+1 555 0100"],
    )
    assert sd.connection == Connection("224.2.17.12", ttl=127, count=3)
    assert sd.bandwidths == [("AS", 256)]
    assert sd.times[0].start == 2873397496 and sd.times[0].repeats == ["7d 1h 0 25h"]
    assert (sd.zone, sd.key) == ("2882844526 -1h", "prompt")
    assert sd.direction == "recvonly" and sd.attributes == [("tool", "w3")]
    audio, video, app = sd.media
    assert audio.port_count == 2 and audio.title == "voice" and audio.key == "prompt"
    assert audio.connection == Connection("2001:db8::2", "IP6")
    assert audio.extra_connections == [Connection("FF15::101", "IP6", count=3)]
    assert sd.connection_for(audio) == audio.connection
    assert sd.connection_for(video) == sd.connection
    assert audio.bandwidths == [("TIAS", 64000)]
    # 97 is dynamic without rtpmap: no codec, its fmtp kept; the rtpmap for unlisted 98 kept
    assert [c.name for c in audio.codecs] == ["PCMU/8000", "L16/16000/2"]
    assert ("fmtp", "97 mode=20") in audio.attributes
    assert ("rtpmap", "98 unused/8000") in audio.attributes
    assert audio.rtcp == Rtcp(53020, "2001:db8::3", "IP6")
    assert audio.ptime == 22 and audio.maxptime == 60  # fractional ptime rounded to ms
    assert audio.direction == "recvonly" and not audio.direction_explicit  # inherited
    assert video.direction == "sendrecv" and video.direction_explicit
    assert app.is_rtp is False and app.codecs == [] and app.formats == ["webrtc-datachannel"]
    again = SessionDescription.parse(str(sd))
    assert again == sd
    text = str(sd)
    assert "a=recvonly\r\n" in text and text.count("a=recvonly") == 1
    assert "c=IN IP4 224.2.17.12/127/3\r\n" in text and "m=audio 49170/2 RTP/AVP 0 96 97" in text


def test_session_direction_inherited_and_override_serialized() -> None:
    sd = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\na=sendonly\n"
        "m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 8\na=inactive\n"
    )
    assert [m.direction for m in sd.media] == ["sendonly", "inactive"]
    sd.media[0].direction = "sendrecv"  # edited without touching the explicit flag
    again = SessionDescription.parse(str(sd))
    assert [m.direction for m in again.media] == ["sendrecv", "inactive"]


def test_lf_only_bytes_and_blank_lines_are_accepted() -> None:
    crlf = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    lf = crlf.replace(b"\r\n", b"\n") + b"\n\n"
    assert SessionDescription.parse(lf) == SessionDescription.parse(crlf)
    sd = SessionDescription.parse(crlf)
    assert sd.connection is None and sd.connection_for(sd.media[0]) is None


BAD = [
    ("", "empty SDP"),
    ("v=1\r\n", "v=0"),
    ("o=- 1 1 IN IP4 a\r\nv=0\r\n", "v=0"),
    ("v=0\r\ns=-\r\n", "no o= line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\n", "no s= line"),
    ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", "o= line"),
    ("v=0\r\no=- x 1 IN IP4 a\r\ns=-\r\n", "sess-id"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\ns=-\r\n", "before the o= and s="),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4\r\n", "c= line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a/b\r\n", "TTL"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a/1/2/3\r\n", "c= address"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP6 a/1/2\r\n", "c= address"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 /5\r\n", "empty c= address"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=0\r\n", "t= line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nr=1 2 3\r\n", "r= line before"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nb=AS\r\n", "b= line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nb=AS:x\r\n", "bandwidth"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\ns=again\r\n", "repeated s="),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nx=what\r\n", "x= line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nnot a line\r\n", "bad SDP line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\na=\r\n", "bad a= line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\na=sendonly\r\na=recvonly\r\n", "session-level direction"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP\r\n", "m= line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n", "m= port out of range"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1/x RTP/AVP 0\r\n", "port count"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP PCMU\r\n", "RTP payload type"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 128\r\n", "RTP payload type"),
    (
        "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 a/8000\r\na=rtpmap:96 b/8000\r\n",
        "duplicate a=rtpmap",
    ),
    (
        "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 96\r\na=fmtp:96 a\r\na=fmtp:96 b\r\n",
        "duplicate a=fmtp",
    ),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 96\r\na=fmtp: x\r\n", "a=fmtp"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=ptime:fast\r\n", "a=ptime"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=maxptime:0\r\n", "a=maxptime"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:1 IN IP4\r\n", "a=rtcp"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:x\r\n", "a=rtcp port"),
    (
        "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=sendonly\r\na=inactive\r\n",
        "direction",
    ),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\nt=0 0\r\n", "unexpected t= line"),
    ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=bad name\r\n", "bad a= line"),
]


@pytest.mark.parametrize(("text", "defect"), BAD, ids=[d for _, d in BAD])
def test_bad_sdp_raises_sdp_error_naming_the_defect(text: str, defect: str) -> None:
    with pytest.raises(SdpError) as exc:
        SessionDescription.parse(text)
    assert defect in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_limits_and_encoding() -> None:
    with pytest.raises(SdpError, match="not valid UTF-8"):
        SessionDescription.parse(b"v=0\r\ns=\xff\r\n")
    with pytest.raises(SdpError, match="larger than"):
        SessionDescription.parse(b"v=0\r\n" + b"a=x\r\n" * (MAX_SDP_SIZE // 5))
    with pytest.raises(SdpError, match="larger than"):
        SessionDescription.parse("v=0\r\n" + "a=x\r\n" * (MAX_SDP_SIZE // 5))
    with pytest.raises(SdpError, match="more than 2048 lines"):
        SessionDescription.parse("v=0\n" + "a=x\n" * 3000)
    many = "v=0\no=- 1 1 IN IP4 a\ns=-\n" + "m=audio 1 RTP/AVP 0\n" * 65
    with pytest.raises(SdpError, match="more than 64 m= lines"):
        SessionDescription.parse(many)
    with pytest.raises(SdpError, match="str or bytes"):
        SessionDescription.parse(42)  # type: ignore[arg-type]


def test_codec_helpers() -> None:
    c = Codec(111, "opus", 48000, 2, "minptime=10; useinbandfec=1;;")
    assert c.name == "opus/48000/2" and c.rtpmap_value() == "111 opus/48000/2"
    assert c.fmtp_params() == {"minptime": "10", "useinbandfec": "1"}
    assert Codec(0, "PCMU", 8000).fmtp_params() == {}
    assert Codec(101, "Telephone-Event", 8000).is_telephone_event
    assert Codec(0, "PCMU", 8000, rtpmap_line=False) == Codec(0, "PCMU", 8000)


def test_built_media_without_formats_uses_codec_payload_types() -> None:
    sd = SessionDescription(
        origin=Origin("-", 1, 1, "IN", "IP4", "192.0.2.1"),
        media=[
            MediaDescription(
                "audio",
                4000,
                "RTP/AVP",
                [],
                codecs=[Codec(8, "PCMA", 8000), Codec(96, "x", 8000, fmtp="")],
            )
        ],
    )
    text = str(sd)
    assert "m=audio 4000 RTP/AVP 8 96\r\n" in text and "a=fmtp:96\r\n" in text
    assert "t=0 0\r\n" in text
    assert [c.name for c in SessionDescription.parse(text).media[0].codecs] == [
        "PCMA/8000",
        "x/8000",
    ]


def test_create_offer_codecs_and_payload_types() -> None:
    sd = create_offer(
        ["PCMU/8000", "PCMA/8000", "G722/8000", "opus/48000/2", "L16/16000"],
        local_address="192.0.2.10",
        port=40000,
        session_id=7,
        session_version=7,
    )
    (m,) = sd.media
    assert sd.origin == Origin("w3sipagent", 7, 7, "IN", "IP4", "192.0.2.10")
    assert sd.connection == Connection("192.0.2.10")
    assert [(c.payload_type, c.name) for c in m.codecs] == [
        (0, "PCMU/8000"),
        (8, "PCMA/8000"),
        (9, "G722/8000"),
        (111, "opus/48000/2"),
        (96, "L16/16000"),
        (101, "telephone-event/8000"),
        (110, "telephone-event/48000"),
    ]
    assert m.formats == ["0", "8", "9", "111", "96", "101", "110"]
    assert m.codec(111) is not None and m.codec(111).fmtp_params()["useinbandfec"] == "1"  # type: ignore[union-attr]
    assert (m.ptime, m.direction, m.rtcp_mux) == (20, "sendrecv", False)
    assert "a=rtpmap:0 PCMU/8000\r\n" in str(sd) and "a=sendrecv\r\n" in str(sd)
    assert SessionDescription.parse(bytes(sd)) == sd


def test_create_offer_variants() -> None:
    six = create_offer(
        [Codec(0, "PCMU", 8000), "PCMU/8000", "opus/48000/2"],
        local_address="2001:db8::5",
        port=5000,
        session_id=1,
        session_version=1,
        direction="sendonly",
        telephone_event=False,
        ptime=None,
        rtcp_mux=True,
    )
    m = six.media[0]
    assert six.connection == Connection("2001:db8::5", "IP6") and six.origin.addrtype == "IP6"
    # the explicit Codec took PT 0, so the named PCMU falls back to a dynamic type
    assert [(c.payload_type, c.name) for c in m.codecs] == [
        (0, "PCMU/8000"),
        (96, "PCMU/8000"),
        (111, "opus/48000/2"),
    ]
    assert m.direction == "sendonly" and m.ptime is None and m.rtcp_mux
    assert "a=rtcp-mux\r\n" in str(six) and "telephone-event" not in str(six)
    with pytest.raises(SdpError, match="at least one codec"):
        create_offer([], local_address="a", port=1, session_id=1, session_version=1)
    with pytest.raises(SdpError, match="RTP port"):
        create_offer(["PCMU/8000"], local_address="a", port=0, session_id=1, session_version=1)
    with pytest.raises(SdpError, match="direction"):
        create_offer(
            ["PCMU/8000"],
            local_address="a",
            port=1,
            session_id=1,
            session_version=1,
            direction="both",
        )
    with pytest.raises(SdpError, match="encoding/rate"):
        create_offer(["PCMU"], local_address="a", port=1, session_id=1, session_version=1)
    with pytest.raises(SdpError, match="duplicate payload types"):
        create_offer(
            [Codec(96, "a", 8000), Codec(96, "b", 8000)],
            local_address="a",
            port=1,
            session_id=1,
            session_version=1,
        )


def test_versions_for_reoffers() -> None:
    first = create_offer(
        ["PCMU/8000"], local_address="192.0.2.1", port=4000, session_id=9, session_version=9
    )
    bumped = bump_version(first)
    assert bumped.origin.sess_version == 10 and first.origin.sess_version == 9
    assert bumped.origin.sess_id == 9 and bumped.media == first.media
    same = create_offer(
        ["PCMU/8000"], local_address="192.0.2.1", port=4000, session_id=1, session_version=1
    )
    kept = assign_version(same, first)
    assert (kept.origin.sess_id, kept.origin.sess_version) == (9, 9)
    assert str(kept) == str(first)
    hold = create_offer(
        ["PCMU/8000"],
        local_address="192.0.2.1",
        port=4000,
        session_id=1,
        session_version=1,
        direction="sendonly",
    )
    held = assign_version(hold, first)
    assert (held.origin.sess_id, held.origin.sess_version) == (9, 10)
    assert held.media[0].direction == "sendonly"


MUTATION_BASE = (
    b"v=0\r\no=FreeSWITCH 1 2 IN IP4 10.0.0.1\r\ns=FreeSWITCH\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 23402 RTP/AVPF 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=sendrecv\r\na=rtcp:23402\r\na=rtcp-mux\r\na=ptime:20\r\n"
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(MUTATION_BASE) - 1), st.integers(0, 255)), max_size=6))
def test_mutated_sdp_parses_or_raises_sdp_error(edits: list[tuple[int, int]]) -> None:
    data = bytearray(MUTATION_BASE)
    for pos, byte in edits:
        data[pos] = byte
    try:
        sd = SessionDescription.parse(bytes(data))
    except SdpError:
        return
    assert SessionDescription.parse(str(sd)) == sd


@pytest.mark.parametrize(
    "bad",
    ["a=rtpmap:31 LPC", "a=rtpmap:0", "a=rtpmap:96 x/y", "a=rtpmap:96 x/8000/0"],
)
def test_unreadable_rtpmap_makes_only_that_format_unusable(bad: str) -> None:
    """RFC 4475 §3.1.1.3 (esc01/longreq carry "a=rtpmap:31 LPC"): process the offer normally."""
    pt = bad.split(":")[1].split(" ")[0]
    text = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        f"m=audio 4000 RTP/AVP 8 {pt}\r\n{bad}\r\n"
    )
    sd = SessionDescription.parse(text)
    audio = sd.media[0]
    assert [c.payload_type for c in audio.codecs] == [8]
    assert ("rtpmap", bad.split(":", 1)[1]) in audio.attributes
    assert SessionDescription.parse(str(sd)) == sd
    result = negotiate_answer(
        sd,
        local_address="127.0.0.1",
        ports=[5000],
        codec_preference=["PCMU/8000", "PCMA/8000"],
        session_id=1,
        session_version=1,
    )
    assert result.ok and result.audio is not None and result.audio.codec is not None
    assert result.audio.codec.payload_type == 8
