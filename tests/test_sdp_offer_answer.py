"""RFC 3264 offer/answer: the RFC 3264 §10 / RFC 4317 cases, pjsip's negotiator cases, real offers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from w3sipagent.errors import SdpError
from w3sipagent.sdp import (
    AnswerResult,
    Codec,
    MediaDescription,
    SessionDescription,
    assign_version,
    create_offer,
    negotiate_answer,
    process_answer,
)

VOICE = ["PCMU/8000", "PCMA/8000", "G722/8000", "opus/48000/2"]


def load(vectors: Path, name: str) -> SessionDescription:
    return SessionDescription.parse((vectors / "sdp_offer_answer" / name).read_bytes())


def fs_sdp(vectors: Path, name: str) -> SessionDescription:
    _, _, body = (vectors / "freeswitch" / name).read_bytes().partition(b"\r\n\r\n")
    return SessionDescription.parse(body)


def answer(
    offer: SessionDescription,
    prefs: Sequence[str | Codec],
    ports: Sequence[int] | Callable[[int, MediaDescription], int | None],
    **kw: object,
) -> AnswerResult:
    kw.setdefault("session_id", 1)
    kw.setdefault("session_version", 1)
    kw.setdefault("local_address", "192.0.2.99")
    return negotiate_answer(offer, ports=ports, codec_preference=prefs, **kw)  # type: ignore[arg-type]


def assert_rfc3264_rules(offer: SessionDescription, ans: SessionDescription) -> None:
    """RFC 3264 §6 invariants every answer must satisfy."""
    assert len(ans.media) == len(offer.media)
    for om, am in zip(offer.media, ans.media, strict=True):
        assert am.media == om.media and am.proto == om.proto
        assert am.formats and set(am.formats) <= set(om.formats)
        if om.port == 0:
            assert am.port == 0
        for c in am.codecs:  # the offerer's payload type numbers
            offered = om.codec(c.payload_type)
            assert offered is not None and offered.key == c.key
    assert SessionDescription.parse(bytes(ans)) == ans


def assert_same_streams(ours: SessionDescription, expected: SessionDescription) -> None:
    """m-lines equal to the expected answer: media, port, proto, formats, codec names, direction."""
    assert len(ours.media) == len(expected.media)
    for i, (o, e) in enumerate(zip(ours.media, expected.media, strict=True)):
        assert (o.media, o.port, o.proto) == (e.media, e.port, e.proto), i
        assert o.formats == e.formats, i
        if e.port:
            assert [c.name for c in o.codecs] == [c.name for c in e.codecs], i
            assert o.direction == e.direction, i


# ----------------------------------------------------------------- EXPECTED.md, one test per case


def test_rfc3264_10_1_first_exchange(vectors: Path) -> None:
    offer = load(vectors, "rfc3264_10.1_x1_offer.sdp")
    res = answer(offer, ["PCMU/8000", "MPV/90000"], [49920, 53002])
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, load(vectors, "rfc3264_10.1_x1_answer.sdp"))
    assert [s.accepted for s in res.streams] == [True, False, True]
    assert res.streams[1].reason == "no common codec"
    assert "m=video 0 RTP/AVP 31\r\n" in str(res.answer)
    assert (
        res.streams[0].remote_address == "host.anywhere.com" and res.streams[0].remote_port == 49170
    )
    assert res.streams[2].codec == Codec(32, "MPV", 90000)


def test_rfc3264_10_1_second_exchange_new_stream(vectors: Path) -> None:
    offer = load(vectors, "rfc3264_10.1_x2_offer.sdp")
    res = answer(offer, ["PCMU/8000", "MPV/90000", "telephone-events/8000"], [49170, 53000, 53122])
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, load(vectors, "rfc3264_10.1_x2_answer.sdp"))
    new = res.streams[3]
    assert new.accepted and new.local_direction == "sendonly" and new.remote_direction == "recvonly"
    assert new.send and not new.receive
    assert res.streams[1].reason == "stream disabled in the offer"


def test_rfc3264_10_1_second_exchange_without_the_capability_rejects_stream_4(
    vectors: Path,
) -> None:
    """pjsip's Alice's view: without a telephone-events capability the 4th stream gets port 0."""
    offer = load(vectors, "rfc3264_10.1_x2_offer.sdp")
    res = answer(offer, ["PCMU/8000", "MPV/90000"], [49170, 53000, 53122])
    assert [m.port for m in res.answer.media] == [49170, 0, 53000, 0]
    assert res.answer.media[3].formats == ["110"]
    assert res.ok and res.streams[3].reason == "no common codec"


def test_rfc3264_10_2_inactive_offer(vectors: Path) -> None:
    offer = load(vectors, "rfc3264_10.2_x1_offer.sdp")
    res = answer(offer, ["PCMU/8000", "G723/8000"], [54344], max_codecs=None)
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, load(vectors, "rfc3264_10.2_x1_answer.sdp"))
    assert res.answer.media[0].direction == "inactive"
    s = res.streams[0]
    assert s.hold and res.hold and not s.send and not s.receive
    # single-codec answer (pjsip's behaviour, our default) lists just the preferred one
    single = answer(offer, ["PCMU/8000", "G723/8000"], [54344])
    assert single.answer.media[0].formats == ["0"]


def test_rfc3264_10_2_updated_offer(vectors: Path) -> None:
    previous = load(vectors, "rfc3264_10.2_x1_answer.sdp")
    offer = load(vectors, "rfc3264_10.2_x2_offer.sdp")
    res = answer(offer, ["PCMU/8000", "G723/8000"], [54344], max_codecs=None)
    expected = load(vectors, "rfc3264_10.2_x2_answer.sdp")
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, expected)
    assert res.answer.media[0].direction == "sendrecv" and not res.hold
    versioned = assign_version(res.answer, previous)
    assert versioned.origin.sess_id == expected.origin.sess_id
    assert versioned.origin.sess_version == expected.origin.sess_version == 2890844732


def test_rfc4317_2_1_audio_and_video(vectors: Path) -> None:
    offer = load(vectors, "rfc4317_2.1_x1_offer.sdp")
    res = answer(offer, ["PCMU/8000", "MPV/90000"], [49174, 49170])
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, load(vectors, "rfc4317_2.1_x1_answer.sdp"))
    assert [s.codec.name for s in res.streams if s.codec] == ["PCMU/8000", "MPV/90000"]
    assert res.audio is res.streams[0]


def test_rfc4317_2_2_no_video(vectors: Path) -> None:
    offer = load(vectors, "rfc4317_2.2_x1_offer.sdp")
    res = answer(offer, ["PCMU/8000", "PCMA/8000"], [49172], max_codecs=None)
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, load(vectors, "rfc4317_2.2_x1_answer.sdp"))
    assert res.rejected == [res.streams[1]]


def test_rfc4317_2_2_second_offer(vectors: Path) -> None:
    previous = load(vectors, "rfc4317_2.2_x1_answer.sdp")
    offer = load(vectors, "rfc4317_2.2_x2_offer.sdp")
    res = answer(offer, ["PCMU/8000", "PCMA/8000"], [49172], max_codecs=None)
    expected = load(vectors, "rfc4317_2.2_x2_answer.sdp")
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, expected)
    assert res.streams[0].remote_port == 51372
    assert assign_version(res.answer, previous).origin.sess_version == expected.origin.sess_version


def test_rfc4317_2_4_telephone_events_stream(vectors: Path) -> None:
    offer = load(vectors, "rfc4317_2.4_x1_offer.sdp")
    res = answer(offer, ["iLBC/8000", "telephone-event/8000"], [49172, 49174])
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, load(vectors, "rfc4317_2.4_x1_answer.sdp"))
    events = res.streams[1]
    assert events.codec is None and events.telephone_event == Codec(98, "telephone-event", 8000)
    assert events.local_direction == "recvonly" and events.hold  # the peer only sends on it
    assert res.audio is res.streams[0] and not res.hold


def test_rfc4317_2_6_audio_with_telephone_events(vectors: Path) -> None:
    offer = load(vectors, "rfc4317_2.6_x1_offer.sdp")
    res = answer(offer, ["iLBC/8000"], [49170])
    assert_rfc3264_rules(offer, res.answer)
    assert_same_streams(res.answer, load(vectors, "rfc4317_2.6_x1_answer.sdp"))
    s = res.streams[1]
    assert s.codec == Codec(97, "iLBC", 8000)
    assert s.telephone_event is not None and s.telephone_event.payload_type == 101
    assert res.streams[0].reason == "no common codec"


# ----------------------------------------------------------------- pjsip negotiator cases (JSON)


def _capability(sdp: SessionDescription) -> tuple[list[str], list[int]]:
    """Codec preference and ports of a local capability SDP (disabled streams contribute nothing)."""
    prefs: list[str] = []
    ports: list[int] = []
    for m in sdp.media:
        if m.port:
            ports.append(m.port)
            prefs += [c.name for c in m.codecs if c.name not in prefs]
    return prefs, ports


def _remote_offer_cases(vectors: Path) -> list[tuple[str, str, str, list[str], str]]:
    cases = json.loads(
        (vectors / "sdp_offer_answer/pjsip_sdp_neg_test_rfc3264_rfc4317.json").read_text()
    )
    out = []
    for case in cases:
        local: str | None = None  # the active local SDP (its ports)
        capabilities: list[str] = []  # every local capability so far (its codecs)
        for n, ex in enumerate(case["exchanges"]):
            sdp = ex["sdp"]
            if ex["type"] == "LOCAL_OFFER":
                capabilities.append(sdp["local_offer"])
                local = sdp["local_active_after_negotiation"]
                continue
            cap = sdp["initial_local_capability"] or local  # NULL = keep the previous one
            assert cap is not None
            capabilities.append(cap)
            out.append(
                (
                    f"{case['test']}.{n} {case['title']}",
                    sdp["remote_offer"],
                    cap,
                    capabilities[:],
                    sdp["expected_local_answer"],
                )
            )
            local = sdp["expected_local_answer"]
    return out


def test_pjsip_cases_are_all_found(vectors: Path) -> None:
    assert len(_remote_offer_cases(vectors)) == 10


def test_pjsip_remote_offer_cases(vectors: Path) -> None:
    for title, offer_text, cap_text, capabilities, expected_text in _remote_offer_cases(vectors):
        offer = SessionDescription.parse(offer_text)
        expected = SessionDescription.parse(expected_text)
        _, ports = _capability(SessionDescription.parse(cap_text))
        prefs = []
        for text in capabilities:
            prefs += [p for p in _capability(SessionDescription.parse(text))[0] if p not in prefs]
        for max_codecs in (1, None):
            res = answer(offer, prefs, ports, max_codecs=max_codecs, telephone_event=True)
            assert_rfc3264_rules(offer, res.answer)
            assert [m.port != 0 for m in res.answer.media] == [
                m.port != 0 for m in expected.media
            ], title
            for o, e in zip(res.answer.media, expected.media, strict=True):
                assert (o.media, o.proto) == (e.media, e.proto), title
                if not e.port:
                    assert o.formats == e.formats[:1], title
                    continue
                assert o.direction == e.direction, (
                    title
                )  # port values: pjsip pairs streams its own way
                ours = [c.name for c in o.codecs if not c.is_telephone_event]
                theirs = [c.name for c in e.codecs if not c.is_telephone_event]
                if max_codecs == 1:  # the single best codec is the one pjsip lists first
                    assert ours == theirs[:1], title
                else:  # every codec pjsip lists, maybe more
                    assert set(theirs) <= set(ours), title
                    assert ours[:1] == theirs[:1], title
                if e.telephone_events:
                    assert [c.payload_type for c in o.telephone_events] == [
                        c.payload_type for c in e.telephone_events
                    ], title


# ----------------------------------------------------------------- real FreeSWITCH / SIPp / Asterisk offers


def test_sipp_opus_recvonly_offer(vectors: Path) -> None:
    offer = fs_sdp(vectors, "wireshark-sip-rtp-opus-hybrid_01_INVITE_from_sipp.sip")
    res = answer(offer, VOICE, [40000], ptime=20)
    assert_rfc3264_rules(offer, res.answer)
    s = res.audio
    assert s is not None and s.codec == Codec(99, "opus", 48000, 2)  # the offerer's PT 99
    assert s.telephone_event is None  # none offered: none added
    assert (
        s.local_direction == "sendonly"
        and s.remote_direction == "recvonly"
        and s.send
        and not s.receive
    )
    assert not s.hold  # recvonly from the peer is not a hold
    assert (s.remote_address, s.remote_port, s.remote_rtcp) == (
        "10.0.2.20",
        6000,
        ("10.0.2.20", 6001),
    )
    text = str(res.answer)
    assert (
        "m=audio 40000 RTP/AVP 99\r\n" in text
        and "a=sendonly\r\n" in text
        and "a=ptime:20\r\n" in text
    )
    assert "c=IN IP4 192.0.2.99\r\n" in text


def test_asterisk_avpf_rtcp_mux_offer(vectors: Path) -> None:
    offer = fs_sdp(vectors, "telnyx-asterisk_offer_INVITE_RTP-AVPF_to_freeswitch.sip")
    res = answer(offer, VOICE, [23402], ptime=20)
    assert_rfc3264_rules(offer, res.answer)
    (m,) = res.answer.media
    assert (m.proto, m.formats, m.rtcp_mux, m.ptime) == ("RTP/AVPF", ["0", "101"], True, 20)
    s = res.streams[0]
    assert s.rtcp_mux and s.remote_rtcp is None and (s.ptime, s.maxptime) == (20, 140)
    assert s.telephone_event is not None and s.telephone_event.fmtp == "0-16"
    # compare with what FreeSWITCH answered to the same offer
    fs = fs_sdp(vectors, "telnyx-freeswitch_200OK_RTP-AVPF_rtcp-mux.sip").media[0]
    assert (m.proto, m.formats, m.rtcp_mux, m.direction) == (
        fs.proto,
        fs.formats,
        fs.rtcp_mux,
        fs.direction,
    )
    no_mux = answer(offer, VOICE, [23402], rtcp_mux=False)
    assert not no_mux.answer.media[0].rtcp_mux and no_mux.streams[0].remote_rtcp == (
        "10.96.0.15",
        10385,
    )


def test_kazoo_offer_prefers_our_order_and_rejects_video(vectors: Path) -> None:
    offer = fs_sdp(vectors, "kazoo-freeswitch_INVITE_G7221_video.sip")
    res = answer(offer, ["PCMA/8000", "PCMU/8000"], [40000, 40002])
    assert_rfc3264_rules(offer, res.answer)
    assert (
        res.audio is not None and res.audio.codec is not None and res.audio.codec.payload_type == 8
    )
    assert res.answer.media[0].formats == ["8", "101"] and res.answer.media[1].port == 0
    g722 = answer(offer, ["PCMA/8000", "PCMU/8000", "G722/8000"], [40000], honor_offer_order=True)
    assert g722.audio is not None and g722.audio.codec == Codec(
        9, "G722", 8000
    )  # the offer lists 9 first
    all_common = answer(offer, VOICE, [40000], max_codecs=None)
    assert all_common.answer.media[0].formats == ["0", "8", "9", "101"]


def test_process_answer_from_freeswitch(vectors: Path) -> None:
    offer = fs_sdp(vectors, "wireshark-sip-rtp-opus-hybrid_01_INVITE_from_sipp.sip")
    ans = fs_sdp(vectors, "wireshark-sip-rtp-opus-hybrid_02_200OK_from_FreeSWITCH-1.6.12.sip")
    res = process_answer(offer, ans)
    s = res.audio
    assert res.ok and s is not None and s.codec is not None and s.codec.payload_type == 99
    assert s.codec.fmtp_params()["maxptime"] == "40"
    assert s.telephone_event is None  # FreeSWITCH added PT 101 although it was not offered: ignored
    assert (s.remote_address, s.remote_port, s.ptime) == ("10.0.2.15", 24196, 20)
    assert s.local_direction == "recvonly" and s.receive and not s.send
    assert s.hold  # the answerer only sends
    offer2 = fs_sdp(vectors, "telnyx-asterisk_offer_INVITE_RTP-AVPF_to_freeswitch.sip")
    ans2 = fs_sdp(vectors, "telnyx-freeswitch_200OK_RTP-AVPF_rtcp-mux.sip")
    s2 = process_answer(offer2, ans2).streams[0]
    assert s2.rtcp_mux and s2.remote_rtcp is None and s2.local_direction == "sendrecv"
    assert s2.telephone_event is not None and s2.telephone_event.payload_type == 101
    assert (s2.remote_address, s2.remote_port) == ("10.164.0.12", 23402)


# ----------------------------------------------------------------- hold, SRTP, failures, options


def offer_text(m_lines: str, session: str = "c=IN IP4 198.51.100.7\r\n") -> SessionDescription:
    return SessionDescription.parse(
        "v=0\r\no=fs 100 101 IN IP4 198.51.100.7\r\ns=FreeSWITCH\r\n"
        + session
        + "t=0 0\r\n"
        + m_lines
    )


@pytest.mark.parametrize(
    ("direction", "ours", "hold"),
    [
        ("sendrecv", "sendrecv", False),
        ("sendonly", "recvonly", True),
        ("recvonly", "sendonly", False),
        ("inactive", "inactive", True),
    ],
)
def test_complementary_direction_and_hold(direction: str, ours: str, hold: bool) -> None:
    res = answer(
        offer_text(
            f"m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
        ),
        VOICE,
        [40000],
    )
    assert res.answer.media[0].direction == ours
    assert res.streams[0].hold is hold and res.hold is hold
    assert f"a={ours}\r\n" in str(res.answer)


def test_rfc2543_hold_with_null_address() -> None:
    res = answer(offer_text("m=audio 30000 RTP/AVP 0\r\n", "c=IN IP4 0.0.0.0\r\n"), VOICE, [40000])
    s = res.streams[0]
    assert s.hold and res.hold and s.remote_address is None and s.remote_rtcp is None
    assert s.local_direction == "recvonly" and not s.send
    media_level = answer(
        offer_text("m=audio 30000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n", "c=IN IP4 198.51.100.7\r\n"),
        VOICE,
        [40000],
    )
    assert media_level.streams[0].hold and media_level.streams[0].remote_address is None
    resumed = answer(
        offer_text("m=audio 30002 RTP/AVP 0\r\nc=IN IP4 198.51.100.8\r\n"), VOICE, [40000]
    )
    assert (
        not resumed.hold and resumed.streams[0].remote_address == "198.51.100.8"
    )  # media-level c= wins


def test_local_hold_answer() -> None:
    res = answer(offer_text("m=audio 30000 RTP/AVP 0\r\n"), VOICE, [40000], hold=True)
    assert res.answer.media[0].direction == "sendonly"
    res2 = answer(
        offer_text("m=audio 30000 RTP/AVP 0\r\na=recvonly\r\n"), VOICE, [40000], hold=True
    )
    assert res2.answer.media[0].direction == "sendonly"
    res3 = answer(
        offer_text("m=audio 30000 RTP/AVP 0\r\na=sendonly\r\n"), VOICE, [40000], hold=True
    )
    assert res3.answer.media[0].direction == "inactive"


SRTP_OFFER = (
    "m=audio 30000 RTP/SAVP 0 8\r\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
)


def test_srtp_only_offer_fails_with_488_and_warning() -> None:
    res = answer(offer_text(SRTP_OFFER), VOICE, [40000])
    assert not res.ok and res.failure is not None
    assert res.failure.status == 488 and res.failure.warning_code == 302
    assert res.failure.warning_header("agent.example.com").startswith(
        '302 agent.example.com "Incompatible transport'
    )
    assert res.streams[0].reason == "SRTP not supported" and res.answer.media[0].port == 0
    assert res.audio is None and not res.hold


def test_srtp_allowed_or_with_plain_rtp_alternative() -> None:
    res = answer(offer_text(SRTP_OFFER), VOICE, [40000], allow_srtp=True)
    assert res.ok and res.answer.media[0].proto == "RTP/SAVP" and res.answer.media[0].port == 40000
    both = answer(offer_text(SRTP_OFFER + "m=audio 30002 RTP/AVP 0\r\n"), VOICE, [40000])
    assert [m.port for m in both.answer.media] == [0, 40000] and both.audio is both.streams[1]


def test_no_common_codec_fails_with_488_and_305() -> None:
    res = answer(offer_text("m=audio 30000 RTP/AVP 18 4\r\n"), VOICE, [40000])
    assert res.failure is not None and res.failure.status == 488 and res.failure.warning_code == 305
    assert res.failure.reason == "no common codec"
    assert res.failure.warning_header() == '305 w3sipagent "Incompatible media format"'
    assert res.answer.media[0].port == 0 and res.answer.media[0].formats == ["18"]


def test_other_failures() -> None:
    none = answer(offer_text(""), VOICE, [40000])
    assert (
        none.failure is not None
        and none.failure.warning_code == 304
        and none.failure.reason == "no media streams"
    )
    image = answer(offer_text("m=image 30000 udptl t38\r\n"), VOICE, [40000])
    assert image.failure is not None and image.streams[0].reason == "transport udptl not supported"
    assert image.failure.reason == "no usable media stream"
    no_c = answer(offer_text("m=audio 30000 RTP/AVP 0\r\n", session=""), VOICE, [40000])
    assert no_c.streams[0].reason == "no connection address" and not no_c.ok
    no_port = answer(offer_text("m=audio 30000 RTP/AVP 0\r\n"), VOICE, [])
    assert no_port.failure is not None and no_port.failure.reason == "no local port available"
    with pytest.raises(SdpError, match="max_codecs"):
        answer(offer_text("m=audio 30000 RTP/AVP 0\r\n"), VOICE, [1], max_codecs=0)
    with pytest.raises(SdpError, match="encoding/rate"):
        answer(offer_text("m=audio 30000 RTP/AVP 0\r\n"), ["PCMU"], [1])


def test_ports_limit_streams_and_callable_ports() -> None:
    two = offer_text("m=audio 30000 RTP/AVP 0\r\nm=audio 30002 RTP/AVP 8\r\n")
    res = answer(two, VOICE, [40000])
    assert [m.port for m in res.answer.media] == [40000, 0] and res.streams[
        1
    ].reason == "no local port available"
    seen: list[tuple[int, str]] = []

    def alloc(index: int, media: MediaDescription) -> int | None:
        seen.append((index, media.formats[0]))
        return 41000 + 2 * index if index == 0 else None

    res2 = answer(two, VOICE, alloc)
    assert seen == [(0, "0"), (1, "8")] and [m.port for m in res2.answer.media] == [41000, 0]
    assert res2.streams[0].local_port == 41000


def test_opus_dynamic_pt_and_telephone_event_rate() -> None:
    offer = offer_text(
        "m=audio 30000 RTP/AVP 96 0 101 110\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n"
    )
    res = answer(offer, ["opus/48000/2", "PCMU/8000"], [40000])
    s = res.streams[0]
    assert s.codec is not None and (s.codec.payload_type, s.codec.fmtp) == (96, "useinbandfec=1")
    assert s.telephone_event == Codec(110, "telephone-event", 48000, 1, "0-15")
    assert res.answer.media[0].formats == ["96", "110"]
    pcmu = answer(offer, ["PCMU/8000", "opus/48000/2"], [40000])
    assert pcmu.answer.media[0].formats == ["0", "101"]
    no_te = answer(offer, ["PCMU/8000"], [40000], telephone_event=False)
    assert no_te.answer.media[0].formats == ["0"]
    # our own fmtp imposed by passing a Codec
    ours = answer(offer, [Codec(0, "opus", 48000, 2, "maxaveragebitrate=20000")], [40000])
    opus = ours.answer.media[0].codecs[0]
    assert (opus.payload_type, opus.fmtp) == (96, "maxaveragebitrate=20000")
    # only an 8000 Hz event offered with opus: used anyway
    only8k = offer_text(
        "m=audio 30000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    assert answer(only8k, VOICE, [40000]).answer.media[0].formats == ["111", "101"]


def test_case_insensitive_names_and_explicit_mono() -> None:
    offer = offer_text("m=audio 30000 RTP/AVP 97\r\na=rtpmap:97 Speex/16000\r\n")
    res = answer(offer, ["speex/16000/1"], [40000])
    assert (
        res.audio is not None
        and res.audio.codec is not None
        and res.audio.codec.encoding == "Speex"
    )


def test_process_answer_of_our_offer() -> None:
    offer = create_offer(
        VOICE,
        local_address="192.0.2.10",
        port=40000,
        session_id=5,
        session_version=5,
        rtcp_mux=True,
    )
    peer = negotiate_answer(
        offer,
        local_address="198.51.100.7",
        ports=[30000],
        codec_preference=["PCMA/8000"],
        session_id=1,
        session_version=1,
    )
    res = process_answer(offer, peer.answer)
    s = res.streams[0]
    assert res.ok and s.codec == Codec(8, "PCMA", 8000)
    assert s.telephone_event is not None and s.telephone_event.payload_type == 101
    assert (s.remote_address, s.remote_port, s.rtcp_mux, s.local_port) == (
        "198.51.100.7",
        30000,
        True,
        40000,
    )
    assert s.local_direction == "sendrecv" and not s.hold
    # hold re-INVITE from us answered recvonly
    held_offer = create_offer(
        VOICE,
        local_address="192.0.2.10",
        port=40000,
        session_id=5,
        session_version=6,
        direction="sendonly",
    )
    held_answer = negotiate_answer(
        held_offer,
        local_address="198.51.100.7",
        ports=[30000],
        codec_preference=["PCMA/8000"],
        session_id=1,
        session_version=2,
    )
    assert held_answer.answer.media[0].direction == "recvonly"
    hs = process_answer(held_offer, held_answer.answer).streams[0]
    assert hs.local_direction == "sendonly" and hs.send and not hs.receive and not hs.hold


def test_process_answer_rejections_and_errors() -> None:
    offer = create_offer(
        ["PCMU/8000"], local_address="192.0.2.10", port=40000, session_id=5, session_version=5
    )
    rejected = offer_text("m=audio 0 RTP/AVP 0\r\n")
    res = process_answer(offer, rejected)
    assert not res.ok and res.streams[0].reason == "stream rejected in the answer"
    foreign = process_answer(offer, offer_text("m=audio 30000 RTP/AVP 8\r\n"))
    assert foreign.streams[0].reason == "no common codec" and foreign.failure is not None
    no_c = process_answer(offer, offer_text("m=audio 30000 RTP/AVP 0\r\n", session=""))
    assert no_c.streams[0].reason == "no connection address"
    null = process_answer(
        offer, offer_text("m=audio 30000 RTP/AVP 0\r\n", "c=IN IP4 0.0.0.0\r\n")
    ).streams[0]
    assert null.hold and not null.send and null.receive
    rtcp = process_answer(
        offer, offer_text("m=audio 30000 RTP/AVP 0\r\na=rtcp:30011 IN IP4 198.51.100.9\r\n")
    )
    assert rtcp.streams[0].remote_rtcp == ("198.51.100.9", 30011)
    with pytest.raises(SdpError, match="2 m= lines but the offer had 1"):
        process_answer(offer, offer_text("m=audio 30000 RTP/AVP 0\r\nm=audio 30002 RTP/AVP 0\r\n"))
    with pytest.raises(SdpError, match="is video"):
        process_answer(offer, offer_text("m=video 30000 RTP/AVP 31\r\n"))
