"""Offers and DTMF a user agent receives in one of its dialogs (:class:`DialogRequests`):
re-INVITE / UPDATE (a new offer: hold, re-targeting, codec change; or a session refresh;
491 on glare) and INFO with DTMF (application/dtmf-relay, application/dtmf).
:mod:`.dispatch` routes them here.
"""

from __future__ import annotations

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import DtmfReceived
from w3sipagent.asyncio.calltable import CallTable
from w3sipagent.asyncio.mediasetup import (
    NO_AUDIO,
    MediaSetup,
    sdp_address,
    sdp_refusal,
)
from w3sipagent.asyncio.requestcheck import (
    ACCEPT,
    ALLOW,
    SUPPORTED_EXTENSIONS,
)
from w3sipagent.asyncio.runtime import Runtime
from w3sipagent.asyncio.sessiontimer import (
    SessionTimers,
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


class DialogRequests:
    """Answers re-INVITE / UPDATE and INFO in the dialogs of a user agent's calls."""

    def __init__(
        self, runtime: Runtime, table: CallTable, media: MediaSetup, timers: SessionTimers
    ) -> None:
        self._rt = runtime
        self._table = table
        self._media = media
        self._timers = timers

    def info_dtmf(self, call: Call | None, ev: RequestReceived) -> None:
        """INFO: application/dtmf-relay or application/dtmf to a DtmfReceived event."""
        request = ev.request
        if not request.body:
            self._rt.respond(ev.transaction, 200)
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
            self._rt.respond(ev.transaction, 415, headers=[("Accept", ACCEPT)])
            return
        if digit is None or digit.upper() not in "0123456789*#ABCD":
            self._rt.respond(ev.transaction, 400, "Bad DTMF signal")
            return
        self._rt.respond(ev.transaction, 200)
        if call is not None:
            call.emit(DtmfReceived(digit.upper(), duration, "info"))

    def modify_session(self, call: Call, ev: RequestReceived) -> None:
        """re-INVITE / UPDATE: new offer (hold, re-target, codec) or session refresh."""
        request = ev.request
        c = self._rt.config
        is_invite = request.method == "INVITE"
        if refuse_session_expires(c, ev, self._rt.respond):
            return
        clash = glare(request, offer_pending=call.reinvite_pending)
        if clash is not None:  # 491: our own offer is outstanding
            self._rt.respond(ev.transaction, clash.status, clash.reason)
            return
        headers = [
            ("Contact", f"<{self._rt.contact(transport=call.transport)}>"),
            ("Allow", ALLOW),
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
                self._rt.respond(ev.transaction, 400, f"Malformed SDP: {exc}"[:120])
                return
            current = call.media
            prefs = [
                f"{current.encoding}/{current.clock_rate}"
                + (f"/{current.channels}" if current.channels != 1 else ""),
                *(call.codecs or c.codecs),
            ]
            audio_index = next(
                (i for i, m in enumerate(offer.media) if m.media == "audio" and m.port != 0), None
            )

            def port_for(index: int, _m: object) -> int | None:
                return ep.local_port if index == audio_index else None

            result = negotiate_answer(
                offer,
                local_address=sdp_address(self._rt.advertised_host),
                ports=port_for,
                codec_preference=list(dict.fromkeys(prefs)),
                session_id=previous.origin.sess_id if previous else self._rt.next_session_id(),
                session_version=previous.origin.sess_version if previous else 1,
                telephone_event=c.telephone_event,
                ptime=c.ptime,
                rtcp_mux=ep.rtcp_mux,
            )
            stream = result.audio
            refusal = sdp_refusal(result, c.user_agent)
            if refusal is not None or stream is None:
                reason, warning = refusal or (None, NO_AUDIO)
                self._rt.respond(ev.transaction, 488, reason, headers=[("Warning", warning)])
                return
            answer = assign_version(result.answer, previous) if previous else result.answer
            call.local_sdp = answer
            call.remote_sdp = offer
            self._media.apply_stream(call, stream)
            body = bytes(answer)
            if is_invite:
                self._table.expect_reinvite_ack(ev.transaction, call, None)
        elif is_invite and previous is not None:
            # offerless re-INVITE: our current SDP is the offer, the answer comes in the ACK
            body = bytes(previous)
            self._table.expect_reinvite_ack(ev.transaction, call, previous)
        headers += session_timer_answer(c, call, request)
        self._rt.respond(
            ev.transaction,
            200,
            headers=headers,
            body=body,
            content_type="application/sdp" if body else None,
        )
        self._timers.arm(call)
