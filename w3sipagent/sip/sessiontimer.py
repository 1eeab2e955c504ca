"""Session-timer policy (RFC 4028), sans-IO: what to answer to a Session-Expires, who
refreshes, when the timer fires and what a refresh looks like.

Nothing here reads a clock: a deadline is computed from the ``now`` the caller passes, and
the caller arms its own timer for it (the asyncio user agent: :mod:`w3sipagent.asyncio.sessiontimer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from w3sipagent.errors import SipParseError
from w3sipagent.sip.message import SipRequest, SipResponse
from w3sipagent.sip.requestcheck import Refusal

__all__ = [
    "EXPIRY_MARGIN",
    "SessionTimerDeadline",
    "SessionTimerState",
    "check_session_expires",
    "deadline",
    "negotiate_uas",
    "refresh_headers",
    "refresh_method",
    "refresh_outcome",
    "state_from_response",
]

EXPIRY_MARGIN = 32.0
"""RFC 4028 §10: without a refresh, the session ends ``min(32, interval/3)`` s before it expires."""


@dataclass(frozen=True, slots=True)
class SessionTimerState:
    """The negotiated timer of a session: its interval (s) and whether we refresh it."""

    interval: int
    we_refresh: bool


@dataclass(frozen=True, slots=True)
class SessionTimerDeadline:
    """When the session timer fires (``at``, on the caller's clock) and what it does then:
    ``refresh`` (send a refresh) or ``expire`` (BYE: the session expired)."""

    at: float
    action: Literal["refresh", "expire"]


def check_session_expires(request: SipRequest, *, enabled: bool, min_se: int) -> Refusal | None:
    """An INVITE / UPDATE whose Session-Expires we cannot take (RFC 4028 §8): 400 when it is
    malformed, 422 with our Min-SE when below it (only while session timers are on)."""
    try:
        se = request.session_expires
    except SipParseError as exc:
        return Refusal(400, exc.reason)
    if se is not None and enabled and se.delta < min_se:
        return Refusal(422, headers=(("Min-SE", str(min_se)),))
    return None


def negotiate_uas(
    request: SipRequest, *, session_expires: int, min_se: int
) -> tuple[SessionTimerState | None, list[tuple[str, str]]]:
    """Our 2xx to a request with session timers on (RFC 4028 §9): the session's timer (None:
    the request asks for none) and the headers to add (Session-Expires, Require: timer).

    The interval is the request's, capped at ``session_expires`` and raised to ``min_se``;
    the refresher is the one asked for when the peer supports ``timer``, else the UAC when
    it supports it, else us (the UAS).
    """
    se = request.session_expires
    if se is None:
        return None, []
    supported = "timer" in [t.lower() for t in (*request.supported, *request.require)]
    delta = max(min(se.delta, session_expires), min_se)
    refresher = se.refresher if supported and se.refresher else ("uac" if supported else "uas")
    headers = [("Session-Expires", f"{delta};refresher={refresher}")]
    if supported:
        headers.append(("Require", "timer"))
    return SessionTimerState(delta, refresher == "uas"), headers


def state_from_response(response: SipResponse) -> SessionTimerState | None:
    """The timer a 2xx to our INVITE / refresh sets (we are the UAC): its Session-Expires,
    refreshed by us unless ``refresher=uas``. None when absent or malformed."""
    try:
        se = response.session_expires
    except SipParseError:
        return None
    if se is None:
        return None
    return SessionTimerState(se.delta, se.refresher != "uas")


def deadline(state: SessionTimerState, now: float) -> SessionTimerDeadline:
    """When the timer of ``state``, armed at ``now``, fires: the refresher refreshes at half
    the interval (RFC 4028 §10); the other side ends the session ``min(32, interval/3)`` s
    before it expires."""
    interval = state.interval
    if state.we_refresh:
        return SessionTimerDeadline(now + interval / 2, "refresh")
    return SessionTimerDeadline(now + interval - min(EXPIRY_MARGIN, interval / 3), "expire")


def refresh_method(peer_allow: str | None) -> Literal["UPDATE", "INVITE"]:
    """A refresh is an UPDATE without body when the peer's Allow names UPDATE, else a
    re-INVITE with our SDP (RFC 4028 §7.4)."""
    allow = [a.strip().upper() for a in (peer_allow or "").split(",")]
    return "UPDATE" if "UPDATE" in allow else "INVITE"


def refresh_headers(interval: int) -> list[tuple[str, str]]:
    """The headers of our refresh: we keep the interval and stay the refresher."""
    return [("Session-Expires", f"{interval};refresher=uac"), ("Supported", "timer")]


def refresh_outcome(response: SipResponse, state: SessionTimerState) -> SessionTimerState | None:
    """The timer after the final response to our refresh: None when the session is over
    (408 / 481, RFC 4028 §10), the 2xx's Session-Expires when it has one, else unchanged."""
    if response.status in (408, 481):
        return None
    if 200 <= response.status < 300:
        return state_from_response(response) or state
    return state
