"""Properties: parse(bytes(parse(x))) == parse(x); mutated input never escapes SipParseError."""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from w3sipagent.errors import SipParseError
from w3sipagent.sip import (
    NameAddr,
    SipMessage,
    SipRequest,
    SipResponse,
    SipUri,
    StreamFramer,
    Via,
    make_response,
    parse_message,
    parse_uri,
)

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
lower_tokens = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=10)
# Any text a str can hold and UTF-8 can carry, except CR/LF (never valid inside a header line).
free_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=20
)
hostnames = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8).filter(
        lambda s: s[0] != "-"
    ),
    min_size=1,
    max_size=3,
).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{ipaddress.IPv6Address(a).compressed}]")
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.none() | st.integers(0, 65535)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.none() | free_text.filter(bool))
    password = draw(st.none() | free_text) if user is not None else None
    params = draw(st.dictionaries(lower_tokens, st.none() | free_text.filter(bool), max_size=3))
    headers = draw(st.dictionaries(free_text.filter(bool), free_text, max_size=2))
    return SipUri(
        draw(st.sampled_from(["sip", "sips"])),
        user,
        password,
        draw(hosts),
        draw(ports),
        params,
        headers,
    )


@given(sip_uris())
@SETTINGS
def test_uri_round_trip(u: SipUri) -> None:
    again = parse_uri(str(u))
    assert again == u
    assert u.equivalent(again)


header_params = st.dictionaries(lower_tokens, st.none() | tokens, max_size=3)
display_names = st.none() | st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"), max_size=12
)


@st.composite
def name_addrs(draw: st.DrawFn) -> NameAddr:
    uri = draw(sip_uris())
    uri.headers = {}
    return NameAddr(uri, draw(display_names), draw(header_params))


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params = draw(header_params)
    params["branch"] = "z9hG4bK" + draw(tokens)
    return Via(draw(st.sampled_from(["UDP", "TCP", "TLS", "WS"])), draw(hosts), draw(ports), params)


EXTRA_NAMES = st.sampled_from(
    [
        "Subject",
        "User-Agent",
        "X-Custom",
        "Allow",
        "Supported",
        "Accept",
        "Date",
        "P-Thing",
        "s",
        "k",
    ]
)


def _spell(name: str, variant: int) -> str:
    return [name, name.lower(), name.upper()][variant % 3]


@st.composite
def raw_messages(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """Wire bytes with random name case, compact forms, folding and whitespace."""
    is_request = draw(st.booleans())
    method = draw(tokens)
    via_list = draw(st.lists(vias(), min_size=1, max_size=3))
    from_, to = draw(name_addrs()), draw(name_addrs())
    call_id = draw(st.text(TOKEN_CHARS + "@:/", min_size=1, max_size=20))
    seq = draw(st.integers(0, 2**31 - 1))
    body = draw(st.binary(max_size=40))
    fields: list[tuple[str, str]] = [("Via", str(v)) for v in via_list]
    fields += [
        ("From", str(from_)),
        ("To", str(to)),
        ("Call-ID", call_id),
        ("CSeq", f"{seq} {method}"),
    ]
    if draw(st.booleans()):
        fields.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    for _ in range(draw(st.integers(0, 4))):
        fields.append((draw(EXTRA_NAMES), draw(free_text).strip()))
    fields = draw(st.permutations(fields))
    compact = {"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Content-Length": "l"}
    lines = []
    for name, value in fields:
        variant = draw(st.integers(0, 3))
        spelled = compact[name] if (variant == 3 and name in compact) else _spell(name, variant)
        sep = draw(st.sampled_from([": ", ":", " : ", ":\t"]))
        if name in ("Subject", "Via") and " " in value and draw(st.booleans()):
            i = value.index(" ")
            value = value[:i] + "\r\n " + value[i + 1 :]
        lines.append(f"{spelled}{sep}{value}")
    lines.append(f"{draw(st.sampled_from(['Content-Length', 'l', 'content-length']))}: {len(body)}")
    if is_request:
        request_uri = draw(sip_uris())
        request_uri.headers = {}  # no URI headers in a Request-URI (a user part may hold "?")
        start = f"{method} {request_uri} SIP/2.0"
    else:
        status = draw(st.integers(100, 699))
        start = f"SIP/2.0 {status} {draw(free_text).strip()}"
    raw = ("\r\n".join([start, *lines]) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body
    top_via = next(v for n, v in fields if n == "Via")
    expect = {"call_id": call_id, "seq": seq, "branch": Via.parse(top_via).branch, "body": body,
              "from_tag": from_.tag, "to": to}  # fmt: skip
    return raw, expect


@given(raw_messages())
@settings(SETTINGS, max_examples=150)
def test_generated_messages_round_trip(sample: tuple[bytes, dict[str, object]]) -> None:
    raw, expect = sample
    m = parse_message(raw)
    assert m.call_id == expect["call_id"]
    assert m.cseq.seq == expect["seq"]
    assert m.via.branch == expect["branch"]
    assert m.body == expect["body"]
    assert m.from_.tag == expect["from_tag"]
    assert m.to == expect["to"]
    again = parse_message(bytes(m))
    assert again == m
    assert bytes(again) == bytes(m)
    if isinstance(m, SipRequest):
        resp = make_response(m, 200, to_tag="t")
        back = parse_message(bytes(resp))
        assert isinstance(back, SipResponse) and back.call_id == m.call_id
        assert back.vias == m.vias


@functools.cache
def _corpus(root: str) -> tuple[bytes, ...]:
    base = Path(root)
    files = sorted((base / "rfc4475").glob("*.dat")) + sorted((base / "freeswitch").glob("*.sip"))
    files += sorted((base / "rfc5118").glob("*.dat"))
    return tuple(p.read_bytes() for p in files if p.name != "test.dat")


@functools.cache
def _valid(root: str) -> tuple[bytes, ...]:
    out = []
    for data in _corpus(root):
        try:
            parse_message(data)
        except SipParseError:
            continue
        out.append(data)
    return tuple(out)


@given(st.data())
@SETTINGS
def test_valid_vectors_round_trip(vectors: Path, data: st.DataObject) -> None:
    raw = data.draw(st.sampled_from(_valid(str(vectors))))
    m = parse_message(raw)
    assert parse_message(bytes(m)) == m


def _touch_everything(m: SipMessage) -> None:
    """Every typed view either works or raises SipParseError; serialization works."""
    names = ["vias", "via", "call_id", "cseq", "from_", "to", "max_forwards", "content_type",
             "content_length", "contact", "record_route", "route", "require", "supported", "allow",
             "event", "subscription_state", "session_expires", "refer_to"]  # fmt: skip
    if isinstance(m, SipRequest):
        names.append("request_uri")
    for name in names:
        try:
            getattr(m, name)
        except SipParseError:
            pass
    out = bytes(m)
    assert isinstance(out, bytes)


@st.composite
def mutations(draw: st.DrawFn, corpus: tuple[bytes, ...]) -> bytes:
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [
                        b"\r\n",
                        b"\r\n\r\n",
                        b" ",
                        b":",
                        b";",
                        b",",
                        b"<",
                        b">",
                        b'"',
                        b"\x00",
                        b"%",
                        b"[",
                    ]
                )
                | st.binary(min_size=1, max_size=8)
            )
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            end = data.find(b"\r\n", pos)
            if end > 0:
                data[end:end] = data[pos:end] + b"\r\n"
    return bytes(data)


@given(st.data())
@SETTINGS
def test_mutated_vectors_only_raise_parse_errors(vectors: Path, data: st.DataObject) -> None:
    raw = data.draw(mutations(_corpus(str(vectors))))
    try:
        m = parse_message(raw)
    except SipParseError as e:
        partial = getattr(e, "message", None)
        if partial is not None:
            _touch_everything(partial)
            if "Via" in partial.headers and isinstance(partial, SipRequest):
                bytes(make_response(partial, e.status, to_tag="x"))
    else:
        _touch_everything(m)
    f = StreamFramer()
    for item in f.feed(raw) + f.feed(b"\r\n\r\n"):
        if isinstance(item, SipMessage):
            _touch_everything(item)
