"""Inbound calls, owned by :class:`InviteServer`: an incoming INVITE admitted and answered
(Min-SE, draining, capacity, digest, admission, tenant limit, SDP, RTP ports, 180 / 183 /
200), its ACK (the answer to an offer we made in the 200, the call handler), a lost ACK and
CANCEL; also the ACKs of our 2xx to re-INVITEs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime

from w3sipagent.asyncio.admission import (
    Accept,
    Admission,
    AdmissionDecision,
    AdmissionRequest,
    Handler,
    Refused,
    Reject,
    Unhandled,
)
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import CallEnded, CallInfo, HangupBy
from w3sipagent.asyncio.callservices import CallServices
from w3sipagent.asyncio.calltable import CallTable
from w3sipagent.asyncio.mediasetup import MediaSetup
from w3sipagent.asyncio.requestcheck import (
    ALLOW,
    SUPPORTED_EXTENSIONS,
    retry_after,
)
from w3sipagent.asyncio.runtime import Runtime
from w3sipagent.asyncio.sessiontimer import (
    SessionTimers,
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
from w3sipagent.sip.auth import AuthStatus, DigestServer
from w3sipagent.sip.events import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    RequestReceived,
    TransactionId,
)
from w3sipagent.sip.message import SipRequest
from w3sipagent.sip.uri import SipUri

log = logging.getLogger("w3sipagent.asyncio.useragent")  # the records keep the UA's logger

_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization"})


class Incoming:
    """An incoming INVITE being admitted / answered."""

    __slots__ = (
        "accepted",
        "auth_user",
        "call",
        "cancelled",
        "context",
        "key",
        "request",
        "task",
        "tx",
    )

    def __init__(self, tx: TransactionId, request: SipRequest, auth_user: str | None) -> None:
        self.tx = tx
        self.request = request
        self.auth_user = auth_user
        self.task: asyncio.Task[None] | None = None
        self.call: Call | None = None
        self.cancelled = False
        self.accepted = False
        """The admission accepted it: the handler or ``unhandled`` hears of its end."""
        self.context: object = None
        self.key: str | None = None
        """The limit key counted for it in the call table, until the call takes the count."""


class InviteServer:
    """Answers the INVITEs of new calls: admission, digest challenge, the answer, CANCEL,
    the ACK that starts the call handler."""

    def __init__(
        self,
        runtime: Runtime,
        table: CallTable,
        media: MediaSetup,
        services: CallServices,
        timers: SessionTimers,
        *,
        handler: Handler | None,
        admission: Admission | None,
        unhandled: Unhandled | None = None,
        refused: Refused | None = None,
    ) -> None:
        self._rt = runtime
        self._table = table
        self._media = media
        self._services = services
        self._timers = timers
        self.handler = handler
        """``handler(call)``, run for each admitted call after its ACK."""
        self.admission = admission
        """``admission(request_view)``, deciding each INVITE before the 200 OK."""
        self.unhandled = unhandled
        """``unhandled(context, call, end)``: an admitted INVITE whose handler never ran."""
        self.refused = refused
        """``refused(source, status, reason)``: a new INVITE refused before the admission."""
        self.draining = False
        """While True new INVITEs get 503 + Retry-After."""
        self._incoming: dict[TransactionId, Incoming] = {}
        self._contacts: dict[str, str] = {}  # Request-URI user -> registration id
        c = runtime.config
        self._digest: DigestServer | None = None
        if c.auth_password is not None or c.auth_ha1 is not None:
            self._digest = DigestServer(
                secrets.token_bytes(32),
                ids=runtime.ids,
                nonce_lifetime=c.auth_nonce_lifetime,
                algorithms=c.auth_algorithms,
            )

    @property
    def admitting(self) -> int:
        """INVITEs being admitted / answered (before their 200 OK)."""
        return len(self._incoming)

    def add_local_contact(self, user: str, registration_id: str) -> None:
        """Calls to Request-URI user ``user`` arrived through ``registration_id``."""
        self._contacts[user] = registration_id

    def remove_local_contact(self, user: str) -> None:
        """Forget a registration's contact user."""
        self._contacts.pop(user, None)

    def abort_admissions(self) -> None:
        """Shutdown: stop admitting (each INVITE being admitted gets 503)."""
        for inc in list(self._incoming.values()):
            if inc.task is not None:
                inc.task.cancel()

    def _give_up(self, call: Call, reason: str, code: int) -> None:
        """The user agent ends an answered call (BYE) that cannot go on."""
        self._rt.spawn(self._table.hang_up(call, reason, "system", code))

    def registration_of(self, request: SipRequest) -> str | None:
        """The registration a call came through: the id added for its Request-URI user."""
        if not self._contacts:
            return None
        uri = request.request_uri
        user = uri.user if isinstance(uri, SipUri) else None
        return self._contacts.get(user) if user is not None else None

    def invite(self, ev: RequestReceived) -> None:
        """A new INVITE that passed the request checks: Min-SE (422), draining / capacity
        (503), digest (401/407), then admission and the answer in a task."""
        c = self._rt.config
        request = ev.request
        # session timer (RFC 4028 §8): 422 below our Min-SE
        if refuse_session_expires(c, ev, self._rt.respond):
            return
        if self.draining:
            self._rt.respond(ev.transaction, 503, "Draining", headers=retry_after(c))
            self.report_refused(ev, 503, "draining")
            return
        if self._table.full:
            self._rt.respond(ev.transaction, 503, "Over capacity", headers=retry_after(c))
            self.report_refused(ev, 503, "over capacity (max_calls)")
            return
        auth_user: str | None = None
        if self._digest is not None:
            auth_user = self.authenticate(ev)
            if auth_user is None:
                return
        # the place is held from now on (a burst of INVITEs cannot over-admit)
        if not self._table.reserve():
            self._rt.respond(ev.transaction, 503, "Over capacity", headers=retry_after(c))
            return
        inc = Incoming(ev.transaction, request, auth_user)
        self._incoming[ev.transaction] = inc
        inc.task = self._rt.spawn(self.answer_invite(inc, ev))

    def report_refused(self, ev: RequestReceived, status: int, reason: str) -> None:
        """Tell ``refused`` of a new INVITE refused before the admission."""
        hook = self.refused
        if hook is None:
            return
        try:
            hook(ev.source, status, reason)
        except Exception:
            log.exception("refused hook failed")

    def authenticate(self, ev: RequestReceived) -> str | None:
        """Digest check of an incoming INVITE: the user name, or None after answering
        401/407 (no or wrong credentials, stale nonce)."""
        digest = self._digest
        assert digest is not None
        c = self._rt.config
        request = ev.request
        uri = request.request_uri
        realm = c.auth_realm or (uri.hostname.lower() if isinstance(uri, SipUri) else "")
        now = self._rt.now()
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
        self._rt.respond(
            ev.transaction,
            407 if c.auth_proxy else 401,
            headers=[(header, v) for v in digest.challenges(realm, now=now, stale=stale)],
        )
        return None

    async def answer_invite(self, inc: Incoming, ev: RequestReceived) -> None:
        """Admit and answer an incoming INVITE: admission, tenant limit (486), SDP (400/488),
        RTP ports (503), [180 / 183], 200 OK; the call then waits for its ACK."""
        c = self._rt.config
        request = ev.request
        tx = ev.transaction
        call: Call | None = None
        added = confirmed = False
        end: CallEnded | None = None  # how an admitted INVITE ended before its call went on
        try:
            registration = self.registration_of(request)
            decision: AdmissionDecision = Accept()
            if self.admission is not None:
                result = self.admission(
                    AdmissionRequest(request, ev.source, ev.transport, registration, inc.auth_user)
                )
                decision = await result if not isinstance(result, (Accept, Reject)) else result
            if isinstance(decision, Accept):
                inc.accepted, inc.context = True, decision.context
            if inc.cancelled:
                end = CallEnded("cancelled", "remote", 487)
                return
            if isinstance(decision, Reject):
                self._rt.respond(tx, decision.status, decision.reason, headers=decision.headers)
                return
            if decision.limit_key is not None and decision.limit is not None:
                if not self._table.reserve_key(decision.limit_key, decision.limit):
                    self._rt.respond(tx, 486, "Tenant call limit reached")
                    end = CallEnded("call_limit", "system", 486)
                    return
                inc.key = decision.limit_key
            offer: SessionDescription | None = None
            if request.body:
                try:
                    offer = SessionDescription.parse(request.body)
                except SdpError as exc:
                    self._rt.respond(tx, 400, f"Malformed SDP: {exc}"[:120])
                    end = CallEnded("bad_sdp", "system", 400)
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
                headers=tuple(
                    (n, v) for n, v in request.headers if n.lower() not in _HIDDEN_HEADERS
                ),
                registration=registration,
            )
            call = Call(
                self._services,
                info,
                transport=ev.transport,
                peer=ev.source,
                context=decision.context,
            )
            call.invite_tx = tx
            inc.call = call
            if decision.codecs:
                call.codecs = tuple(decision.codecs)
            answer_sdp = await self._media.prepare_media(call, offer, tx, decision.codecs)
            if answer_sdp is None:
                end = CallEnded("not_acceptable", "system", 488)
                return
            if inc.cancelled:
                self._table.end(call, "cancelled", "remote", 487)
                return
            self._table.add(
                call, limit_key=decision.limit_key, reserved=True, key_reserved=inc.key is not None
            )
            added, inc.key = True, None
            headers: list[tuple[str, str]] = [
                ("Contact", f"<{self._rt.contact(transport=ev.transport)}>"),
                ("Allow", ALLOW),
                ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
            ]
            headers += session_timer_answer(c, call, request)
            answer_body = bytes(answer_sdp)
            if c.send_ringing:
                self._rt.respond(tx, 180, headers=[("Contact", headers[0][1])])
            if c.early_media and offer is not None:
                # RFC 3261 §13.3.1.1: the answer may go in a provisional response too; the
                # 200 repeats it (the same session version: not a new offer/answer)
                self._rt.respond(
                    tx,
                    183,
                    headers=[("Contact", headers[0][1])],
                    body=answer_body,
                    content_type="application/sdp",
                )
            response = self._rt.respond(
                tx, 200, headers=headers, body=answer_body, content_type="application/sdp"
            )
            if response is None:  # cancelled meanwhile
                self._table.end(call, "cancelled", "remote", 487)
                return
            call.local_sdp = answer_sdp
            call.state = "answered"
            call.answered_at = datetime.now(UTC)
            did = (request.call_id, response.to.tag or "", request.from_.tag or "")
            self._table.confirm(call, did, self._rt.core.dialog(did), ack_tx=tx)
            confirmed = True
            answered = call
            answered.add_end_callback(lambda ev: self._ended_before_handler(answered, ev))
        except PortsExhausted:
            self._rt.respond(tx, 503, "RTP ports exhausted", headers=retry_after(c))
            end = CallEnded("ports_exhausted", "system", 503)
        except asyncio.CancelledError:  # shutdown while admitting: a dispatcher retries elsewhere
            self._rt.respond(tx, 503, "Shutting down", headers=retry_after(c))
            end = CallEnded("shutdown", "system", 503)
            raise
        except Exception:
            log.exception("answering INVITE %s failed", request.call_id)
            self._rt.respond(tx, 500)
            end = CallEnded("error", "system", 500)
        finally:
            self._incoming.pop(tx, None)
            if not added:
                self._table.unreserve()
            if inc.key is not None:
                self._table.release_key(inc.key)
            if not confirmed:
                end = end or CallEnded("error", "system", 500)
                if call is not None and not call.ended:
                    self._table.end(call, end.reason, end.by, end.sip_code)
                if inc.accepted:
                    self._report_unhandled(inc.context, call, call.end if call else end)

    def _report_unhandled(self, context: object, call: Call | None, end: CallEnded | None) -> None:
        """Tell ``unhandled`` of an admitted INVITE whose handler never ran (once)."""
        hook = self.unhandled
        if hook is None:
            return
        try:
            hook(context, call, end or CallEnded("error", "system", 500))
        except Exception:
            log.exception("unhandled hook failed for %s", call.call_id if call else "an INVITE")

    def _ended_before_handler(self, call: Call, end: CallEnded) -> None:
        """An answered call ended: if no handler was started for it, ``unhandled`` hears."""
        if call.handler_task is None:
            self._report_unhandled(call.context, call, end)

    def _handler_done(self, call: Call) -> None:
        """The handler task is over: cancelled before it began (shutdown), ``unhandled``
        hears instead (a handler that began owns the call's end)."""
        if call.handler_started:
            return
        if not call.ended:
            self._table.end(call, "shutdown", "system")
        self._report_unhandled(call.context, call, call.end)

    def ack(self, ev: AckReceived) -> None:
        """The ACK of our 2xx: to an INVITE (the call starts) or a re-INVITE (maybe an answer)."""
        call = self._table.take_ack(ev.transaction)
        if call is not None:
            self.initial_ack(call, ev)
            return
        pending = self._table.take_reinvite_ack(ev.transaction)
        if pending is not None:
            rcall, our_offer = pending
            if our_offer is not None and ev.request.body:
                self.answer_in_ack(rcall, our_offer, ev.request, initial=False)

    def initial_ack(self, call: Call, ev: AckReceived) -> None:
        """The ACK of the answered INVITE: the answer to our offer if we made one, the
        session timer, the call handler."""
        if call.ended:
            return
        if call.remote_sdp is None:
            offer = call.local_sdp
            if not isinstance(offer, SessionDescription) or not ev.request.body:
                self._give_up(call, "no_answer_in_ack", 488)
                return
            if not self.answer_in_ack(call, offer, ev.request, initial=True):
                return
        call.state = "active"
        self._timers.arm(call)
        if self.handler is not None:
            task = self._rt.spawn(self.run_handler(self.handler, call))
            call.handler_task = task
            task.add_done_callback(lambda _: self._handler_done(call))

    def answer_in_ack(
        self, call: Call, offer: SessionDescription, ack: SipRequest, *, initial: bool
    ) -> bool:
        """Take the SDP answer in an ACK to our offer; False (and BYE with 488) when unusable."""
        try:
            answer = SessionDescription.parse(ack.body)
            result = process_answer(offer, answer)
        except SdpError as exc:
            log.info("bad SDP answer in ACK of %s: %s", call.call_id, exc)
            self._give_up(call, "bad_sdp_answer", 488)
            return False
        stream = result.audio
        if result.failure is not None or stream is None:
            self._give_up(call, "no_common_codec", 488)
            return False
        call.remote_sdp = answer
        self._media.apply_stream(call, stream, initial=initial)
        return True

    async def run_handler(self, handler: Handler, call: Call) -> None:
        """Run the call handler; the call is hung up when it returns or fails."""
        call.handler_started = True
        reason = "local_hangup"
        by: HangupBy = "local"
        try:
            await handler(call)
        except asyncio.CancelledError:
            reason, by = "shutdown", "system"
            raise
        except Exception:
            log.exception("call handler failed on %s", call.call_id)
            reason, by = "error", "system"
        finally:
            if not call.ended:
                self._rt.spawn(self._table.hang_up(call, reason, by))

    def ack_timed_out(self, ev: AckTimedOut) -> None:
        """No ACK for our 2xx (to INVITE or re-INVITE): the call ends with BYE (408)."""
        call = self._table.take_ack(ev.transaction)
        if call is None:
            pending = self._table.take_reinvite_ack(ev.transaction)
            call = pending[0] if pending else None
        if call is not None and not call.ended:
            self._give_up(call, "ack_timeout", 408)

    def cancel(self, ev: CancelReceived) -> None:
        """CANCEL of an INVITE being answered (the core sent 487); after the 200 ignored."""
        inc = self._incoming.get(ev.transaction)
        if inc is not None:
            inc.cancelled = True  # the core sent 487; the answering task sees this and stops
            return
        call = self._table.awaiting_ack(ev.transaction)
        if call is not None:
            log.debug("CANCEL after the 200 of %s: ignored", call.call_id)
