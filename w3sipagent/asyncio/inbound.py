"""Inbound calls: an incoming INVITE admitted and answered (Min-SE, draining, capacity,
digest, admission, tenant limit, SDP, RTP ports, 180 / 183 / 200), its ACK (the answer to
an offer we made in the 200, the call handler), a lost ACK and CANCEL; also the ACKs of our
2xx to re-INVITEs.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from w3sipagent.asyncio.admission import (
    Accept,
    AdmissionDecision,
    AdmissionRequest,
    Reject,
)
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import CallInfo
from w3sipagent.asyncio.mediasetup import (
    apply_stream,
    prepare_media,
)
from w3sipagent.asyncio.requestcheck import (
    _ALLOW,
    SUPPORTED_EXTENSIONS,
    _retry_after,
)
from w3sipagent.asyncio.sessiontimer import (
    refuse_session_expires,
    session_timer_answer,
)
from w3sipagent.errors import (
    PortsExhausted,
    SdpError,
)
from w3sipagent.sdp import (
    SessionDescription,
    process_answer,
)
from w3sipagent.sip.auth import AuthStatus
from w3sipagent.sip.events import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    RequestReceived,
    TransactionId,
)
from w3sipagent.sip.message import SipRequest
from w3sipagent.sip.uri import SipUri

if TYPE_CHECKING:
    from w3sipagent.asyncio.useragent import UserAgent

log = logging.getLogger("w3sipagent.asyncio.useragent")  # the records keep the UA's logger

_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization"})


class Incoming:
    """An incoming INVITE being admitted / answered."""

    __slots__ = ("auth_user", "call", "cancelled", "request", "task", "tx")

    def __init__(self, tx: TransactionId, request: SipRequest, auth_user: str | None) -> None:
        self.tx = tx
        self.request = request
        self.auth_user = auth_user
        self.task: asyncio.Task[None] | None = None
        self.call: Call | None = None
        self.cancelled = False


def registration_of(ua: UserAgent, request: SipRequest) -> str | None:
    """The registration a call came through: the id added for its Request-URI user."""
    if not ua._local_contacts:
        return None
    uri = request.request_uri
    user = uri.user if isinstance(uri, SipUri) else None
    return ua._local_contacts.get(user) if user is not None else None


def incoming_invite(ua: UserAgent, ev: RequestReceived) -> None:
    """A new INVITE that passed the request checks: Min-SE (422), draining / capacity
    (503), digest (401/407), then admission and the answer in a task."""
    c = ua.config
    request = ev.request
    ua._stats["invites"] += 1
    # session timer (RFC 4028 §8): 422 below our Min-SE
    if refuse_session_expires(c, ev, ua._respond):
        return
    if ua.draining:
        ua._respond(ev.transaction, 503, "Draining", headers=_retry_after(c))
        return
    if len(ua._calls) >= c.max_calls:
        ua._respond(ev.transaction, 503, "Over capacity", headers=_retry_after(c))
        return
    auth_user: str | None = None
    if ua._digest is not None:
        auth_user = authenticate(ua, ev)
        if auth_user is None:
            return
    inc = Incoming(ev.transaction, request, auth_user)
    ua._incoming[ev.transaction] = inc
    inc.task = ua._spawn(answer_invite(ua, inc, ev))


def authenticate(ua: UserAgent, ev: RequestReceived) -> str | None:
    """Digest check of an incoming INVITE: the user name, or None after answering
    401/407 (no or wrong credentials, stale nonce)."""
    digest = ua._digest
    assert digest is not None
    c = ua.config
    request = ev.request
    uri = request.request_uri
    realm = c.auth_realm or (uri.hostname.lower() if isinstance(uri, SipUri) else "")
    now = ua.loop.time()
    stale = False
    name = "Proxy-Authorization" if c.auth_proxy else "Authorization"
    for value in request.headers.get_all(name):
        result = digest.verify(
            value,
            method=request.method,
            realm=realm,
            now=now,
            lookup_password=c.auth_password,
            lookup_ha1=c.auth_ha1,
            request_uri=request.uri,
            body=request.body,
        )
        if result.ok:
            return result.username
        if result.status is AuthStatus.STALE:
            stale = True
        elif result.reason != "wrong realm":
            log.info(
                "INVITE %s from %s: digest failed for %r: %s",
                request.call_id,
                ev.source[0],
                result.username,
                result.reason,
            )
    header = "Proxy-Authenticate" if c.auth_proxy else "WWW-Authenticate"
    ua._respond(
        ev.transaction,
        407 if c.auth_proxy else 401,
        headers=[(header, v) for v in digest.challenges(realm, now=now, stale=stale)],
    )
    return None


async def answer_invite(ua: UserAgent, inc: Incoming, ev: RequestReceived) -> None:
    """Admit and answer an incoming INVITE: admission, tenant limit (486), SDP (400/488),
    RTP ports (503), [180 / 183], 200 OK; the call then waits for its ACK."""
    c = ua.config
    request = ev.request
    tx = ev.transaction
    call: Call | None = None
    try:
        registration = registration_of(ua, request)
        decision: AdmissionDecision = Accept()
        if ua.admission is not None:
            result = ua.admission(
                AdmissionRequest(request, ev.source, ev.transport, registration, inc.auth_user)
            )
            decision = await result if not isinstance(result, (Accept, Reject)) else result
        if inc.cancelled:
            return
        if isinstance(decision, Reject):
            ua._stats["rejected"] += 1
            ua._respond(tx, decision.status, decision.reason, headers=decision.headers)
            return
        if (
            decision.limit_key is not None
            and decision.limit is not None
            and ua._limits.get(decision.limit_key, 0) >= decision.limit
        ):
            ua._respond(tx, 486, "Tenant call limit reached")
            return
        offer: SessionDescription | None = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
            except SdpError as exc:
                ua._respond(tx, 400, f"Malformed SDP: {exc}"[:120])
                return
        info = CallInfo(
            call_id=request.call_id,
            direction="inbound",
            request_uri=request.uri,
            from_uri=str(request.from_.uri),
            to_uri=str(request.to.uri),
            from_display=request.from_.display_name,
            source=ev.source,
            transport=ev.transport,
            headers=tuple((n, v) for n, v in request.headers if n.lower() not in _HIDDEN_HEADERS),
            registration=registration,
        )
        call = Call(ua, info, transport=ev.transport, peer=ev.source, context=decision.context)
        call.invite_tx = tx
        inc.call = call
        if decision.codecs:
            ua._call_codecs[call] = tuple(decision.codecs)
        answer_sdp = await prepare_media(ua, call, offer, tx, decision.codecs)
        if answer_sdp is None:
            return
        if inc.cancelled:
            call._finish("cancelled", "remote", 487)
            return
        if decision.limit_key is not None:
            call.limit_key = decision.limit_key
            ua._limits[decision.limit_key] = ua._limits.get(decision.limit_key, 0) + 1
        ua._calls[call.call_id] = call
        headers: list[tuple[str, str]] = [
            ("Contact", f"<{ua.contact(transport=ev.transport)}>"),
            ("Allow", _ALLOW),
            ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
        ]
        headers += session_timer_answer(c, call, request)
        answer_body = bytes(answer_sdp)
        if c.send_ringing:
            ua._respond(tx, 180, headers=[("Contact", headers[0][1])])
        if c.early_media and offer is not None:
            # RFC 3261 §13.3.1.1: the answer may go in a provisional response too; the
            # 200 repeats it (the same session version: not a new offer/answer)
            ua._respond(
                tx,
                183,
                headers=[("Contact", headers[0][1])],
                body=answer_body,
                content_type="application/sdp",
            )
        response = ua._respond(
            tx, 200, headers=headers, body=answer_body, content_type="application/sdp"
        )
        if response is None:  # cancelled meanwhile
            ua._end(call, "cancelled", "remote", 487)
            return
        call.local_sdp = answer_sdp
        call.state = "answered"
        call.answered_at = datetime.now(UTC)
        did = (request.call_id, response.to.tag or "", request.from_.tag or "")
        call.dialog = ua.core.dialog(did)
        ua._dialog_calls[did] = call
        ua._ack_wait[tx] = call
        ua._stats["answered"] += 1
    except PortsExhausted:
        ua._respond(tx, 503, "RTP ports exhausted", headers=_retry_after(c))
        if call is not None:
            ua._end(call, "ports_exhausted", "system", 503)
    except asyncio.CancelledError:  # shutdown while admitting: a dispatcher retries elsewhere
        ua._respond(tx, 503, "Shutting down", headers=_retry_after(c))
        if call is not None:
            ua._end(call, "shutdown", "system", 503)
        raise
    except Exception:
        log.exception("answering INVITE %s failed", request.call_id)
        ua._respond(tx, 500)
        if call is not None:
            ua._end(call, "error", "system", 500)
    finally:
        ua._incoming.pop(tx, None)


def ack_received(ua: UserAgent, ev: AckReceived) -> None:
    """The ACK of our 2xx: to an INVITE (the call starts) or a re-INVITE (maybe an answer)."""
    call = ua._ack_wait.pop(ev.transaction, None)
    if call is not None:
        initial_ack(ua, call, ev)
        return
    pending = ua._reinvite_ack.pop(ev.transaction, None)
    if pending is not None:
        rcall, our_offer = pending
        if our_offer is not None and ev.request.body:
            answer_in_ack(ua, rcall, our_offer, ev.request, initial=False)


def initial_ack(ua: UserAgent, call: Call, ev: AckReceived) -> None:
    """The ACK of the answered INVITE: the answer to our offer if we made one, the
    session timer, the call handler."""
    if call.ended:
        return
    if call.remote_sdp is None:
        offer = call.local_sdp
        if not isinstance(offer, SessionDescription) or not ev.request.body:
            ua._spawn(ua._bye_and_end(call, "no_answer_in_ack", 488))
            return
        if not answer_in_ack(ua, call, offer, ev.request, initial=True):
            return
    call.state = "active"
    ua.session_timers.arm(call)
    if ua.handler is not None:
        call.handler_task = ua._spawn(run_handler(ua, call))


def answer_in_ack(
    ua: UserAgent, call: Call, offer: SessionDescription, ack: SipRequest, *, initial: bool
) -> bool:
    """Take the SDP answer in an ACK to our offer; False (and BYE with 488) when unusable."""
    try:
        answer = SessionDescription.parse(ack.body)
        result = process_answer(offer, answer)
    except SdpError as exc:
        log.info("bad SDP answer in ACK of %s: %s", call.call_id, exc)
        ua._spawn(ua._bye_and_end(call, "bad_sdp_answer", 488))
        return False
    stream = result.audio
    if result.failure is not None or stream is None:
        ua._spawn(ua._bye_and_end(call, "no_common_codec", 488))
        return False
    call.remote_sdp = answer
    apply_stream(ua, call, stream, initial=initial)
    return True


async def run_handler(ua: UserAgent, call: Call) -> None:
    """Run the call handler; the call is hung up when it returns or fails."""
    assert ua.handler is not None
    reason = "local_hangup"
    try:
        await ua.handler(call)
    except asyncio.CancelledError:
        reason = "shutdown"
        raise
    except Exception:
        log.exception("call handler failed on %s", call.call_id)
        reason = "error"
    finally:
        if not call.ended:
            ua._spawn(call.hangup(reason))


def ack_timed_out(ua: UserAgent, ev: AckTimedOut) -> None:
    """No ACK for our 2xx (to INVITE or re-INVITE): the call ends with BYE (408)."""
    call = ua._ack_wait.pop(ev.transaction, None)
    if call is None:
        pending = ua._reinvite_ack.pop(ev.transaction, None)
        call = pending[0] if pending else None
    if call is not None and not call.ended:
        ua._spawn(ua._bye_and_end(call, "ack_timeout", 408))


def cancel_received(ua: UserAgent, ev: CancelReceived) -> None:
    """CANCEL of an INVITE being answered (the core sent 487); after the 200 ignored."""
    inc = ua._incoming.get(ev.transaction)
    if inc is not None:
        inc.cancelled = True  # the core sent 487; the answering task sees this and stops
        return
    call = ua._ack_wait.get(ev.transaction)
    if call is not None:
        log.debug("CANCEL after the 200 of %s: ignored", call.call_id)
