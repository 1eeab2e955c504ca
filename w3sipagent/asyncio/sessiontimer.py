"""Session timers (RFC 4028) of a user agent's calls: the headers of our 2xx, arming the
timer (refresh at half the interval, or BYE when the session expires) and the refresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from w3sipagent.asyncio.call import Call
from w3sipagent.errors import (
    SipParseError,
    TransactionError,
)
from w3sipagent.sdp import (
    SessionDescription,
)
from w3sipagent.sip.events import RequestReceived
from w3sipagent.sip.message import SipRequest

if TYPE_CHECKING:
    from w3sipagent.asyncio.callservices import CallServices


def refuse_session_expires(ua: CallServices, ev: RequestReceived) -> bool:
    """Answer an INVITE / UPDATE whose Session-Expires we cannot take: 400 when malformed,
    422 with our Min-SE when below it (RFC 4028 §8). True if a response was sent."""
    c = ua.config
    try:
        se = ev.request.session_expires
    except SipParseError as exc:
        ua.respond(ev.transaction, 400, exc.reason)
        return True
    if se is not None and c.session_timers and se.delta < c.min_se:
        ua.respond(ev.transaction, 422, headers=[("Min-SE", str(c.min_se))])
        return True
    return False


def session_timer_answer(
    ua: CallServices, call: Call, request: SipRequest, *, uas: bool
) -> list[tuple[str, str]]:
    """Headers of our 2xx for the Session-Expires of ``request``; sets the call's timer."""
    c = ua.config
    if not c.session_timers:
        return []
    se = request.session_expires
    if se is None:
        call.session_interval = None
        return []
    supported = "timer" in [t.lower() for t in (*request.supported, *request.require)]
    delta = max(min(se.delta, c.session_expires), c.min_se)
    refresher = se.refresher if supported and se.refresher else ("uac" if supported else "uas")
    call.session_interval = delta
    call.we_refresh = refresher == "uas"
    out = [("Session-Expires", f"{delta};refresher={refresher}")]
    if supported:
        out.append(("Require", "timer"))
    return out


def arm_session_timer(ua: CallServices, call: Call) -> None:
    if call.session_timer is not None:
        call.session_timer.cancel()
        call.session_timer = None
    interval = call.session_interval
    if interval is None or call.ended or call.state != "active":
        return
    if call.we_refresh:
        call.session_timer = ua.loop.call_later(
            interval / 2, lambda: ua.spawn(refresh_session(ua, call))
        )
    else:
        expire = interval - min(32.0, interval / 3)
        call.session_timer = ua.loop.call_later(
            expire, lambda: ua.spawn(ua.hang_up(call, "session_expired", "system", 408))
        )


async def refresh_session(ua: CallServices, call: Call) -> None:
    """Refresh the session: UPDATE without body (re-INVITE with our SDP when the peer
    does not allow UPDATE)."""
    if call.ended or call.session_interval is None:
        return
    se = [("Session-Expires", f"{call.session_interval};refresher=uac"), ("Supported", "timer")]
    allow = [a.upper() for a in _peer_allow(call)]
    try:
        if "UPDATE" in allow:
            response = await ua.request_in_dialog(call, "UPDATE", headers=se)
        else:
            body = bytes(call.local_sdp) if isinstance(call.local_sdp, SessionDescription) else b""
            response = await ua.request_in_dialog(
                call,
                "INVITE",
                headers=se,
                body=body,
                content_type="application/sdp" if body else None,
            )
    except TransactionError:
        await ua.hang_up(call, "session_refresh_failed", "system", 408)
        return
    if response.status in (408, 481):
        ua.end(call, "session_refresh_failed", "system", response.status)
        return
    if 200 <= response.status < 300:
        try:
            got = response.session_expires
        except SipParseError:
            got = None
        if got is not None:
            call.session_interval = got.delta
            call.we_refresh = got.refresher != "uas"
    arm_session_timer(ua, call)


def _peer_allow(call: Call) -> list[str]:
    allow = call.info.header("Allow")
    if allow is None:
        return []
    return [a.strip() for a in allow.split(",") if a.strip()]
