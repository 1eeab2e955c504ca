"""SIP / SIPS / tel URIs: parse, format, RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import dataclasses

import pytest

from w3sipagent.errors import SipParseError
from w3sipagent.sip import AbsoluteUri, SipUri, TelUri, parse_any_uri, parse_uri
from w3sipagent.sip.uri import parse_hostport


def sip(text: str) -> SipUri:
    u = parse_uri(text)
    assert isinstance(u, SipUri)
    return u


def test_full_sip_uri() -> None:
    u = sip(
        "sips:alice:secret@Atlanta.Example.com:5061;transport=TCP;lr?subject=project%20x&priority=urgent"
    )
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sips", "alice", "secret", "Atlanta.Example.com", 5061,
    )  # fmt: skip
    assert u.params == {"transport": "TCP", "lr": None}
    assert u.transport == "tcp"
    assert u.headers == {"subject": "project x", "priority": "urgent"}
    assert (
        str(u)
        == "sips:alice:secret@Atlanta.Example.com:5061;transport=TCP;lr?subject=project%20x&priority=urgent"
    )
    assert SipUri.parse(str(u)) == u


def test_host_only_and_ipv4() -> None:
    u = sip("sip:192.0.2.4")
    assert (u.user, u.host, u.port, u.params) == (None, "192.0.2.4", None, {})
    assert str(u) == "sip:192.0.2.4"
    assert sip("SIP:host").scheme == "sip"


def test_ipv6() -> None:
    u = sip("sip:[2001:db8::1]:5070;maddr=[2001:db8::2]")
    assert (u.host, u.hostname, u.port) == ("[2001:db8::1]", "2001:db8::1", 5070)
    assert u.params["maddr"] == "[2001:db8::2]"
    assert str(u) == "sip:[2001:db8::1]:5070;maddr=[2001:db8::2]"
    assert parse_hostport(" [::1] : 80 ") == ("[::1]", 80)


@pytest.mark.parametrize(
    "text",
    [
        "sip:[2001:db8::1",
        "sip:[2001:db8::1]x",
        "sip:[zz::1]",
        "sip:host:99999",
        "sip:host:abc",
        "sip:host:",
        "sip:@host",
        "sip:",
        "sip:a b@host",
        "sip:<host>",
        "sip:user@ho$t",
        "sip:host;;lr",
        "sip:host?noval",
        "sip:us%4ger@host",
        "sip:user@host;p=%zz",
        "nocolon",
        "1sip:host",
        "tel:",
        "tel:+1 555",
        "tel:abc@x",
    ],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(SipParseError) as ei:
        parse_uri(text)
    assert ei.value.status == 400


def test_other_schemes_416_or_opaque() -> None:
    with pytest.raises(SipParseError) as ei:
        parse_uri("mailto:a@b")
    assert ei.value.status == 416
    with pytest.raises(SipParseError) as ei:
        SipUri.parse("tel:+1555")
    assert ei.value.status == 416
    a = parse_any_uri("urn:uuid:f81d4fae")
    assert a == AbsoluteUri("urn", "urn:uuid:f81d4fae")
    assert str(a) == "urn:uuid:f81d4fae"
    assert a.equivalent(AbsoluteUri("URN", "URN:uuid:f81d4fae"))
    assert not a.equivalent(AbsoluteUri("urn", "urn:uuid:other"))


def test_escaping_decoded_and_reencoded() -> None:
    u = sip("sip:%61lice;x=%31@h;%6C%72;n%61me=v%61lue%25%34%31?h%61=v%20w")
    assert u.user == "alice;x=1"
    assert u.params == {"lr": None, "name": "value%41"}
    assert u.headers == {"ha": "v w"}
    text = str(u)
    assert text == "sip:alice;x=1@h;lr;name=value%2541?ha=v%20w"
    assert sip(text) == u
    # Non-ASCII and NUL survive a round trip.
    v = SipUri(user="\x00é", host="h", password="p@ss:w")
    assert str(v) == "sip:%00%C3%A9:p%40ss%3Aw@h"
    assert sip(str(v)) == v


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
         "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
         "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ],
)  # fmt: skip
def test_equivalent_rfc3261_examples(a: str, b: str) -> None:
    assert sip(a).equivalent(sip(b))
    assert sip(b).equivalent(sip(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:carol@chicago.com;lr", "sip:carol@chicago.com;lr=1"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:a:pw@h", "sip:a@h"),
    ],
)
def test_not_equivalent_rfc3261_examples(a: str, b: str) -> None:
    assert not sip(a).equivalent(sip(b))
    assert not sip(b).equivalent(sip(a))


def test_equivalent_other_types() -> None:
    assert not sip("sip:a@b").equivalent("sip:a@b")
    assert not sip("sip:a@b").equivalent(TelUri("+1"))


def test_tel_uri() -> None:
    t = parse_uri("tel:+1-201-555-0123;phone-context=example.com;ext=12")
    assert isinstance(t, TelUri)
    assert t.number == "+1-201-555-0123" and t.is_global
    assert t.params == {"phone-context": "example.com", "ext": "12"}
    assert str(t) == "tel:+1-201-555-0123;phone-context=example.com;ext=12"
    assert parse_uri(str(t)) == t
    assert t.equivalent(parse_uri("tel:+1.201.555.0123;EXT=12;phone-context=EXAMPLE.com"))
    assert not t.equivalent(parse_uri("tel:+12015550124;phone-context=example.com;ext=12"))
    assert not t.equivalent(sip("sip:x@y"))
    local = parse_uri("tel:7042;phone-context=*isdn;flag")
    assert isinstance(local, TelUri) and not local.is_global
    assert str(local) == "tel:7042;phone-context=*isdn;flag"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # RFC 3261 §19.1.4: reserved characters are NOT equivalent to their escapes.
        ("sip:alice%3Bday%3Dtuesday@atlanta.com", "sip:alice;day=tuesday@atlanta.com"),
        ("sip:user%3Fx@h", "sip:user?x@h"),
        ("sip:a:p%26w@h", "sip:a:p&w@h"),
        ("sip:h;x=a%2Fb", "sip:h;x=a/b"),
        ("sip:h?to=sip:bob%40b", "sip:h?to=sip:bob@b"),
        # '%' itself: one level of unescaping only.
        ("sip:a%25@h", "sip:a%2525@h"),
        ("sip:a%253B@h", "sip:a%3B@h"),
    ],
)
def test_escaped_reserved_characters_are_not_equivalent(a: str, b: str) -> None:
    assert not sip(a).equivalent(sip(b))
    assert not sip(b).equivalent(sip(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:alice%3bday@h", "sip:alice%3Bday@h"),  # hex digits compare case-insensitively
        ("sip:%61%6c%69ce@h", "sip:alice@h"),  # unreserved escapes equal the characters
        ("sip:h;maddr=%31.2.3.4", "sip:h;maddr=1.2.3.4"),
        ("sip:%C3%A9@h", "sip:%c3%a9@h"),
        ("sip:u@[2001:db8::1]", "sip:u@[2001:DB8:0::1]"),  # IPv6 compares as an address
    ],
)
def test_escaped_unreserved_characters_are_equivalent(a: str, b: str) -> None:
    assert sip(a).equivalent(sip(b))
    assert sip(b).equivalent(sip(a))


def test_equivalence_of_built_and_edited_uris() -> None:
    # A URI built from decoded values compares as if its reserved characters were plain.
    assert SipUri(user="alice;day", host="h").equivalent(sip("sip:alice;day@h"))
    assert not SipUri(user="alice;day", host="h").equivalent(sip("sip:alice%3Bday@h"))
    assert SipUri(user="é", host="h").equivalent(sip("sip:%C3%A9@h"))
    # The raw forms are not part of ==, and an edited field no longer uses its old raw form.
    escaped = sip("sip:alice%3Bday@h")
    assert escaped == sip("sip:alice;day@h")
    edited = dataclasses.replace(escaped, user="bob")
    assert edited.equivalent(sip("sip:bob@h"))
    assert dataclasses.replace(escaped).equivalent(escaped)


def test_host_comparison_edge_cases() -> None:
    # Built URIs are not validated: malformed IPv6 references compare as different, not crash.
    assert not SipUri(host="[zz]").equivalent(SipUri(host="[yy]"))
    assert not SipUri(host="[::1]").equivalent(SipUri(host="localhost"))
    assert SipUri(host="[::1]").equivalent(SipUri(host="[0::1]"))
