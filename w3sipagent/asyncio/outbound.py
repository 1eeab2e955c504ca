"""Outbound calls (:class:`Dialer`): the INVITE / digest / CANCEL / ACK logic behind
:meth:`UserAgent.dial` and its errors (:class:`DialError`, :class:`CallRejected`,
:class:`DialTimeout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import (
    CallInfo,
)
from w3sipagent.asyncio.callservices import CallServices
from w3sipagent.asyncio.calltable import CallTable
from w3sipagent.asyncio.clientrequest import ClientRequests, authorize
from w3sipagent.asyncio.mediasetup import MediaSetup, sdp_address
from w3sipagent.asyncio.requestcheck import (
    ALLOW,
    SUPPORTED_EXTENSIONS,
)
from w3sipagent.asyncio.runtime import Runtime
from w3sipagent.asyncio.sessiontimer import (
    SessionTimers,
    session_timer_from_response,
)
from w3sipagent.errors import (
    SdpError,
    TransactionError,
    W3SipError,
)
from w3sipagent.sdp import (
    SessionDescription,
    negotiate_answer,
    process_answer,
)
from w3sipagent.sip.auth import DigestClient
from w3sipagent.sip.dialog import DialogState, uri_address
from w3sipagent.sip.events import (
    Address,
    ResponseReceived,
    TransactionId,
)
from w3sipagent.sip.headers import Headers, NameAddr
from w3sipagent.sip.message import SipRequest, SipResponse
from w3sipagent.sip.uri import SipUri


class DialError(W3SipError):
    """An outbound call did not get answered. ``status`` is the SIP code (None: no response)."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class CallRejected(DialError):
    """The callee answered 3xx-6xx (``status``, ``reason``; ``response`` has the rest)."""

    def __init__(self, response: SipResponse) -> None:
        super().__init__(
            f"call rejected: {response.status} {response.reason}", response.status, response.reason
        )
        self.response = response


class DialTimeout(DialError):
    """No final response within the dial timeout (the INVITE was cancelled)."""


class Dialer:
    """Places a user agent's outbound calls."""

    def __init__(
        self,
        runtime: Runtime,
        table: CallTable,
        requests: ClientRequests,
        media: MediaSetup,
        services: CallServices,
        timers: SessionTimers,
        closed: Callable[[], bool],
    ) -> None:
        self._rt = runtime
        self._table = table
        self._requests = requests
        self._media = media
        self._services = services
        self._timers = timers
        self._closed = closed

    async def dial(
        self,
        uri: str,
        *,
        proxy: Address | None = None,
        from_uri: str | None = None,
        display_name: str | None = None,
        codecs: Sequence[str] | None = None,
        credentials: tuple[str, str] | None = None,
        timeout: float | None = None,
        transport: str = "UDP",
        headers: Iterable[tuple[str, str]] = (),
        offer: bool = True,
    ) -> Call:
        """The body of :meth:`UserAgent.dial`, which documents it."""
        rt = self._rt
        c = rt.config
        if self._closed():
            raise TransactionError("user agent closed")
        target = SipUri.parse(uri)
        destination = proxy or c.outbound_proxy or uri_address(target)
        if destination is None:
            raise TransactionError(
                f"{uri}: host is not an IP literal and no proxy is given (no DNS here)"
            )
        codec_list = list(codecs or c.codecs)
        call_id = rt.core.new_call_id()
        local_tag = rt.core.new_tag()
        me = from_uri or f"sip:{c.contact_user}@{rt.advertised_host}"
        from_value = str(NameAddr(SipUri.parse(me), display_name, {"tag": local_tag}))
        info = CallInfo(
            call_id=call_id,
            direction="outbound",
            request_uri=uri,
            from_uri=me,
            to_uri=uri,
            from_display=display_name,
            source=destination,
            transport=transport.upper(),
        )
        call = Call(
            self._services, info, transport=transport.upper(), peer=destination, state="outgoing"
        )
        call.credentials = credentials
        if codecs:
            call.codecs = tuple(codecs)
        our_offer = await self._media.open_with_offer(call, codec_list)
        call.local_sdp = our_offer
        self._table.add(call)
        h = Headers()
        h.add("From", from_value)
        h.add("To", f"<{uri}>")
        h.add("Call-ID", call_id)
        seq = 1
        h.add("CSeq", f"{seq} INVITE")
        h.add("Contact", f"<{rt.contact(transport=transport)}>")
        h.add("Allow", ALLOW)
        h.add("Supported", ", ".join(SUPPORTED_EXTENSIONS))
        for name, value in headers:
            h.add(name, value)
        body = bytes(our_offer) if offer else b""
        if body:
            h.add("Content-Type", "application/sdp")
        request = SipRequest("INVITE", uri, h, body)
        digest = DigestClient()
        early: dict[str, bool] = {"media": False}

        def provisional(ev: ResponseReceived) -> None:
            r = ev.response
            if r.status > 100 and call.state == "outgoing":
                call.state = "early"
            if r.body and r.content_type == "application/sdp" and not early["media"] and our_offer:
                try:
                    result = process_answer(our_offer, SessionDescription.parse(r.body))
                except SdpError:
                    return
                if result.audio is not None:
                    early["media"] = True
                    call.remote_sdp = result.answer
                    self._media.apply_stream(call, result.audio, initial=True)

        deadline = rt.now() + (c.dial_timeout if timeout is None else timeout)
        tx: TransactionId | None = None
        try:
            while True:
                tx, future = self._requests.send(request, destination, transport, provisional)
                call.invite_tx = tx
                remaining = deadline - rt.now()
                try:
                    ev = await asyncio.wait_for(asyncio.shield(future), max(remaining, 0.001))
                except TimeoutError:
                    await self.cancel_invite(tx, future)
                    raise DialTimeout(
                        f"no answer from {uri} within the dial timeout", None
                    ) from None
                response = ev.response
                if 200 <= response.status < 300:
                    break
                retry = authorize(rt.ids, request, response, credentials, digest)
                if retry is None:
                    raise CallRejected(response)
                request = retry
            # answered
            dialog = ev.dialog
            if dialog is None:
                raise DialError(
                    "2xx without a usable dialog (no To tag / Contact)", response.status
                )
            self._table.confirm(call, dialog.id, dialog)
            ack_body = b""
            if not offer:
                ack_body = self.answer_offer_in_2xx(call, response)
            rt.core.send_ack(
                dialog.create_ack(
                    response.cseq.seq,
                    body=ack_body,
                    content_type="application/sdp" if ack_body else None,
                ),
                self._requests.destination(dialog, call),
                transport,
            )
            rt.transmit()
            if offer:
                if not response.body:
                    raise DialError("2xx to our offer carries no SDP answer", response.status)
                result = process_answer(our_offer, SessionDescription.parse(response.body))
                if result.failure is not None or result.audio is None:
                    raise DialError(
                        f"unusable SDP answer: {result.failure.reason if result.failure else 'no audio'}",
                        response.status,
                    )
                call.remote_sdp = result.answer
                self._media.apply_stream(call, result.audio, initial=True)
            self._requests.forget(tx)
            call.state = "active"
            call.answered_at = datetime.now(UTC)
            session_timer_from_response(c, call, response)
            self._timers.arm(call)
            return call
        except asyncio.CancelledError:
            if tx is not None:
                rt.core.cancel(tx, rt.now())
                rt.transmit()
            self._table.end(call, "cancelled", "local")
            raise
        except BaseException as exc:
            if tx is not None:
                self._requests.forget(tx)
            code = exc.status if isinstance(exc, DialError) else None
            if call.dialog is not None and call.dialog.state is not DialogState.TERMINATED:
                await self._table.hang_up(call, "error", "local", code)
            self._table.end(
                call,
                "rejected" if isinstance(exc, CallRejected) else "error",
                "remote" if isinstance(exc, CallRejected) else "local",
                code,
            )
            raise

    def answer_offer_in_2xx(self, call: Call, response: SipResponse) -> bytes:
        """Offerless INVITE of ours: the 2xx holds the offer; answer it in the ACK."""
        if not response.body:
            raise DialError("2xx to an offerless INVITE carries no offer", response.status)
        offer = SessionDescription.parse(response.body)
        ep = call.endpoint
        assert ep is not None
        audio_index = next((i for i, m in enumerate(offer.media) if m.media == "audio"), None)
        result = negotiate_answer(
            offer,
            local_address=sdp_address(self._rt.advertised_host),
            ports=lambda i, _m: ep.local_port if i == audio_index else None,
            codec_preference=list(call.codecs or self._rt.config.codecs),
            session_id=self._rt.next_session_id(),
            session_version=1,
            telephone_event=self._rt.config.telephone_event,
        )
        if result.failure is not None or result.audio is None:
            raise DialError("no acceptable codec in the 2xx offer", 488)
        call.local_sdp = result.answer
        call.remote_sdp = offer
        self._media.apply_stream(call, result.audio, initial=True)
        return bytes(result.answer)

    async def cancel_invite(
        self, tx: TransactionId, future: asyncio.Future[ResponseReceived]
    ) -> None:
        """CANCEL our INVITE and wait (a little) for its final response; ACK/BYE a late 2xx."""
        rt = self._rt
        rt.core.cancel(tx, rt.now())
        rt.transmit()
        try:
            ev = await asyncio.wait_for(asyncio.shield(future), 64 * self._rt.config.t1)
        except (TimeoutError, TransactionError):
            return
        if 200 <= ev.response.status < 300 and ev.dialog is not None:
            self._requests.forget(tx)
            self._requests.end_fork(ev)
