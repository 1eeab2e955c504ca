"""The event-socket framing and event parsing, on bytes recorded from FreeSWITCH 1.10.12.

``vectors/esl_session.bin``: what FreeSWITCH sent for ``auth``, ``api status``, ``api
nosuchcmd``, ``event plain ...``, ``bgapi status`` (with our Job-UUID), ``filter`` and ``exit``;
``esl_auth_fail.bin``: a wrong password; ``esl_call_events.bin``: an ``originate`` and its
CHANNEL_* events. Recorded with a raw socket against the packaged FreeSWITCH (loopback).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from w3sipagent.freeswitch.esl import EslError, EslMessage, EslParser, parse_event

VECTORS = Path(__file__).parent / "vectors"


def messages(name: str) -> list[EslMessage]:
    return EslParser().feed((VECTORS / name).read_bytes())


def test_session_framing() -> None:
    msgs = messages("esl_session.bin")
    assert [m.content_type for m in msgs] == [
        "auth/request",
        "command/reply",  # auth
        "api/response",  # status
        "api/response",  # nosuchcmd
        "command/reply",  # event plain
        "command/reply",  # bgapi
        "text/event-plain",  # its BACKGROUND_JOB
        "command/reply",  # filter
        "command/reply",  # exit
        "text/disconnect-notice",
    ]
    assert msgs[1].reply_text == "+OK accepted"
    assert "is ready" in msgs[2].body and len(msgs[2].body.encode()) == 370
    assert msgs[3].body == "-ERR nosuchcmd Command not found!\n"
    assert msgs[5].reply_text == "+OK Job-UUID: 11111111-2222-3333-4444-555555555555"
    job = parse_event(msgs[6].body)
    assert job.name == "BACKGROUND_JOB"
    assert job.get("Job-UUID") == "11111111-2222-3333-4444-555555555555"
    assert job.get("Job-Command") == "status"
    assert job.body.startswith("UP 0 years") and len(job.body.encode()) == 371
    # URL-encoded header values are decoded
    assert job.get("FreeSWITCH-IPv6") == "fd00::2"
    assert job.get("Event-Date-GMT") == "Mon, 07 Dec 2026 17:03:19 GMT"
    assert msgs[9].body.startswith("Disconnected, goodbye.")


def test_auth_failure() -> None:
    msgs = messages("esl_auth_fail.bin")
    assert msgs[1].reply_text == "-ERR invalid"
    assert msgs[2].content_type == "text/disconnect-notice"


def test_call_events() -> None:
    msgs = messages("esl_call_events.bin")
    events = [parse_event(m.body) for m in msgs if m.content_type == "text/event-plain"]
    names = [(e.name, e.get("Channel-Name")) for e in events]
    assert ("CHANNEL_CREATE", "loopback/9197-a") in names
    assert ("CHANNEL_HANGUP_COMPLETE", "loopback/9197-a") in names
    a = next(e for e in events if e.get("Channel-Name") == "loopback/9197-a")
    assert a.uuid == "aaaaaaaa-0000-4000-8000-000000000001"
    assert a.get("Caller-Context") == "public"
    assert a.get("Caller-Callee-ID-Name") == "Outbound Call"
    api = [m for m in msgs if m.content_type == "api/response"]
    assert api[0].body == "+OK aaaaaaaa-0000-4000-8000-000000000001\n"


@given(st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=60))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    data = (VECTORS / "esl_call_events.bin").read_bytes()
    whole = EslParser().feed(data)
    parser, got, i, k = EslParser(), [], 0, 0
    while i < len(data):
        n = cuts[k % len(cuts)]
        got += parser.feed(data[i : i + n])
        i, k = i + n, k + 1
    assert got == whole


def test_bad_content_length() -> None:
    with pytest.raises(EslError, match="Content-Length"):
        EslParser().feed(b"Content-Type: api/response\nContent-Length: x\n\n")


def test_header_block_bound() -> None:
    with pytest.raises(EslError, match="too long"):
        EslParser().feed(b"X-A: " + b"a" * 70000)
