"""The asyncio SIP user agent: what FreeSWITCH (or Kamailio, baresip) talks to.

Slightly over 500 lines: it is the composition root that wires the owners together; its jobs live in those owners.

:class:`UserAgent` owns a :class:`~w3sipagent.sip.core.SipCore`, the transports
(:mod:`.transport`), the RTP port range, the shared pacer and every :class:`~.call.Call`.

Incoming INVITE (direct, no registration needed)::

    INVITE -> 100 Trying at once
           -> request checks: source allowlist (403), method (405/501), URI scheme (416),
              merged request (482), Require (420), body type / encoding (415),
              Session-Expires (422), draining / capacity (503 + Retry-After)
           -> admission(request view) -> Accept(context) or Reject(code, reason, headers)
              (404 unknown tenant, 486 tenant limit, ...)
           -> SDP offer/answer (488 + Warning when unacceptable), RTP ports (503 when exhausted)
           -> [180 Ringing] -> 200 OK with the SDP answer -> ACK -> handler(call)

Offerless INVITEs get our offer in the 200 and the answer in the ACK. A lost ACK: the core
retransmits the 200 and reports AckTimedOut; the call then ends with BYE. CANCEL before the
200: the core answers 200 / 487 and the pending call is torn down. Requests for unknown
dialogs get 481 (from the core).

In a call: re-INVITE / UPDATE (hold, unhold, re-targeting, codec change, session refresh),
BYE, OPTIONS, INFO (application/dtmf-relay and application/dtmf), session timers (RFC 4028:
422 below Min-SE, refresh at half the interval when we are the refresher, BYE when the
session expires).

Hooks for other modules (REFER / NOTIFY tracking, REGISTER)
---------------------------------------------------------
- ``await ua.request_in_dialog(call_or_dialog, method, *, headers=(), body=b"",
  content_type=None, timeout=None) -> SipResponse``: a request in the dialog, the final
  response returned; 401/407 answered once with the call's (or the configured) credentials.
  Raises :class:`~w3sipagent.errors.TransactionError` on timeout / transport failure.
- ``await ua.request(request, destination, transport="UDP", *, credentials=None,
  timeout=None) -> SipResponse``: an out-of-dialog request (REGISTER, OPTIONS...) to an IP
  literal; the core adds the Via. Same error contract.
- ``ua.on_request(method, handler)``: in-dialog (and out-of-dialog, ``call=None``) requests
  of that method (NOTIFY, REFER...) go to ``handler(call, request)``, which returns (or
  awaits to) a status code or a :class:`Reply`. Without a handler, REFER is declined (603)
  and NOTIFY answered 481 (no subscription).
- ``ua.transferer``: ``async (call, target, timeout) -> TransferOutcome`` used by
  ``Call.transfer``. The default sends REFER and reports ``accepted`` on 2xx, ``rejected``
  on 403/603, ``failed`` otherwise; a REFER module replaces it with NOTIFY tracking.
- ``ua.add_local_contact(user, registration_id)`` / ``remove_local_contact(user)``: calls
  whose Request-URI user is ``user`` carry ``CallInfo.registration == registration_id``;
  ``ua.contact(user, transport)`` gives the Contact URI to register.

Nothing here resolves a host name: responses go to the source IP (RFC 3261 §18.2.2, done by
the core) and in-dialog requests to the remote target when it is an IP literal, else to the
configured outbound proxy or the address the dialog's messages came from.

:class:`UserAgent` is the composition root and the public face; the state lives in a few
owners, each given a narrow port (:class:`~.runtime.Runtime`: respond, spawn, now,
config...) instead of the user agent: :class:`~.calltable.CallTable` (calls, dialogs, ACK
waits, limits; the one way to end a call), :class:`~.clientrequest.ClientRequests`
(transactions we start, digest retries, destinations, stray forks),
:class:`~.inbound.InviteServer` (admission, digest challenge, answer, CANCEL, ACK),
:class:`~.gate.RequestGate` (allowlist, merged requests, the §8.2 checks),
:class:`~.indialog.DialogRequests` (re-INVITE / UPDATE, INFO), :class:`~.mediasetup.MediaSetup`
(SDP to RTP), :class:`~.outbound.Dialer` (:meth:`UserAgent.dial`); :class:`~.dispatch.Dispatcher`
routes what the core reports, and :class:`~.callservices.CallServices` is what a
:class:`~.call.Call` may ask of its user agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Literal

from w3sipagent.asyncio.admission import (
    Accept,
    Admission,
    AdmissionDecision,
    AdmissionRequest,
    Handler,
    HandlerResult,
    Refused,
    Reject,
    Reply,
    RequestHandler,
    Unhandled,
)
from w3sipagent.asyncio.call import Call, Transferer
from w3sipagent.asyncio.call_api import TransferOutcome
from w3sipagent.asyncio.callservices import CallServices
from w3sipagent.asyncio.calltable import CallTable
from w3sipagent.asyncio.clientrequest import ClientRequests
from w3sipagent.asyncio.dispatch import Dispatcher
from w3sipagent.asyncio.gate import RequestGate
from w3sipagent.asyncio.inbound import InviteServer
from w3sipagent.asyncio.indialog import DialogRequests
from w3sipagent.asyncio.mediasetup import MediaSetup, get_codec_spec
from w3sipagent.asyncio.outbound import CallRejected, Dialer, DialError, DialTimeout
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.asyncio.requestcheck import (
    ACCEPT,
    ALLOWED_METHODS,
    SUPPORTED_EXTENSIONS,
    UNSUPPORTED_METHODS,
)
from w3sipagent.asyncio.runtime import UaRuntime
from w3sipagent.asyncio.sessiontimer import SessionTimers
from w3sipagent.asyncio.transport import SipDriver, TransportConfig, TransportSet
from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.errors import TransactionError
from w3sipagent.ids import SecureIdSource
from w3sipagent.sip.core import CoreConfig, SipCore
from w3sipagent.sip.dialog import Dialog
from w3sipagent.sip.events import Address, SipEvent
from w3sipagent.sip.ids import IdSource
from w3sipagent.sip.message import SipRequest, SipResponse

__all__ = [
    "ACCEPT",
    "ALLOWED_METHODS",
    "SUPPORTED_EXTENSIONS",
    "UNSUPPORTED_METHODS",
    "Accept",
    "Admission",
    "AdmissionDecision",
    "AdmissionRequest",
    "CallRejected",
    "DialError",
    "DialTimeout",
    "Handler",
    "HandlerResult",
    "Refused",
    "Reject",
    "Reply",
    "RequestHandler",
    "Unhandled",
    "UserAgent",
    "UserAgentConfig",
    "get_codec_spec",
]


# -- the user agent ----------------------------------------------------------------------------------


class UserAgent:
    """A SIP user agent on asyncio: answers calls, places calls, handles dialogs.

    Construct inside a running loop, then ``await ua.start()`` (binds the listeners) and
    ``await ua.close()`` (drains). ``handler(call)`` runs for each admitted incoming call
    after its ACK; ``admission(request_view)`` decides before the 200 OK; ``unhandled(context,
    call, end)`` hears once of each admitted INVITE whose handler never ran; ``refused(source,
    status, reason)`` of each new INVITE refused before the admission. ``sender``
    replaces the network (``send(payload, destination, transport)``) for in-process tests:
    then :meth:`feed` is the receive path and :meth:`start` is not needed.
    """

    def __init__(
        self,
        config: UserAgentConfig | None = None,
        *,
        handler: Handler | None = None,
        admission: Admission | None = None,
        unhandled: Unhandled | None = None,
        refused: Refused | None = None,
        ids: IdSource | None = None,
        pacer: Pacer | None = None,
        ports: RtpPortRange | None = None,
        sender: Callable[[bytes, Address, str], None] | None = None,
    ) -> None:
        self.config = config or UserAgentConfig()
        c = self.config
        self.ids: IdSource = ids or SecureIdSource()
        self.loop = asyncio.get_running_loop()
        self.pacer = pacer or Pacer()
        self.ports = ports or RtpPortRange(c.rtp_port_min, c.rtp_port_max)
        self.core = SipCore(
            CoreConfig(
                via_host=c.advertised_host or c.host,
                via_port=c.advertised_port or c.port,
                timers=c.timers,
                server_header=c.user_agent,
            ),
            ids=self.ids,
        )
        transports = {t.lower() for t in c.transports}
        self.transports = TransportSet(
            TransportConfig(
                host=c.host,
                port=c.port,
                udp="udp" in transports,
                tcp="tcp" in transports,
                tls_cert=c.tls_cert if "tls" in transports else None,
                tls_key=c.tls_key if "tls" in transports else None,
                tls_port=c.tls_port,
                tls_verify=c.tls_verify,
                tls_ca=c.tls_ca,
                tcp_idle_timeout=c.tcp_idle_timeout,
                tcp_message_timeout=c.tcp_message_timeout,
                tcp_max_connections=c.tcp_max_connections,
                tcp_max_per_source=c.tcp_max_per_source,
                tcp_connect_timeout=c.tcp_connect_timeout,
            ),
            self.feed,
            loop=self.loop,
            on_connection_lost=self._connection_lost,
        )
        self.driver = SipDriver(
            self.core, self._on_event, sender or self.transports.send, loop=self.loop
        )
        self.closed = False
        self.transferer: Transferer = self._refer_transfer
        # the owners, each with the narrow port it needs
        rt = UaRuntime(c, self.core, self.driver, self.transports, self.ids, self.loop)
        self._runtime = rt
        self._table = CallTable(
            rt, self.core.remove_dialog, self._bye_request, c.bye_timeout, c.max_calls
        )
        self._requests = ClientRequests(rt, self._table)
        services = CallServices(rt, self.loop, self._table, self._requests, self._transferer)
        timers = SessionTimers(services)  # RFC 4028: armed, refreshed, expired
        media = MediaSetup(rt, self.ports, self.pacer)
        self._invites = InviteServer(
            rt,
            self._table,
            media,
            services,
            timers,
            handler=handler,
            admission=admission,
            unhandled=unhandled,
            refused=refused,
        )
        self._dialer = Dialer(
            rt, self._table, self._requests, media, services, timers, self._is_closed
        )
        self._dispatcher = Dispatcher(
            rt,
            RequestGate(c, rt.now),
            self._table,
            self._requests,
            self._invites,
            DialogRequests(rt, self._table, media, timers),
        )

    # -- wiring ------------------------------------------------------------------------------

    def _on_event(self, event: SipEvent) -> None:
        self._dispatcher.event_received(event)

    def _connection_lost(self, peer: Address, transport: str) -> None:
        self.core.connection_lost(peer, transport, self.loop.time())
        self.driver.transmit()

    async def _bye_request(self, call: Call, timeout: float) -> None:
        await self._requests.request_in_dialog(call, "BYE", timeout=timeout)

    def _transferer(self) -> Transferer:
        return self.transferer

    def _is_closed(self) -> bool:
        return self.closed

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the SIP listeners (with port 0: a free port, see :attr:`port`)."""
        await self.transports.start()
        port = self.transports.port
        if self.config.advertised_port is None and port != self.core.config.via_port:
            self.core.config = dataclasses.replace(self.core.config, via_port=port)

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def handler(self) -> Handler | None:
        """``handler(call)``, run for each admitted incoming call after its ACK."""
        return self._invites.handler

    @handler.setter
    def handler(self, handler: Handler | None) -> None:
        self._invites.handler = handler

    @property
    def admission(self) -> Admission | None:
        """``admission(request_view)``, deciding each incoming INVITE before the 200 OK."""
        return self._invites.admission

    @admission.setter
    def admission(self, admission: Admission | None) -> None:
        self._invites.admission = admission

    @property
    def unhandled(self) -> Unhandled | None:
        """``unhandled(context, call, end)``: an admitted INVITE whose handler never ran."""
        return self._invites.unhandled

    @unhandled.setter
    def unhandled(self, unhandled: Unhandled | None) -> None:
        self._invites.unhandled = unhandled

    @property
    def refused(self) -> Refused | None:
        """``refused(source, status, reason)``: a new INVITE refused before the admission."""
        return self._invites.refused

    @refused.setter
    def refused(self, refused: Refused | None) -> None:
        self._invites.refused = refused

    @property
    def draining(self) -> bool:
        """Whether new calls are refused (503 + Retry-After), see :meth:`drain`."""
        return self._invites.draining

    @draining.setter
    def draining(self, draining: bool) -> None:
        self._invites.draining = draining

    @property
    def port(self) -> int:
        """The SIP port actually bound (or configured, before :meth:`start`)."""
        return self._runtime.port

    @property
    def advertised_host(self) -> str:
        """The host put in Via, Contact and SDP."""
        return self._runtime.advertised_host

    @property
    def advertised_port(self) -> int:
        """The port put in Via and Contact."""
        return self._runtime.advertised_port

    @property
    def calls(self) -> list[Call]:
        """The calls in progress (answered or being set up)."""
        return self._table.calls

    @property
    def admitting(self) -> int:
        """Incoming INVITEs being admitted or answered (before their 200 OK)."""
        return self._invites.admitting

    async def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Graceful shutdown: stop admitting (503), wait for the calls to end for up to
        ``timeout`` (default ``drain_timeout``), BYE the rest, close the transports."""
        if self.closed:
            return
        self.draining = True
        wait = self.config.drain_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        calls = [c for c in self._table.calls if not c.ended]
        if drain and calls and wait > 0:
            await asyncio.wait([asyncio.ensure_future(c.wait_ended()) for c in calls], timeout=wait)
        self._invites.abort_admissions()
        rest = [c for c in self._table.calls if not c.ended]
        if rest:
            await asyncio.gather(
                *(self._table.hang_up(c, "shutdown", "system") for c in rest),
                return_exceptions=True,
            )
        if drain and wait > 0:  # the handlers of calls that just ended finish on their own
            await self._runtime.settle(max(1.0, deadline - loop.time()))
        await self._runtime.cancel_tasks(timeout=1.0)
        self.closed = True
        self.driver.close()
        self.transports.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of this user agent (cancelled and awaited by close)."""
        return self._runtime.spawn(coro)

    def drain(self) -> None:
        """Stop admitting new calls (503 + Retry-After) without closing."""
        self.draining = True

    # -- hooks -----------------------------------------------------------------------------

    def on_request(self, method: str, handler: RequestHandler | None) -> None:
        """Route requests of ``method`` (NOTIFY, REFER...) to ``handler(call, request)``."""
        self._dispatcher.on_request(method, handler)

    def add_local_contact(self, user: str, registration_id: str) -> None:
        """Calls to Request-URI user ``user`` arrived through registration ``registration_id``."""
        self._invites.add_local_contact(user, registration_id)

    def remove_local_contact(self, user: str) -> None:
        """Forget a registration's contact user."""
        self._invites.remove_local_contact(user)

    def contact(self, user: str | None = None, transport: str = "UDP") -> str:
        """Our Contact URI (advertised address) for ``user`` and ``transport``."""
        return self._runtime.contact(user, transport)

    def feed(self, data: bytes, source: Address, transport: str = "UDP") -> None:
        """The receive path: one datagram or framed stream message from ``source``."""
        self.driver.receive(data, source, transport)

    # -- requests we send ----------------------------------------------------------------------

    async def request(
        self,
        request: SipRequest,
        destination: Address,
        transport: str = "UDP",
        *,
        credentials: tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> SipResponse:
        """Send an out-of-dialog request (REGISTER, OPTIONS...) to an IP literal; return the
        final response. 401/407 are answered once when ``credentials`` (user, password) are
        given. Raises TransactionError on timeout or transport failure."""
        return await self._requests.request(
            request, destination, transport, credentials=credentials, timeout=timeout
        )

    async def request_in_dialog(
        self,
        dialog_or_call: Dialog | Call,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> SipResponse:
        """Send ``method`` in a dialog and return the final response (auth retried once).

        The destination is the remote target when it is an IP literal, else the outbound
        proxy, else the address the dialog's messages came from. Raises TransactionError
        on timeout / transport failure, DialogError when the dialog is over.
        """
        return await self._requests.request_in_dialog(
            dialog_or_call,
            method,
            headers=headers,
            body=body,
            content_type=content_type,
            timeout=timeout,
        )

    # -- the default transferer ---------------------------------------------------------------

    async def _refer_transfer(self, call: Call, target: str, timeout: float) -> TransferOutcome:
        """REFER and wait for the 202 only (a REFER module replaces this with NOTIFY tracking)."""
        try:
            response = await self.request_in_dialog(
                call,
                "REFER",
                headers=[("Refer-To", f"<{target}>"), ("Referred-By", f"<{self.contact()}>")],
                timeout=timeout,
            )
        except TransactionError:
            return TransferOutcome("timed_out")
        code = response.status
        if 200 <= code < 300:
            return TransferOutcome("accepted", code, response.reason)
        status: Literal["rejected", "failed", "busy"] = (
            "rejected"
            if code in (403, 405, 501, 603)
            else "busy"
            if code in (486, 600)
            else "failed"
        )
        return TransferOutcome(status, code, response.reason)

    # -- outbound calls -------------------------------------------------------------------------

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
        """Call ``uri`` and return the answered :class:`Call`.

        The INVITE goes to ``proxy`` (an IP literal address), else to the configured outbound
        proxy, else to the URI's host (which must then be an IP literal). 401/407 are
        answered with ``credentials`` (user, password); early media (183 with SDP) starts the
        RTP endpoint before the answer. Raises :class:`CallRejected` for 3xx-6xx,
        :class:`DialTimeout` when nothing final came within ``timeout`` (the INVITE is then
        cancelled), TransactionError when the transaction failed; task cancellation sends
        CANCEL too.
        """
        return await self._dialer.dial(
            uri,
            proxy=proxy,
            from_uri=from_uri,
            display_name=display_name,
            codecs=codecs,
            credentials=credentials,
            timeout=timeout,
            transport=transport,
            headers=headers,
            offer=offer,
        )
