"""JSON logs with secrets masked; SIP trace lines with credentials redacted."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from w3sipagent.logs import (
    JsonFormatter,
    SipTrace,
    clean_text,
    redact_sip,
    setup_logging,
    sip_summary,
)
from w3sipagent.redact import Redactor
from w3sipagent.sip.message import parse_message

INVITE = (
    "INVITE sip:support@acme.example SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
    "From: <sip:alice@example.com>;tag=1\r\n"
    "To: <sip:support@acme.example>\r\n"
    "Call-ID: abc123@host\r\n"
    "CSeq: 2 INVITE\r\n"
    'Proxy-Authorization: Digest username="alice", realm="acme", nonce="n1", '
    'uri="sip:support@acme.example", response="6629fae49393a05397450978507c4ef1", '
    'cnonce="0a4f113b", nc=00000001, qop=auth\r\n'
    "Authorization: Bearer sk-very-secret-token\r\n"
    "X-Api-Key: key-4242\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 80\r\n"
    "\r\n"
    "v=0\r\nm=audio 4000 RTP/SAVP 0\r\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n"
)


def test_redact_sip_masks_credentials_only() -> None:
    r = Redactor()
    r.add("acme-sip-password-1")
    out = redact_sip(INVITE.replace("alice@example.com", "acme-sip-password-1@x"), r)
    assert "6629fae49393a05397450978507c4ef1" not in out
    assert "0a4f113b" not in out
    assert 'response="***"' in out and 'cnonce="***"' in out
    assert 'username="alice"' in out and 'realm="acme"' in out  # useful, not secret
    assert "sk-very-secret-token" not in out and "Authorization: Bearer ***" in out
    assert "key-4242" not in out and "X-Api-Key: ***" in out
    assert "inline:***" in out and "PS1uQCVe" not in out
    assert "acme-sip-password-1" not in out
    assert out.startswith("INVITE sip:support@acme.example SIP/2.0\r\n")
    assert "Call-ID: abc123@host\r\n" in out
    assert out.endswith("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:***\r\n")


def test_redact_sip_folded_and_binary() -> None:
    folded = 'REGISTER sip:x SIP/2.0\r\nAuthorization: Digest username="a",\r\n response="deadbeef"\r\nCSeq: 1 REGISTER\r\n\r\n'
    out = redact_sip(folded)
    assert "deadbeef" not in out and "CSeq: 1 REGISTER" in out
    assert redact_sip(b"\xff\xfe garbage") == "\ufffd\ufffd garbage"


def test_summary() -> None:
    assert sip_summary(INVITE) == {"method": "INVITE", "call_id": "abc123@host", "cseq": "2 INVITE"}
    resp = "SIP/2.0 486 Busy Here\r\ni: compact@id\r\nCSeq: 1 INVITE\r\n\r\n"
    assert sip_summary(resp) == {"status": 486, "call_id": "compact@id", "cseq": "1 INVITE"}


def test_trace_single_file(tmp_path: Path) -> None:
    trace = SipTrace(tmp_path / "t" / "sip.jsonl", redactor=Redactor())
    trace.record("in", INVITE.encode(), ("127.0.0.1", 5060), "udp", when=0.0)
    trace.record(
        "out",
        b"SIP/2.0 100 Trying\r\nCall-ID: abc123@host\r\nCSeq: 2 INVITE\r\n\r\n",
        ("127.0.0.1", 5060),
    )
    trace.close()
    lines = [json.loads(x) for x in (tmp_path / "t" / "sip.jsonl").read_text().splitlines()]
    assert [ln["dir"] for ln in lines] == ["in", "out"]
    assert lines[0]["ts"] == "1970-01-01T00:00:00.000000+00:00"
    assert lines[0]["transport"] == "UDP" and lines[0]["peer"] == "127.0.0.1:5060"
    assert lines[0]["method"] == "INVITE" and lines[1]["status"] == 100
    assert "6629fae4" not in lines[0]["message"]


def test_trace_per_call(tmp_path: Path) -> None:
    trace = SipTrace(tmp_path / "calls", per_call=True, redactor=Redactor())
    trace.record("in", INVITE, ("127.0.0.1", 5060))
    trace.record("in", INVITE.replace("abc123@host", "../other/../id"), ("127.0.0.1", 5060))
    trace.close()
    names = sorted(p.name for p in (tmp_path / "calls").iterdir())
    assert names == [".._other_.._id.jsonl", "abc123@host.jsonl"]


def test_json_formatter_masks_and_keeps_extra() -> None:
    r = Redactor()
    r.add("sk-live-abcdef123")
    rec = logging.LogRecord(
        "w3sipagent.agent", logging.INFO, __file__, 1, "key %s used", ("sk-live-abcdef123",), None
    )
    rec.call_id = "c-1"
    rec.tenant = "acme"
    line = json.loads(JsonFormatter(r).format(rec))
    assert line["msg"] == "key *** used"
    assert line["call_id"] == "c-1" and line["tenant"] == "acme"
    assert line["level"] == "INFO" and line["logger"] == "w3sipagent.agent"


def test_setup_logging_json_when_not_a_terminal() -> None:
    buf = io.StringIO()
    handler = setup_logging("DEBUG", None, stream=buf)
    try:
        logging.getLogger("w3sipagent.test").warning("hello %d", 7, extra={"call_id": "x"})
        line = json.loads(buf.getvalue().splitlines()[-1])
        assert line["msg"] == "hello 7" and line["call_id"] == "x"
        setup_logging("INFO", False, stream=buf)  # replaces, not adds
        names = [h.get_name() for h in logging.getLogger().handlers]
        assert names.count("w3sipagent") == 1
    finally:
        logging.getLogger().removeHandler(handler)
        for h in list(logging.getLogger().handlers):
            if h.get_name() == "w3sipagent":
                logging.getLogger().removeHandler(h)


def _no_surrogates(text: str) -> bool:
    return not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def test_a_call_id_with_invalid_utf8_is_logged_as_valid_utf8_and_strict_json() -> None:
    """The parser keeps invalid bytes as lone surrogates (surrogateescape); a log line must
    still be UTF-8 and strict JSON (no lone surrogate, not even escaped as \\udcff)."""
    raw = INVITE.encode().replace(b"abc123@host", b"ab\xff\xfe\xc3(@host")
    call_id = parse_message(raw).call_id
    assert not _no_surrogates(call_id)  # what the parser hands the logs
    rec = logging.LogRecord(
        "w3sipagent.asyncio.useragent", logging.INFO, __file__, 1, "call %s ended", (call_id,), None
    )
    rec.call_id = call_id
    text = JsonFormatter(Redactor()).format(rec)
    text.encode("utf-8")  # strict: raises on a lone surrogate
    line = json.loads(text, strict=True)
    assert _no_surrogates(line["msg"]) and _no_surrogates(line["call_id"])
    assert line["call_id"] == "ab\ufffd\ufffd\ufffd(@host"
    assert clean_text("plain ✓") == "plain ✓"
    assert clean_text("lone \ud800 high") == "lone \ufffd high"


def test_trace_is_rotated_at_its_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "sip.jsonl"
    trace = SipTrace(path, redactor=Redactor(), max_bytes=4096, files=3)
    for _ in range(40):  # ~600 bytes a line: ~24 KB in all, far over 3 x 4 KB
        trace.record("in", INVITE.encode(), ("127.0.0.1", 5060))
    trace.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["sip.jsonl", "sip.jsonl.1", "sip.jsonl.2"]
    for p in tmp_path.iterdir():
        assert 0 < p.stat().st_size <= 4096
        assert all(json.loads(x)["method"] == "INVITE" for x in p.read_text().splitlines())
    assert trace.rotations >= 5 and trace.lines == 40


def test_trace_reopened_keeps_counting_the_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sip.jsonl"
    path.write_text("x" * 4000 + "\n")
    trace = SipTrace(path, redactor=Redactor(), max_bytes=4096, files=2)
    trace.record("in", INVITE.encode(), ("127.0.0.1", 5060))
    trace.close()
    assert (tmp_path / "sip.jsonl.1").read_text().startswith("xxxx")
    assert json.loads(path.read_text())["method"] == "INVITE"
