"""What the SIP core reports, routed for a user agent (:class:`Dispatcher`): responses and
transaction failures to the client requests (:mod:`.clientrequest`); ACK, lost ACK and
CANCEL to the INVITE server (:mod:`.inbound`); requests through the request gate
(:mod:`.gate`), then by dialog and method: a new INVITE to the INVITE server, re-INVITE /
UPDATE / INFO to :mod:`.indialog`, BYE, OPTIONS, the :meth:`UserAgent.on_request` handlers
and their replies, and the defaults (481, 501, 603).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from w3sipagent.asyncio.admission import HandlerResult, Reply, RequestHandler
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.calltable import CallTable
from w3sipagent.asyncio.clientrequest import ClientRequests
from w3sipagent.asyncio.gate import RequestGate
from w3sipagent.asyncio.inbound import InviteServer
from w3sipagent.asyncio.indialog import DialogRequests
from w3sipagent.asyncio.requestcheck import (
    ACCEPT,
    ALLOW,
    SUPPORTED_EXTENSIONS,
    retry_after,
)
from w3sipagent.asyncio.runtime import Runtime
from w3sipagent.sip.events import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    MalformedRequest,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionId,
    TransactionTimedOut,
    TransportFailed,
)
from w3sipagent.sip.message import SipResponse

log = logging.getLogger("w3sipagent.asyncio.useragent")  # the records keep the UA's logger


class Dispatcher:
    """Routes the core's events of one user agent to the part that owns them."""

    def __init__(
        self,
        runtime: Runtime,
        gate: RequestGate,
        table: CallTable,
        requests: ClientRequests,
        invites: InviteServer,
        dialogs: DialogRequests,
    ) -> None:
        self._rt = runtime
        self._gate = gate
        self._table = table
        self._requests = requests
        self._invites = invites
        self._dialogs = dialogs
        self._handlers: dict[str, RequestHandler] = {}

    def on_request(self, method: str, handler: RequestHandler | None) -> None:
        """Route requests of ``method`` to ``handler(call, request)`` (None: the default)."""
        if handler is None:
            self._handlers.pop(method.upper(), None)
        else:
            self._handlers[method.upper()] = handler

    def event_received(self, event: SipEvent) -> None:
        """An event of the SIP core, to its handler."""
        if isinstance(event, RequestReceived):
            self.request_received(event)
        elif isinstance(event, ResponseReceived):
            self._requests.response_received(event)
        elif isinstance(event, AckReceived):
            self._invites.ack(event)
        elif isinstance(event, AckTimedOut):
            self._invites.ack_timed_out(event)
        elif isinstance(event, CancelReceived):
            self._invites.cancel(event)
        elif isinstance(event, (TransactionTimedOut, TransportFailed)):
            self._requests.transaction_failed(event)
        elif isinstance(event, MalformedRequest):
            log.debug(
                "malformed message from %s (%s): %s%s",
                event.source,
                event.transport,
                event.error.reason,
                "" if event.answered else " (not answered)",
            )

    def request_received(self, ev: RequestReceived) -> None:
        """A request: 100 Trying for a new INVITE, the generic checks, then by dialog and method."""
        request = ev.request
        method = request.method
        if method == "INVITE" and ev.dialog is None:
            self._rt.respond(ev.transaction, 100)  # at once, before any check that may take time
        failure = self._gate.check(ev)
        if failure is not None:
            status, reason, headers = failure
            self._rt.respond(ev.transaction, status, reason, headers=headers)
            if method == "INVITE" and ev.dialog is None:
                self._invites.report_refused(ev, status, (reason or str(status)).lower())
            return
        if ev.dialog is not None:
            self.in_dialog_request(ev)
            return
        if method == "INVITE":
            self._invites.invite(ev)
        elif method == "OPTIONS":
            self.answer_options(ev)
        elif method in self._handlers:
            self.call_handler(ev, None)
        else:
            # BYE, INFO, UPDATE, NOTIFY, REFER outside a dialog
            self._rt.respond(ev.transaction, 481)

    def answer_options(self, ev: RequestReceived) -> None:
        """OPTIONS: our capabilities (200), or 503 + Retry-After while draining."""
        headers = [
            ("Allow", ALLOW),
            ("Accept", ACCEPT),
            ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
        ]
        if self._invites.draining:
            self._rt.respond(ev.transaction, 503, headers=[*headers, *retry_after(self._rt.config)])
        else:
            self._rt.respond(ev.transaction, 200, headers=headers)

    def call_handler(self, ev: RequestReceived, call: Call | None) -> None:
        """Run the :meth:`UserAgent.on_request` handler of the method; 500 when it fails."""
        handler = self._handlers[ev.request.method]
        try:
            result = handler(call, ev.request)
        except Exception:
            log.exception("%s handler failed", ev.request.method)
            self._rt.respond(ev.transaction, 500)
            return
        if isinstance(result, (int, Reply, SipResponse)):
            self.send_reply(ev.transaction, result)
            return

        async def finish(awaitable: Awaitable[HandlerResult]) -> None:
            try:
                reply = await awaitable
            except Exception:
                log.exception("%s handler failed", ev.request.method)
                reply = 500
            self.send_reply(ev.transaction, reply)

        self._rt.spawn(finish(result))

    def send_reply(self, tx: TransactionId, reply: HandlerResult) -> None:
        """Answer with what a request handler returned (status, :class:`Reply` or response)."""
        if isinstance(reply, SipResponse):
            self._rt.send_response(tx, reply)
            return
        if isinstance(reply, int):
            self._rt.respond(tx, reply)
        else:
            self._rt.respond(
                tx,
                reply.status,
                reply.reason,
                headers=reply.headers,
                body=reply.body,
                content_type=reply.content_type,
            )

    def in_dialog_request(self, ev: RequestReceived) -> None:
        """A request in one of our dialogs (the core matched it; unknown dialogs got 481)."""
        assert ev.dialog is not None
        call = self._table.by_dialog(ev.dialog.id)
        method = ev.request.method
        if method == "BYE":
            self._rt.respond(ev.transaction, 200)
            if call is not None:
                self._table.end(call, "remote_bye", "remote")
            return
        if method in self._handlers and method not in (
            "INVITE",
            "UPDATE",
            "OPTIONS",
            "INFO",
        ):
            self.call_handler(ev, call)
            return
        if method == "OPTIONS":
            self.answer_options(ev)
        elif method in ("INVITE", "UPDATE"):
            if call is None or call.endpoint is None:
                self._rt.respond(ev.transaction, 481 if call is None else 491)
            else:
                self._dialogs.modify_session(call, ev)
        elif method == "INFO":
            self._dialogs.info_dtmf(call, ev)
        elif method == "REFER":
            self._rt.respond(ev.transaction, 603, "Transfer not allowed")
        elif method == "NOTIFY":
            self._rt.respond(ev.transaction, 481, "No subscription")
        else:
            self._rt.respond(ev.transaction, 501)
