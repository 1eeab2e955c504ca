"""SIP requests and responses as objects (RFC 3261 §7): :class:`SipRequest`,
:class:`SipResponse` with typed, cached views of their headers, serialization, and
:func:`make_response` (§8.2.6). Parsing is :mod:`.message`, which re-exports these names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from w3sipagent.errors import SipParseError
from w3sipagent.sip.fields import Headers, split_header_list
from w3sipagent.sip.headers import (
    CSeq,
    Event,
    NameAddr,
    SessionExpires,
    SubscriptionState,
    Via,
    parse_content_length,
    parse_max_forwards,
    parse_media_type,
    parse_option_tags,
)
from w3sipagent.sip.uri import SipUri, TelUri, parse_uri

__all__ = [
    "REASON_PHRASES",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "make_response",
]

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief", 428: "Use Identity Header",
    429: "Provide Referrer Identity", 430: "Flow Failed", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
    469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip

_DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
_UNSET: Any = object()
_T = TypeVar("_T")


class SipMessage:
    """What requests and responses share: headers, body, typed header views."""

    __slots__ = ("_cache", "_cache_gen", "_cache_hdrs", "body", "headers", "version")

    headers: Headers
    body: bytes
    version: str
    _cache: dict[str, object]
    _cache_hdrs: Headers | None
    _cache_gen: int

    def adopt_parsed(self, headers: Headers, values: dict[str, object]) -> None:
        """Take ``headers`` and ``values``, the typed values the parser has already read from
        them (by the names :meth:`_cached` uses); the parser may add to ``values`` later."""
        self.headers = headers
        self._cache = values
        self._cache_hdrs = headers
        self._cache_gen = headers.generation

    def _cached(self, name: str, compute: Callable[[], _T]) -> _T:
        h = self.headers
        if self._cache_hdrs is not h or self._cache_gen != h.generation:
            self._cache = {}
            self._cache_hdrs = h
            self._cache_gen = h.generation
        v = self._cache.get(name, _UNSET)
        if v is _UNSET:
            v = compute()
            self._cache[name] = v
        return cast(_T, v)

    def _single(self, name: str) -> str:
        v = self.headers.get(name)
        if v is None:
            raise SipParseError(f"missing {name} header")
        return v

    # -- typed views -------------------------------------------------------------------

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        return self._cached("vias", lambda: [Via.parse(v) for v in self.headers.get_all("Via")])

    @property
    def via(self) -> Via:
        """The top Via."""
        return self._cached("via", self._top_via)

    def _top_via(self) -> Via:
        v = self._single("Via")
        if "," in v:
            v = split_header_list(v)[0] if split_header_list(v) else ""
        return Via.parse(v)

    @property
    def call_id(self) -> str:
        """The Call-ID value."""
        return self._cached("call-id", self._call_id)

    def _call_id(self) -> str:
        v = self._single("Call-ID")
        if not v or " " in v or "\t" in v:
            raise SipParseError("malformed Call-ID")
        return v

    @property
    def cseq(self) -> CSeq:
        """The CSeq value."""
        return self._cached("cseq", lambda: CSeq.parse(self._single("CSeq")))

    @property
    def from_(self) -> NameAddr:
        """The From address."""
        return self._cached("from", lambda: NameAddr.parse(self._single("From")))

    @property
    def to(self) -> NameAddr:
        """The To address."""
        return self._cached("to", lambda: NameAddr.parse(self._single("To")))

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0..255), or None when absent."""
        return self._cached(
            "max-forwards", lambda: _opt(self.headers, "Max-Forwards", parse_max_forwards)
        )

    @property
    def content_length(self) -> int | None:
        """The Content-Length header value, or None when absent."""
        return self._cached(
            "content-length", lambda: _opt(self.headers, "Content-Length", parse_content_length)
        )

    @property
    def content_type(self) -> str | None:
        """The media type (``application/sdp``), lowercased without parameters, or None."""
        return self._cached(
            "content-type",
            lambda: _opt(self.headers, "Content-Type", lambda v: parse_media_type(v)[0]),
        )

    @property
    def contact(self) -> list[NameAddr]:
        """Every Contact value (``*`` is not an address: check the raw header for it)."""
        return self._cached(
            "contact",
            lambda: [NameAddr.parse(v) for v in self.headers.get_all("Contact") if v != "*"],
        )

    @property
    def record_route(self) -> list[NameAddr]:
        """Every Record-Route value, in order."""
        return self._cached(
            "record-route",
            lambda: [NameAddr.parse(v) for v in self.headers.get_all("Record-Route")],
        )

    @property
    def route(self) -> list[NameAddr]:
        """Every Route value, in order."""
        return self._cached(
            "route", lambda: [NameAddr.parse(v) for v in self.headers.get_all("Route")]
        )

    @property
    def require(self) -> list[str]:
        """Option tags of every Require line."""
        return self._cached("require", lambda: _tags(self.headers, "Require"))

    @property
    def supported(self) -> list[str]:
        """Option tags of every Supported line."""
        return self._cached("supported", lambda: _tags(self.headers, "Supported"))

    @property
    def allow(self) -> list[str]:
        """Methods of every Allow line."""
        return self._cached("allow", lambda: _tags(self.headers, "Allow"))

    @property
    def event(self) -> Event | None:
        """The Event value, or None."""
        return self._cached("event", lambda: _opt(self.headers, "Event", Event.parse))

    @property
    def subscription_state(self) -> SubscriptionState | None:
        """The Subscription-State value, or None."""
        return self._cached(
            "subscription-state",
            lambda: _opt(self.headers, "Subscription-State", SubscriptionState.parse),
        )

    @property
    def session_expires(self) -> SessionExpires | None:
        """The Session-Expires value, or None."""
        return self._cached(
            "session-expires", lambda: _opt(self.headers, "Session-Expires", SessionExpires.parse)
        )

    @property
    def refer_to(self) -> NameAddr | None:
        """The Refer-To address, or None."""
        return self._cached("refer-to", lambda: _opt(self.headers, "Refer-To", NameAddr.parse))

    # -- editing -------------------------------------------------------------------------

    def replace_top_via(self, via: Via, text: str | None = None) -> None:
        """Replace the top Via value (first value of the first Via line) by ``via``.

        ``text`` is its wire form when the caller has one (default ``str(via)``). The other
        Via values stay where they are, and the typed values already parsed (From, To,
        CSeq...) stay cached: only the Via views are refreshed. Used by a UAS to stamp
        ``received``/``rport`` (RFC 3261 §18.2.1, RFC 3581).
        """
        headers = self.headers
        first = headers.get("Via")
        if first is None:
            raise SipParseError("missing Via header")
        values = split_header_list(first) if "," in first else [first]
        values[0] = str(via) if text is None else text
        cache_valid = self._cache_hdrs is headers and self._cache_gen == headers.generation
        headers.replace_first("Via", ", ".join(values))
        if cache_valid:
            cache = self._cache
            cache.pop("vias", None)
            cache["via"] = via
            self._cache_gen = headers.generation

    # -- serialization -------------------------------------------------------------------

    def _start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        """Serialize; Content-Length is computed from the body (one line, where it was)."""
        body = self.body
        lines = [self._start_line()]
        append = lines.append
        cl_done = False
        for key, name, value in self.headers.entries:
            if key == "content-length":
                if cl_done:
                    continue
                cl_done = True
                value = str(len(body))
            append(f"{name}: {value}")
        if not cl_done:
            append(f"Content-Length: {len(body)}")
        append("")
        append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body

    def _norm_headers(self) -> list[tuple[str, str]]:
        return [(k, v) for k, _, v in self.headers.entries if k != "content-length"]


def _opt(headers: Headers, name: str, parse: Callable[[str], _T]) -> _T | None:
    v = headers.get(name)
    return None if v is None else parse(v)


def _tags(headers: Headers, name: str) -> list[str]:
    out: list[str] = []
    for v in headers.get_lines(name):
        out.extend(parse_option_tags(v))
    return out


class SipRequest(SipMessage):
    """A SIP request. ``uri`` is the raw Request-URI text; :attr:`request_uri` parses it."""

    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body
        self.version = version
        self._cache = {}
        self._cache_hdrs = None
        self._cache_gen = -1

    @property
    def request_uri(self) -> SipUri | TelUri:
        """The parsed Request-URI (416 for other schemes, 400 when it carries headers)."""
        return self._cached("request-uri", self._request_uri)

    def _request_uri(self) -> SipUri | TelUri:
        uri = parse_uri(self.uri)
        if isinstance(uri, SipUri) and uri.headers:
            raise SipParseError("Request-URI carries URI headers")
        return uri

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipRequest):
            return NotImplemented
        return (
            self.method == other.method
            and self.uri == other.uri
            and self.version.upper() == other.version.upper()
            and self.body == other.body
            and self._norm_headers() == other._norm_headers()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body
        self.version = version
        self._cache = {}
        self._cache_hdrs = None
        self._cache_gen = -1

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipResponse):
            return NotImplemented
        return (
            self.status == other.status
            and self.reason == other.reason
            and self.version.upper() == other.version.upper()
            and self.body == other.body
            and self._norm_headers() == other._norm_headers()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


# --------------------------------------------------------------------------- responses


_TAG_RE = re.compile(r";\s*tag\s*=", re.IGNORECASE)


def _has_tag(to_value: str) -> bool:
    try:
        return NameAddr.parse(to_value).tag is not None
    except SipParseError:
        return (
            _TAG_RE.search(to_value.rpartition(">")[2] if ">" in to_value else to_value) is not None
        )


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    Copies every Via line, From, To (adding ``;tag=to_tag`` when To has no tag),
    Call-ID and CSeq as raw text, so it also works on the partly parsed message of
    a :class:`SipMessageError`. Record-Route is copied into 101-299 responses to
    dialog-creating requests (RFC 3261 §12.1.1). ``headers`` are appended, then
    Content-Type when given; Content-Length is computed on serialization.
    """
    items: list[tuple[str, str, str]] = []
    src = request.headers.entries
    for it in src:
        if it[0] == "via":
            items.append(it)
    for key in ("from", "to", "call-id", "cseq"):
        for it in src:
            if it[0] == key:
                if key == "to" and to_tag is not None and not _has_tag(it[2]):
                    it = (it[0], it[1], f"{it[2]};tag={to_tag}")
                items.append(it)
                break
    if 100 < status < 300 and request.method in _DIALOG_METHODS:
        items.extend(it for it in src if it[0] == "record-route")
    resp = SipResponse(status, reason, Headers.from_entries(items), body)
    for name, value in headers:
        resp.headers.add(name, value)
    if content_type is not None:
        resp.headers.set("Content-Type", content_type)
    return resp
