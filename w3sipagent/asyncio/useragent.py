"""The asyncio SIP user agent: what FreeSWITCH (or Kamailio, baresip) talks to.

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

:class:`UserAgent` holds the state and the lifecycle; the logic lives next to it, as functions
taking the user agent: :mod:`.dispatch` (routing what the core reports), :mod:`.requestcheck`,
:mod:`.inbound` (answering INVITEs, ACK, CANCEL), :mod:`.indialog` (re-INVITE / UPDATE, INFO),
:mod:`.sessiontimer`, :mod:`.mediasetup`, :mod:`.clientrequest` (requests we send) and
:mod:`.outbound` (:meth:`UserAgent.dial`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import secrets
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Literal

from w3sipagent.asyncio import clientrequest, dispatch, indialog, outbound
from w3sipagent.asyncio.admission import (
    Accept,
    Admission,
    AdmissionDecision,
    AdmissionRequest,
    Handler,
    HandlerResult,
    Reject,
    Reply,
    RequestHandler,
)
from w3sipagent.asyncio.call import Call, Transferer
from w3sipagent.asyncio.call_api import TransferOutcome
from w3sipagent.asyncio.clientrequest import ClientTx
from w3sipagent.asyncio.inbound import Incoming
from w3sipagent.asyncio.mediasetup import get_codec_spec
from w3sipagent.asyncio.outbound import CallRejected, DialError, DialTimeout
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.asyncio.requestcheck import (
    ACCEPT,
    ALLOWED_METHODS,
    SUPPORTED_EXTENSIONS,
    UNSUPPORTED_METHODS,
    MergedRequests,
)
from w3sipagent.asyncio.requestcheck import (
    _accepts_sdp as _accepts_sdp,  # re-exported (tests)
)
from w3sipagent.asyncio.sessiontimer import SessionTimers
from w3sipagent.asyncio.transport import SipDriver, TransportConfig, TransportSet
from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.errors import TransactionError
from w3sipagent.ids import SecureIdSource
from w3sipagent.sdp import SessionDescription
from w3sipagent.sip.auth import DigestClient, DigestServer
from w3sipagent.sip.core import CoreConfig, SipCore
from w3sipagent.sip.dialog import Dialog, DialogError, DialogState
from w3sipagent.sip.events import (
    Address,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionId,
)
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
    "Reject",
    "Reply",
    "RequestHandler",
    "UserAgent",
    "UserAgentConfig",
    "get_codec_spec",
]

log = logging.getLogger(__name__)


# -- the user agent ----------------------------------------------------------------------------------


class UserAgent:
    """A SIP user agent on asyncio: answers calls, places calls, handles dialogs.

    Construct inside a running loop, then ``await ua.start()`` (binds the listeners) and
    ``await ua.close()`` (drains). ``handler(call)`` runs for each admitted incoming call
    after its ACK; ``admission(request_view)`` decides before the 200 OK. ``sender``
    replaces the network (``send(payload, destination, transport)``) for in-process tests:
    then :meth:`feed` is the receive path and :meth:`start` is not needed.
    """

    def __init__(
        self,
        config: UserAgentConfig | None = None,
        *,
        handler: Handler | None = None,
        admission: Admission | None = None,
        ids: IdSource | None = None,
        pacer: Pacer | None = None,
        ports: RtpPortRange | None = None,
        sender: Callable[[bytes, Address, str], None] | None = None,
    ) -> None:
        self.config = config or UserAgentConfig()
        c = self.config
        self.handler = handler
        self.admission = admission
        self.ids: IdSource = ids or SecureIdSource()
        self.loop = asyncio.get_running_loop()
        self.pacer = pacer or Pacer()
        self.ports = ports or RtpPortRange(c.rtp_port_min, c.rtp_port_max)
        self._networks = [ipaddress.ip_network(n, strict=False) for n in c.allowed_sources]
        self._allowed: dict[str, bool] = {}  # source IP -> allowlist verdict
        self.core = SipCore(
            CoreConfig(
                via_host=self.advertised_host,
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
                tcp_connect_timeout=c.tcp_connect_timeout,
            ),
            self.feed,
            loop=self.loop,
            on_connection_lost=self._connection_lost,
        )
        self.driver = SipDriver(
            self.core, self._on_event, sender or self.transports.send, loop=self.loop
        )
        self.draining = False
        self.closed = False
        self.transferer: Transferer = self._refer_transfer
        self._calls: dict[str, Call] = {}  # Call-ID -> call
        self._dialog_calls: dict[tuple[str, str, str], Call] = {}
        self._incoming: dict[TransactionId, Incoming] = {}
        self._ack_wait: dict[TransactionId, Call] = {}
        self._reinvite_ack: dict[TransactionId, tuple[Call, SessionDescription | None]] = {}
        self._client: dict[TransactionId, ClientTx] = {}
        self._request_handlers: dict[str, RequestHandler] = {}
        self._local_contacts: dict[str, str] = {}
        self._call_codecs: weakref.WeakKeyDictionary[Call, tuple[str, ...]] = (
            weakref.WeakKeyDictionary()
        )
        """Per-call codec preference (``Accept.codecs``, ``dial(codecs=)``), kept for the
        call's later offers (re-INVITE / UPDATE, an offer in a 2xx)."""
        self._merge = MergedRequests(c.merge_window)
        self.session_timers = SessionTimers(
            loop=self.loop,
            spawn=self._spawn,
            request=self.request_in_dialog,
            bye_and_end=self._bye_and_end,
            end=self._end,
        )
        """The session timers (RFC 4028) of the calls: armed, refreshed, expired."""
        self._limits: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._silence: dict[tuple[str, int, int, str | None], bytes | None] = {}
        self._session_id = self.ids.randbits(32) or 1
        self._stats = {"invites": 0, "rejected": 0, "answered": 0}
        self._digest: DigestServer | None = None
        if c.auth_password is not None or c.auth_ha1 is not None:
            self._digest = DigestServer(
                secrets.token_bytes(32),
                ids=self.ids,
                nonce_lifetime=c.auth_nonce_lifetime,
                algorithms=c.auth_algorithms,
            )

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
    def port(self) -> int:
        """The SIP port actually bound (or configured, before :meth:`start`)."""
        return (
            self.transports.port
            if self.transports.udp_address or self.transports.tcp_address
            else self.config.port
        )

    @property
    def advertised_host(self) -> str:
        """The host put in Via, Contact and SDP."""
        return self.config.advertised_host or self.config.host

    @property
    def advertised_port(self) -> int:
        """The port put in Via and Contact."""
        return self.config.advertised_port or self.port

    @property
    def calls(self) -> list[Call]:
        """The calls in progress (answered or being set up)."""
        return list(self._calls.values())

    async def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Graceful shutdown: stop admitting (503), wait for the calls to end for up to
        ``timeout`` (default ``drain_timeout``), BYE the rest, close the transports."""
        if self.closed:
            return
        self.draining = True
        wait = self.config.drain_timeout if timeout is None else timeout
        calls = [c for c in self._calls.values() if not c.ended]
        if drain and calls and wait > 0:
            await asyncio.wait([asyncio.ensure_future(c.wait_ended()) for c in calls], timeout=wait)
        for inc in list(self._incoming.values()):
            if inc.task is not None:
                inc.task.cancel()
        rest = [c for c in self._calls.values() if not c.ended]
        if rest:
            await asyncio.gather(*(c.hangup("shutdown") for c in rest), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        self.closed = True
        self.driver.close()
        self.transports.close()

    def drain(self) -> None:
        """Stop admitting new calls (503 + Retry-After) without closing."""
        self.draining = True

    # -- hooks -----------------------------------------------------------------------------

    def on_request(self, method: str, handler: RequestHandler | None) -> None:
        """Route requests of ``method`` (NOTIFY, REFER...) to ``handler(call, request)``."""
        if handler is None:
            self._request_handlers.pop(method.upper(), None)
        else:
            self._request_handlers[method.upper()] = handler

    def add_local_contact(self, user: str, registration_id: str) -> None:
        """Calls to Request-URI user ``user`` arrived through registration ``registration_id``."""
        self._local_contacts[user] = registration_id

    def remove_local_contact(self, user: str) -> None:
        """Forget a registration's contact user."""
        self._local_contacts.pop(user, None)

    def contact(self, user: str | None = None, transport: str = "UDP") -> str:
        """Our Contact URI (advertised address) for ``user`` and ``transport``."""
        host = self.advertised_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        u = self.config.contact_user if user is None else user
        port = self.advertised_port
        if transport.upper() == "TLS" and self.transports.tls_address is not None:
            port = self.config.advertised_port or self.transports.tls_address[1]
        t = "" if transport.upper() == "UDP" else f";transport={transport.lower()}"
        return f"sip:{u}@{host}:{port}{t}" if u else f"sip:{host}:{port}{t}"

    def feed(self, data: bytes, source: Address, transport: str = "UDP") -> None:
        """The receive path: one datagram or framed stream message from ``source``."""
        self.driver.receive(data, source, transport)

    # -- what the core reports (dispatch.py) ---------------------------------------------------

    def _on_event(self, event: SipEvent) -> None:
        dispatch.event_received(self, event)

    def _respond(
        self,
        tx: TransactionId,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipResponse | None:
        try:
            response = self.core.create_response(
                tx, status, reason, headers=headers, body=body, content_type=content_type
            )
        except TransactionError:
            return None
        sent = self.core.send_response(tx, response, self.loop.time())
        self.driver.transmit()
        return response if sent else None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("user agent task failed", exc_info=task.exception())

    # -- session ids -----------------------------------------------------------------------

    def _next_session_id(self) -> int:
        self._session_id = (self._session_id + 1) % (1 << 62) or 1
        return self._session_id

    # -- in-dialog requests (indialog.py) -------------------------------------------------------

    def _modify(self, call: Call, ev: RequestReceived) -> None:
        """re-INVITE / UPDATE (:func:`.indialog.modify_session`); a seam tests spy on."""
        indialog.modify_session(self, call, ev)

    # -- ending calls ----------------------------------------------------------------------------

    def _end(
        self,
        call: Call,
        reason: str,
        by: Literal["remote", "local", "system"],
        code: int | None = None,
        *,
        keep_dialog: bool = False,
    ) -> None:
        if not call._finish(reason, by, code):
            return
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        if call.dialog is not None:
            self._dialog_calls.pop(call.dialog.id, None)
            if not keep_dialog:
                self.core.remove_dialog(call.dialog)
        if call.invite_tx is not None:
            self._ack_wait.pop(call.invite_tx, None)
        for tx, (rc, _) in list(self._reinvite_ack.items()):
            if rc is call:
                del self._reinvite_ack[tx]
        if call.limit_key is not None:
            n = self._limits.get(call.limit_key, 0) - 1
            if n > 0:
                self._limits[call.limit_key] = n
            else:
                self._limits.pop(call.limit_key, None)
        log.info("call %s ended: %s (%s)", call.call_id, reason, by)

    async def _bye_and_end(self, call: Call, reason: str, code: int | None = None) -> None:
        await self._send_bye(call, reason, "system", code)

    async def _hangup(self, call: Call, reason: str) -> None:
        by: Literal["local", "system"] = (
            "system" if reason in ("shutdown", "error", "rtp_timeout") else "local"
        )
        await self._send_bye(call, reason, by, None)

    async def _send_bye(
        self, call: Call, reason: str, by: Literal["remote", "local", "system"], code: int | None
    ) -> None:
        if call.ended:
            return
        dialog = call.dialog
        if dialog is None or dialog.state is DialogState.TERMINATED:
            # not answered yet: an outbound call is cancelled by dial(); an inbound one
            # that is still being answered is refused
            if call.invite_tx is not None and call.info.direction == "inbound":
                self._respond(call.invite_tx, 480 if reason != "shutdown" else 503)
            self._end(call, reason, by, code)
            return
        self._end(call, reason, by, code, keep_dialog=True)
        try:
            await self.request_in_dialog(call, "BYE", timeout=self.config.bye_timeout)
        except (TransactionError, DialogError, TimeoutError) as exc:
            log.debug("BYE of %s: %s", call.call_id, exc)
        finally:
            self.core.remove_dialog(dialog)

    def _connection_lost(self, peer: Address, transport: str) -> None:
        self.core.connection_lost(peer, transport, self.loop.time())
        self.driver.transmit()

    # -- client requests (the machinery: clientrequest.py) --------------------------------------

    def _send(
        self,
        request: SipRequest,
        destination: Address,
        transport: str,
        on_provisional: Callable[[ResponseReceived], None] | None = None,
    ) -> tuple[TransactionId, asyncio.Future[ResponseReceived]]:
        return clientrequest.send_request(self, request, destination, transport, on_provisional)

    def _stray_response(self, ev: ResponseReceived) -> None:
        clientrequest.stray_response(self, ev)

    def _authorize(
        self,
        request: SipRequest,
        response: SipResponse,
        credentials: tuple[str, str] | None,
        digest: DigestClient,
    ) -> SipRequest | None:
        return clientrequest.authorize(self, request, response, credentials, digest)

    def _destination(self, dialog: Dialog, call: Call | None) -> Address:
        return clientrequest.request_destination(self, dialog, call)

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
        return await clientrequest.request(
            self, request, destination, transport, credentials=credentials, timeout=timeout
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
        return await clientrequest.request_in_dialog(
            self,
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
        return await outbound.dial(
            self,
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
