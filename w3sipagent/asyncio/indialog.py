"""Offers and DTMF a user agent receives in one of its dialogs: re-INVITE / UPDATE (a new
offer: hold, re-targeting, codec change; or a session refresh; 491 on glare) and INFO with
DTMF (application/dtmf-relay, application/dtmf). :mod:`.dispatch` routes them here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import DtmfReceived
from w3sipagent.asyncio.mediasetup import (
    _NO_AUDIO,
    _refusal,
    _sdp_address,
    apply_stream,
)
from w3sipagent.asyncio.requestcheck import (
    _ALLOW,
    ACCEPT,
    SUPPORTED_EXTENSIONS,
)
from w3sipagent.asyncio.sessiontimer import (
    refuse_session_expires,
    session_timer_answer,
)
from w3sipagent.errors import (
    SdpError,
)
from w3sipagent.sdp import (
    SessionDescription,
    assign_version,
    negotiate_answer,
)
from w3sipagent.sip.events import (
    RequestReceived,
)
from w3sipagent.sip.requestcheck import glare

if TYPE_CHECKING:
    from w3sipagent.asyncio.useragent import UserAgent


def info_dtmf(ua: UserAgent, call: Call | None, ev: RequestReceived) -> None:
    """INFO: application/dtmf-relay or application/dtmf to a DtmfReceived event."""
    request = ev.request
    if not request.body:
        ua._respond(ev.transaction, 200)
        return
    ctype = request.content_type
    digit: str | None = None
    duration = 0
    if ctype == "application/dtmf-relay":
        for line in request.body.decode("utf-8", "replace").splitlines():
            name, _, value = line.partition("=")
            name = name.strip().lower()
            if name == "signal":
                digit = value.strip()[:1] or None
            elif name == "duration" and value.strip().isdigit():
                duration = int(value.strip())
    elif ctype == "application/dtmf":
        digit = request.body.decode("utf-8", "replace").strip()[:1] or None
    else:
        ua._respond(ev.transaction, 415, headers=[("Accept", ACCEPT)])
        return
    if digit is None or digit.upper() not in "0123456789*#ABCD":
        ua._respond(ev.transaction, 400, "Bad DTMF signal")
        return
    ua._respond(ev.transaction, 200)
    if call is not None:
        call._emit(DtmfReceived(digit.upper(), duration, "info"))


def modify_session(ua: UserAgent, call: Call, ev: RequestReceived) -> None:
    """re-INVITE / UPDATE: new offer (hold, re-target, codec) or session refresh."""
    request = ev.request
    c = ua.config
    is_invite = request.method == "INVITE"
    if refuse_session_expires(c, ev, ua._respond):
        return
    if glare(request, offer_pending=call.reinvite_pending) is not None:
        ua._respond(ev.transaction, 491)  # our own offer is outstanding
        return
    headers = [
        ("Contact", f"<{ua.contact(transport=call.transport)}>"),
        ("Allow", _ALLOW),
        ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
    ]
    ep = call.endpoint
    assert ep is not None
    previous = call.local_sdp if isinstance(call.local_sdp, SessionDescription) else None
    body = b""
    if request.body:
        try:
            offer = SessionDescription.parse(request.body)
        except SdpError as exc:
            ua._respond(ev.transaction, 400, f"Malformed SDP: {exc}"[:120])
            return
        current = call.media
        prefs = [
            f"{current.encoding}/{current.clock_rate}"
            + (f"/{current.channels}" if current.channels != 1 else ""),
            *ua._call_codecs.get(call, c.codecs),
        ]
        audio_index = next(
            (i for i, m in enumerate(offer.media) if m.media == "audio" and m.port != 0), None
        )

        def port_for(index: int, _m: object) -> int | None:
            return ep.local_port if index == audio_index else None

        result = negotiate_answer(
            offer,
            local_address=_sdp_address(ua.advertised_host),
            ports=port_for,
            codec_preference=list(dict.fromkeys(prefs)),
            session_id=previous.origin.sess_id if previous else ua._next_session_id(),
            session_version=previous.origin.sess_version if previous else 1,
            telephone_event=c.telephone_event,
            ptime=c.ptime,
            rtcp_mux=ep.rtcp_mux,
        )
        stream = result.audio
        refusal = _refusal(result, c.user_agent)
        if refusal is not None or stream is None:
            reason, warning = refusal or (None, _NO_AUDIO)
            ua._respond(ev.transaction, 488, reason, headers=[("Warning", warning)])
            return
        answer = assign_version(result.answer, previous) if previous else result.answer
        call.local_sdp = answer
        call.remote_sdp = offer
        apply_stream(ua, call, stream)
        body = bytes(answer)
        if is_invite:
            ua._reinvite_ack[ev.transaction] = (call, None)
    elif is_invite and previous is not None:
        # offerless re-INVITE: our current SDP is the offer, the answer comes in the ACK
        body = bytes(previous)
        ua._reinvite_ack[ev.transaction] = (call, previous)
    headers += session_timer_answer(c, call, request)
    ua._respond(
        ev.transaction,
        200,
        headers=headers,
        body=body,
        content_type="application/sdp" if body else None,
    )
    ua.session_timers.arm(call)
