"""Requests a user agent sends (UAC side), owned by :class:`ClientRequests`: client
transactions and their futures, the response routing (a second fork's 2xx is ACKed and
hung up), digest retries on 401/407, in-dialog requests and where they go (remote target
if an IP literal, else the outbound proxy, else the dialog's peer). The bodies of
:meth:`UserAgent.request` and :meth:`UserAgent.request_in_dialog`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.runtime import Runtime
from w3sipagent.asyncio.transport import is_ip_literal
from w3sipagent.errors import (
    AuthError,
    SipParseError,
    TransactionError,
    W3SipError,
)
from w3sipagent.sip.auth import DigestClient
from w3sipagent.sip.dialog import Dialog, DialogError, DialogId, DialogState, uri_address
from w3sipagent.sip.events import (
    Address,
    ResponseReceived,
    TransactionId,
    TransactionTimedOut,
    TransportFailed,
)
from w3sipagent.sip.headers import Headers
from w3sipagent.sip.ids import IdSource
from w3sipagent.sip.message import SipRequest, SipResponse

log = logging.getLogger("w3sipagent.asyncio.useragent")  # the records keep the UA's logger


class ClientTx:
    """A client transaction's waiter: the final response's future, the provisional hook."""

    __slots__ = ("future", "on_provisional")

    def __init__(
        self,
        future: asyncio.Future[ResponseReceived],
        on_provisional: Callable[[ResponseReceived], None] | None,
    ) -> None:
        self.future = future
        self.on_provisional = on_provisional


class DialogCalls(Protocol):
    """Which call a dialog belongs to (the call table)."""

    def by_dialog(self, dialog_id: DialogId) -> Call | None: ...


class ClientRequests:
    """The client transactions a user agent started, and how their responses are routed."""

    def __init__(self, runtime: Runtime, calls: DialogCalls) -> None:
        self._rt = runtime
        self._calls = calls
        self._pending: dict[TransactionId, ClientTx] = {}

    def send(
        self,
        request: SipRequest,
        destination: Address,
        transport: str,
        on_provisional: Callable[[ResponseReceived], None] | None = None,
    ) -> tuple[TransactionId, asyncio.Future[ResponseReceived]]:
        """Start a client transaction to an IP literal; the future gets its final response."""
        rt = self._rt
        if not is_ip_literal(destination[0]):
            raise TransactionError(f"{destination[0][:64]!r} is not an IP address (no DNS here)")
        if "User-Agent" not in request.headers:
            request.headers.add("User-Agent", rt.config.user_agent)
        tx = rt.core.send_request(request, destination, rt.now(), transport)
        future: asyncio.Future[ResponseReceived] = asyncio.get_running_loop().create_future()
        # a waiter that left (cancelled) never reads a later timer F / transport failure:
        # the failure is retrieved here, a waiter still awaiting gets it all the same
        future.add_done_callback(_retrieve)
        self._pending[tx] = ClientTx(future, on_provisional)
        rt.transmit()
        return tx, future

    def forget(self, tx: TransactionId) -> None:
        """Stop routing responses of ``tx`` to its waiter (a later 2xx is a stray fork)."""
        self._pending.pop(tx, None)

    def response_received(self, ev: ResponseReceived) -> None:
        """Route a response to its client transaction's waiter (or to :meth:`end_fork`)."""
        waiter = self._pending.get(ev.transaction)
        if waiter is None:
            self.end_fork(ev)
            return
        if ev.response.status < 200:
            if waiter.on_provisional is not None:
                try:
                    waiter.on_provisional(ev)
                except Exception:
                    log.exception("provisional response handler failed")
            return
        if ev.response.cseq.method != "INVITE" or ev.response.status >= 300:
            self._pending.pop(ev.transaction, None)
        if not waiter.future.done():
            waiter.future.set_result(ev)
        elif ev.response.cseq.method == "INVITE" and ev.dialog is not None:
            self.end_fork(ev)

    def transaction_failed(self, event: TransactionTimedOut | TransportFailed) -> None:
        """A client transaction timed out or its transport failed: its waiter raises."""
        waiter = self._pending.pop(event.transaction, None)
        if waiter is not None and not waiter.future.done():
            what = f"timer {event.timer}" if isinstance(event, TransactionTimedOut) else "transport"
            waiter.future.set_exception(TransactionError(f"request failed: {what}"))

    def end_fork(self, ev: ResponseReceived) -> None:
        """A 2xx to INVITE from a second fork: ACK it and hang it up (we keep one call)."""
        rt = self._rt
        dialog = ev.dialog
        if (
            dialog is None
            or not 200 <= ev.response.status < 300
            or self._calls.by_dialog(dialog.id) is not None
        ):
            return
        request = rt.core.transaction_request(ev.transaction)
        if request is None:
            return
        try:
            destination = dialog_address(dialog, None, rt.config.outbound_proxy)
            rt.core.send_ack(dialog.create_ack(), destination, request.via.transport)
            bye = dialog.create_request("BYE")
            rt.core.send_request(bye, destination, rt.now(), request.via.transport)
            rt.core.remove_dialog(dialog)
        except (W3SipError, ValueError) as exc:
            log.debug("cannot end extra fork: %s", exc)
        rt.transmit()

    async def request(
        self,
        request: SipRequest,
        destination: Address,
        transport: str = "UDP",
        *,
        credentials: tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> SipResponse:
        """The body of :meth:`UserAgent.request`, which documents it."""
        digest = DigestClient()
        while True:
            _, future = self.send(request, destination, transport)
            response = (await await_final(future, timeout)).response
            retry = authorize(self._rt.ids, request, response, credentials, digest)
            if retry is None:
                return response
            request = retry

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
        """The body of :meth:`UserAgent.request_in_dialog`, which documents it."""
        call = dialog_or_call if isinstance(dialog_or_call, Call) else None
        dialog = call.dialog if call is not None else dialog_or_call
        if not isinstance(dialog, Dialog):
            raise DialogError("the call has no dialog yet")
        if call is None:
            call = self._calls.by_dialog(dialog.id)
        transport = call.transport if call is not None else "UDP"
        destination = self.destination(dialog, call)
        extra = list(headers)
        credentials = (
            call.credentials if call is not None else None
        ) or self._rt.config.credentials
        request = dialog.create_request(method, body=body, content_type=content_type, headers=extra)
        offering = call is not None and (method == "INVITE" or (method == "UPDATE" and bool(body)))
        if offering:
            assert call is not None
            call.reinvite_pending = True
        try:
            return await self._in_dialog_transaction(
                dialog, request, method, destination, transport, credentials, extra, timeout
            )
        finally:
            if offering:
                assert call is not None
                call.reinvite_pending = False

    async def _in_dialog_transaction(
        self,
        dialog: Dialog,
        request: SipRequest,
        method: str,
        destination: Address,
        transport: str,
        credentials: tuple[str, str] | None,
        extra: list[tuple[str, str]],
        timeout: float | None,
    ) -> SipResponse:
        """Run one in-dialog request to its final response: a 401/407 answered once (a new
        CSeq from the dialog), the 2xx of a re-INVITE ACKed."""
        rt = self._rt
        body = request.body
        content_type = request.headers.get("Content-Type")
        digest = DigestClient()
        while True:
            _, future = self.send(request, destination, transport)
            ev = await await_final(future, timeout or rt.config.request_timeout)
            response = ev.response
            if response.status in (401, 407) and credentials is not None:
                values = response.headers.get_all(
                    "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
                )
                if digest.should_retry(values) and dialog.state is not DialogState.TERMINATED:
                    retry = dialog.create_request(
                        method, body=body, content_type=content_type, headers=extra
                    )
                    try:
                        name, value = digest.build_authorization(
                            values,
                            method=method,
                            uri=retry.uri,
                            username=credentials[0],
                            password=credentials[1],
                            body=body,
                            ids=rt.ids,
                            proxy=response.status == 407,
                        )
                    except AuthError:
                        return response
                    retry.headers.add(name, value)
                    request = retry
                    continue
            if method == "INVITE" and 200 <= response.status < 300:
                try:
                    rt.core.send_ack(dialog.create_ack(), destination, transport)
                    rt.transmit()
                except (W3SipError, ValueError) as exc:
                    log.debug("ACK of re-INVITE failed: %s", exc)
            return response

    def destination(self, dialog: Dialog, call: Call | None) -> Address:
        """Where an in-dialog request goes: the call's open TCP/TLS connection, else
        :func:`dialog_address`."""
        if (
            call is not None
            and call.transport != "UDP"
            and self._rt.has_connection(call.peer, call.transport)
        ):
            return call.peer
        return dialog_address(dialog, call, self._rt.config.outbound_proxy)


def _retrieve(future: asyncio.Future[ResponseReceived]) -> None:
    if not future.cancelled():
        future.exception()


async def await_final(
    future: asyncio.Future[ResponseReceived], timeout: float | None
) -> ResponseReceived:
    """The final response, or TransactionError after ``timeout`` (None: wait for the core)."""
    if timeout is None:
        return await future
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        future.cancel()
        raise TransactionError(f"no final response within {timeout} s") from None


def authorize(
    ids: IdSource,
    request: SipRequest,
    response: SipResponse,
    credentials: tuple[str, str] | None,
    digest: DigestClient,
) -> SipRequest | None:
    """A new request answering a 401/407 challenge, or None (not challenged / give up)."""
    if response.status not in (401, 407) or credentials is None:
        return None
    values = response.headers.get_all(
        "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    )
    if not digest.should_retry(values):
        return None
    try:
        name, value = digest.build_authorization(
            values,
            method=request.method,
            uri=request.uri,
            username=credentials[0],
            password=credentials[1],
            body=request.body,
            ids=ids,
            proxy=response.status == 407,
        )
    except AuthError:
        return None
    h = Headers((n, v) for n, v in request.headers if n not in ("Via",))
    h.remove("Authorization" if response.status == 401 else "Proxy-Authorization")
    cseq = request.cseq
    h.set("CSeq", f"{cseq.seq + 1} {cseq.method}")
    h.add(name, value)
    return SipRequest(request.method, request.uri, h, request.body)


def dialog_address(dialog: Dialog, call: Call | None, proxy: Address | None) -> Address:
    """An IP literal for in-dialog requests: next hop if literal, else proxy, else the peer."""
    try:
        addr = uri_address(dialog.next_hop())
    except (SipParseError, ValueError):
        addr = None
    if addr is not None:
        return addr
    if proxy is not None:
        return proxy
    if call is not None:
        return call.peer
    raise TransactionError("the dialog's next hop is a host name and no proxy is configured")
