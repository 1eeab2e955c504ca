"""SIP dialogs (RFC 3261 §12): identity, route set, remote target, CSeq counting.

A :class:`Dialog` is the state two user agents share between an INVITE's 1xx-with-tag or
2xx and the BYE: Call-ID, local and remote tags and URIs, the route set (from Record-Route,
reversed on the UAC side), the remote target (from Contact, refreshed by target-refresh
requests) and the two CSeq counters. It builds in-dialog requests (BYE, re-INVITE, REFER,
NOTIFY, INFO, UPDATE, ...) and the ACK for a 2xx, applying loose or strict routing
(§12.2.1.1), and checks the CSeq of requests from the peer (§12.2.2: lower means 500).

Dialogs carry no Via: the core adds the top Via (fresh branch) when it sends the request.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable

from w3sipagent.errors import W3SipError
from w3sipagent.sip.headers import Headers, NameAddr
from w3sipagent.sip.message import SipRequest, SipResponse
from w3sipagent.sip.uri import SipUri

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogState",
    "record_route",
    "uri_address",
]

TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
"""Requests whose Contact replaces the remote target (RFC 3261 §12.2, RFC 6665, RFC 3515)."""

DialogId = tuple[str, str, str]
"""(Call-ID, local tag, remote tag)."""


class DialogError(W3SipError, ValueError):
    """A dialog was asked for something it cannot do (a CANCEL, an ACK without CSeq, a
    message without the fields a dialog needs)."""


class DialogState(enum.Enum):
    """RFC 3261 §12 dialog states."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Dialog:
    """One dialog, from either side.

    Build it with :meth:`Dialog.uas` (we answered an INVITE) or :meth:`Dialog.uac`
    (we sent the INVITE and got a 1xx with a To tag or a 2xx).
    """

    __slots__ = (
        "call_id",
        "invite_seq",
        "is_uac",
        "local_contact",
        "local_seq",
        "local_tag",
        "local_uri",
        "remote_seq",
        "remote_tag",
        "remote_target",
        "remote_uri",
        "route_set",
        "secure",
        "state",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: str,
        remote_uri: str,
        remote_target: str,
        route_set: Iterable[str] = (),
        local_seq: int | None = None,
        remote_seq: int | None = None,
        local_contact: str | None = None,
        secure: bool = False,
        is_uac: bool = False,
        state: DialogState = DialogState.CONFIRMED,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        """Our name-addr without tag (From of our requests)."""
        self.remote_uri = remote_uri
        """The peer's name-addr without tag (To of our requests)."""
        self.remote_target = remote_target
        """The URI our requests go to (the peer's Contact)."""
        self.route_set = list(route_set)
        """Route header values (name-addr text), in the order our requests carry them."""
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.local_contact = local_contact
        """Our Contact header value for target-refresh requests."""
        self.secure = secure
        self.is_uac = is_uac
        self.state = state
        self.invite_seq: int | None = None
        """CSeq number of the last INVITE we sent (for its ACK)."""

    def __repr__(self) -> str:
        side = "UAC" if self.is_uac else "UAS"
        return (
            f"<Dialog {side} {self.state.value} {self.call_id} {self.local_tag}/{self.remote_tag}>"
        )

    # -- creation ----------------------------------------------------------------------------

    @classmethod
    def uas(cls, request: SipRequest, response: SipResponse, *, transport: str = "UDP") -> Dialog:
        """The dialog a UAS creates when it answers ``request`` with a 1xx or 2xx carrying a
        To tag (RFC 3261 §12.1.1): route set = Record-Route as received, remote target =
        Contact of the request, remote CSeq = the request's."""
        local_tag = response.to.tag
        remote_tag = request.from_.tag
        if not local_tag:
            raise DialogError("response creates no dialog: To has no tag")
        contacts = request.contact
        if not contacts:
            raise DialogError(f"{request.method} creates no dialog: no Contact")
        response_contacts = response.contact
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag or "",
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            remote_target=str(contacts[0].uri),
            route_set=record_route(request),
            remote_seq=request.cseq.seq,
            local_contact=str(response_contacts[0]) if response_contacts else None,
            secure=_is_sips(request.uri) and transport.upper() == "TLS",
            is_uac=False,
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
        )

    @classmethod
    def uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a UAC creates from a 1xx with To tag or a 2xx to ``request``
        (RFC 3261 §12.1.2): route set = Record-Route reversed, remote target = Contact of
        the response, local CSeq = the request's."""
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if not remote_tag:
            raise DialogError("response creates no dialog: To has no tag")
        if not local_tag:
            raise DialogError(f"{request.method} creates no dialog: From has no tag")
        contacts = response.contact
        request_contacts = request.contact
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(request.to),
            remote_target=str(contacts[0].uri) if contacts else request.uri,
            route_set=list(reversed(record_route(response))),
            local_seq=request.cseq.seq,
            local_contact=str(request_contacts[0]) if request_contacts else None,
            secure=_is_sips(request.uri),
            is_uac=True,
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
        )
        if request.method == "INVITE":
            dialog.invite_seq = request.cseq.seq
        return dialog

    @property
    def id(self) -> DialogId:
        """(Call-ID, local tag, remote tag)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- peer's messages ---------------------------------------------------------------------

    def receive_request(self, request: SipRequest) -> int | None:
        """Take a request from the peer in this dialog (RFC 3261 §12.2.2).

        Returns 500 when its CSeq is lower than the last one seen (out of order: reject it),
        None when it is acceptable; then the remote CSeq is updated and a target-refresh
        request's Contact becomes the remote target.
        """
        method = request.method
        if method in ("ACK", "CANCEL"):
            return None
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return 500
        self.remote_seq = seq
        if method in TARGET_REFRESH_METHODS:
            contacts = request.contact
            if contacts:
                self.remote_target = str(contacts[0].uri)
        return None

    def receive_response(self, method: str, response: SipResponse) -> None:
        """Take the response to a request of ours in this dialog.

        A 2xx to INVITE confirms an early dialog and (UAC side) recomputes its route set
        (§13.2.2.4); a 1xx/2xx to a target-refresh request updates the remote target; a
        481 or 408 ends the dialog (§12.2.1.2), so does a failure to the dialog-creating
        INVITE while early.
        """
        status = response.status
        if status < 300:
            if status >= 200 and method == "INVITE" and self.state is DialogState.EARLY:
                self.state = DialogState.CONFIRMED
                if self.is_uac:
                    self.route_set = list(reversed(record_route(response)))
            if method in TARGET_REFRESH_METHODS and status > 100:
                contacts = response.contact
                if contacts:
                    self.remote_target = str(contacts[0].uri)
        elif status in (408, 481) or (method == "INVITE" and self.state is DialogState.EARLY):
            self.state = DialogState.TERMINATED

    def confirm(self) -> None:
        """Mark an early dialog confirmed (a UAS sent its 2xx)."""
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        """Mark the dialog terminated (BYE sent or received, failure of the INVITE)."""
        self.state = DialogState.TERMINATED

    # -- our requests ------------------------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """A new request in this dialog (BYE, re-INVITE, REFER, NOTIFY, INFO, UPDATE, ...).

        The local CSeq is incremented; Request-URI and Route follow §12.2.1.1; target-refresh
        requests carry our Contact. No Via: the core adds it when sending.
        """
        method = method.upper()
        if method in ("ACK", "CANCEL"):
            raise DialogError(
                f"{method} is not a new request in a dialog: use create_ack() / build_cancel()"
            )
        if self.state is DialogState.TERMINATED:
            raise DialogError(f"cannot send {method}: dialog {self.call_id} is terminated")
        self.local_seq = 1 if self.local_seq is None else self.local_seq + 1
        if method == "INVITE":
            self.invite_seq = self.local_seq
        return self._build(method, self.local_seq, body, content_type, headers)

    def create_ack(
        self,
        seq: int | None = None,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """The ACK for a 2xx to our INVITE (RFC 3261 §13.2.2.4): the INVITE's CSeq number
        (``seq``, by default the last INVITE this dialog sent), method ACK, the dialog's
        Request-URI and Route. The core sends it outside any transaction."""
        if seq is None:
            seq = self.invite_seq
        if seq is None:
            raise DialogError("ACK needs the CSeq number of the INVITE it acknowledges")
        return self._build("ACK", seq, body, content_type, headers)

    def _build(
        self,
        method: str,
        seq: int,
        body: bytes,
        content_type: str | None,
        extra: Iterable[tuple[str, str]],
    ) -> SipRequest:
        request_uri, routes = self.request_uri_and_routes()
        h = Headers()
        h.add("Max-Forwards", "70")
        for route in routes:
            h.add("Route", route)
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add(
            "To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri
        )
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{seq} {method}")
        if self.local_contact and method in TARGET_REFRESH_METHODS:
            h.add("Contact", self.local_contact)
        for name, value in extra:
            h.add(name, value)
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        return SipRequest(method, request_uri, h, body)

    def request_uri_and_routes(self) -> tuple[str, list[str]]:
        """Request-URI and Route values for a request in this dialog (RFC 3261 §12.2.1.1).

        Empty route set or a loose-routing first hop (``;lr``): the remote target, and the
        route set as is. A strict router first: its URI becomes the Request-URI and the
        remote target goes last in Route.
        """
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0]).uri
        if isinstance(first, SipUri) and "lr" in first.params:
            return self.remote_target, list(self.route_set)
        request_uri = str(first)
        if "?" in request_uri:
            request_uri = request_uri.split("?", 1)[0]
        return request_uri, [*self.route_set[1:], f"<{self.remote_target}>"]

    def next_hop(self) -> SipUri:
        """The URI our requests are sent to: the first Route if any, else the remote target."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).sip_uri
        return SipUri.parse(self.remote_target)


# -- helpers -------------------------------------------------------------------------------------


def record_route(message: SipRequest | SipResponse) -> list[str]:
    """The Record-Route values of ``message`` one by one, in message order."""
    return message.headers.get_all("Record-Route")


def uri_address(uri: SipUri) -> tuple[str, int] | None:
    """(IP, port) of a URI whose host is an IP literal; None for a host name (the core never
    resolves names: the caller must). Port defaults to 5060, 5061 for ``sips``."""
    host = uri.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    port = uri.port if uri.port is not None else (5061 if uri.scheme.lower() == "sips" else 5060)
    return (host, port)


def _without_tag(name_addr: NameAddr) -> str:
    if "tag" not in name_addr.params:
        return str(name_addr)
    params = {k: v for k, v in name_addr.params.items() if k != "tag"}
    return str(NameAddr(name_addr.uri, name_addr.display_name, params))


def _is_sips(uri: str) -> bool:
    return uri[:5].lower() == "sips:"
