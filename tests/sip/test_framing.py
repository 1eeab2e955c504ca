"""Stream framing (TCP/TLS) and datagram parsing."""

from __future__ import annotations

import pytest

from w3sipagent.errors import SipParseError
from w3sipagent.sip import (
    KeepAlive,
    SipMessageError,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_datagram,
)

OPTIONS = (
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n"
    b"From: <sip:c@d>;tag=1\r\nCall-ID: x1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
MESSAGE = (
    b"MESSAGE sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK2\r\nt: <sip:a@b>\r\n"
    b"f: <sip:c@d>;tag=1\r\ni: x2\r\nCSeq: 2 MESSAGE\r\nc: text/plain\r\nl: 11\r\n\r\nhello\r\n\r\nxy"
)


def test_several_messages_in_one_read() -> None:
    f = StreamFramer()
    items = f.feed(OPTIONS + MESSAGE + OPTIONS)
    assert [type(i) for i in items] == [SipRequest, SipRequest, SipRequest]
    msg = items[1]
    assert isinstance(msg, SipRequest) and msg.body == b"hello\r\n\r\nxy"
    assert f.buffered == 0 and not f.failed


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_partial_reads(size: int) -> None:
    data = MESSAGE + OPTIONS
    f = StreamFramer()
    items = []
    for i in range(0, len(data), size):
        items.extend(f.feed(data[i : i + size]))
    assert [i.method for i in items if isinstance(i, SipRequest)] == ["MESSAGE", "OPTIONS"]
    assert len(items) == 2


def test_keepalives() -> None:
    f = StreamFramer()
    items = f.feed(b"\r\n\r\n" + OPTIONS + b"\r\n" + OPTIONS + b"\n")
    assert items[0] == KeepAlive(ping=True)
    assert isinstance(items[1], SipRequest)
    assert items[2] == KeepAlive(ping=False)
    assert isinstance(items[3], SipRequest)
    assert len(items) == 4 and f.buffered == 0
    assert KeepAlive.PONG == b"\r\n"
    # A ping split across reads: wait for its last byte; a lone CR waits too.
    g = StreamFramer()
    assert g.feed(b"\r") == []
    assert g.feed(b"\n\r") == []
    assert g.feed(b"\n") == [KeepAlive(ping=True)]
    assert g.feed(b"\r\n") == [KeepAlive(ping=False)]
    assert g.feed(b"\rOPTIONS") == [] and g.buffered == 7  # stray CR dropped


def test_malformed_message_reported_and_framing_goes_on() -> None:
    bad = OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    f = StreamFramer()
    items = f.feed(bad + OPTIONS)
    assert isinstance(items[0], SipMessageError) and items[0].status == 400
    assert isinstance(items[0].message, SipRequest)
    assert isinstance(items[1], SipRequest)
    assert not f.failed


@pytest.mark.parametrize(
    ("data", "status", "needle"),
    [
        (OPTIONS.replace(b"Content-Length: 0\r\n", b""), 400, "missing Content-Length"),
        (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 0"), 400, "more than one"),
        (
            OPTIONS.replace(b"Content-Length: 0", b"Content-Length: -5"),
            400,
            "malformed Content-Length",
        ),
        (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 99999999"), 513, "too large"),
    ],
)
def test_unrecoverable_framing_errors(data: bytes, status: int, needle: str) -> None:
    f = StreamFramer()
    (err,) = f.feed(data)
    assert isinstance(err, SipParseError) and err.status == status and needle in str(err)
    assert isinstance(err, SipMessageError) and isinstance(err.message, SipRequest)
    assert f.failed and f.buffered == 0
    assert f.feed(OPTIONS) == []  # ignored after failure: close the connection


def test_framing_error_on_response_or_garbage_has_no_message() -> None:
    f = StreamFramer()
    (err,) = f.feed(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h\r\n\r\n")
    assert isinstance(err, SipMessageError) and err.message is None and f.failed
    g = StreamFramer()
    (err2,) = g.feed(b"garbage here\r\n\r\n")
    assert isinstance(err2, SipParseError) and g.failed
    # What was read carries no Via: nothing to answer to.
    partial = getattr(err2, "message", None)
    assert partial is None or "Via" not in partial.headers


def test_header_block_bound() -> None:
    f = StreamFramer(max_message_size=100)
    assert f.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 50) == []
    (err,) = f.feed(b"a" * 60)
    assert isinstance(err, SipParseError) and err.status == 513 and f.failed


def test_parse_datagram() -> None:
    assert parse_datagram(b"\r\n\r\n") == KeepAlive(ping=True)
    assert parse_datagram(b"\r\n") == KeepAlive(ping=False)
    m = parse_datagram(b"\r\n" + OPTIONS)
    assert isinstance(m, SipRequest) and m.call_id == "x1"
    r = parse_datagram(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=2\r\n"
                       b"From: <sip:c@d>;tag=1\r\nCall-ID: x1\r\nCSeq: 1 OPTIONS\r\n\r\n")  # fmt: skip
    assert isinstance(r, SipResponse) and r.body == b""
    with pytest.raises(SipParseError):
        parse_datagram(b"")
    with pytest.raises(SipParseError):
        parse_datagram(b"\x00\x01garbage")
