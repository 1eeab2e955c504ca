"""Events the sans-IO SIP core hands to the user agent (:meth:`SipCore.next_event`).

Events are small frozen dataclasses named in the past tense. Transactions are named by the
integer id :meth:`SipCore.send_request` returned (client) or the event carried (server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from w3sipagent.errors import SipParseError

if TYPE_CHECKING:
    from w3sipagent.sip.dialog import Dialog
    from w3sipagent.sip.message import SipRequest, SipResponse

__all__ = [
    "AckReceived",
    "AckTimedOut",
    "Address",
    "CancelReceived",
    "MalformedRequest",
    "RequestReceived",
    "ResponseReceived",
    "SipEvent",
    "TransactionId",
    "TransactionTimedOut",
    "TransportFailed",
]

Address = tuple[str, int]
"""An IP literal and a port: where a datagram came from or goes to."""

TransactionId = int
"""The core's handle on one transaction."""


@dataclass(frozen=True, slots=True)
class SipEvent:
    """Base class of the SIP core's events."""


@dataclass(frozen=True, slots=True)
class RequestReceived(SipEvent):
    """A new request (not a retransmission, not an ACK, not a CANCEL) arrived.

    Answer it with :meth:`SipCore.send_response` on ``transaction``.
    """

    request: SipRequest
    """The request; its top Via carries ``received``/``rport`` as RFC 3261 §18.2.1 asks."""
    source: Address
    """Where it came from."""
    transport: str
    """``"UDP"``, ``"TCP"`` or ``"TLS"``."""
    transaction: TransactionId
    """The server transaction that will carry the responses."""
    dialog: Dialog | None = None
    """The dialog a mid-dialog request belongs to (its remote CSeq is already checked)."""


@dataclass(frozen=True, slots=True)
class ResponseReceived(SipEvent):
    """A response to one of our requests arrived (retransmitted 2xx to INVITE included)."""

    response: SipResponse
    """The response."""
    transaction: TransactionId
    """The client transaction it belongs to."""
    dialog: Dialog | None = None
    """The dialog this response created, confirmed or belongs to (1xx with tag, 2xx)."""


@dataclass(frozen=True, slots=True)
class AckReceived(SipEvent):
    """The ACK for a 2xx we sent to an INVITE arrived; its retransmissions stopped."""

    request: SipRequest
    """The ACK (it may carry the SDP answer of a late offer)."""
    source: Address
    """Where it came from."""
    transaction: TransactionId
    """The INVITE server transaction whose 2xx is acknowledged."""


@dataclass(frozen=True, slots=True)
class AckTimedOut(SipEvent):
    """The 2xx we sent to an INVITE was never acknowledged (RFC 3261 §13.3.1.4).

    The user agent should end the dialog with BYE.
    """

    transaction: TransactionId
    """The INVITE server transaction whose 2xx was not acknowledged."""
    dialog: Dialog | None = None
    """The dialog the 2xx established."""


@dataclass(frozen=True, slots=True)
class CancelReceived(SipEvent):
    """A CANCEL matched one of our INVITE server transactions.

    The core has answered the CANCEL with 200 and, when no final response was sent yet,
    the INVITE with 487.
    """

    request: SipRequest
    """The CANCEL."""
    transaction: TransactionId
    """The cancelled INVITE server transaction."""


@dataclass(frozen=True, slots=True)
class TransactionTimedOut(SipEvent):
    """A client transaction got no final response (Timer B, C or F) or a server
    transaction never got the ACK for its non-2xx final response (Timer H)."""

    transaction: TransactionId
    """The transaction."""
    timer: str
    """The timer that fired: ``"B"``, ``"C"``, ``"F"`` or ``"H"``."""


@dataclass(frozen=True, slots=True)
class TransportFailed(SipEvent):
    """The connection a transaction relied on was lost (RFC 3261 §17.1.4, §17.2.4)."""

    transaction: TransactionId
    """The transaction."""


@dataclass(frozen=True, slots=True)
class MalformedRequest(SipEvent):
    """A datagram could not be parsed as a SIP message.

    ``error.status`` is the response this endpoint owes (400, 505, 416, ...). When the
    message was readable enough to answer (see ``answered``), the core already did.
    """

    error: SipParseError
    """What is wrong with it."""
    source: Address
    """Where it came from."""
    transport: str
    """``"UDP"``, ``"TCP"`` or ``"TLS"``."""
    answered: bool = False
    """True when the core sent ``error.status`` back itself."""
