"""Admission of incoming INVITEs: what the admission callable sees (:class:`AdmissionRequest`),
its decisions (:class:`Accept` / :class:`Reject`) and the handler types (``Handler``,
``RequestHandler``, :class:`Reply`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import CallEnded
from w3sipagent.sip.events import (
    Address,
)
from w3sipagent.sip.headers import Headers
from w3sipagent.sip.message import SipRequest, SipResponse
from w3sipagent.sip.uri import SipUri


@dataclass(frozen=True)
class AdmissionRequest:
    """What the admission callable sees of an incoming INVITE."""

    request: SipRequest
    source: Address
    transport: str
    registration: str | None = None
    auth_user: str | None = None
    """The digest-authenticated user name when INVITEs are challenged, else None."""

    @property
    def request_uri(self) -> str:
        """The Request-URI as received."""
        return self.request.uri

    @property
    def host(self) -> str:
        """The Request-URI host (names the tenant), lower case."""
        uri = self.request.request_uri
        return uri.hostname.lower() if isinstance(uri, SipUri) else ""

    @property
    def user(self) -> str | None:
        """The Request-URI user part."""
        uri = self.request.request_uri
        return uri.user if isinstance(uri, SipUri) else None

    @property
    def to_uri(self) -> str:
        """The To URI."""
        return str(self.request.to.uri)

    @property
    def from_uri(self) -> str:
        """The From URI."""
        return str(self.request.from_.uri)

    @property
    def from_display(self) -> str | None:
        """The From display name."""
        return self.request.from_.display_name

    @property
    def headers(self) -> Headers:
        """Every header of the INVITE."""
        return self.request.headers

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        return self.request.headers.get(name)


@dataclass(frozen=True)
class Accept:
    """Admit the call. ``context`` is attached to :attr:`Call.context` (a tenant...).

    With ``limit_key`` and ``limit`` the user agent counts the calls of that key and answers
    486 Busy Here above the limit.
    """

    context: object = None
    limit_key: str | None = None
    limit: int | None = None
    codecs: tuple[str, ...] | None = None
    """This call's codec preference (``"PCMU/8000"``...), e.g. the tenant's; None: the
    configured :attr:`UserAgentConfig.codecs`."""


@dataclass(frozen=True)
class Reject:
    """Refuse the call with ``status`` (404 unknown tenant, 486, 503...), extra headers."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


AdmissionDecision = Accept | Reject
Admission = Callable[[AdmissionRequest], "AdmissionDecision | Awaitable[AdmissionDecision]"]
Handler = Callable[[Call], Awaitable[None]]
Unhandled = Callable[[object, "Call | None", CallEnded], None]
"""``unhandled(context, call, end)``: an INVITE the admission accepted (``context`` is its
:attr:`Accept.context`) whose call handler never ran: refused after the admission (limit,
SDP, ports), cancelled, never ACKed, ended before its ACK, shut down. Called exactly once
for such an INVITE, so that what the admission started (a record, an early AI session, a
reserved slot) is finished; ``call`` is None when no call was built."""
Refused = Callable[[Address, int, str], None]
"""``refused(source, status, reason)``: a new INVITE the user agent refused before asking
the admission (403 source not allowed, 503 over capacity or draining, other request checks)."""


@dataclass(frozen=True)
class Reply:
    """A response for :meth:`UserAgent.on_request` handlers to return."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = None


HandlerResult = int | Reply | SipResponse
RequestHandler = Callable[[Call | None, SipRequest], "HandlerResult | Awaitable[HandlerResult]"]
"""``handler(call, request)``: returns (or awaits to) a status code, a :class:`Reply` or a
ready :class:`SipResponse` (built with ``make_response(request, ...)``)."""
