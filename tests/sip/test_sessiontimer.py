"""Session-timer policy (RFC 4028), sans-IO: negotiation, refusals, deadlines on a fake clock."""

from __future__ import annotations

import pytest

from tests.sip.helpers import FakeClock
from w3sipagent.sip.message import SipRequest, SipResponse, parse_message
from w3sipagent.sip.sessiontimer import (
    SessionTimerDeadline,
    SessionTimerState,
    check_session_expires,
    deadline,
    negotiate_uas,
    refresh_headers,
    refresh_method,
    refresh_outcome,
    state_from_response,
)


def _invite(*headers: str, method: str = "INVITE") -> SipRequest:
    extra = "".join(f"{h}\r\n" for h in headers)
    msg = parse_message(
        (
            f"{method} sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKst\r\n"
            "From: <sip:p@127.0.0.1>;tag=f\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: st\r\n"
            f"CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, SipRequest)
    return msg


def _response(status: int, *headers: str) -> SipResponse:
    extra = "".join(f"{h}\r\n" for h in headers)
    msg = parse_message(
        (
            f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKst\r\n"
            "From: <sip:p@127.0.0.1>;tag=f\r\nTo: <sip:a@127.0.0.1>;tag=t\r\nCall-ID: st\r\n"
            f"CSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, SipResponse)
    return msg


# -- refusals (RFC 4028 §8) --------------------------------------------------------------------


def test_session_expires_below_min_se_gets_422_with_our_min_se() -> None:
    refusal = check_session_expires(_invite("Session-Expires: 60"), enabled=True, min_se=90)
    assert refusal is not None
    assert (refusal.status, refusal.headers) == (422, (("Min-SE", "90"),))


@pytest.mark.parametrize("value", ["90", "1800;refresher=uac", "91"])
def test_session_expires_at_or_above_min_se_passes(value: str) -> None:
    request = _invite(f"Session-Expires: {value}")
    assert check_session_expires(request, enabled=True, min_se=90) is None


def test_no_session_expires_passes() -> None:
    assert check_session_expires(_invite(), enabled=True, min_se=90) is None


def test_below_min_se_passes_when_session_timers_are_off() -> None:
    assert check_session_expires(_invite("Session-Expires: 5"), enabled=False, min_se=90) is None


@pytest.mark.parametrize("value", ["abc", "90;refresher=proxy"])
@pytest.mark.parametrize("enabled", [True, False])
def test_malformed_session_expires_gets_400(value: str, enabled: bool) -> None:
    refusal = check_session_expires(
        _invite(f"Session-Expires: {value}"), enabled=enabled, min_se=90
    )
    assert refusal is not None and refusal.status == 400 and refusal.reason
    assert "Session-Expires" in refusal.reason


def test_update_is_checked_like_invite() -> None:
    refusal = check_session_expires(
        _invite("Session-Expires: 30", method="UPDATE"), enabled=True, min_se=90
    )
    assert refusal is not None and refusal.status == 422


# -- our 2xx (RFC 4028 §9) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "state", "answer"),
    [
        # no Session-Expires: no timer, nothing added
        ((), None, []),
        # the peer supports timer and names the refresher: it is kept
        (
            ("Session-Expires: 600;refresher=uas", "Supported: timer"),
            SessionTimerState(600, True),
            [("Session-Expires", "600;refresher=uas"), ("Require", "timer")],
        ),
        (
            ("Session-Expires: 600;refresher=uac", "Supported: timer"),
            SessionTimerState(600, False),
            [("Session-Expires", "600;refresher=uac"), ("Require", "timer")],
        ),
        # supports timer, no refresher named: the UAC refreshes
        (
            ("Session-Expires: 600", "Supported: timer"),
            SessionTimerState(600, False),
            [("Session-Expires", "600;refresher=uac"), ("Require", "timer")],
        ),
        # Require: timer counts as support
        (
            ("Session-Expires: 600", "Require: TIMER"),
            SessionTimerState(600, False),
            [("Session-Expires", "600;refresher=uac"), ("Require", "timer")],
        ),
        # no support for timer: we refresh, whatever the refresher asked
        (
            ("Session-Expires: 600;refresher=uac",),
            SessionTimerState(600, True),
            [("Session-Expires", "600;refresher=uas")],
        ),
        # above our Session-Expires: capped
        (
            ("Session-Expires: 7200", "Supported: timer"),
            SessionTimerState(1800, False),
            [("Session-Expires", "1800;refresher=uac"), ("Require", "timer")],
        ),
    ],
)
def test_negotiate_uas(
    headers: tuple[str, ...],
    state: SessionTimerState | None,
    answer: list[tuple[str, str]],
) -> None:
    assert negotiate_uas(_invite(*headers), session_expires=1800, min_se=90) == (state, answer)


def test_negotiate_uas_raises_the_interval_to_min_se() -> None:
    # a Session-Expires below Min-SE is refused first (422); taken anyway, it is raised
    state, headers = negotiate_uas(_invite("Session-Expires: 30"), session_expires=1800, min_se=90)
    assert state == SessionTimerState(90, True)
    assert headers == [("Session-Expires", "90;refresher=uas")]


# -- the 2xx to our INVITE / refresh (we are the UAC) ------------------------------------------


@pytest.mark.parametrize(
    ("header", "state"),
    [
        (None, None),
        ("Session-Expires: 300;refresher=uac", SessionTimerState(300, True)),
        ("Session-Expires: 300", SessionTimerState(300, True)),
        ("Session-Expires: 300;refresher=uas", SessionTimerState(300, False)),
        ("Session-Expires: bogus", None),
    ],
)
def test_state_from_response(header: str | None, state: SessionTimerState | None) -> None:
    headers = (header,) if header else ()
    assert state_from_response(_response(200, *headers)) == state


# -- deadlines on a fake clock (RFC 4028 §10) --------------------------------------------------


def test_refresher_refreshes_at_half_the_interval() -> None:
    clock = FakeClock(1000.0)
    due = deadline(SessionTimerState(1800, we_refresh=True), clock.now)
    assert due == SessionTimerDeadline(1900.0, "refresh")
    assert due.at == clock.advance(900.0)


def test_non_refresher_ends_32_s_before_expiry() -> None:
    clock = FakeClock(50.0)
    due = deadline(SessionTimerState(1800, we_refresh=False), clock.now)
    assert due.action == "expire"
    assert due.at == clock.advance(1800 - 32)


def test_short_interval_ends_a_third_before_expiry() -> None:
    clock = FakeClock()
    due = deadline(SessionTimerState(90, we_refresh=False), clock.now)
    assert (due.action, due.at) == ("expire", 60.0)
    clock.advance(60.0)
    # re-armed after a refresh: the next deadline runs from the new now
    assert deadline(SessionTimerState(90, we_refresh=True), clock.now).at == 105.0


# -- the refresh ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "method"),
    [
        (None, "INVITE"),
        ("INVITE, ACK, BYE", "INVITE"),
        ("INVITE, ACK, update, BYE", "UPDATE"),
        ("UPDATE", "UPDATE"),
        ("UPDATES", "INVITE"),
    ],
)
def test_refresh_method_follows_the_peers_allow(allow: str | None, method: str) -> None:
    assert refresh_method(allow) == method


def test_refresh_headers_keep_the_interval_and_us_as_refresher() -> None:
    assert refresh_headers(300) == [
        ("Session-Expires", "300;refresher=uac"),
        ("Supported", "timer"),
    ]


@pytest.mark.parametrize(
    ("status", "headers", "after"),
    [
        (408, (), None),
        (481, (), None),
        (200, (), SessionTimerState(300, True)),  # no Session-Expires: unchanged
        (200, ("Session-Expires: 120;refresher=uas",), SessionTimerState(120, False)),
        (200, ("Session-Expires: 600;refresher=uac",), SessionTimerState(600, True)),
        (200, ("Session-Expires: x",), SessionTimerState(300, True)),  # malformed: unchanged
        (491, ("Session-Expires: 120",), SessionTimerState(300, True)),  # error: unchanged
        (500, (), SessionTimerState(300, True)),
    ],
)
def test_refresh_outcome(
    status: int, headers: tuple[str, ...], after: SessionTimerState | None
) -> None:
    state = SessionTimerState(300, True)
    assert refresh_outcome(_response(status, *headers), state) == after
