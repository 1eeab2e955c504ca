"""RFC 5118 IPv6 torture messages (fixed_content_length/ for the three with bodies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from w3sipagent.errors import SipParseError
from w3sipagent.sip import SipMessageError, SipRequest, SipUri, parse_message, parse_uri

FIXED = {"ipv4-mapped-ipv6.dat", "ipv6-in-sdp.dat", "mult-ip-in-sdp.dat"}


def load(vectors: Path, name: str) -> bytes:
    base = vectors / "rfc5118"
    return ((base / "fixed_content_length" / name) if name in FIXED else (base / name)).read_bytes()


def req(vectors: Path, name: str) -> SipRequest:
    m = parse_message(load(vectors, name))
    assert isinstance(m, SipRequest)
    return m


def test_all_twelve_files_are_covered(vectors: Path) -> None:
    names = {p.name for p in (vectors / "rfc5118").glob("*.dat")}
    assert names == set(CASES)


def _ipv6_good(m: SipRequest) -> None:
    ru = m.request_uri
    assert isinstance(ru, SipUri)
    assert (ru.host, ru.hostname, ru.port) == ("[2001:db8::10]", "2001:db8::10", None)
    assert (m.via.host, m.via.port) == ("[2001:db8::9:1]", None)
    (c,) = m.contact
    assert isinstance(c.uri, SipUri) and c.uri.host == "[2001:db8::1]"
    assert c.display_name == "Caller"


def _ipv6_bad(m: SipRequest) -> None:
    # The message parses; the unbracketed IPv6 Request-URI is rejected with 400 on use.
    with pytest.raises(SipParseError) as ei:
        _ = m.request_uri
    assert ei.value.status == 400


def _port_ambiguous(m: SipRequest) -> None:
    ru = m.request_uri
    assert isinstance(ru, SipUri)
    assert (ru.hostname, ru.port) == ("2001:db8::10:5070", None)  # no port 5070


def _port_unambiguous(m: SipRequest) -> None:
    ru = m.request_uri
    assert isinstance(ru, SipUri)
    assert (ru.hostname, ru.port) == ("2001:db8::10", 5070)


def _received_with_delim(m: SipRequest) -> None:
    # Decision: accepted (robustness, RFC 5118 §4.5).
    assert m.via.received == "[2001:db8::9:255]"
    assert m.via.branch == "z9hG4bKas3-111"
    assert m.via.host == "[2001:db8::9:1]"


def _received_no_delim(m: SipRequest) -> None:
    assert m.via.received == "2001:db8::9:255"


def _ipv6_in_sdp(m: SipRequest) -> None:
    assert isinstance(m.to.uri, SipUri) and m.to.uri.host == "[2001:db8::10]"
    assert b"c=IN IP6 2001:db8::20" in m.body
    assert len(m.body) == m.content_length


def _mult_ip_in_header(m: SipRequest) -> None:
    assert [(v.transport, v.host, v.port, v.received) for v in m.vias] == [
        ("UDP", "[2001:db8::9:1]", 6050, None),
        ("UDP", "192.0.2.1", None, None),
        ("TCP", "[2001:db8::9:255]", None, "192.0.2.200"),
    ]


def _mult_ip_in_sdp(m: SipRequest) -> None:
    assert b"c=IN IP4 192.0.2.1" in m.body and b"c=IN IP6 2001:db8::1" in m.body
    assert len(m.body) == m.content_length


def _ipv4_mapped(m: SipRequest) -> None:
    assert (m.via.host, m.via.port) == ("[::ffff:192.0.2.10]", 19823)
    assert m.vias[1].host == "[::ffff:192.0.2.2]"
    (c,) = m.contact
    assert isinstance(c.uri, SipUri) and c.uri.hostname == "::ffff:192.0.2.2"
    assert len(m.body) == m.content_length


def _two_colons(m: SipRequest) -> None:
    ru = m.request_uri
    assert isinstance(ru, SipUri) and ru.hostname == "2001:db8::192.0.2.1"


CASES = {
    "ipv6-good.dat": _ipv6_good,
    "ipv6-bad.dat": _ipv6_bad,
    "port-ambiguous.dat": _port_ambiguous,
    "port-unambiguous.dat": _port_unambiguous,
    "via-received-param-with-delim.dat": _received_with_delim,
    "via-received-param-no-delim.dat": _received_no_delim,
    "ipv6-in-sdp.dat": _ipv6_in_sdp,
    "mult-ip-in-header.dat": _mult_ip_in_header,
    "mult-ip-in-sdp.dat": _mult_ip_in_sdp,
    "ipv4-mapped-ipv6.dat": _ipv4_mapped,
    "ipv6-correct-abnf-2-colons.dat": _two_colons,
    "ipv6-bug-abnf-3-colons.dat": lambda m: None,  # checked below: rejected
}


@pytest.mark.parametrize("name", sorted(set(CASES) - {"ipv6-bug-abnf-3-colons.dat"}))
def test_rfc5118_message(vectors: Path, name: str) -> None:
    m = req(vectors, name)
    CASES[name](m)
    assert parse_message(bytes(m)) == m


def test_three_colons_rejected(vectors: Path) -> None:
    # Decision: strict (RFC 5954 grammar); the To header carries the bad address, so the
    # message is rejected with 400 and the partly parsed request is available for the reply.
    with pytest.raises(SipMessageError, match="IPv6") as ei:
        parse_message(load(vectors, "ipv6-bug-abnf-3-colons.dat"))
    assert ei.value.status == 400
    assert isinstance(ei.value.message, SipRequest)
    with pytest.raises(SipParseError):
        parse_uri("sip:user@[2001:db8:::192.0.2.1]")


def test_printed_content_length_too_large_is_rejected(vectors: Path) -> None:
    # ipv6-in-sdp as printed in the RFC claims 268 bytes for a 251-byte body.
    with pytest.raises(SipMessageError, match="Content-Length") as ei:
        parse_message((vectors / "rfc5118" / "ipv6-in-sdp.dat").read_bytes())
    assert ei.value.status == 400


def test_lf_only_archive_parses(vectors: Path) -> None:
    """The archive's bare-LF form (no blank line in §4.10 files) reads the same."""
    for name in ("ipv6-good", "mult-ip-in-header", "ipv6-correct-abnf-2-colons"):
        lf = (vectors / "rfc5118" / "archive_lf" / name).read_bytes()
        assert b"\r" not in lf
        assert parse_message(lf) == parse_message(load(vectors, name + ".dat"))
