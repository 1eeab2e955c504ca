"""RFC 4475 torture messages: every judged message, one decision each.

Each check function parses the file the way the user agent will (``parse_message`` on
the UDP datagram) and asserts fields, or the error status and the partly parsed
message the UA needs for its reply (ENDPOINT.md). Where EXPECTED.md allows a liberal
reading the decision is written next to the check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from w3sipagent.errors import SipParseError
from w3sipagent.sip import (
    AbsoluteUri,
    Credentials,
    SipMessageError,
    SipRequest,
    SipResponse,
    SipUri,
    StreamFramer,
    make_response,
    parse_message,
    parse_uri,
)

Check = Callable[[bytes], None]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    def deco(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return deco


def req(data: bytes) -> SipRequest:
    m = parse_message(data)
    assert isinstance(m, SipRequest)
    return m


def rejected(data: bytes, status: int, needle: str) -> SipRequest:
    """The request is rejected with ``status`` and the UA can still build the reply."""
    with pytest.raises(SipMessageError) as ei:
        parse_message(data)
    err = ei.value
    assert err.status == status, err
    assert needle in str(err)
    msg = err.message
    assert isinstance(msg, SipRequest)
    resp = make_response(msg, err.status, to_tag="uas1")
    wire = bytes(resp)
    assert wire.startswith(b"SIP/2.0 %d " % status)
    # The reply echoes the request's own lines (even broken ones) per RFC 3261 §8.2.6.
    lines = msg.headers.get_lines
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in lines(name) if name == "Via" else lines(name)[:1]:
            assert f"\r\n{name}: {value}".encode(errors="surrogateescape") in wire
    return msg


def dropped_response(data: bytes, needle: str) -> None:
    with pytest.raises(SipParseError, match=needle) as ei:
        parse_message(data)
    # Responses are dropped, never answered: no partly parsed message is offered.
    assert getattr(ei.value, "message", None) is None


# ----------------------------------------------------------------- 3.1.1 valid


@check("wsinv.dat")
def _wsinv(data: bytes) -> None:
    m = req(data)
    assert m.method == "INVITE"
    assert m.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    ru = m.request_uri
    assert isinstance(ru, SipUri) and ru.params == {"unknownparam": None}
    assert m.to.tag == "1918181833n"
    assert str(m.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (m.cseq.seq, m.cseq.method) == (9, "INVITE")
    vias = m.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    route = m.route
    assert len(route) == 1
    assert isinstance(route[0].uri, SipUri)
    assert route[0].uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    (contact,) = m.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.content_type == "application/sdp"
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")


@check("intmeth.dat")
def _intmeth(data: bytes) -> None:
    m = req(data)
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method and m.cseq.method == method and m.cseq.seq == 139122385
    ru = m.request_uri
    assert isinstance(ru, SipUri)
    assert ru.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ru.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert ru.host == "example.com"
    assert m.via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert (
        m.from_.params["fromparam''~+*_!.-%"]
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.headers.get("extensionheader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert m.body == b""


@check("esc01.dat")
def _esc01(data: bytes) -> None:
    m = req(data)
    ru = m.request_uri
    assert isinstance(ru, SipUri)
    assert (ru.user, ru.host) == ("sips:user@example.com", "example.net")
    assert isinstance(m.to.uri, SipUri) and m.to.uri.user == "user"
    assert m.to.uri.equivalent(parse_uri("sip:user@example.com"))
    assert isinstance(m.from_.uri, SipUri) and m.from_.uri.user == "I have spaces"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.content_type == "application/sdp"
    (c,) = m.contact
    assert isinstance(c.uri, SipUri)
    assert c.uri.user == "caller"
    assert c.uri.params == {"lr": None, "name": "value%41"}
    assert c.uri.equivalent(parse_uri("sip:caller@host5.example.net;lr;name=value%2541"))


@check("escnull.dat")
def _escnull(data: bytes) -> None:
    m = req(data)
    assert isinstance(m.to.uri, SipUri) and m.to.uri.user == "null-\x00-null"
    c1, c2 = m.contact
    assert isinstance(c1.uri, SipUri) and isinstance(c2.uri, SipUri)
    assert (c1.uri.user, c2.uri.user) == ("\x00", "\x00\x00")
    assert not c1.uri.equivalent(c2.uri)
    assert str(c2.uri) == "sip:%00%00@host5.example.com"
    assert m.content_length == 0


@check("esc02.dat")
def _esc02(data: bytes) -> None:
    m = req(data)
    assert m.method == "RE%47IST%45R"  # not REGISTER: the UA answers 501 / 405
    assert m.to.display_name == "%Z%45" and m.from_.display_name == "%Z%45"
    assert m.via.branch == "z9hG4bK209%fzsnel234"
    assert [str(c.uri) for c in m.contact] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


@check("lwsdisp.dat")
def _lwsdisp(data: bytes) -> None:
    m = req(data)  # decision: accepted (RFC 3261 grammar bug, RFC 4475 says accept)
    assert m.from_.display_name == "caller" and m.from_.tag == "323"


@check("longreq.dat")
def _longreq(data: bytes) -> None:
    m = req(data)
    vias = m.vias
    assert len(vias) == 34
    assert len(m.headers.get_lines("Via")) == 34
    assert {v.transport for v in vias} == {"TCP"}
    assert vias[-1].branch is not None and len(vias[-1].branch) > 100
    assert m.to.display_name is not None and len(m.to.display_name) > 100
    assert m.from_.tag is not None and len(m.from_.tag) > 100
    assert len(m.call_id) > 100
    assert len(m.body) == m.content_length


@check("dblreq.dat")
def _dblreq(data: bytes) -> None:
    m = req(data)
    assert m.method == "REGISTER" and m.body == b""  # trailing INVITE ignored (RFC 3261 §18.3)
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert b"INVITE" not in bytes(m)


@check("semiuri.dat")
def _semiuri(data: bytes) -> None:
    m = req(data)
    ru = m.request_uri
    assert isinstance(ru, SipUri)
    assert (ru.user, ru.host, ru.params) == ("user;par=u@example.net", "example.com", {})
    assert m.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


@check("transports.dat")
def _transports(data: bytes) -> None:
    m = req(data)
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


@check("mpart01.dat")
def _mpart01(data: bytes) -> None:
    m = req(data)
    assert m.method == "MESSAGE"
    assert m.content_type == "multipart/mixed"
    assert len(m.body) == 553 == m.content_length
    assert b"\x00" in m.body


@check("unreason.dat")
def _unreason(data: bytes) -> None:
    m = parse_message(data)
    assert isinstance(m, SipResponse) and m.status == 200
    assert m.reason.startswith("= 2**3 * 5**2 ")
    assert "\u043d\u043e" in m.reason  # UTF-8 Russian text decoded


@check("noreason.dat")
def _noreason(data: bytes) -> None:
    m = parse_message(data)
    assert isinstance(m, SipResponse) and (m.status, m.reason) == (100, "")
    assert m.to.tag == "902jndnke3"


# ----------------------------------------------------------------- 3.1.2 invalid


@check("badinv01.dat")
def _badinv01(data: bytes) -> None:
    rejected(data, 400, "Via")


@check("clerr.dat")
def _clerr(data: bytes) -> None:
    rejected(data, 400, "Content-Length")
    # On a stream the framer waits for the missing bytes instead.
    f = StreamFramer()
    assert f.feed(data) == [] and not f.failed and f.buffered == len(data)


@check("ncl.dat")
def _ncl(data: bytes) -> None:
    rejected(data, 400, "Content-Length")
    f = StreamFramer()
    (err,) = f.feed(data)
    assert isinstance(err, SipParseError) and f.failed


@check("scalar02.dat")
def _scalar02(data: bytes) -> None:
    rejected(data, 400, "CSeq")


@check("scalarlg.dat")
def _scalarlg(data: bytes) -> None:
    dropped_response(data, "CSeq")


@check("quotbal.dat")
def _quotbal(data: bytes) -> None:
    rejected(data, 400, "quoted")  # decision: reject, no inferred closing quote


@check("ltgtruri.dat")
def _ltgtruri(data: bytes) -> None:
    rejected(data, 400, "Request-URI")


@check("lwsruri.dat")
def _lwsruri(data: bytes) -> None:
    rejected(data, 400, "Request-Line")  # decision: strict, embedded LWS rejected


@check("lwsstart.dat")
def _lwsstart(data: bytes) -> None:
    rejected(data, 400, "Request-Line")  # decision: strict, extra SP rejected


@check("trws.dat")
def _trws(data: bytes) -> None:
    rejected(data, 400, "Request-Line")  # decision: strict, trailing SP rejected


@check("escruri.dat")
def _escruri(data: bytes) -> None:
    # Decision: the message parses; reading the Request-URI rejects its URI headers (400).
    m = req(data)
    with pytest.raises(SipParseError, match="URI headers") as ei:
        _ = m.request_uri
    assert ei.value.status == 400


@check("baddate.dat")
def _baddate(data: bytes) -> None:
    m = req(data)  # decision: liberal, Date is opaque to this endpoint
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


@check("regbadct.dat")
def _regbadct(data: bytes) -> None:
    # Decision: the message parses (Contact is not needed for admission); reading the
    # Contact rejects the un-bracketed URI with headers (400).
    m = req(data)
    with pytest.raises(SipParseError, match="enclosed") as ei:
        _ = m.contact
    assert ei.value.status == 400


@check("badaspec.dat")
def _badaspec(data: bytes) -> None:
    m = req(data)  # decision: liberal, spaces inside <> ignored
    assert m.to.display_name == "Watson, Thomas"
    assert str(m.to.uri) == "sip:t.watson@example.org"
    assert m.from_.display_name == "Bell, Alexander"


@check("baddn.dat")
def _baddn(data: bytes) -> None:
    rejected(data, 400, "display name")  # decision: reject, no inferred quotes


@check("badvers.dat")
def _badvers(data: bytes) -> None:
    m = rejected(data, 505, "version")
    assert m.method == "OPTIONS"


@check("mismatch01.dat")
def _mismatch01(data: bytes) -> None:
    rejected(data, 400, "CSeq method")


@check("mismatch02.dat")
def _mismatch02(data: bytes) -> None:
    m = rejected(data, 400, "CSeq method")  # 400 is allowed (501 preferred)
    assert m.method == "NEWMETHOD"


@check("bigcode.dat")
def _bigcode(data: bytes) -> None:
    dropped_response(data, "status code")


# ----------------------------------------------------------------- 3.2 - 3.4


@check("badbranch.dat")
def _badbranch(data: bytes) -> None:
    m = req(data)  # decision: parses; the transaction layer falls back to RFC 2543 matching
    assert m.via.branch == "z9hG4bK"


@check("insuf.dat")
def _insuf(data: bytes) -> None:
    m = rejected(data, 400, "missing")
    assert m.headers.get("CSeq") is not None and "Call-ID" not in m.headers


@check("unkscm.dat")
def _unkscm(data: bytes) -> None:
    m = req(data)
    assert m.uri == "nobodyKnowsThisScheme:totallyopaquecontent"
    with pytest.raises(SipParseError) as ei:
        _ = m.request_uri
    assert ei.value.status == 416
    assert m.to.uri is not None  # parsed, but the UA must not route on it


@check("novelsc.dat")
def _novelsc(data: bytes) -> None:
    m = req(data)
    assert m.uri == "soap.beep://192.0.2.103:3002"
    with pytest.raises(SipParseError) as ei:
        _ = m.request_uri
    assert ei.value.status == 416


@check("unksm2.dat")
def _unksm2(data: bytes) -> None:
    m = req(data)  # decision: accepted, other schemes kept as opaque URIs
    assert m.to.uri == AbsoluteUri("isbn", "isbn:2983792873")
    assert m.from_.uri == AbsoluteUri("http", "http://www.example.com")
    assert m.from_.tag == "3234233"
    assert [str(c.uri) for c in m.contact] == ["name:John_Smith"]
    with pytest.raises(SipParseError) as ei:
        _ = m.to.sip_uri
    assert ei.value.status == 416


@check("bext01.dat")
def _bext01(data: bytes) -> None:
    m = req(data)
    assert m.require == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.headers.get_all("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]
    assert m.via.transport == "TLS"
    resp = make_response(m, 420, to_tag="x", headers=[("Unsupported", ", ".join(m.require))])
    assert resp.reason == "Bad Extension"
    assert resp.headers.get_all("Unsupported") == m.require


@check("invut.dat")
def _invut(data: bytes) -> None:
    m = req(data)
    assert m.content_type == "application/unknownformat"
    assert len(m.body) == 40


@check("regaut01.dat")
def _regaut01(data: bytes) -> None:
    m = req(data)
    auth = m.headers.get("Authorization")
    assert auth is not None
    assert Credentials.parse(auth) == Credentials("NoOneKnowsThisScheme", {"opaque-data": "here"})
    assert m.content_length == 0


@check("multi01.dat")
def _multi01(data: bytes) -> None:
    rejected(data, 400, "more than one")


@check("mcl01.dat")
def _mcl01(data: bytes) -> None:
    rejected(data, 400, "Content-Length")
    f = StreamFramer()
    (err,) = f.feed(data)
    assert isinstance(err, SipMessageError) and f.failed
    assert isinstance(err.message, SipRequest)


@check("bcast.dat")
def _bcast(data: bytes) -> None:
    m = parse_message(data)
    assert isinstance(m, SipResponse) and m.status == 200
    assert m.vias[1].host == "255.255.255.255"
    assert len(m.body) == 154


@check("zeromf.dat")
def _zeromf(data: bytes) -> None:
    m = req(data)
    assert m.max_forwards == 0


@check("cparam01.dat")
def _cparam01(data: bytes) -> None:
    (c,) = req(data).contact
    assert c.params == {"unknownparam": None}
    assert isinstance(c.uri, SipUri) and c.uri.params == {}
    assert c.uri.user == "+19725552222"


@check("cparam02.dat")
def _cparam02(data: bytes) -> None:
    (c,) = req(data).contact
    assert c.params == {}
    assert isinstance(c.uri, SipUri) and c.uri.params == {"unknownparam": None}


@check("regescrt.dat")
def _regescrt(data: bytes) -> None:
    m = req(data)
    (c,) = m.contact
    assert isinstance(c.uri, SipUri)
    assert c.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(c.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    assert m.content_length == 0


@check("sdp01.dat")
def _sdp01(data: bytes) -> None:
    m = req(data)
    assert m.headers.get_all("Accept") == ["text/nobodyKnowsThis"]
    assert m.content_type == "application/sdp"


@check("inv2543.dat")
def _inv2543(data: bytes) -> None:
    m = req(data)  # decision: accepted (RFC 2543 compatibility)
    assert m.via.branch is None and m.from_.tag is None
    assert m.max_forwards is None and m.content_length is None
    assert len(m.body) == 105
    assert m.to.params == {"user": "phone"}
    assert isinstance(m.to.uri, SipUri) and m.to.uri.params == {}


# ----------------------------------------------------------------- the runs


def _judged(vectors: Path) -> list[dict[str, str]]:
    entries = json.loads((vectors / "rfc4475" / "expected.json").read_text())
    return [e for e in entries if e["file"] != "test.dat"]


def test_every_judged_message_has_a_check(vectors: Path) -> None:
    judged = {e["file"] for e in _judged(vectors)}
    assert len(judged) == 49
    assert judged == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_torture_message(vectors: Path, name: str) -> None:
    CHECKS[name]((vectors / "rfc4475" / name).read_bytes())


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_valid_messages_round_trip(vectors: Path, name: str) -> None:
    data = (vectors / "rfc4475" / name).read_bytes()
    try:
        m = parse_message(data)
    except SipParseError:
        return  # rejected messages are checked above
    again = parse_message(bytes(m))
    assert again == m
    assert bytes(again) == bytes(m)


def test_valid_messages_frame_on_a_stream(vectors: Path) -> None:
    """Every message accepted as a datagram also frames on TCP, even byte by byte."""
    stream = b""
    expected = []
    for name in sorted(CHECKS):
        try:
            m = parse_message((vectors / "rfc4475" / name).read_bytes())
        except SipParseError:
            continue
        expected.append(m)
        stream += bytes(m)
    f = StreamFramer()
    got = f.feed(stream)
    assert got == expected
    f2 = StreamFramer()
    got2 = []
    for i in range(len(stream)):
        got2.extend(f2.feed(stream[i : i + 1]))
    assert got2 == expected
