"""The four RFC 3261 §17 transaction state machines, written as tables.

Theory of operation
-------------------
A transaction is one request and its responses. Each of the four kinds (INVITE client,
non-INVITE client, INVITE server, non-INVITE server) is a table
``{(state, input): (actions, next_state)}``. Inputs are responses and retransmitted
requests from the network, responses handed down by the user agent, and timers firing.
A pair missing from a table is a message the machine does not expect in that state
(a late retransmission, a stray response): it is logged and dropped, never an error.

The tables follow RFC 3261 §17.1.1, §17.1.2, §17.2.1, §17.2.2 with the RFC 6026
corrections: a 2xx to INVITE moves both INVITE machines to "Accepted" (Timer L on the
server, Timer M on the client) so that 2xx retransmissions and the ACK for a 2xx reach
the user agent core, which owns them.

A :class:`Transaction` does no I/O: it calls its :class:`TransactionSink` (the
:class:`~w3sipagent.sip.core.SipCore`) to transmit bytes, arm timers and report to the
user agent. Retransmission timers (A, E, G) run only over unreliable transports; the
"wait" timers D, I, J and K are zero over TCP/TLS, so the machine terminates at once.

Matching (RFC 3261 §17.1.3, §17.2.3) is a dictionary lookup on the keys built by
:func:`client_key` and :func:`server_key`; the latter falls back to the RFC 2543 rule
(Request-URI, From tag, Call-ID, CSeq, top Via) when the branch lacks the magic cookie.

This file is longer than most (~660 lines) because the four tables and the actions they name
are one specification (RFC 3261 §17) read side by side: the states, inputs, actions and
tables take ~200 lines and the machine that runs them ~270.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import ClassVar, Protocol

from w3sipagent.sip.events import Address, TransactionId
from w3sipagent.sip.headers import Headers
from w3sipagent.sip.message import SipRequest, SipResponse, make_response
from w3sipagent.sip.timers import TimerConfig

log = logging.getLogger(__name__)

__all__ = [
    "INVITE_CLIENT",
    "INVITE_SERVER",
    "MAGIC_COOKIE",
    "NON_INVITE_CLIENT",
    "NON_INVITE_SERVER",
    "RELIABLE_TRANSPORTS",
    "TABLES",
    "Action",
    "Input",
    "Kind",
    "State",
    "Table",
    "Transaction",
    "TransactionSink",
    "build_cancel",
    "build_non2xx_ack",
    "client_key",
    "is_rfc2543_key",
    "response_input",
    "server_key",
    "to_tag_matches",
]

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 branch prefix: the branch alone identifies the transaction."""

RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "WS", "WSS"})


class Kind(enum.Enum):
    """The four transaction machines."""

    INVITE_CLIENT = "INVITE client"
    NON_INVITE_CLIENT = "non-INVITE client"
    INVITE_SERVER = "INVITE server"
    NON_INVITE_SERVER = "non-INVITE server"


class State(enum.Enum):
    """Transaction states (RFC 3261 §17, RFC 6026 "Accepted")."""

    INIT = "Init"
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    """What a machine reacts to."""

    START = "start"
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST = "request retransmission"
    ACK = "ACK"
    TRANSPORT_ERROR = "transport error"
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_C = "C"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"
    TIMER_M = "M"
    TIMER_TRYING = "100"


class Action(enum.Enum):
    """What a transition does, in the order listed."""

    SEND_REQUEST = "send the request"
    SEND_RESPONSE = "send the response from the user agent"
    RESEND_RESPONSE = "resend the last response"
    SEND_TRYING = "send 100 Trying"
    SEND_ACK = "send ACK for the non-2xx final response"
    RESEND_ACK = "resend the ACK"
    PASS_RESPONSE = "pass the response up"
    PASS_ACK = "pass the ACK for a 2xx up"
    REPORT_TIMEOUT = "report a timeout"
    REPORT_TRANSPORT_ERROR = "report a transport error"
    CLEAR_TIMERS = "stop all timers"
    START_A = "start A = T1 (unreliable)"
    BACKOFF_A = "restart A doubled"
    START_B = "start B = 64*T1"
    START_C = "(re)start C"
    START_D = "start D (0 if reliable)"
    START_E = "start E = T1 (unreliable)"
    BACKOFF_E = "restart E = min(2E, T2)"
    RESET_E = "restart E = T2"
    START_F = "start F = 64*T1"
    START_G = "start G = T1 (unreliable)"
    BACKOFF_G = "restart G = min(2G, T2)"
    START_H = "start H = 64*T1"
    START_I = "start I = T4 (0 if reliable)"
    START_J = "start J = 64*T1 (0 if reliable)"
    START_K = "start K = T4 (0 if reliable)"
    START_L = "start L = 64*T1"
    START_M = "start M = 64*T1"
    START_TRYING = "start the 100 Trying timer"


S = State
I = Input  # noqa: E741
A = Action
Table = dict[tuple[State, Input], tuple[tuple[Action, ...], State]]

_FINAL_CLIENT = (A.CLEAR_TIMERS, A.PASS_RESPONSE)

INVITE_CLIENT: Table = {
    (S.INIT, I.START): ((A.SEND_REQUEST, A.START_A, A.START_B, A.START_C), S.CALLING),
    (S.CALLING, I.TIMER_A): ((A.SEND_REQUEST, A.BACKOFF_A), S.CALLING),
    (S.CALLING, I.TIMER_B): ((A.REPORT_TIMEOUT,), S.TERMINATED),
    (S.CALLING, I.TIMER_C): ((A.REPORT_TIMEOUT,), S.TERMINATED),
    (S.CALLING, I.PROVISIONAL): ((A.CLEAR_TIMERS, A.PASS_RESPONSE, A.START_C), S.PROCEEDING),
    (S.CALLING, I.SUCCESS): ((*_FINAL_CLIENT, A.START_M), S.ACCEPTED),
    (S.CALLING, I.FAILURE): ((*_FINAL_CLIENT, A.SEND_ACK, A.START_D), S.COMPLETED),
    (S.CALLING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
    (S.PROCEEDING, I.PROVISIONAL): ((A.PASS_RESPONSE, A.START_C), S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): ((*_FINAL_CLIENT, A.START_M), S.ACCEPTED),
    (S.PROCEEDING, I.FAILURE): ((*_FINAL_CLIENT, A.SEND_ACK, A.START_D), S.COMPLETED),
    # Timer C: tell the user agent (it should CANCEL), then allow 64*T1 for the final answer.
    (S.PROCEEDING, I.TIMER_C): ((A.REPORT_TIMEOUT, A.START_B), S.PROCEEDING),
    (S.PROCEEDING, I.TIMER_B): ((A.REPORT_TIMEOUT,), S.TERMINATED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
    (S.COMPLETED, I.FAILURE): ((A.RESEND_ACK,), S.COMPLETED),
    (S.COMPLETED, I.TIMER_D): ((), S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
    # RFC 6026: 2xx retransmissions (and 2xx from other forks) go to the user agent core.
    (S.ACCEPTED, I.SUCCESS): ((A.PASS_RESPONSE,), S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_M): ((), S.TERMINATED),
}
"""RFC 3261 §17.1.1 with RFC 6026 §8.4 (Accepted, Timer M)."""

NON_INVITE_CLIENT: Table = {
    (S.INIT, I.START): ((A.SEND_REQUEST, A.START_E, A.START_F), S.TRYING),
    (S.TRYING, I.TIMER_E): ((A.SEND_REQUEST, A.BACKOFF_E), S.TRYING),
    (S.TRYING, I.TIMER_F): ((A.REPORT_TIMEOUT,), S.TERMINATED),
    (S.TRYING, I.PROVISIONAL): ((A.PASS_RESPONSE,), S.PROCEEDING),
    (S.TRYING, I.SUCCESS): ((*_FINAL_CLIENT, A.START_K), S.COMPLETED),
    (S.TRYING, I.FAILURE): ((*_FINAL_CLIENT, A.START_K), S.COMPLETED),
    (S.TRYING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
    (S.PROCEEDING, I.TIMER_E): ((A.SEND_REQUEST, A.RESET_E), S.PROCEEDING),
    (S.PROCEEDING, I.TIMER_F): ((A.REPORT_TIMEOUT,), S.TERMINATED),
    (S.PROCEEDING, I.PROVISIONAL): ((A.PASS_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): ((*_FINAL_CLIENT, A.START_K), S.COMPLETED),
    (S.PROCEEDING, I.FAILURE): ((*_FINAL_CLIENT, A.START_K), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
    (S.COMPLETED, I.PROVISIONAL): ((), S.COMPLETED),
    (S.COMPLETED, I.SUCCESS): ((), S.COMPLETED),
    (S.COMPLETED, I.FAILURE): ((), S.COMPLETED),
    (S.COMPLETED, I.TIMER_K): ((), S.TERMINATED),
}
"""RFC 3261 §17.1.2."""

INVITE_SERVER: Table = {
    (S.INIT, I.START): ((A.START_TRYING,), S.PROCEEDING),
    (S.PROCEEDING, I.TIMER_TRYING): ((A.SEND_TRYING,), S.PROCEEDING),
    (S.PROCEEDING, I.REQUEST): ((A.RESEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.PROVISIONAL): ((A.CLEAR_TIMERS, A.SEND_RESPONSE), S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): ((A.CLEAR_TIMERS, A.SEND_RESPONSE, A.START_L), S.ACCEPTED),
    (S.PROCEEDING, I.FAILURE): (
        (A.CLEAR_TIMERS, A.SEND_RESPONSE, A.START_G, A.START_H),
        S.COMPLETED,
    ),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
    (S.COMPLETED, I.REQUEST): ((A.RESEND_RESPONSE,), S.COMPLETED),
    (S.COMPLETED, I.TIMER_G): ((A.RESEND_RESPONSE, A.BACKOFF_G), S.COMPLETED),
    (S.COMPLETED, I.TIMER_H): ((A.REPORT_TIMEOUT,), S.TERMINATED),
    (S.COMPLETED, I.ACK): ((A.CLEAR_TIMERS, A.START_I), S.CONFIRMED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
    (S.CONFIRMED, I.ACK): ((), S.CONFIRMED),
    (S.CONFIRMED, I.REQUEST): ((), S.CONFIRMED),
    (S.CONFIRMED, I.TIMER_I): ((), S.TERMINATED),
    # RFC 6026: INVITE retransmissions are absorbed; the UAS core retransmits the 2xx.
    (S.ACCEPTED, I.REQUEST): ((), S.ACCEPTED),
    (S.ACCEPTED, I.ACK): ((A.PASS_ACK,), S.ACCEPTED),
    (S.ACCEPTED, I.SUCCESS): ((A.SEND_RESPONSE,), S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_L): ((), S.TERMINATED),
}
"""RFC 3261 §17.2.1 with RFC 6026 §8.7 (Accepted, Timer L)."""

NON_INVITE_SERVER: Table = {
    (S.INIT, I.START): ((), S.TRYING),
    (S.TRYING, I.REQUEST): ((), S.TRYING),
    (S.TRYING, I.PROVISIONAL): ((A.SEND_RESPONSE,), S.PROCEEDING),
    (S.TRYING, I.SUCCESS): ((A.SEND_RESPONSE, A.START_J), S.COMPLETED),
    (S.TRYING, I.FAILURE): ((A.SEND_RESPONSE, A.START_J), S.COMPLETED),
    (S.PROCEEDING, I.REQUEST): ((A.RESEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.PROVISIONAL): ((A.SEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): ((A.SEND_RESPONSE, A.START_J), S.COMPLETED),
    (S.PROCEEDING, I.FAILURE): ((A.SEND_RESPONSE, A.START_J), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
    (S.COMPLETED, I.REQUEST): ((A.RESEND_RESPONSE,), S.COMPLETED),
    (S.COMPLETED, I.TIMER_J): ((), S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((A.REPORT_TRANSPORT_ERROR,), S.TERMINATED),
}
"""RFC 3261 §17.2.2."""

TABLES: dict[Kind, Table] = {
    Kind.INVITE_CLIENT: INVITE_CLIENT,
    Kind.NON_INVITE_CLIENT: NON_INVITE_CLIENT,
    Kind.INVITE_SERVER: INVITE_SERVER,
    Kind.NON_INVITE_SERVER: NON_INVITE_SERVER,
}

_TIMER_INPUTS: dict[str, Input] = {i.value: i for i in Input if i.name.startswith("TIMER_")}


def response_input(status: int) -> Input:
    """The machine input for a response with this status code."""
    if status < 200:
        return Input.PROVISIONAL
    if status < 300:
        return Input.SUCCESS
    return Input.FAILURE


class TransactionSink(Protocol):
    """What a transaction needs from the core that owns it."""

    def transmit(self, data: bytes, destination: Address, transport: str) -> None:
        """Queue ``data`` for sending."""

    def arm_timer(self, tx: Transaction, deadline: float) -> None:
        """Make sure ``tx.handle_timers`` is called at ``deadline``."""

    def response_received(self, tx: Transaction, response: SipResponse) -> None:
        """A response for the user agent (client transactions)."""

    def ack_received(self, tx: Transaction, ack: SipRequest) -> None:
        """An ACK for a 2xx matched an INVITE server transaction in Accepted."""

    def timed_out(self, tx: Transaction, timer: str) -> None:
        """Timer B, C, F or H fired."""

    def transport_failed(self, tx: Transaction) -> None:
        """The transport reported an error for this transaction."""

    def terminated(self, tx: Transaction) -> None:
        """The transaction reached Terminated: forget it."""


_ActionFn = Callable[["Transaction", float, Input, "SipRequest | SipResponse | None"], None]


class Transaction:
    """One transaction: its machine, its request, its timers and what to retransmit."""

    __slots__ = (
        "_immediate",
        "ack_bytes",
        "cancel_pending",
        "config",
        "destination",
        "id",
        "intervals",
        "key",
        "kind",
        "last_response",
        "last_response_bytes",
        "reliable",
        "request",
        "request_bytes",
        "sink",
        "state",
        "table",
        "timers",
        "transport",
        "user_data",
    )

    def __init__(
        self,
        tx_id: TransactionId,
        kind: Kind,
        request: SipRequest,
        destination: Address,
        transport: str,
        config: TimerConfig,
        sink: TransactionSink,
        key: tuple[object, ...] = (),
    ) -> None:
        self.id = tx_id
        self.kind = kind
        self.table = TABLES[kind]
        self.state = State.INIT
        self.request = request
        self.request_bytes = b""
        self.destination = destination
        self.transport = transport.upper()
        self.reliable = self.transport in RELIABLE_TRANSPORTS
        self.config = config
        self.sink = sink
        self.key = key
        self.timers: dict[str, float] = {}
        self.intervals: dict[str, float] = {}
        self.last_response: SipResponse | None = None
        self.last_response_bytes = b""
        self.ack_bytes = b""
        self.cancel_pending = False
        self.user_data: object = None
        self._immediate: list[Input] = []

    def __repr__(self) -> str:
        return f"<Transaction {self.id} {self.kind.value} {self.request.method} {self.state.value}>"

    @property
    def is_client(self) -> bool:
        """True for the two client machines."""
        return self.kind in (Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT)

    @property
    def terminated(self) -> bool:
        """True once the machine reached Terminated."""
        return self.state is State.TERMINATED

    # -- driving the machine ------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Send the request (client) or take the received request (server)."""
        self.handle(Input.START, now)

    def receive_response(self, response: SipResponse, now: float) -> bool:
        """A response from the network (client) or from the user agent (server)."""
        return self.handle(response_input(response.status), now, response)

    def handle(
        self, inp: Input, now: float, message: SipRequest | SipResponse | None = None
    ) -> bool:
        """Apply one input. Returns False when the table has no entry (input ignored)."""
        entry = self.table.get((self.state, inp))
        if entry is None:
            log.debug("%r: ignoring %s", self, inp.value)
            return False
        actions, next_state = entry
        self.state = next_state
        for action in actions:
            self._ACTIONS[action](self, now, inp, message)
        if next_state is State.TERMINATED:
            self.timers.clear()
            self._immediate.clear()
            self.sink.terminated(self)
        elif self._immediate:
            pending, self._immediate = self._immediate, []
            for timer_input in pending:
                self.handle(timer_input, now)
        return True

    def next_deadline(self) -> float | None:
        """The earliest running timer, if any."""
        return min(self.timers.values()) if self.timers else None

    def handle_timers(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first."""
        while self.timers and self.state is not State.TERMINATED:
            name, deadline = min(self.timers.items(), key=lambda kv: kv[1])
            if deadline > now:
                return
            del self.timers[name]
            self.handle(_TIMER_INPUTS[name], now)

    # -- actions -----------------------------------------------------------------------------

    def _start_timer(self, name: str, duration: float, now: float) -> None:
        if duration <= 0:
            self.timers.pop(name, None)
            self._immediate.append(_TIMER_INPUTS[name])
            return
        deadline = now + duration
        self.timers[name] = deadline
        self.sink.arm_timer(self, deadline)

    def _retransmit_timer(self, name: str, interval: float, now: float) -> None:
        if self.reliable:
            return
        self.intervals[name] = interval
        self._start_timer(name, interval, now)

    def _send_request(self, now: float, inp: Input, msg: object) -> None:
        if not self.request_bytes:
            self.request_bytes = bytes(self.request)
        self.sink.transmit(self.request_bytes, self.destination, self.transport)

    def _send_response(self, now: float, inp: Input, msg: object) -> None:
        assert isinstance(msg, SipResponse)
        self.last_response = msg
        self.last_response_bytes = bytes(msg)
        self.sink.transmit(self.last_response_bytes, self.destination, self.transport)

    def _resend_response(self, now: float, inp: Input, msg: object) -> None:
        if self.last_response_bytes:
            self.sink.transmit(self.last_response_bytes, self.destination, self.transport)

    def _send_trying(self, now: float, inp: Input, msg: object) -> None:
        self._send_response(now, inp, make_response(self.request, 100))

    def _send_ack(self, now: float, inp: Input, msg: object) -> None:
        assert isinstance(msg, SipResponse)
        self.ack_bytes = bytes(build_non2xx_ack(self.request, msg))
        self.sink.transmit(self.ack_bytes, self.destination, self.transport)

    def _resend_ack(self, now: float, inp: Input, msg: object) -> None:
        self.sink.transmit(self.ack_bytes, self.destination, self.transport)

    def _pass_response(self, now: float, inp: Input, msg: object) -> None:
        assert isinstance(msg, SipResponse)
        self.last_response = msg
        self.sink.response_received(self, msg)

    def _pass_ack(self, now: float, inp: Input, msg: object) -> None:
        assert isinstance(msg, SipRequest)
        self.sink.ack_received(self, msg)

    def _report_timeout(self, now: float, inp: Input, msg: object) -> None:
        self.sink.timed_out(self, inp.value)

    def _report_transport_error(self, now: float, inp: Input, msg: object) -> None:
        self.sink.transport_failed(self)

    def _clear_timers(self, now: float, inp: Input, msg: object) -> None:
        self.timers.clear()

    def _start_a(self, now: float, inp: Input, msg: object) -> None:
        self._retransmit_timer("A", self.config.t1, now)

    def _backoff_a(self, now: float, inp: Input, msg: object) -> None:
        self._retransmit_timer("A", 2 * self.intervals.get("A", self.config.t1), now)

    def _start_b(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("B", self.config.transaction_timeout, now)

    def _start_c(self, now: float, inp: Input, msg: object) -> None:
        if self.config.timer_c is not None:
            self._start_timer("C", self.config.timer_c, now)

    def _start_d(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("D", 0.0 if self.reliable else self.config.timer_d, now)

    def _start_e(self, now: float, inp: Input, msg: object) -> None:
        self._retransmit_timer("E", self.config.t1, now)

    def _backoff_e(self, now: float, inp: Input, msg: object) -> None:
        interval = min(2 * self.intervals.get("E", self.config.t1), self.config.t2)
        self._retransmit_timer("E", interval, now)

    def _reset_e(self, now: float, inp: Input, msg: object) -> None:
        self._retransmit_timer("E", self.config.t2, now)

    def _start_f(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("F", self.config.transaction_timeout, now)

    def _start_g(self, now: float, inp: Input, msg: object) -> None:
        self._retransmit_timer("G", self.config.t1, now)

    def _backoff_g(self, now: float, inp: Input, msg: object) -> None:
        interval = min(2 * self.intervals.get("G", self.config.t1), self.config.t2)
        self._retransmit_timer("G", interval, now)

    def _start_h(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("H", self.config.transaction_timeout, now)

    def _start_i(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("I", 0.0 if self.reliable else self.config.t4, now)

    def _start_j(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("J", 0.0 if self.reliable else self.config.transaction_timeout, now)

    def _start_k(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("K", 0.0 if self.reliable else self.config.t4, now)

    def _start_l(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("L", self.config.transaction_timeout, now)

    def _start_m(self, now: float, inp: Input, msg: object) -> None:
        self._start_timer("M", self.config.transaction_timeout, now)

    def _start_trying(self, now: float, inp: Input, msg: object) -> None:
        delay = self.config.trying_delay
        if delay is not None:
            self._start_timer("100", delay, now)

    _ACTIONS: ClassVar[dict[Action, _ActionFn]] = {
        A.SEND_REQUEST: _send_request,
        A.SEND_RESPONSE: _send_response,
        A.RESEND_RESPONSE: _resend_response,
        A.SEND_TRYING: _send_trying,
        A.SEND_ACK: _send_ack,
        A.RESEND_ACK: _resend_ack,
        A.PASS_RESPONSE: _pass_response,
        A.PASS_ACK: _pass_ack,
        A.REPORT_TIMEOUT: _report_timeout,
        A.REPORT_TRANSPORT_ERROR: _report_transport_error,
        A.CLEAR_TIMERS: _clear_timers,
        A.START_A: _start_a,
        A.BACKOFF_A: _backoff_a,
        A.START_B: _start_b,
        A.START_C: _start_c,
        A.START_D: _start_d,
        A.START_E: _start_e,
        A.BACKOFF_E: _backoff_e,
        A.RESET_E: _reset_e,
        A.START_F: _start_f,
        A.START_G: _start_g,
        A.BACKOFF_G: _backoff_g,
        A.START_H: _start_h,
        A.START_I: _start_i,
        A.START_J: _start_j,
        A.START_K: _start_k,
        A.START_L: _start_l,
        A.START_M: _start_m,
        A.START_TRYING: _start_trying,
    }
    """What each action of the tables does (looked up by :meth:`_run`)."""


# -- ACK and CANCEL construction ---------------------------------------------------------------


def build_non2xx_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK an INVITE client transaction sends for a 3xx-6xx (RFC 3261 §17.1.1.3).

    Same Request-URI, top Via (so the same branch), From, Call-ID and CSeq number as the
    INVITE; the To of the response (with its tag); the INVITE's Route set.
    """
    return _same_transaction_request("ACK", request, response.headers)


def build_cancel(request: SipRequest) -> SipRequest:
    """A CANCEL for ``request`` (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq
    number, top Via (so the same branch) and Route as the request it cancels."""
    return _same_transaction_request("CANCEL", request, request.headers)


def _same_transaction_request(method: str, request: SipRequest, to_source: Headers) -> SipRequest:
    """ACK/CANCEL sharing ``request``'s top Via, From, Call-ID, CSeq number and Route; To
    comes from ``to_source`` (the response for an ACK, the request for a CANCEL)."""
    headers = Headers()
    vias = request.headers.get_all("Via")
    if vias:
        headers.add("Via", vias[0])
    headers.add("Max-Forwards", "70")
    _copy(request.headers, headers, "From")
    _copy(to_source, headers, "To")
    _copy(request.headers, headers, "Call-ID")
    headers.add("CSeq", f"{request.cseq.seq} {method}")
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    return SipRequest(method, request.uri, headers)


def _copy(src: Headers, dst: Headers, name: str) -> None:
    value = src.get(name)
    if value is not None:
        dst.add(name, value)


# -- matching keys -----------------------------------------------------------------------------


def client_key(branch: str, method: str) -> tuple[str, str]:
    """RFC 3261 §17.1.3: a response matches the client transaction of its top Via branch and
    its CSeq method."""
    return (branch, method)


def server_key(request: SipRequest, method: str | None = None) -> tuple[object, ...]:
    """RFC 3261 §17.2.3: the server transaction key of ``request``.

    With the magic cookie: (branch, sent-by, method), ACK counting as INVITE. Without it,
    the RFC 2543 key (Request-URI, From tag, Call-ID, CSeq number, method, top Via); the
    To tag is checked after the lookup (see :func:`to_tag_matches`). ``method`` overrides
    the request's method (a CANCEL looks for its INVITE).
    """
    via = request.via
    if method is None:
        method = request.method
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port, method)
    return (
        "2543",
        request.uri,
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        method,
        via.transport.upper(),
        via.host.lower(),
        via.port,
        branch,
    )


def is_rfc2543_key(key: tuple[object, ...]) -> bool:
    """True when ``key`` came from the RFC 2543 fallback rule."""
    return bool(key) and key[0] == "2543"


def to_tag_matches(tx: Transaction, request: SipRequest) -> bool:
    """The To-tag part of the RFC 2543 rule: an ACK carries the tag of our response, any
    other request the To tag of the request that created the transaction."""
    tag = request.to.tag
    if request.method == "ACK":
        sent = tx.last_response
        return sent is None or sent.to.tag == tag
    return bool(tx.request.to.tag == tag)
