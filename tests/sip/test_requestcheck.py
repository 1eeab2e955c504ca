"""The generic request checks of RFC 3261 §8.2, sans-IO: codes, merged requests on a fake
clock, glare, Accept."""

from __future__ import annotations

import pytest

from tests.sip.helpers import FakeClock
from w3sipagent.sip.message import SipRequest, parse_message
from w3sipagent.sip.requestcheck import (
    ALLOW,
    MergedRequests,
    Refusal,
    accepts_sdp,
    check_request,
    glare,
)

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def _request(
    method: str = "OPTIONS",
    *headers: str,
    branch: str = "z9hG4bKrc",
    call_id: str = "rc",
    uri: str = "sip:a@127.0.0.1",
    to_tag: str | None = None,
    body: bytes = b"",
) -> SipRequest:
    extra = "".join(f"{h}\r\n" for h in headers)
    to = "<sip:a@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    msg = parse_message(
        (
            f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
            f"From: <sip:p@127.0.0.1>;tag=same\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 7 {method}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    assert isinstance(msg, SipRequest)
    return msg


def _check(request: SipRequest, *, in_dialog: bool = False) -> Refusal | None:
    return check_request(request, in_dialog=in_dialog, merges=MergedRequests(32.0), now=0.0)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (_request("OPTIONS"), None),
        (_request("INVITE", "Content-Type: application/sdp", body=SDP), None),
        (_request("REGISTER"), Refusal(405, None, (("Allow", ALLOW),))),
        (_request("PRACK"), Refusal(405, None, (("Allow", ALLOW),))),
        (_request("FOO"), Refusal(501, None, (("Allow", ALLOW),))),
        (_request("OPTIONS", "Require: timer"), None),
        (
            _request("OPTIONS", "Require: foo, TIMER, bar"),
            Refusal(420, None, (("Unsupported", "foo, bar"),)),
        ),
        (
            _request("INFO", "Content-Encoding: gzip", "Content-Type: text/plain", body=b"x"),
            Refusal(415, "Unsupported Content-Encoding", (("Accept-Encoding", "identity"),)),
        ),
        (
            _request("INFO", "Content-Encoding: identity", "Content-Type: text/plain", body=b"x"),
            None,
        ),
        (
            _request("INVITE", "Content-Type: text/plain", body=b"hello"),
            Refusal(415, None, (("Accept", "application/sdp"),)),
        ),
        (
            _request("UPDATE", "Content-Type: text/plain", body=b"hello"),
            Refusal(415, None, (("Accept", "application/sdp"),)),
        ),
        (
            _request("INVITE", "Accept: text/plain"),
            Refusal(406, None, (("Accept", "application/sdp"),)),
        ),
        (_request("OPTIONS", "Accept: text/plain"), None),  # only offers answer with SDP
    ],
    ids=lambda v: v.method if isinstance(v, SipRequest) else str(v),
)
def test_check_request_codes(request_: SipRequest, expected: Refusal | None) -> None:
    assert _check(request_) == expected


# The parser refuses these messages already (the core answers 400 itself); a request built
# in code can still carry them.


def test_malformed_require_gets_400() -> None:
    request = _request("OPTIONS")
    request.headers.add("Require", "a b")
    refusal = _check(request)
    assert refusal is not None and refusal.status == 400


def test_malformed_supported_gets_400() -> None:
    """Found by the fuzzer (tests/netns/test_fuzz_netns.py): a malformed Supported reached
    the session-timer answer, whose parse error became a traceback and a 500."""
    request = _request("INVITE", body=SDP)
    request.headers.add("Content-Type", "application/sdp")
    request.headers.add("Supported", "timer, 100rel\x00")
    refusal = _check(request)
    assert refusal is not None and refusal.status == 400


def test_malformed_content_type_of_an_offer_gets_400() -> None:
    request = _request("INVITE", body=SDP)
    request.headers.add("Content-Type", ";;")
    refusal = _check(request)
    assert refusal is not None and refusal.status == 400


def test_bad_request_uri_gets_its_parse_status() -> None:
    refusal = _check(_request("OPTIONS", uri="sip:a@[::1"))
    assert refusal is not None and refusal.status in (400, 416)


def test_unknown_uri_scheme_gets_416() -> None:
    refusal = _check(_request("OPTIONS", uri="unknown:a@127.0.0.1"))
    assert refusal is not None and refusal.status == 416


def test_method_is_checked_before_the_rest() -> None:
    refusal = _check(_request("MESSAGE", "Require: foo"))
    assert refusal is not None and refusal.status == 405


# -- merged requests (RFC 3261 §8.2.2.2) on a fake clock ---------------------------------------


def test_same_request_on_another_branch_is_merged() -> None:
    clock = FakeClock(100.0)
    merges = MergedRequests(32.0)
    first = _request(branch="z9hG4bKpath1")
    other = _request(branch="z9hG4bKpath2")
    assert check_request(first, in_dialog=False, merges=merges, now=clock.now) is None
    # the same branch again (a retransmission the core let through) is not a merge
    assert check_request(first, in_dialog=False, merges=merges, now=clock.advance(1)) is None
    refusal = check_request(other, in_dialog=False, merges=merges, now=clock.advance(1))
    assert refusal == Refusal(482, "Loop Detected (merged request)")


def test_no_merge_check_in_a_dialog_or_with_a_to_tag() -> None:
    merges = MergedRequests(32.0)
    assert check_request(_request(branch="z9hG4bKa"), in_dialog=False, merges=merges, now=0) is None
    again = _request(branch="z9hG4bKb")
    assert check_request(again, in_dialog=True, merges=merges, now=0) is None
    tagged = _request(branch="z9hG4bKc", to_tag="t")
    assert check_request(tagged, in_dialog=False, merges=merges, now=0) is None
    assert check_request(again, in_dialog=False, merges=merges, now=0) is not None


def test_merge_window_expires_and_prunes() -> None:
    clock = FakeClock()
    merges = MergedRequests(0.05)
    assert not merges.merged(_request(branch="z9hG4bKw1"), "z9hG4bKw1", clock.now)
    assert merges.merged(_request(branch="z9hG4bKw2"), "z9hG4bKw2", clock.advance(0.01))
    for n in range(50):
        fill = _request(branch=f"z9hG4bKfill{n}", call_id=f"fill-{n}")
        assert not merges.merged(fill, f"z9hG4bKfill{n}", clock.now)
    assert len(merges) == 51
    clock.advance(0.05)  # past the window of every entry: not a merge any more
    assert not merges.merged(_request(branch="z9hG4bKw3"), "z9hG4bKw3", clock.now)
    assert len(merges) == 1  # the expired entries were pruned


def test_merge_window_is_per_entry() -> None:
    clock = FakeClock()
    merges = MergedRequests(10.0)
    assert not merges.merged(_request(call_id="old"), "z9hG4bK1", clock.now)
    assert not merges.merged(_request(call_id="new"), "z9hG4bK1", clock.advance(6))
    clock.advance(5)  # "old" has expired, "new" has not
    assert not merges.merged(_request(call_id="old"), "z9hG4bK2", clock.now)
    assert merges.merged(_request(call_id="new"), "z9hG4bK2", clock.now)


# -- glare (RFC 3261 §14.2, RFC 3311 §5.2) ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body", "pending", "status"),
    [
        ("INVITE", b"", True, 491),
        ("INVITE", SDP, True, 491),
        ("UPDATE", SDP, True, 491),
        ("UPDATE", b"", True, None),  # a session refresh without offer: no glare
        ("INVITE", SDP, False, None),
        ("UPDATE", SDP, False, None),
    ],
)
def test_glare(method: str, body: bytes, pending: bool, status: int | None) -> None:
    headers = ("Content-Type: application/sdp",) if body else ()
    refusal = glare(_request(method, *headers, body=body), offer_pending=pending)
    assert (refusal.status if refusal else None) == status


# -- Accept (RFC 3261 §20.1) ----------------------------------------------------------------


def test_accepts_sdp_rules() -> None:
    """An INVITE whose Accept excludes application/sdp gets 406; absent Accept means SDP."""
    assert accepts_sdp([])
    assert accepts_sdp(["application/sdp"])
    assert accepts_sdp(["text/plain", "application/*"])
    assert accepts_sdp(["*/*;q=0.5"])
    assert not accepts_sdp(["text/nobodyknowsthis"])
    assert not accepts_sdp(["application/sdp;q=0"])
    assert not accepts_sdp(["application/sdp;q=x"])
