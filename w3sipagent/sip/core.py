"""The sans-IO SIP endpoint: transaction layer, UAS/UAC core duties, dialog dispatch.

:class:`SipCore` does no I/O and reads no clock. The driver (``w3sipagent.asyncio``)
follows aioquic's contract::

    core.receive_datagram(data, addr, now, transport)      # one SIP message
    while (event := core.next_event()) is not None: ...    # RequestReceived, ResponseReceived...
    for payload, addr, transport in core.datagrams_to_send(now): send(...)
    deadline = core.get_timer()                            # call core.handle_timer(now) then

After every call that changes state (``receive_datagram``, ``handle_timer``, ``send_request``,
``send_response``, ``send_ack``, ``cancel``, ``connection_lost``) drain events and call
``datagrams_to_send``, then re-arm the timer.

What the core does for the user agent:

- matches requests and responses to transactions (RFC 3261 §17.1.3 / §17.2.3, with the
  RFC 2543 fallback) by a dictionary lookup, absorbs retransmissions, retransmits over UDP;
- stamps ``received``/``rport`` on the top Via of requests (§18.2.1, RFC 3581) and sends
  responses where §18.2.2 says (the source port when ``rport`` is present, else the sent-by
  port at the source IP; over TCP/TLS back to the source connection);
- ACKs non-2xx final responses inside the transaction; retransmits our 2xx to INVITE until
  the ACK comes (§13.3.1.4), reporting :class:`~.events.AckTimedOut` after ``ack_wait``;
  re-sends our ACK when a 2xx to our INVITE is retransmitted;
- answers CANCEL (200, and 487 for the INVITE when it is still unanswered) or 481;
- creates dialogs from 1xx-with-tag/2xx to INVITE on both sides, checks the CSeq of
  mid-dialog requests (500 when lower), answers 481 for an unknown dialog, ends a dialog on
  BYE.

The core only ever sends to IP literals it was given or received from; it never resolves a
host name.

This file is longer than most (~740 lines) because it is one state owner: the transaction
and dialog tables and the timer heap are read and changed together on every message, and
splitting :class:`SipCore` would only spread that one state over several files.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from w3sipagent.errors import SipParseError, TransactionError
from w3sipagent.sip.dialog import Dialog, DialogError, DialogId, DialogState
from w3sipagent.sip.events import (
    AckReceived,
    AckTimedOut,
    Address,
    CancelReceived,
    MalformedRequest,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionId,
    TransactionTimedOut,
    TransportFailed,
)
from w3sipagent.sip.headers import Via, split_header_list
from w3sipagent.sip.ids import IdSource
from w3sipagent.sip.message import (
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
    partial_message,
)
from w3sipagent.sip.timers import TimerConfig
from w3sipagent.sip.transaction import (
    MAGIC_COOKIE,
    RELIABLE_TRANSPORTS,
    Input,
    Kind,
    State,
    Transaction,
    build_cancel,
    client_key,
    is_rfc2543_key,
    server_key,
    to_tag_matches,
)

__all__ = [
    "CoreConfig",
    "Datagram",
    "InvalidDestination",
    "SipCore",
    "response_destination",
]

log = logging.getLogger(__name__)

Datagram = tuple[bytes, Address, str]
"""(payload, destination, transport) for the driver to send."""


class InvalidDestination(TransactionError, ValueError):
    """A destination is not an (IP literal, port) pair: the core never resolves names."""


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Settings of one :class:`SipCore`.

    ``via_host``/``via_port`` are the sent-by of our Via (our listening address as the peer
    can reach it). ``reject_unknown_dialogs`` answers 481 to requests whose To tag names no
    dialog of this core.
    """

    via_host: str = "127.0.0.1"
    via_port: int | None = 5060
    timers: TimerConfig = field(default_factory=TimerConfig)
    reject_unknown_dialogs: bool = True
    server_header: str | None = None


class _AckWaiter:
    """The UAS core's 2xx retransmission until the ACK (RFC 3261 §13.3.1.4)."""

    __slots__ = (
        "data",
        "destination",
        "dialog",
        "give_up",
        "interval",
        "key",
        "next_send",
        "t2",
        "transport",
        "tx_id",
    )

    def __init__(
        self,
        timers: TimerConfig,
        key: tuple[str, str, int],
        tx: Transaction,
        data: bytes,
        now: float,
        dialog: Dialog | None,
    ) -> None:
        self.t2 = timers.t2
        self.key = key
        self.tx_id = tx.id
        self.data = data
        self.destination = tx.destination
        self.transport = tx.transport
        self.dialog = dialog
        self.interval = timers.t1
        self.next_send: float | None = now + timers.t1
        self.give_up: float | None = now + timers.ack_timeout

    def next_deadline(self) -> float | None:
        if self.give_up is None or self.next_send is None:
            return self.give_up
        return min(self.next_send, self.give_up)

    def stop(self) -> None:
        self.give_up = None
        self.next_send = None

    def due(self, now: float) -> Literal["give_up", "resend"] | None:
        """What is due at ``now``: give up (no ACK came), resend the 2xx (the next send is
        then scheduled, the interval doubled up to T2), or nothing."""
        if self.give_up is None:
            return None
        if now >= self.give_up:
            self.stop()
            return "give_up"
        if self.next_send is not None and now >= self.next_send:
            self.interval = min(2 * self.interval, self.t2)
            self.next_send = now + self.interval
            return "resend"
        return None


class SipCore:
    """A sans-IO SIP endpoint (user agent side: no proxying).

    ``ids`` supplies branches, tags and Call-IDs; ``config`` the Via sent-by and timers.
    """

    def __init__(self, config: CoreConfig | None = None, *, ids: IdSource) -> None:
        self.config = config if config is not None else CoreConfig()
        self.ids = ids
        self._events: deque[SipEvent] = deque()
        self._out: list[Datagram] = []
        self._heap: list[tuple[float, int, Transaction | _AckWaiter]] = []
        self._seq = itertools.count()
        self._tx_ids = itertools.count(1)
        self._transactions: dict[TransactionId, Transaction] = {}
        self._client_txs: dict[tuple[object, ...], Transaction] = {}
        self._server_txs: dict[tuple[object, ...], Transaction] = {}
        self._server_tags: dict[TransactionId, str] = {}
        self._ack_waiters: dict[tuple[str, str, int], _AckWaiter] = {}
        self._sent_acks: dict[tuple[str, int, str], Datagram] = {}
        self._dialogs: dict[DialogId, Dialog] = {}
        self._checked_destinations: set[Address] = set()
        self._source: Address = ("0.0.0.0", 0)

    # -- identifiers -----------------------------------------------------------------------------

    def new_branch(self) -> str:
        """A fresh RFC 3261 branch (magic cookie + token)."""
        return MAGIC_COOKIE + self.ids.token(8)

    def new_tag(self) -> str:
        """A fresh From/To tag."""
        return self.ids.token(6)

    def new_call_id(self) -> str:
        """A fresh Call-ID."""
        return self.ids.token(12)

    # -- driver contract ---------------------------------------------------------------------------

    def receive_datagram(
        self, data: bytes, addr: Address, now: float, transport: str = "UDP"
    ) -> None:
        """Feed one SIP message: a UDP datagram, or one framed message from a TCP/TLS stream.

        Empty keep-alives (CRLF) are ignored. A message that does not parse becomes a
        :class:`MalformedRequest` event.
        """
        if not data.strip(b"\r\n \t"):
            return
        transport = transport.upper()
        try:
            message = parse_message(data)
            if isinstance(message, SipRequest):
                self._receive_request(message, addr, transport, now)
            else:
                self._receive_response(message, now)
        except SipParseError as exc:
            self._malformed(exc, data, addr, transport)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Everything queued for sending: (payload, (ip, port), transport)."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next be called, or None."""
        heap = self._heap
        while heap:
            deadline, _, owner = heap[0]
            due = owner.next_deadline()
            if due is None or due > deadline:
                heapq.heappop(heap)
                continue
            return deadline
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, owner = heapq.heappop(heap)
            if isinstance(owner, _AckWaiter):
                self._ack_waiter_due(owner, now)
            else:
                owner.handle_timers(now)

    def next_event(self) -> SipEvent | None:
        """The next event for the user agent, or None."""
        return self._events.popleft() if self._events else None

    # -- user agent actions ----------------------------------------------------------------------

    def send_request(
        self, request: SipRequest, destination: Address, now: float, transport: str = "UDP"
    ) -> TransactionId:
        """Start a client transaction for ``request`` towards ``destination`` (an IP literal).

        A request without Via gets ours with a fresh branch; one with a Via (a CANCEL, a
        retry) keeps it. Returns the transaction id that responses and timeouts will carry.
        """
        if request.method == "ACK":
            raise TransactionError("ACK is not sent in a transaction: use send_ack()")
        self._check_destination(destination)
        transport = transport.upper()
        branch = self._ensure_via(request, transport)
        if "Max-Forwards" not in request.headers:
            request.headers.add("Max-Forwards", "70")
        key = client_key(branch, request.method)
        if key in self._client_txs:
            raise TransactionError(f"a client transaction with branch {branch} is running")
        kind = Kind.INVITE_CLIENT if request.method == "INVITE" else Kind.NON_INVITE_CLIENT
        tx = Transaction(
            next(self._tx_ids), kind, request, destination, transport, self.config.timers, self, key
        )
        self._transactions[tx.id] = tx
        self._client_txs[key] = tx
        tx.start(now)
        return tx.id

    def send_ack(self, ack: SipRequest, destination: Address, transport: str = "UDP") -> None:
        """Send the ACK for a 2xx to our INVITE (outside any transaction, RFC 3261 §13.2.2.4).

        The core remembers it and re-sends it by itself when the 2xx is retransmitted.
        """
        if ack.method != "ACK":
            raise TransactionError(f"send_ack() needs an ACK, not {ack.method}")
        self._check_destination(destination)
        transport = transport.upper()
        self._ensure_via(ack, transport)
        if "Max-Forwards" not in ack.headers:
            ack.headers.add("Max-Forwards", "70")
        datagram = (bytes(ack), destination, transport)
        self._out.append(datagram)
        tag = ack.to.tag
        if tag:
            self._sent_acks[(ack.call_id, ack.cseq.seq, tag)] = datagram

    def create_response(
        self,
        transaction: TransactionId,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipResponse:
        """A response to the request of server ``transaction``.

        Every response but 100 to a request without To tag gets the same fresh To tag, so the
        180 and the 200 of one INVITE name the same dialog.
        """
        tx = self._transaction(transaction)
        request = tx.request
        to_tag: str | None = None
        if status > 100 and request.to.tag is None:
            to_tag = self._server_tags.get(tx.id)
            if to_tag is None:
                to_tag = self._server_tags[tx.id] = self.new_tag()
        extra = list(headers)
        if self.config.server_header and not any(n.lower() == "server" for n, _ in extra):
            extra.append(("Server", self.config.server_header))
        return make_response(
            request,
            status,
            reason,
            to_tag=to_tag,
            headers=extra,
            body=body,
            content_type=content_type,
        )

    def send_response(self, transaction: TransactionId, response: SipResponse, now: float) -> bool:
        """Send ``response`` in server ``transaction``.

        A 2xx to INVITE is then retransmitted by the core until the ACK arrives. Returns False
        when the transaction cannot take it any more (it already sent a final response, or it
        was cancelled or ended): the response is not sent.
        """
        tx = self._transactions.get(transaction)
        if tx is None or tx.is_client:
            return False
        if not tx.receive_response(response, now):
            return False
        if tx.kind is Kind.INVITE_SERVER and response.status > 100:
            self._uas_dialog(tx, response, now)
        return True

    def cancel(self, transaction: TransactionId, now: float) -> TransactionId | None:
        """CANCEL our INVITE ``transaction`` (RFC 3261 §9.1).

        Sent at once when a provisional response came, else as soon as one comes. Returns the
        CANCEL's transaction id, or None when there is nothing left to cancel.
        """
        tx = self._transactions.get(transaction)
        if tx is None or tx.kind is not Kind.INVITE_CLIENT:
            return None
        if tx.state is State.PROCEEDING:
            return self._send_cancel(tx, now)
        if tx.state is State.CALLING:
            tx.cancel_pending = True
        return None

    def connection_lost(self, destination: Address, transport: str, now: float) -> None:
        """A TCP/TLS connection to ``destination`` closed: its transactions fail."""
        transport = transport.upper()
        for tx in list(self._transactions.values()):
            if tx.destination == destination and tx.transport == transport:
                tx.handle(Input.TRANSPORT_ERROR, now)

    # -- queries ---------------------------------------------------------------------------------

    def transaction_request(self, transaction: TransactionId) -> SipRequest | None:
        """The request of a live transaction."""
        tx = self._transactions.get(transaction)
        return tx.request if tx is not None else None

    def transaction_state(self, transaction: TransactionId) -> State:
        """The state of a transaction (Terminated once it is forgotten)."""
        tx = self._transactions.get(transaction)
        return tx.state if tx is not None else State.TERMINATED

    def dialog(self, dialog_id: DialogId) -> Dialog | None:
        """A live dialog by (Call-ID, local tag, remote tag)."""
        return self._dialogs.get(dialog_id)

    @property
    def dialogs(self) -> list[Dialog]:
        """The live dialogs."""
        return list(self._dialogs.values())

    def add_dialog(self, dialog: Dialog) -> None:
        """Register a dialog built outside the core (so its requests are dispatched to it)."""
        self._dialogs[dialog.id] = dialog

    def remove_dialog(self, dialog: Dialog) -> None:
        """Forget a dialog (mid-dialog requests naming it then get 481)."""
        dialog.terminate()
        self._dialogs.pop(dialog.id, None)

    # -- TransactionSink ---------------------------------------------------------------------------

    def transmit(self, data: bytes, destination: Address, transport: str) -> None:
        self._out.append((data, destination, transport))

    def arm_timer(self, tx: Transaction, deadline: float) -> None:
        self._arm(tx, deadline)

    def response_received(self, tx: Transaction, response: SipResponse) -> None:
        request = tx.request
        status = response.status
        dialog: Dialog | None = None
        if request.method == "INVITE":
            tag = response.to.tag
            if 200 <= status < 300 and tag:
                sent = self._sent_acks.get((request.call_id, request.cseq.seq, tag))
                if sent is not None:
                    self._out.append(sent)  # our ACK again for the retransmitted 2xx
                    return
        if request.to.tag is None:
            if request.method == "INVITE":
                dialog = self._uac_dialog(tx, response)
        else:
            dialog = self._dialogs.get((request.call_id, request.from_.tag or "", request.to.tag))
            if dialog is not None and status >= 200:
                dialog.receive_response(request.method, response)
                if request.method == "BYE" or dialog.state is DialogState.TERMINATED:
                    self.remove_dialog(dialog)
        self._events.append(ResponseReceived(response, tx.id, dialog))

    def ack_received(self, tx: Transaction, ack: SipRequest) -> None:
        self._ack_for_2xx(ack, self._source)

    def timed_out(self, tx: Transaction, timer: str) -> None:
        self._events.append(TransactionTimedOut(tx.id, timer))

    def transport_failed(self, tx: Transaction) -> None:
        self._events.append(TransportFailed(tx.id))

    def terminated(self, tx: Transaction) -> None:
        self._transactions.pop(tx.id, None)
        table = self._client_txs if tx.is_client else self._server_txs
        if table.get(tx.key) is tx:
            del table[tx.key]
        self._server_tags.pop(tx.id, None)
        if tx.kind is Kind.INVITE_CLIENT:
            request = tx.request
            tags = tx.user_data
            if isinstance(tags, list):
                for tag in tags:
                    self._sent_acks.pop((request.call_id, request.cseq.seq, tag), None)

    # -- incoming requests -----------------------------------------------------------------------

    def _receive_request(
        self, request: SipRequest, source: Address, transport: str, now: float
    ) -> None:
        key = server_key(request)
        tx = self._server_txs.get(key)
        method = request.method
        if tx is not None and (not is_rfc2543_key(key) or to_tag_matches(tx, request)):
            self._source = source
            tx.handle(Input.ACK if method == "ACK" else Input.REQUEST, now, request)
            return
        if method == "ACK":
            self._ack_for_2xx(request, source)
            return
        _stamp_via(request, source)
        destination = response_destination(request.via, source, transport)
        kind = Kind.INVITE_SERVER if method == "INVITE" else Kind.NON_INVITE_SERVER
        tx = Transaction(
            next(self._tx_ids), kind, request, destination, transport, self.config.timers, self, key
        )
        self._transactions[tx.id] = tx
        self._server_txs[key] = tx
        tx.start(now)
        if method == "CANCEL":
            self._receive_cancel(tx, now)
            return
        dialog: Dialog | None = None
        to_tag = request.to.tag
        if to_tag is not None:
            dialog = self._dialogs.get((request.call_id, to_tag, request.from_.tag or ""))
            if dialog is None:
                if self.config.reject_unknown_dialogs:
                    self._reply(tx, 481, now)
                    return
            else:
                try:
                    status = dialog.receive_request(request)
                except SipParseError as exc:
                    self._reply(tx, exc.status, now, exc.reason)
                    return
                if status is not None:
                    self._reply(tx, status, now, "CSeq out of order")
                    return
                if method == "BYE":
                    self.remove_dialog(dialog)
        self._events.append(RequestReceived(request, source, transport, tx.id, dialog))

    def _malformed(self, exc: SipParseError, data: bytes, source: Address, transport: str) -> None:
        partial = partial_message(exc)
        if partial is None and data.lstrip(b"\r\n")[:4].upper() == b"SIP/":
            log.debug("dropping malformed response from %s: %s", source, exc.reason)
            return
        answered = False
        # A reply is routed by the request's Via (RFC 3261 §18.2.2); garbage without one
        # (stray CRLFs, a bare method name) is dropped, not answered. RFC 4475 insuf.dat
        # (Via present, From/To/Call-ID missing) still gets its 400.
        if isinstance(partial, SipRequest) and partial.method != "ACK" and "Via" in partial.headers:
            try:
                response = make_response(partial, exc.status, exc.reason)
                data = bytes(response)
            except SipParseError:
                pass
            else:
                try:
                    destination = response_destination(partial.via, source, transport)
                except SipParseError:
                    destination = source
                self._out.append((data, destination, transport))
                answered = True
        self._events.append(MalformedRequest(exc, source, transport, answered))

    def _receive_cancel(self, tx: Transaction, now: float) -> None:
        cancel = tx.request
        invite_key = server_key(cancel, "INVITE")
        invite = self._server_txs.get(invite_key)
        if invite is None or (is_rfc2543_key(invite_key) and not to_tag_matches(invite, cancel)):
            self._reply(tx, 481, now)
            return
        self._reply(tx, 200, now)
        if invite.state is State.PROCEEDING:
            self.send_response(invite.id, self.create_response(invite.id, 487), now)
        self._events.append(CancelReceived(cancel, invite.id))

    def _ack_for_2xx(self, ack: SipRequest, source: Address) -> None:
        tag = ack.to.tag
        waiter = self._ack_waiters.pop((ack.call_id, tag or "", ack.cseq.seq), None)
        if waiter is None:
            log.debug("ACK matches no 2xx waiting for it: %s", ack.call_id)
            return
        waiter.stop()
        self._events.append(AckReceived(ack, source, waiter.tx_id))

    def _reply(self, tx: Transaction, status: int, now: float, reason: str | None = None) -> None:
        self.send_response(tx.id, self.create_response(tx.id, status, reason), now)

    # -- incoming responses ------------------------------------------------------------------------

    def _receive_response(self, response: SipResponse, now: float) -> None:
        vias = response.vias
        if len(vias) != 1:
            log.debug("discarding response with %d Via values (RFC 3261 §18.1.2)", len(vias))
            return
        branch = vias[0].branch
        tx = self._client_txs.get(client_key(branch or "", response.cseq.method))
        if tx is None:
            log.debug("stray response %d %s", response.status, response.cseq)
            return
        tx.receive_response(response, now)
        if tx.cancel_pending and tx.state is State.PROCEEDING:
            tx.cancel_pending = False
            self._send_cancel(tx, now)

    # -- dialogs -----------------------------------------------------------------------------------

    def _uac_dialog(self, tx: Transaction, response: SipResponse) -> Dialog | None:
        request = tx.request
        status = response.status
        tag = response.to.tag
        if tx.user_data is None:
            tx.user_data = []
        tags = tx.user_data
        assert isinstance(tags, list)
        if status >= 300:
            for t in tags:
                early = self._dialogs.get((request.call_id, request.from_.tag or "", t))
                if early is not None and early.state is DialogState.EARLY:
                    self.remove_dialog(early)
            return None
        if not tag or status == 100:
            return None
        dialog = self._dialogs.get((request.call_id, request.from_.tag or "", tag))
        if dialog is None:
            try:
                dialog = Dialog.uac(request, response)
            except (SipParseError, DialogError) as exc:
                log.debug("no dialog from %d: %s", status, exc)
                return None
            self._dialogs[dialog.id] = dialog
            tags.append(tag)
        else:
            dialog.receive_response("INVITE", response)
        return dialog

    def _uas_dialog(self, tx: Transaction, response: SipResponse, now: float) -> None:
        request = tx.request
        status = response.status
        tag = response.to.tag
        dialog: Dialog | None = None
        if tag and request.to.tag is None:
            did = (request.call_id, tag, request.from_.tag or "")
            dialog = self._dialogs.get(did)
            if status < 300 and dialog is None:
                try:
                    dialog = Dialog.uas(request, response, transport=tx.transport)
                except (SipParseError, DialogError) as exc:
                    log.debug("no dialog from %d: %s", status, exc)
                else:
                    self._dialogs[did] = dialog
            elif dialog is not None:
                if status < 300:
                    if status >= 200:
                        dialog.confirm()
                else:
                    self.remove_dialog(dialog)
                    dialog = None
        elif request.to.tag is not None:
            dialog = self._dialogs.get((request.call_id, request.to.tag, request.from_.tag or ""))
        if 200 <= status < 300 and tag:
            key = (request.call_id, tag, request.cseq.seq)
            waiter = _AckWaiter(self.config.timers, key, tx, tx.last_response_bytes, now, dialog)
            old = self._ack_waiters.get(key)
            if old is not None:
                old.stop()
            self._ack_waiters[key] = waiter
            deadline = waiter.next_deadline()
            assert deadline is not None
            self._arm(waiter, deadline)

    # -- internals -------------------------------------------------------------------------------

    def _arm(self, owner: Transaction | _AckWaiter, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), owner))

    def _ack_waiter_due(self, waiter: _AckWaiter, now: float) -> None:
        what = waiter.due(now)
        if what == "give_up":
            self._ack_waiters.pop(waiter.key, None)
            self._events.append(AckTimedOut(waiter.tx_id, waiter.dialog))
        elif what == "resend":
            self._out.append((waiter.data, waiter.destination, waiter.transport))
            deadline = waiter.next_deadline()
            assert deadline is not None
            self._arm(waiter, deadline)

    def _transaction(self, transaction: TransactionId) -> Transaction:
        tx = self._transactions.get(transaction)
        if tx is None:
            raise TransactionError(f"no transaction {transaction}")
        return tx

    def _send_cancel(self, tx: Transaction, now: float) -> TransactionId:
        cancel = build_cancel(tx.request)
        return self.send_request(cancel, tx.destination, now, tx.transport)

    def _ensure_via(self, request: SipRequest, transport: str) -> str:
        lines = request.headers.get_lines("Via")
        if lines:
            branch = request.via.branch
            if not branch:
                raise TransactionError("the request's Via has no branch")
            return branch
        branch = self.new_branch()
        sent_by = self.config.via_host
        if self.config.via_port is not None:
            sent_by = f"{sent_by}:{self.config.via_port}"
        request.headers.insert(0, "Via", f"SIP/2.0/{transport} {sent_by};branch={branch};rport")
        return branch

    def _check_destination(self, destination: Address) -> None:
        if destination in self._checked_destinations:
            return
        try:
            host, port = destination
            ipaddress.ip_address(host)
        except (TypeError, ValueError) as exc:
            raise InvalidDestination(
                f"destination {destination!r} is not (IP literal, port): the core resolves no names"
            ) from exc
        if not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidDestination(f"destination {destination!r}: port out of range")
        if len(self._checked_destinations) < 4096:
            self._checked_destinations.add(destination)


# -- RFC 3261 §18.2 ------------------------------------------------------------------------------


def response_destination(via: Via, source: Address, transport: str) -> Address:
    """Where responses to a request go (RFC 3261 §18.2.2, RFC 3581).

    Reliable transports: back to the source (the same connection). UDP: the source IP and
    port when the top Via has ``rport``; otherwise the source IP (what ``received`` holds) and
    the Via's sent-by port, 5060 by default. A ``maddr`` is ignored: it may be a host name,
    and the core resolves none.
    """
    if transport.upper() in RELIABLE_TRANSPORTS or via.has_rport:
        return source
    return (source[0], via.port if via.port is not None else 5060)


_BARE_RPORT_RE = re.compile(r";[ \t]*rport[ \t]*(?=;|$)", re.IGNORECASE)


def _stamp_via(request: SipRequest, source: Address) -> None:
    """Add ``received`` (sent-by host differs from the source IP) and fill in ``rport`` (when
    asked for) on the top Via of a received request (RFC 3261 §18.2.1, RFC 3581 §4)."""
    via = request.via
    host = via.host[1:-1] if via.host.startswith("[") else via.host
    fill_rport = via.has_rport and via.rport is None
    if host == source[0] and not fill_rport:
        return
    first = request.headers.get("Via") or ""
    top = split_header_list(first)[0] if "," in first else first
    fast = "received" not in via.params
    via.params["received"] = source[0]
    if fill_rport:
        via.params["rport"] = str(source[1])
        if fast:
            top, found = _BARE_RPORT_RE.subn(f";rport={source[1]}", top, count=1)
            fast = found == 1
    request.replace_top_via(via, f"{top};received={source[0]}" if fast else None)
