"""What the SIP core reports, routed for a user agent: responses and transaction failures
to :mod:`.clientrequest`; ACK, lost ACK and CANCEL to :mod:`.inbound`; requests through the
generic checks (:mod:`.requestcheck`), then by dialog and method: a new INVITE to
:mod:`.inbound`, re-INVITE / UPDATE / INFO to :mod:`.indialog`, BYE, OPTIONS, the
:meth:`UserAgent.on_request` handlers and their replies, and the defaults (481, 501, 603).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from w3sipagent.asyncio import clientrequest, inbound, indialog
from w3sipagent.asyncio.admission import HandlerResult, Reply, source_allowed
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.requestcheck import (
    _ALLOW,
    ACCEPT,
    SUPPORTED_EXTENSIONS,
    _retry_after,
    check_request,
)
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

if TYPE_CHECKING:
    from w3sipagent.asyncio.useragent import UserAgent

log = logging.getLogger("w3sipagent.asyncio.useragent")  # the records keep the UA's logger


def event_received(ua: UserAgent, event: SipEvent) -> None:
    """An event of the SIP core, to its handler."""
    if isinstance(event, RequestReceived):
        request_received(ua, event)
    elif isinstance(event, ResponseReceived):
        clientrequest.response_received(ua, event)
    elif isinstance(event, AckReceived):
        inbound.ack_received(ua, event)
    elif isinstance(event, AckTimedOut):
        inbound.ack_timed_out(ua, event)
    elif isinstance(event, CancelReceived):
        inbound.cancel_received(ua, event)
    elif isinstance(event, (TransactionTimedOut, TransportFailed)):
        clientrequest.transaction_failed(ua, event)
    elif isinstance(event, MalformedRequest):
        log.debug(
            "malformed message from %s (%s): %s%s",
            event.source,
            event.transport,
            event.error.reason,
            "" if event.answered else " (not answered)",
        )


def request_received(ua: UserAgent, ev: RequestReceived) -> None:
    """A request: 100 Trying for a new INVITE, the generic checks, then by dialog and method."""
    request = ev.request
    method = request.method
    if method == "INVITE" and ev.dialog is None:
        ua._respond(ev.transaction, 100)  # at once, before any check that may take time
    failure = check_request(
        ev,
        source_allowed=functools.partial(source_allowed, ua),
        merges=ua._merge,
        now=ua.loop.time(),
    )
    if failure is not None:
        status, reason, headers = failure
        ua._respond(ev.transaction, status, reason, headers=headers)
        return
    if ev.dialog is not None:
        in_dialog_request(ua, ev)
        return
    if method == "INVITE":
        inbound.incoming_invite(ua, ev)
    elif method == "OPTIONS":
        answer_options(ua, ev)
    elif method in ua._request_handlers:
        call_handler(ua, ev, None)
    else:
        # BYE, INFO, UPDATE, NOTIFY, REFER outside a dialog
        ua._respond(ev.transaction, 481)


def answer_options(ua: UserAgent, ev: RequestReceived) -> None:
    """OPTIONS: our capabilities (200), or 503 + Retry-After while draining."""
    headers = [
        ("Allow", _ALLOW),
        ("Accept", ACCEPT),
        ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
    ]
    if ua.draining:
        ua._respond(ev.transaction, 503, headers=[*headers, *_retry_after(ua.config)])
    else:
        ua._respond(ev.transaction, 200, headers=headers)


def call_handler(ua: UserAgent, ev: RequestReceived, call: Call | None) -> None:
    """Run the :meth:`UserAgent.on_request` handler of the method; 500 when it fails."""
    handler = ua._request_handlers[ev.request.method]
    try:
        result = handler(call, ev.request)
    except Exception:
        log.exception("%s handler failed", ev.request.method)
        ua._respond(ev.transaction, 500)
        return
    if isinstance(result, (int, Reply, SipResponse)):
        send_reply(ua, ev.transaction, result)
        return

    async def finish(awaitable: Awaitable[HandlerResult]) -> None:
        try:
            reply = await awaitable
        except Exception:
            log.exception("%s handler failed", ev.request.method)
            reply = 500
        send_reply(ua, ev.transaction, reply)

    ua._spawn(finish(result))


def send_reply(ua: UserAgent, tx: TransactionId, reply: HandlerResult) -> None:
    """Answer with what a request handler returned (status, :class:`Reply` or response)."""
    if isinstance(reply, SipResponse):
        ua.core.send_response(tx, reply, ua.loop.time())
        ua.driver.transmit()
        return
    if isinstance(reply, int):
        ua._respond(tx, reply)
    else:
        ua._respond(
            tx,
            reply.status,
            reply.reason,
            headers=reply.headers,
            body=reply.body,
            content_type=reply.content_type,
        )


def in_dialog_request(ua: UserAgent, ev: RequestReceived) -> None:
    """A request in one of our dialogs (the core matched it; unknown dialogs got 481)."""
    assert ev.dialog is not None
    call = ua._dialog_calls.get(ev.dialog.id)
    method = ev.request.method
    if method == "BYE":
        ua._respond(ev.transaction, 200)
        if call is not None:
            ua._end(call, "remote_bye", "remote")
        return
    if method in ua._request_handlers and method not in (
        "INVITE",
        "UPDATE",
        "OPTIONS",
        "INFO",
    ):
        call_handler(ua, ev, call)
        return
    if method == "OPTIONS":
        answer_options(ua, ev)
    elif method in ("INVITE", "UPDATE"):
        if call is None or call.endpoint is None:
            ua._respond(ev.transaction, 481 if call is None else 491)
        else:
            ua._modify(call, ev)  # via the UA: a seam tests spy on
    elif method == "INFO":
        indialog.info_dtmf(ua, call, ev)
    elif method == "REFER":
        ua._respond(ev.transaction, 603, "Transfer not allowed")
    elif method == "NOTIFY":
        ua._respond(ev.transaction, 481, "No subscription")
    else:
        ua._respond(ev.transaction, 501)
