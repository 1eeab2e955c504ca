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
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from w3sipagent.asyncio.call import Call, Transferer
from w3sipagent.asyncio.call_api import (
    CallInfo,
    DtmfReceived,
    HoldChanged,
    MediaChanged,
    MediaFormat,
    TransferOutcome,
)
from w3sipagent.asyncio.media import MediaConfig, RtpEndpoint
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.asyncio.transport import SipDriver, TransportConfig, TransportSet, is_ip_literal
from w3sipagent.codecs import get_codec
from w3sipagent.errors import (
    AuthError,
    ConfigError,
    PortsExhausted,
    SdpError,
    SipParseError,
    TransactionError,
    W3SipError,
)
from w3sipagent.ids import SecureIdSource
from w3sipagent.sdp import (
    AnswerResult,
    NegotiatedStream,
    SessionDescription,
    assign_version,
    create_offer,
    negotiate_answer,
    process_answer,
)
from w3sipagent.sip.auth import AuthStatus, DigestClient, DigestServer
from w3sipagent.sip.core import CoreConfig, SipCore
from w3sipagent.sip.dialog import Dialog, DialogError, DialogState, uri_address
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
from w3sipagent.sip.headers import Headers, NameAddr
from w3sipagent.sip.ids import IdSource
from w3sipagent.sip.message import SipRequest, SipResponse
from w3sipagent.sip.timers import TimerConfig
from w3sipagent.sip.uri import SipUri

log = logging.getLogger(__name__)

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY")
"""What this endpoint takes (the Allow header)."""
UNSUPPORTED_METHODS = frozenset({"REGISTER", "MESSAGE", "PUBLISH", "SUBSCRIBE", "PRACK"})
"""Known methods this endpoint does not take: 405 with Allow."""
SUPPORTED_EXTENSIONS = ("timer", "replaces")
"""Option tags in Supported; a Require naming another one gets 420."""
_REQUIRE_OK = frozenset({"timer"})
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf"
_ALLOW = ", ".join(ALLOWED_METHODS)
_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization"})


# -- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserAgentConfig:
    """Every address, timer and limit of a :class:`UserAgent` (seconds unless said otherwise).

    ``advertised_host``/``advertised_port``: what goes in Via, Contact and SDP ``c=`` (NAT,
    containers); default the bind address. ``allowed_sources``: IPs / CIDRs that may send
    requests at all (others get 403). ``max_calls``: global capacity (503 beyond).
    ``retry_after``: the Retry-After of every 503. ``session_expires``/``min_se``: RFC 4028.

    Digest challenge of incoming INVITEs (optional, RFC 3261 §22, RFC 8760): set
    ``auth_password(user, realm) -> password | None`` or ``auth_ha1(user, realm, algorithm)
    -> HA1 hex | None``. The realm is ``auth_realm``, or the Request-URI host (the tenant)
    when None. ``auth_proxy`` answers 407 / Proxy-Authenticate instead of 401 /
    WWW-Authenticate; a nonce is stale ``auth_nonce_lifetime`` seconds after it was issued
    (challenged again with ``stale=true``). ``send_ringing`` sends 180 before the 200;
    ``early_media`` sends 183 Session Progress with the SDP answer before the 200.
    """

    host: str = "127.0.0.1"
    port: int = 5090
    transports: tuple[str, ...] = ("udp", "tcp")
    advertised_host: str | None = None
    advertised_port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_port: int | None = None
    tls_verify: bool = True
    tls_ca: str | None = None
    # SIP timers (RFC 3261)
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    transaction_timeout: float | None = None
    ack_wait: float | None = None
    timer_c: float | None = 180.0
    timer_d: float = 32.0
    tcp_idle_timeout: float = 300.0
    tcp_connect_timeout: float = 5.0
    # media
    rtp_host: str | None = None
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    codecs: tuple[str, ...] = ("PCMU/8000", "PCMA/8000", "G722/8000", "opus/48000/2")
    telephone_event: bool = True
    ptime: int | None = None
    media: MediaConfig = field(default_factory=MediaConfig)
    hangup_on_media_timeout: bool = True
    audio_queue: int = 50
    # admission and limits
    allowed_sources: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    max_calls: int = 200
    retry_after: int = 5
    send_ringing: bool = False
    early_media: bool = False
    # digest challenge of incoming INVITEs
    auth_realm: str | None = None
    auth_password: Callable[[str, str], str | None] | None = None
    auth_ha1: Callable[[str, str, str], str | None] | None = None
    auth_proxy: bool = False
    auth_nonce_lifetime: float = 300.0
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    # session timers (RFC 4028)
    session_timers: bool = True
    session_expires: int = 1800
    min_se: int = 90
    # timeouts
    drain_timeout: float = 30.0
    bye_timeout: float = 2.0
    dial_timeout: float = 60.0
    request_timeout: float | None = None
    merge_window: float = 32.0
    # identity
    user_agent: str = "w3sipagent"
    contact_user: str = "w3sipagent"
    outbound_proxy: tuple[str, int] | None = None
    credentials: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        for name in ("drain_timeout", "bye_timeout", "dial_timeout", "tcp_idle_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"UserAgentConfig.{name}: must be >= 0")
        bad = {t.lower() for t in self.transports} - {"udp", "tcp", "tls"}
        if bad:
            raise ConfigError(f"UserAgentConfig.transports: unknown {sorted(bad)}")
        if "tls" in {t.lower() for t in self.transports} and not (self.tls_cert and self.tls_key):
            raise ConfigError("UserAgentConfig.transports: tls needs tls_cert and tls_key")
        if self.auth_password is not None and self.auth_ha1 is not None:
            raise ConfigError("UserAgentConfig: set auth_password or auth_ha1, not both")
        if self.auth_nonce_lifetime <= 0:
            raise ConfigError("UserAgentConfig.auth_nonce_lifetime: must be > 0")
        if self.max_calls < 0 or self.min_se < 1 or self.session_expires < self.min_se:
            raise ConfigError(
                "UserAgentConfig: need max_calls >= 0, 1 <= min_se <= session_expires"
            )
        for net in self.allowed_sources:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"UserAgentConfig.allowed_sources: {net!r}: {exc}") from exc

    @property
    def timers(self) -> TimerConfig:
        """The core's timer settings."""
        return TimerConfig(
            t1=self.t1,
            t2=self.t2,
            t4=self.t4,
            timeout=self.transaction_timeout,
            ack_wait=self.ack_wait,
            timer_c=self.timer_c,
            timer_d=self.timer_d,
            trying_delay=None,  # the user agent sends 100 Trying itself, at once
        )


# -- admission -------------------------------------------------------------------------------------


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


# -- errors of outbound calls ---------------------------------------------------------------------


class DialError(W3SipError):
    """An outbound call did not get answered. ``status`` is the SIP code (None: no response)."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class CallRejected(DialError):
    """The callee answered 3xx-6xx (``status``, ``reason``; ``response`` has the rest)."""

    def __init__(self, response: SipResponse) -> None:
        super().__init__(
            f"call rejected: {response.status} {response.reason}", response.status, response.reason
        )
        self.response = response


class DialTimeout(DialError):
    """No final response within the dial timeout (the INVITE was cancelled)."""


# -- internals ---------------------------------------------------------------------------------------


class _ClientTx:
    __slots__ = ("future", "on_provisional")

    def __init__(
        self,
        future: asyncio.Future[ResponseReceived],
        on_provisional: Callable[[ResponseReceived], None] | None,
    ) -> None:
        self.future = future
        self.on_provisional = on_provisional


class _Incoming:
    """An incoming INVITE being admitted / answered."""

    __slots__ = ("auth_user", "call", "cancelled", "request", "task", "tx")

    def __init__(self, tx: TransactionId, request: SipRequest, auth_user: str | None) -> None:
        self.tx = tx
        self.request = request
        self.auth_user = auth_user
        self.task: asyncio.Task[None] | None = None
        self.call: Call | None = None
        self.cancelled = False


def _retry_after(config: UserAgentConfig) -> tuple[tuple[str, str], ...]:
    return (("Retry-After", str(config.retry_after)),)


def _sdp_address(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


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
        self._incoming: dict[TransactionId, _Incoming] = {}
        self._ack_wait: dict[TransactionId, Call] = {}
        self._reinvite_ack: dict[TransactionId, tuple[Call, SessionDescription | None]] = {}
        self._client: dict[TransactionId, _ClientTx] = {}
        self._request_handlers: dict[str, RequestHandler] = {}
        self._local_contacts: dict[str, str] = {}
        self._call_codecs: weakref.WeakKeyDictionary[Call, tuple[str, ...]] = (
            weakref.WeakKeyDictionary()
        )
        """Per-call codec preference (``Accept.codecs``, ``dial(codecs=)``), kept for the
        call's later offers (re-INVITE / UPDATE, an offer in a 2xx)."""
        self._merge: dict[tuple[str, str, int], tuple[str, float]] = {}
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

    # -- event dispatch ----------------------------------------------------------------------

    def _on_event(self, event: SipEvent) -> None:
        if isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, ResponseReceived):
            self._response(event)
        elif isinstance(event, AckReceived):
            self._ack(event)
        elif isinstance(event, AckTimedOut):
            self._ack_timeout(event)
        elif isinstance(event, CancelReceived):
            self._cancelled(event)
        elif isinstance(event, (TransactionTimedOut, TransportFailed)):
            waiter = self._client.pop(event.transaction, None)
            if waiter is not None and not waiter.future.done():
                what = (
                    f"timer {event.timer}"
                    if isinstance(event, TransactionTimedOut)
                    else "transport"
                )
                waiter.future.set_exception(TransactionError(f"request failed: {what}"))
        elif isinstance(event, MalformedRequest):
            log.debug(
                "malformed message from %s (%s): %s%s",
                event.source,
                event.transport,
                event.error.reason,
                "" if event.answered else " (not answered)",
            )

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

    # -- requests ------------------------------------------------------------------------------

    def _source_allowed(self, source: Address) -> bool:
        host = source[0]
        allowed = self._allowed.get(host)
        if allowed is None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return False
            allowed = any(ip in net for net in self._networks)
            if len(self._allowed) >= 4096:  # bounded: a flood of sources cannot grow it
                self._allowed.clear()
            self._allowed[host] = allowed
        return allowed

    def _merged(self, request: SipRequest, branch: str) -> bool:
        """RFC 3261 §8.2.2.2: the same request (From tag, Call-ID, CSeq) seen within
        ``merge_window`` on another branch. Entries are kept in expiry order (a dict keeps
        insertion order and every entry lives ``merge_window``), so pruning is O(expired)."""
        merge = self._merge
        key = (request.from_.tag or "", request.call_id, request.cseq.seq)
        now = self.loop.time()
        while merge:
            oldest = next(iter(merge))
            if merge[oldest][1] > now:
                break
            del merge[oldest]
        seen = merge.get(key)
        if seen is not None and seen[0] != branch and seen[1] > now:
            return True
        merge.pop(key, None)  # re-inserted at the end: the dict stays in expiry order
        merge[key] = (branch, now + self.config.merge_window)
        return False

    def _check_request(
        self, ev: RequestReceived
    ) -> tuple[int, str | None, list[tuple[str, str]]] | None:
        """The generic checks of RFC 3261 §8.2 (and the allowlist); None when it passes."""
        request = ev.request
        method = request.method
        if ev.dialog is None and not self._source_allowed(ev.source):
            return (403, "Source not allowed", [])
        if method not in ALLOWED_METHODS:
            if method in UNSUPPORTED_METHODS:
                return (405, None, [("Allow", _ALLOW)])
            return (501, None, [("Allow", _ALLOW)])
        try:
            _ = request.request_uri
        except SipParseError as exc:
            return (exc.status, exc.reason, [])
        if ev.dialog is None and request.to.tag is None:
            branch = request.via.branch
            if branch and self._merged(request, branch):
                return (482, "Loop Detected (merged request)", [])
        try:
            require = request.require
        except SipParseError as exc:
            return (400, exc.reason, [])
        unknown = [t for t in require if t.lower() not in _REQUIRE_OK]
        if unknown:
            return (420, None, [("Unsupported", ", ".join(unknown))])
        encoding = request.headers.get("Content-Encoding")
        if request.body and encoding and encoding.strip().lower() != "identity":
            return (415, "Unsupported Content-Encoding", [("Accept-Encoding", "identity")])
        if method in ("INVITE", "UPDATE") and request.body:
            try:
                ctype = request.content_type
            except SipParseError as exc:
                return (400, exc.reason, [])
            if ctype != "application/sdp":
                return (415, None, [("Accept", "application/sdp")])
        if method in ("INVITE", "UPDATE") and not _accepts_sdp(request.headers.get_all("Accept")):
            # Our answer carries SDP; a caller that cannot take it gets 406 (RFC 3261 §21.4.7,
            # RFC 4475 §3.3.15 sdp01).
            return (406, None, [("Accept", "application/sdp")])
        return None

    def _request(self, ev: RequestReceived) -> None:
        request = ev.request
        method = request.method
        if method == "INVITE" and ev.dialog is None:
            self._respond(ev.transaction, 100)  # at once, before any check that may take time
        failure = self._check_request(ev)
        if failure is not None:
            status, reason, headers = failure
            self._respond(ev.transaction, status, reason, headers=headers)
            return
        if ev.dialog is not None:
            self._in_dialog(ev)
            return
        if method == "INVITE":
            self._incoming_invite(ev)
        elif method == "OPTIONS":
            self._options(ev)
        elif method in self._request_handlers:
            self._dispatch_handler(ev, None)
        else:
            # BYE, INFO, UPDATE, NOTIFY, REFER outside a dialog
            self._respond(ev.transaction, 481)

    def _options(self, ev: RequestReceived) -> None:
        headers = [
            ("Allow", _ALLOW),
            ("Accept", ACCEPT),
            ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
        ]
        if self.draining:
            self._respond(ev.transaction, 503, headers=[*headers, *_retry_after(self.config)])
        else:
            self._respond(ev.transaction, 200, headers=headers)

    def _dispatch_handler(self, ev: RequestReceived, call: Call | None) -> None:
        handler = self._request_handlers[ev.request.method]
        try:
            result = handler(call, ev.request)
        except Exception:
            log.exception("%s handler failed", ev.request.method)
            self._respond(ev.transaction, 500)
            return
        if isinstance(result, (int, Reply, SipResponse)):
            self._send_reply(ev.transaction, result)
            return

        async def finish(awaitable: Awaitable[HandlerResult]) -> None:
            try:
                reply = await awaitable
            except Exception:
                log.exception("%s handler failed", ev.request.method)
                reply = 500
            self._send_reply(ev.transaction, reply)

        self._spawn(finish(result))

    def _send_reply(self, tx: TransactionId, reply: HandlerResult) -> None:
        if isinstance(reply, SipResponse):
            self.core.send_response(tx, reply, self.loop.time())
            self.driver.transmit()
            return
        if isinstance(reply, int):
            self._respond(tx, reply)
        else:
            self._respond(
                tx,
                reply.status,
                reply.reason,
                headers=reply.headers,
                body=reply.body,
                content_type=reply.content_type,
            )

    # -- incoming INVITE -----------------------------------------------------------------------

    def _registration_of(self, request: SipRequest) -> str | None:
        if not self._local_contacts:
            return None
        uri = request.request_uri
        user = uri.user if isinstance(uri, SipUri) else None
        return self._local_contacts.get(user) if user is not None else None

    def _incoming_invite(self, ev: RequestReceived) -> None:
        c = self.config
        request = ev.request
        self._stats["invites"] += 1
        # session timer (RFC 4028 §8): 422 below our Min-SE
        try:
            se = request.session_expires
        except SipParseError as exc:
            self._respond(ev.transaction, 400, exc.reason)
            return
        if se is not None and c.session_timers and se.delta < c.min_se:
            self._respond(ev.transaction, 422, headers=[("Min-SE", str(c.min_se))])
            return
        if self.draining:
            self._respond(ev.transaction, 503, "Draining", headers=_retry_after(c))
            return
        if len(self._calls) >= c.max_calls:
            self._respond(ev.transaction, 503, "Over capacity", headers=_retry_after(c))
            return
        auth_user: str | None = None
        if self._digest is not None:
            auth_user = self._authenticate(ev)
            if auth_user is None:
                return
        inc = _Incoming(ev.transaction, request, auth_user)
        self._incoming[ev.transaction] = inc
        inc.task = self._spawn(self._answer_invite(inc, ev))

    def _authenticate(self, ev: RequestReceived) -> str | None:
        """Digest check of an incoming INVITE: the user name, or None after answering
        401/407 (no or wrong credentials, stale nonce)."""
        digest = self._digest
        assert digest is not None
        c = self.config
        request = ev.request
        uri = request.request_uri
        realm = c.auth_realm or (uri.hostname.lower() if isinstance(uri, SipUri) else "")
        now = self.loop.time()
        stale = False
        name = "Proxy-Authorization" if c.auth_proxy else "Authorization"
        for value in request.headers.get_all(name):
            result = digest.verify(
                value,
                method=request.method,
                realm=realm,
                now=now,
                lookup_password=c.auth_password,
                lookup_ha1=c.auth_ha1,
                request_uri=request.uri,
                body=request.body,
            )
            if result.ok:
                return result.username
            if result.status is AuthStatus.STALE:
                stale = True
            elif result.reason != "wrong realm":
                log.info(
                    "INVITE %s from %s: digest failed for %r: %s",
                    request.call_id,
                    ev.source[0],
                    result.username,
                    result.reason,
                )
        header = "Proxy-Authenticate" if c.auth_proxy else "WWW-Authenticate"
        self._respond(
            ev.transaction,
            407 if c.auth_proxy else 401,
            headers=[(header, v) for v in digest.challenges(realm, now=now, stale=stale)],
        )
        return None

    async def _answer_invite(self, inc: _Incoming, ev: RequestReceived) -> None:
        c = self.config
        request = ev.request
        tx = ev.transaction
        call: Call | None = None
        try:
            registration = self._registration_of(request)
            decision: AdmissionDecision = Accept()
            if self.admission is not None:
                result = self.admission(
                    AdmissionRequest(request, ev.source, ev.transport, registration, inc.auth_user)
                )
                decision = await result if not isinstance(result, (Accept, Reject)) else result
            if inc.cancelled:
                return
            if isinstance(decision, Reject):
                self._stats["rejected"] += 1
                self._respond(tx, decision.status, decision.reason, headers=decision.headers)
                return
            if (
                decision.limit_key is not None
                and decision.limit is not None
                and self._limits.get(decision.limit_key, 0) >= decision.limit
            ):
                self._respond(tx, 486, "Tenant call limit reached")
                return
            offer: SessionDescription | None = None
            if request.body:
                try:
                    offer = SessionDescription.parse(request.body)
                except SdpError as exc:
                    self._respond(tx, 400, f"Malformed SDP: {exc}"[:120])
                    return
            info = CallInfo(
                call_id=request.call_id,
                direction="inbound",
                request_uri=request.uri,
                from_uri=str(request.from_.uri),
                to_uri=str(request.to.uri),
                from_display=request.from_.display_name,
                source=ev.source,
                transport=ev.transport,
                headers=tuple(
                    (n, v) for n, v in request.headers if n.lower() not in _HIDDEN_HEADERS
                ),
                registration=registration,
            )
            call = Call(
                self, info, transport=ev.transport, peer=ev.source, context=decision.context
            )
            call.invite_tx = tx
            inc.call = call
            if decision.codecs:
                self._call_codecs[call] = tuple(decision.codecs)
            answer_sdp = await self._prepare_media(call, offer, tx, decision.codecs)
            if answer_sdp is None:
                return
            if inc.cancelled:
                call._finish("cancelled", "remote", 487)
                return
            if decision.limit_key is not None:
                call.limit_key = decision.limit_key
                self._limits[decision.limit_key] = self._limits.get(decision.limit_key, 0) + 1
            self._calls[call.call_id] = call
            headers: list[tuple[str, str]] = [
                ("Contact", f"<{self.contact(transport=ev.transport)}>"),
                ("Allow", _ALLOW),
                ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
            ]
            headers += self._session_timer_answer(call, request, uas=True)
            answer_body = bytes(answer_sdp)
            if c.send_ringing:
                self._respond(tx, 180, headers=[("Contact", headers[0][1])])
            if c.early_media and offer is not None:
                # RFC 3261 §13.3.1.1: the answer may go in a provisional response too; the
                # 200 repeats it (the same session version: not a new offer/answer)
                self._respond(
                    tx,
                    183,
                    headers=[("Contact", headers[0][1])],
                    body=answer_body,
                    content_type="application/sdp",
                )
            response = self._respond(
                tx, 200, headers=headers, body=answer_body, content_type="application/sdp"
            )
            if response is None:  # cancelled meanwhile
                self._end(call, "cancelled", "remote", 487)
                return
            call.local_sdp = answer_sdp
            call.state = "answered"
            did = (request.call_id, response.to.tag or "", request.from_.tag or "")
            call.dialog = self.core.dialog(did)
            self._dialog_calls[did] = call
            self._ack_wait[tx] = call
            self._stats["answered"] += 1
        except PortsExhausted:
            self._respond(tx, 503, "RTP ports exhausted", headers=_retry_after(c))
            if call is not None:
                self._end(call, "ports_exhausted", "system", 503)
        except asyncio.CancelledError:  # shutdown while admitting: a dispatcher retries elsewhere
            self._respond(tx, 503, "Shutting down", headers=_retry_after(c))
            if call is not None:
                self._end(call, "shutdown", "system", 503)
            raise
        except Exception:
            log.exception("answering INVITE %s failed", request.call_id)
            self._respond(tx, 500)
            if call is not None:
                self._end(call, "error", "system", 500)
        finally:
            self._incoming.pop(tx, None)

    async def _prepare_media(
        self,
        call: Call,
        offer: SessionDescription | None,
        tx: TransactionId,
        codecs: Sequence[str] | None = None,
    ) -> SessionDescription | None:
        """Open the RTP endpoint and build our SDP (answer, or offer for an offerless INVITE)
        with ``codecs`` (default: the configured preference). Answers the INVITE itself (488)
        and returns None when the offer is unacceptable."""
        c = self.config
        prefs = list(codecs or c.codecs)
        host = c.rtp_host or c.host
        sdp_host = _sdp_address(self.advertised_host)
        if offer is None:
            call.remote_sdp = None
            return await self._open_with_offer(call, prefs)
        audio_index = next(
            (i for i, m in enumerate(offer.media) if m.media == "audio" and m.port != 0), None
        )

        def port_for(index: int, _m: object) -> int | None:
            return 9 if index == audio_index else None

        sid = self._next_session_id()
        result = negotiate_answer(
            offer,
            local_address=sdp_host,
            ports=port_for,
            codec_preference=prefs,
            session_id=sid,
            session_version=1,
            telephone_event=c.telephone_event,
            ptime=c.ptime,
        )
        stream = result.audio
        refusal = _refusal(result, c.user_agent)
        if refusal is not None or stream is None or stream.codec is None:
            reason, warning = refusal or (None, _NO_AUDIO)
            self._respond(tx, 488, reason, headers=[("Warning", warning)])
            return None
        fmt = _format_of_stream(stream)
        endpoint = await RtpEndpoint.open(
            self.ports,
            host,
            self.pacer,
            self.ids,
            payload_type=stream.codec.payload_type,
            clock_rate=stream.codec.clock_rate,
            ptime_ms=fmt.ptime_ms,
            telephone_event_pt=fmt.telephone_event_pt,
            rtcp_mux=stream.rtcp_mux,
            signalling_ip=call.peer[0],
            config=c.media,
        )
        result.answer.media[stream.index].port = endpoint.local_port
        stream.local_port = endpoint.local_port
        endpoint.silence_payload = self._silence_payload(fmt)
        call._attach(endpoint, fmt)
        call.remote_sdp = offer
        self._apply_stream(call, stream, initial=True)
        return result.answer

    async def _open_with_offer(self, call: Call, prefs: Sequence[str]) -> SessionDescription:
        """Open the call's RTP endpoint and make our offer of ``prefs`` on its port (an
        outbound call, or the 200 of an offerless INVITE); the endpoint is closed on error."""
        c = self.config
        endpoint = await RtpEndpoint.open(
            self.ports,
            c.rtp_host or c.host,
            self.pacer,
            self.ids,
            payload_type=0,
            clock_rate=get_codec_spec(prefs[0])[1],
            signalling_ip=call.peer[0],
            config=c.media,
        )
        try:
            ours = create_offer(
                list(prefs),
                local_address=_sdp_address(self.advertised_host),
                port=endpoint.local_port,
                session_id=self._next_session_id(),
                session_version=1,
                telephone_event=c.telephone_event,
                ptime=c.ptime or 20,
            )
        except SdpError:
            endpoint.close()
            raise
        call._attach(endpoint, _format_of_codec(ours.media[0].codecs[0], ours.media[0]))
        return ours

    def _next_session_id(self) -> int:
        self._session_id = (self._session_id + 1) % (1 << 62) or 1
        return self._session_id

    def _silence_payload(self, fmt: MediaFormat) -> bytes | None:
        key = (fmt.encoding.lower(), fmt.clock_rate, fmt.channels, fmt.fmtp)
        if key not in self._silence:
            try:
                codec = get_codec(fmt.encoding, fmt.clock_rate, fmt.channels, fmt.fmtp)
                enc = codec.encoder()
                zero = bytes(codec.samples_per_frame * 2)
                payload = b""
                for _ in range(3):  # let stateful coders settle
                    payload = enc.encode(zero)
                self._silence[key] = payload
            except Exception:
                self._silence[key] = None
        return self._silence[key]

    def _apply_stream(self, call: Call, stream: NegotiatedStream, *, initial: bool = False) -> None:
        """Point the call's RTP endpoint at what offer/answer decided (codec, address, direction)."""
        ep = call.endpoint
        if ep is None or stream.codec is None:
            return
        old_fmt = call.media
        old_remote = ep.sdp_address
        fmt = _format_of_stream(stream)
        if (
            initial
            or (fmt.payload_type, fmt.clock_rate, fmt.encoding)
            != (old_fmt.payload_type, old_fmt.clock_rate, old_fmt.encoding)
            or fmt.telephone_event_pt != old_fmt.telephone_event_pt
        ):
            ep.set_codec(
                fmt.payload_type,
                fmt.clock_rate,
                ptime_ms=fmt.ptime_ms,
                telephone_event_pt=fmt.telephone_event_pt,
                silence_payload=self._silence_payload(fmt),
            )
        call._set_media(fmt)
        hold = stream.hold
        address = stream.remote_address
        usable = address is not None and is_ip_literal(address)  # never resolve a name
        if address is not None and usable:
            remote = (address, stream.remote_port)
            if remote != ep.sdp_address:
                ep.set_remote(remote, stream.remote_rtcp)
        ep.set_remote_direction(stream.remote_direction if usable else "inactive")
        if initial:
            call.on_hold = hold
            return
        if hold != call.on_hold:
            call.on_hold = hold
            call._emit(HoldChanged(hold))
        new_remote = ep.sdp_address
        if fmt != old_fmt or (new_remote != old_remote and new_remote is not None):
            call._emit(MediaChanged(fmt, new_remote or ("", 0)))

    def _ack(self, ev: AckReceived) -> None:
        call = self._ack_wait.pop(ev.transaction, None)
        if call is not None:
            self._initial_ack(call, ev)
            return
        pending = self._reinvite_ack.pop(ev.transaction, None)
        if pending is not None:
            rcall, our_offer = pending
            if our_offer is not None and ev.request.body:
                self._answer_in_ack(rcall, our_offer, ev.request, initial=False)

    def _initial_ack(self, call: Call, ev: AckReceived) -> None:
        if call.ended:
            return
        if call.remote_sdp is None:
            offer = call.local_sdp
            if not isinstance(offer, SessionDescription) or not ev.request.body:
                self._spawn(self._bye_and_end(call, "no_answer_in_ack", 488))
                return
            if not self._answer_in_ack(call, offer, ev.request, initial=True):
                return
        call.state = "active"
        self._arm_session_timer(call)
        if self.handler is not None:
            call.handler_task = self._spawn(self._run_handler(call))

    def _answer_in_ack(
        self, call: Call, offer: SessionDescription, ack: SipRequest, *, initial: bool
    ) -> bool:
        try:
            answer = SessionDescription.parse(ack.body)
            result = process_answer(offer, answer)
        except SdpError as exc:
            log.info("bad SDP answer in ACK of %s: %s", call.call_id, exc)
            self._spawn(self._bye_and_end(call, "bad_sdp_answer", 488))
            return False
        stream = result.audio
        if result.failure is not None or stream is None:
            self._spawn(self._bye_and_end(call, "no_common_codec", 488))
            return False
        call.remote_sdp = answer
        self._apply_stream(call, stream, initial=initial)
        return True

    async def _run_handler(self, call: Call) -> None:
        assert self.handler is not None
        reason = "local_hangup"
        try:
            await self.handler(call)
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        except Exception:
            log.exception("call handler failed on %s", call.call_id)
            reason = "error"
        finally:
            if not call.ended:
                self._spawn(call.hangup(reason))

    def _ack_timeout(self, ev: AckTimedOut) -> None:
        call = self._ack_wait.pop(ev.transaction, None)
        if call is None:
            pending = self._reinvite_ack.pop(ev.transaction, None)
            call = pending[0] if pending else None
        if call is not None and not call.ended:
            self._spawn(self._bye_and_end(call, "ack_timeout", 408))

    def _cancelled(self, ev: CancelReceived) -> None:
        inc = self._incoming.get(ev.transaction)
        if inc is not None:
            inc.cancelled = True  # the core sent 487; the answering task sees this and stops
            return
        call = self._ack_wait.get(ev.transaction)
        if call is not None:
            log.debug("CANCEL after the 200 of %s: ignored", call.call_id)

    # -- in-dialog requests ------------------------------------------------------------------

    def _call_of(self, dialog: Dialog) -> Call | None:
        return self._dialog_calls.get(dialog.id)

    def _in_dialog(self, ev: RequestReceived) -> None:
        assert ev.dialog is not None
        call = self._call_of(ev.dialog)
        method = ev.request.method
        if method == "BYE":
            self._respond(ev.transaction, 200)
            if call is not None:
                self._end(call, "remote_bye", "remote")
            return
        if method in self._request_handlers and method not in (
            "INVITE",
            "UPDATE",
            "OPTIONS",
            "INFO",
        ):
            self._dispatch_handler(ev, call)
            return
        if method == "OPTIONS":
            self._options(ev)
        elif method in ("INVITE", "UPDATE"):
            if call is None or call.endpoint is None:
                self._respond(ev.transaction, 481 if call is None else 491)
            else:
                self._modify(call, ev)
        elif method == "INFO":
            self._info(call, ev)
        elif method == "REFER":
            self._respond(ev.transaction, 603, "Transfer not allowed")
        elif method == "NOTIFY":
            self._respond(ev.transaction, 481, "No subscription")
        else:
            self._respond(ev.transaction, 501)

    def _info(self, call: Call | None, ev: RequestReceived) -> None:
        request = ev.request
        if not request.body:
            self._respond(ev.transaction, 200)
            return
        ctype = request.content_type
        digit: str | None = None
        duration = 0
        if ctype == "application/dtmf-relay":
            for line in request.body.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition("=")
                name = name.strip().lower()
                if name == "signal":
                    digit = value.strip()[:1] or None
                elif name == "duration" and value.strip().isdigit():
                    duration = int(value.strip())
        elif ctype == "application/dtmf":
            digit = request.body.decode("utf-8", "replace").strip()[:1] or None
        else:
            self._respond(ev.transaction, 415, headers=[("Accept", ACCEPT)])
            return
        if digit is None or digit.upper() not in "0123456789*#ABCD":
            self._respond(ev.transaction, 400, "Bad DTMF signal")
            return
        self._respond(ev.transaction, 200)
        if call is not None:
            call._emit(DtmfReceived(digit.upper(), duration, "info"))

    def _modify(self, call: Call, ev: RequestReceived) -> None:
        """re-INVITE / UPDATE: new offer (hold, re-target, codec) or session refresh."""
        request = ev.request
        c = self.config
        is_invite = request.method == "INVITE"
        try:
            se = request.session_expires
        except SipParseError as exc:
            self._respond(ev.transaction, 400, exc.reason)
            return
        if se is not None and c.session_timers and se.delta < c.min_se:
            self._respond(ev.transaction, 422, headers=[("Min-SE", str(c.min_se))])
            return
        if call.reinvite_pending and (is_invite or request.body):
            # glare: our own offer is outstanding (RFC 3261 §14.2, RFC 3311 §5.2)
            self._respond(ev.transaction, 491)
            return
        headers = [
            ("Contact", f"<{self.contact(transport=call.transport)}>"),
            ("Allow", _ALLOW),
            ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
        ]
        ep = call.endpoint
        assert ep is not None
        previous = call.local_sdp if isinstance(call.local_sdp, SessionDescription) else None
        body = b""
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
            except SdpError as exc:
                self._respond(ev.transaction, 400, f"Malformed SDP: {exc}"[:120])
                return
            current = call.media
            prefs = [
                f"{current.encoding}/{current.clock_rate}"
                + (f"/{current.channels}" if current.channels != 1 else ""),
                *self._call_codecs.get(call, c.codecs),
            ]
            audio_index = next(
                (i for i, m in enumerate(offer.media) if m.media == "audio" and m.port != 0), None
            )

            def port_for(index: int, _m: object) -> int | None:
                return ep.local_port if index == audio_index else None

            result = negotiate_answer(
                offer,
                local_address=_sdp_address(self.advertised_host),
                ports=port_for,
                codec_preference=list(dict.fromkeys(prefs)),
                session_id=previous.origin.sess_id if previous else self._next_session_id(),
                session_version=previous.origin.sess_version if previous else 1,
                telephone_event=c.telephone_event,
                ptime=c.ptime,
                rtcp_mux=ep.rtcp_mux,
            )
            stream = result.audio
            refusal = _refusal(result, c.user_agent)
            if refusal is not None or stream is None:
                reason, warning = refusal or (None, _NO_AUDIO)
                self._respond(ev.transaction, 488, reason, headers=[("Warning", warning)])
                return
            answer = assign_version(result.answer, previous) if previous else result.answer
            call.local_sdp = answer
            call.remote_sdp = offer
            self._apply_stream(call, stream)
            body = bytes(answer)
            if is_invite:
                self._reinvite_ack[ev.transaction] = (call, None)
        elif is_invite and previous is not None:
            # offerless re-INVITE: our current SDP is the offer, the answer comes in the ACK
            body = bytes(previous)
            self._reinvite_ack[ev.transaction] = (call, previous)
        headers += self._session_timer_answer(call, request, uas=True)
        self._respond(
            ev.transaction,
            200,
            headers=headers,
            body=body,
            content_type="application/sdp" if body else None,
        )
        self._arm_session_timer(call)

    # -- session timers (RFC 4028) ---------------------------------------------------------------

    def _session_timer_answer(
        self, call: Call, request: SipRequest, *, uas: bool
    ) -> list[tuple[str, str]]:
        """Headers of our 2xx for the Session-Expires of ``request``; sets the call's timer."""
        c = self.config
        if not c.session_timers:
            return []
        se = request.session_expires
        if se is None:
            call.session_interval = None
            return []
        supported = "timer" in [t.lower() for t in (*request.supported, *request.require)]
        delta = max(min(se.delta, c.session_expires), c.min_se)
        refresher = se.refresher if supported and se.refresher else ("uac" if supported else "uas")
        call.session_interval = delta
        call.we_refresh = refresher == "uas"
        out = [("Session-Expires", f"{delta};refresher={refresher}")]
        if supported:
            out.append(("Require", "timer"))
        return out

    def _arm_session_timer(self, call: Call) -> None:
        if call.session_timer is not None:
            call.session_timer.cancel()
            call.session_timer = None
        interval = call.session_interval
        if interval is None or call.ended or call.state != "active":
            return
        if call.we_refresh:
            call.session_timer = self.loop.call_later(
                interval / 2, lambda: self._spawn(self._refresh_session(call))
            )
        else:
            expire = interval - min(32.0, interval / 3)
            call.session_timer = self.loop.call_later(
                expire, lambda: self._spawn(self._bye_and_end(call, "session_expired", 408))
            )

    async def _refresh_session(self, call: Call) -> None:
        """Refresh the session: UPDATE without body (re-INVITE with our SDP when the peer
        does not allow UPDATE)."""
        if call.ended or call.session_interval is None:
            return
        se = [("Session-Expires", f"{call.session_interval};refresher=uac"), ("Supported", "timer")]
        allow = [a.upper() for a in _peer_allow(call)]
        try:
            if "UPDATE" in allow:
                response = await self.request_in_dialog(call, "UPDATE", headers=se)
            else:
                body = (
                    bytes(call.local_sdp) if isinstance(call.local_sdp, SessionDescription) else b""
                )
                response = await self.request_in_dialog(
                    call,
                    "INVITE",
                    headers=se,
                    body=body,
                    content_type="application/sdp" if body else None,
                )
        except TransactionError:
            await self._bye_and_end(call, "session_refresh_failed", 408)
            return
        if response.status in (408, 481):
            self._end(call, "session_refresh_failed", "system", response.status)
            return
        if 200 <= response.status < 300:
            try:
                got = response.session_expires
            except SipParseError:
                got = None
            if got is not None:
                call.session_interval = got.delta
                call.we_refresh = got.refresher != "uas"
        self._arm_session_timer(call)

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

    # -- client requests --------------------------------------------------------------------------

    def _send(
        self,
        request: SipRequest,
        destination: Address,
        transport: str,
        on_provisional: Callable[[ResponseReceived], None] | None = None,
    ) -> tuple[TransactionId, asyncio.Future[ResponseReceived]]:
        if not is_ip_literal(destination[0]):
            raise TransactionError(f"{destination[0][:64]!r} is not an IP address (no DNS here)")
        if "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.config.user_agent)
        tx = self.core.send_request(request, destination, self.loop.time(), transport)
        future: asyncio.Future[ResponseReceived] = self.loop.create_future()
        self._client[tx] = _ClientTx(future, on_provisional)
        self.driver.transmit()
        return tx, future

    def _response(self, ev: ResponseReceived) -> None:
        waiter = self._client.get(ev.transaction)
        if waiter is None:
            self._stray_response(ev)
            return
        if ev.response.status < 200:
            if waiter.on_provisional is not None:
                try:
                    waiter.on_provisional(ev)
                except Exception:
                    log.exception("provisional response handler failed")
            return
        if ev.response.cseq.method != "INVITE" or ev.response.status >= 300:
            self._client.pop(ev.transaction, None)
        if not waiter.future.done():
            waiter.future.set_result(ev)
        elif ev.response.cseq.method == "INVITE" and ev.dialog is not None:
            self._stray_response(ev)

    def _stray_response(self, ev: ResponseReceived) -> None:
        """A 2xx to INVITE from a second fork: ACK it and hang it up (we keep one call)."""
        dialog = ev.dialog
        if dialog is None or not 200 <= ev.response.status < 300 or dialog.id in self._dialog_calls:
            return
        request = self.core.transaction_request(ev.transaction)
        if request is None:
            return
        try:
            destination = _dialog_address(dialog, None, self.config.outbound_proxy)
            self.core.send_ack(dialog.create_ack(), destination, request.via.transport)
            bye = dialog.create_request("BYE")
            self.core.send_request(bye, destination, self.loop.time(), request.via.transport)
            self.core.remove_dialog(dialog)
        except (W3SipError, ValueError) as exc:
            log.debug("cannot end extra fork: %s", exc)
        self.driver.transmit()

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
        digest = DigestClient()
        while True:
            _, future = self._send(request, destination, transport)
            response = (await self._await_final(future, timeout)).response
            retry = self._authorize(request, response, credentials, digest)
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
        """Send ``method`` in a dialog and return the final response (auth retried once).

        The destination is the remote target when it is an IP literal, else the outbound
        proxy, else the address the dialog's messages came from. Raises TransactionError
        on timeout / transport failure, DialogError when the dialog is over.
        """
        call = dialog_or_call if isinstance(dialog_or_call, Call) else None
        dialog = call.dialog if call is not None else dialog_or_call
        if not isinstance(dialog, Dialog):
            raise DialogError("the call has no dialog yet")
        if call is None:
            call = self._dialog_calls.get(dialog.id)
        transport = call.transport if call is not None else "UDP"
        destination = self._destination(dialog, call)
        extra = list(headers)
        credentials = (call.credentials if call is not None else None) or self.config.credentials
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
        body = request.body
        content_type = request.headers.get("Content-Type")
        digest = DigestClient()
        while True:
            _, future = self._send(request, destination, transport)
            ev = await self._await_final(future, timeout or self.config.request_timeout)
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
                            ids=self.ids,
                            proxy=response.status == 407,
                        )
                    except AuthError:
                        return response
                    retry.headers.add(name, value)
                    request = retry
                    continue
            if method == "INVITE" and 200 <= response.status < 300:
                try:
                    self.core.send_ack(dialog.create_ack(), destination, transport)
                    self.driver.transmit()
                except (W3SipError, ValueError) as exc:
                    log.debug("ACK of re-INVITE failed: %s", exc)
            return response

    async def _await_final(
        self, future: asyncio.Future[ResponseReceived], timeout: float | None
    ) -> ResponseReceived:
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            future.cancel()
            raise TransactionError(f"no final response within {timeout} s") from None

    def _authorize(
        self,
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
                ids=self.ids,
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

    def _destination(self, dialog: Dialog, call: Call | None) -> Address:
        if (
            call is not None
            and call.transport != "UDP"
            and self.transports.has_connection(call.peer, call.transport)
        ):
            return call.peer
        return _dialog_address(dialog, call, self.config.outbound_proxy)

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
        c = self.config
        if self.closed:
            raise TransactionError("user agent closed")
        target = SipUri.parse(uri)
        destination = proxy or c.outbound_proxy or uri_address(target)
        if destination is None:
            raise TransactionError(
                f"{uri}: host is not an IP literal and no proxy is given (no DNS here)"
            )
        codec_list = list(codecs or c.codecs)
        call_id = self.core.new_call_id()
        local_tag = self.core.new_tag()
        me = from_uri or f"sip:{c.contact_user}@{self.advertised_host}"
        from_value = str(NameAddr(SipUri.parse(me), display_name, {"tag": local_tag}))
        info = CallInfo(
            call_id=call_id,
            direction="outbound",
            request_uri=uri,
            from_uri=me,
            to_uri=uri,
            from_display=display_name,
            source=destination,
            transport=transport.upper(),
        )
        call = Call(self, info, transport=transport.upper(), peer=destination, state="outgoing")
        call.credentials = credentials
        if codecs:
            self._call_codecs[call] = tuple(codecs)
        our_offer = await self._open_with_offer(call, codec_list)
        call.local_sdp = our_offer
        self._calls[call_id] = call
        h = Headers()
        h.add("From", from_value)
        h.add("To", f"<{uri}>")
        h.add("Call-ID", call_id)
        seq = 1
        h.add("CSeq", f"{seq} INVITE")
        h.add("Contact", f"<{self.contact(transport=transport)}>")
        h.add("Allow", _ALLOW)
        h.add("Supported", ", ".join(SUPPORTED_EXTENSIONS))
        for name, value in headers:
            h.add(name, value)
        body = bytes(our_offer) if offer else b""
        if body:
            h.add("Content-Type", "application/sdp")
        request = SipRequest("INVITE", uri, h, body)
        digest = DigestClient()
        early: dict[str, bool] = {"media": False}

        def provisional(ev: ResponseReceived) -> None:
            r = ev.response
            if r.status > 100 and call.state == "outgoing":
                call.state = "early"
            if r.body and r.content_type == "application/sdp" and not early["media"] and our_offer:
                try:
                    result = process_answer(our_offer, SessionDescription.parse(r.body))
                except SdpError:
                    return
                if result.audio is not None:
                    early["media"] = True
                    call.remote_sdp = result.answer
                    self._apply_stream(call, result.audio, initial=True)

        deadline = self.loop.time() + (c.dial_timeout if timeout is None else timeout)
        tx: TransactionId | None = None
        try:
            while True:
                tx, future = self._send(request, destination, transport, provisional)
                call.invite_tx = tx
                remaining = deadline - self.loop.time()
                try:
                    ev = await asyncio.wait_for(asyncio.shield(future), max(remaining, 0.001))
                except TimeoutError:
                    await self._cancel_invite(tx, future)
                    raise DialTimeout(
                        f"no answer from {uri} within the dial timeout", None
                    ) from None
                response = ev.response
                if 200 <= response.status < 300:
                    break
                retry = self._authorize(request, response, credentials, digest)
                if retry is None:
                    raise CallRejected(response)
                request = retry
            # answered
            dialog = ev.dialog
            if dialog is None:
                raise DialError(
                    "2xx without a usable dialog (no To tag / Contact)", response.status
                )
            call.dialog = dialog
            self._dialog_calls[dialog.id] = call
            ack_body = b""
            if not offer:
                ack_body = self._answer_offer_in_2xx(call, response)
            self.core.send_ack(
                dialog.create_ack(
                    response.cseq.seq,
                    body=ack_body,
                    content_type="application/sdp" if ack_body else None,
                ),
                self._destination(dialog, call),
                transport,
            )
            self.driver.transmit()
            if offer:
                if not response.body:
                    raise DialError("2xx to our offer carries no SDP answer", response.status)
                result = process_answer(our_offer, SessionDescription.parse(response.body))
                if result.failure is not None or result.audio is None:
                    raise DialError(
                        f"unusable SDP answer: {result.failure.reason if result.failure else 'no audio'}",
                        response.status,
                    )
                call.remote_sdp = result.answer
                self._apply_stream(call, result.audio, initial=True)
            self._client.pop(tx, None)
            call.state = "active"
            try:
                se = response.session_expires
            except SipParseError:
                se = None
            if se is not None and c.session_timers:
                call.session_interval = se.delta
                call.we_refresh = se.refresher != "uas"
            self._arm_session_timer(call)
            return call
        except asyncio.CancelledError:
            if tx is not None:
                self.core.cancel(tx, self.loop.time())
                self.driver.transmit()
            self._end(call, "cancelled", "local")
            raise
        except BaseException as exc:
            if tx is not None:
                self._client.pop(tx, None)
            code = exc.status if isinstance(exc, DialError) else None
            if call.dialog is not None and call.dialog.state is not DialogState.TERMINATED:
                await self._send_bye(call, "error", "local", code)
            self._end(
                call,
                "rejected" if isinstance(exc, CallRejected) else "error",
                "remote" if isinstance(exc, CallRejected) else "local",
                code,
            )
            raise

    def _answer_offer_in_2xx(self, call: Call, response: SipResponse) -> bytes:
        """Offerless INVITE of ours: the 2xx holds the offer; answer it in the ACK."""
        if not response.body:
            raise DialError("2xx to an offerless INVITE carries no offer", response.status)
        offer = SessionDescription.parse(response.body)
        ep = call.endpoint
        assert ep is not None
        audio_index = next((i for i, m in enumerate(offer.media) if m.media == "audio"), None)
        result = negotiate_answer(
            offer,
            local_address=_sdp_address(self.advertised_host),
            ports=lambda i, _m: ep.local_port if i == audio_index else None,
            codec_preference=list(self._call_codecs.get(call, self.config.codecs)),
            session_id=self._next_session_id(),
            session_version=1,
            telephone_event=self.config.telephone_event,
        )
        if result.failure is not None or result.audio is None:
            raise DialError("no acceptable codec in the 2xx offer", 488)
        call.local_sdp = result.answer
        call.remote_sdp = offer
        self._apply_stream(call, result.audio, initial=True)
        return bytes(result.answer)

    async def _cancel_invite(
        self, tx: TransactionId, future: asyncio.Future[ResponseReceived]
    ) -> None:
        """CANCEL our INVITE and wait (a little) for its final response; ACK/BYE a late 2xx."""
        self.core.cancel(tx, self.loop.time())
        self.driver.transmit()
        try:
            ev = await asyncio.wait_for(asyncio.shield(future), 64 * self.config.t1)
        except (TimeoutError, TransactionError):
            return
        if 200 <= ev.response.status < 300 and ev.dialog is not None:
            self._client.pop(tx, None)
            self._stray_response(ev)


# -- helpers ------------------------------------------------------------------------------------------


def get_codec_spec(name: str) -> tuple[str, int]:
    """(encoding, clock rate) of a preference entry like ``"PCMU/8000"``."""
    parts = name.split("/")
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConfigError(f"codec {name!r}: expected encoding/rate[/channels]")
    return parts[0], int(parts[1])


def _format_of_codec(codec: Any, media: Any) -> MediaFormat:
    te = next((c for c in media.codecs if c.is_telephone_event), None)
    return MediaFormat(
        codec.encoding,
        codec.clock_rate,
        codec.channels,
        codec.payload_type,
        codec.fmtp,
        media.ptime or 20,
        te.payload_type if te is not None else None,
    )


def _format_of_stream(stream: NegotiatedStream) -> MediaFormat:
    codec = stream.codec
    assert codec is not None
    te = stream.telephone_event
    return MediaFormat(
        codec.encoding,
        codec.clock_rate,
        codec.channels,
        codec.payload_type,
        codec.fmtp,
        stream.ptime or 20,
        te.payload_type if te is not None else None,
    )


def _dialog_address(dialog: Dialog, call: Call | None, proxy: Address | None) -> Address:
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


_NO_AUDIO = '304 w3sipagent "no audio stream"'


def _refusal(result: AnswerResult, agent: str) -> tuple[str | None, str] | None:
    """(reason, Warning) when an offer cannot be taken: negotiation failed, or the audio
    connection address is a host name (we never resolve one: 488 with Warning 301)."""
    failure = result.failure
    if failure is not None:
        return failure.reason, failure.warning_header(agent)
    stream = result.audio
    if stream is not None and stream.remote_address and not is_ip_literal(stream.remote_address):
        return "Host name in SDP", f'301 {agent} "c= must be an IP address (no DNS here)"'
    return None


def _peer_allow(call: Call) -> list[str]:
    allow = call.info.header("Allow")
    if allow is None:
        return []
    return [a.strip() for a in allow.split(",") if a.strip()]


def _accepts_sdp(accept: list[str]) -> bool:
    """Whether an Accept header (absent means application/sdp, RFC 3261 §20.1) admits SDP."""
    if not accept:
        return True
    for item in accept:
        media, _, params = item.partition(";")
        media = media.strip().lower()
        if media in ("application/sdp", "application/*", "*/*"):
            q = 1.0
            for param in params.split(";"):
                name, _, value = param.partition("=")
                if name.strip().lower() == "q":
                    try:
                        q = float(value)
                    except ValueError:
                        q = 0.0
            if q > 0:
                return True
    return False
