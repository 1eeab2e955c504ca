"""message/sipfrag parsing (RFC 3420) as REFER NOTIFY bodies carry it, incl. FreeSWITCH's forms."""

from __future__ import annotations

import pytest

from w3sipagent.errors import SipParseError
from w3sipagent.sip.sipfrag import (
    MAX_SIPFRAG_SIZE,
    SipFragError,
    parse_sipfrag,
    status_sipfrag,
)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"SIP/2.0 100 Trying\r\n", 100, "Trying"),
        (b"SIP/2.0 180 Ringing\r\n", 180, "Ringing"),
        (b"SIP/2.0 200 OK\r\n", 200, "OK"),
        (b"SIP/2.0 200 OK", 200, "OK"),  # no final CRLF
        (b"SIP/2.0 486 486\r\n", 486, "486"),  # FreeSWITCH confirm-blind-transfer
        (b"SIP/2.0 403 Forbidden\r\n", 403, "Forbidden"),
        (b"SIP/2.0 503\r\n", 503, ""),  # no reason phrase
        (b"sip/2.0 603 Decline\n", 603, "Decline"),  # lower-case version, bare LF
        (b"SIP/2.0 487 Request Terminated\r\n\r\n", 487, "Request Terminated"),
    ],
)
def test_status_lines(body: bytes, status: int, reason: str) -> None:
    frag = parse_sipfrag(body)
    assert frag.status == status
    assert frag.reason == reason
    assert frag.version == "SIP/2.0"
    assert frag.is_final == (status >= 200)
    assert frag.method is None


def test_status_with_headers_and_body() -> None:
    body = (
        b"SIP/2.0 200 OK\r\n"
        b"Contact: <sip:bob@127.0.0.1:5070>\r\n"
        b"Subject: folded\r\n  continued\r\n"
        b"Content-Type: text/plain\r\n\r\nhello"
    )
    frag = parse_sipfrag(body)
    assert frag.status == 200
    assert frag.header("contact") == "<sip:bob@127.0.0.1:5070>"
    assert frag.header("SUBJECT") == "folded continued"
    assert frag.header("Via") is None
    assert frag.body == b"hello"


def test_request_line_fragment() -> None:
    frag = parse_sipfrag(b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n")
    assert frag.status is None
    assert not frag.is_final
    assert frag.method == "INVITE"
    assert frag.uri == "sip:bob@biloxi.example.com"
    assert frag.header("via") == "SIP/2.0/UDP x"


def test_headers_only_fragment() -> None:
    frag = parse_sipfrag(b"From: <sip:a@b>\r\nTo: <sip:c@d>\r\n")
    assert frag.status is None and frag.method is None
    assert [k for k, _ in frag.headers] == ["From", "To"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
        (b"SIP/2.0 OK\r\n", "start line"),
        (b"SIP/2.0 999 Huh\r\n", "start line"),
        (b"SIP/2.0  200 OK\r\n", "start line"),
        (b"hello world\r\n", "start line"),
        (b"SIP/2.0 200 OK\r\nno colon here\r\n", "header line"),
        (b"SIP/2.0 200 OK\r\nBad Name: x\r\n", "header line"),
        (b" continued\r\n", "continuation"),
        (b"SIP/2.0 200 \xff\xfe\r\n", "UTF-8"),
        (b"SIP/2.0 200 OK\r\n" + b"X: " + b"a" * MAX_SIPFRAG_SIZE, "larger"),
    ],
)
def test_malformed(body: bytes, needle: str) -> None:
    with pytest.raises(SipFragError) as ei:
        parse_sipfrag(body)
    assert isinstance(ei.value, SipParseError) and isinstance(ei.value, ValueError)
    assert needle in str(ei.value)


def test_status_sipfrag_round_trip() -> None:
    assert status_sipfrag(180) == b"SIP/2.0 180 Ringing\r\n"
    assert status_sipfrag(486, "486") == b"SIP/2.0 486 486\r\n"
    assert status_sipfrag(299) == b"SIP/2.0 299\r\n"
    for code in (100, 180, 200, 403, 486, 503, 603):
        assert parse_sipfrag(status_sipfrag(code)).status == code
    with pytest.raises(SipFragError):
        status_sipfrag(99)
    with pytest.raises(SipFragError):
        status_sipfrag(200, "OK\r\nX: y")
