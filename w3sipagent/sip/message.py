"""SIP requests and responses: parsing (RFC 3261 §7, §18.3). The message objects,
serialization and :func:`make_response` (§8.2.6) are in :mod:`.sipmessage`; every name is
importable from here.

:func:`parse_message` takes one UDP datagram (or one message framed off a stream by
:class:`~w3sipagent.sip.framing.StreamFramer`) and returns a :class:`SipRequest` or
:class:`SipResponse`. It parses the start line, splits every header, and parses
the typed values a user agent needs before admitting a request: the top Via,
From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Content-Type and Require.
Everything else (all Vias, Contact, the Request-URI...) is parsed lazily on first
access and cached until the headers change.

Errors: only :class:`~w3sipagent.errors.SipParseError`. When the defect was found
after the start line and header lines could be split, the error is a
:class:`SipMessageError` whose ``message`` holds the partly parsed message, so a
user agent can still answer a request with ``err.status`` (400, 505, 513...)
using :func:`make_response` (which needs only the raw Via, From, To, Call-ID and
CSeq lines). Responses with errors are meant to be dropped.

Decisions (RFC 4475 liberal readings, taken once):

- Start line: exactly one SP between elements; extra or trailing SP -> 400.
  A response status line without a reason phrase (``SIP/2.0 100``) is accepted.
- A Request-URI in ``<>`` or with whitespace -> 400; a non-SIP/tel scheme is
  accepted by the parser and :attr:`SipRequest.request_uri` raises 416; URI
  headers (``?``) in the Request-URI make :attr:`SipRequest.request_uri` raise 400.
- Datagrams: Content-Length optional (body = rest of datagram); bytes beyond
  Content-Length are ignored; Content-Length larger than the body -> 400.
- Multiple Call-ID / From / To / CSeq / Max-Forwards / Content-Length /
  Content-Type lines -> 400. A CSeq method differing from the request method -> 400.
- Missing Via, From, To, Call-ID or CSeq -> 400. Missing Max-Forwards is accepted
  (RFC 2543 peers).
- Bare LF line ends are accepted; leading CRLFs before the start line are skipped.
"""

from __future__ import annotations

import re
from typing import cast

from w3sipagent.errors import SipParseError
from w3sipagent.sip.fields import _NAME_CACHE, Headers, _resolve, split_header_list
from w3sipagent.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    parse_content_length,
    parse_max_forwards,
    parse_media_type,
    parse_option_tags,
)
from w3sipagent.sip.sipmessage import (
    REASON_PHRASES,
    SipMessage,
    SipRequest,
    SipResponse,
    make_response,
)

__all__ = [
    "MAX_HEADERS",
    "MAX_LINE_LENGTH",
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "SipMessage",
    "SipMessageError",
    "SipRequest",
    "SipResponse",
    "make_response",
    "parse_message",
    "partial_message",
]

#: Largest message accepted (bytes, head + body). Larger -> 513 Message Too Large.
MAX_MESSAGE_SIZE = 65535
#: Most header lines (folded continuation lines included) in one message.
MAX_HEADERS = 256
#: Longest start line or header line (bytes after folding is not undone).
MAX_LINE_LENGTH = 8192

_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_RURI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20\x7f<>\"]+")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_SINGLE = frozenset(
    {"call-id", "from", "to", "cseq", "max-forwards", "content-length", "content-type"}
)


class SipMessageError(SipParseError):
    """A :class:`SipParseError` raised after the header lines could be split.

    Every :class:`SipParseError` has a ``message`` attribute; this subclass marks the
    errors of :func:`parse_message` where it may be set: ``message`` is then the request
    as far as it could be read (start line and header lines split; typed values may be
    broken), so that a user agent can answer it with ``status`` via :func:`make_response`.
    Catching :class:`SipParseError` and reading ``err.message`` is enough.
    """

    def __init__(
        self, reason: str, status: int = 400, message: SipRequest | SipResponse | None = None
    ) -> None:
        super().__init__(reason, status, message)


def partial_message(err: SipParseError) -> SipRequest | SipResponse | None:
    """The partly parsed message an error carries, if any (same as ``err.message``)."""
    return err.message


# --------------------------------------------------------------------------- parsing


def parse_message(data: bytes | bytearray | memoryview) -> SipRequest | SipResponse:
    """Parse one SIP message from a datagram (RFC 3261 §18.3 rules).

    Raises :class:`SipParseError` (a :class:`SipMessageError` carrying the partly
    parsed message when the header lines could be split) and nothing else.
    """
    return _parse(data)


def _parse(data: bytes | bytearray | memoryview) -> SipRequest | SipResponse:
    if not isinstance(data, bytes):
        data = bytes(data)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    idx = data.find(b"\r\n\r\n")
    lf_mode = False
    if idx >= 0:
        body_start = idx + 4
    else:
        idx = data.find(b"\n\n")
        if idx >= 0:
            body_start = idx + 2
            lf_mode = True
        else:
            # No blank line: all headers, no body (seen in hand-made datagrams).
            idx = body_start = len(data)
            lf_mode = b"\r\n" not in data
    head = data[:idx].decode("utf-8", "surrogateescape")
    if lf_mode:
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in head.split("\n")]
    else:
        lines = head.split("\r\n")
        if head.count("\n") != len(lines) - 1:
            lines = re.split(r"\r?\n", head)
    error: SipMessageError | None = None
    if len(data) > MAX_MESSAGE_SIZE:
        error = SipMessageError("message too large", 513)
    elif len(lines) > MAX_HEADERS + 1:
        error = SipMessageError("too many header lines")
    elif len(head) > MAX_LINE_LENGTH and max(map(len, lines)) > MAX_LINE_LENGTH:
        error = SipMessageError("header line too long")

    # -- start line
    first = lines[0]
    msg: SipRequest | SipResponse
    is_request = not first.startswith("SIP/")
    if is_request:
        parts = first.split(" ")
        method = parts[0]
        if len(parts) != 3:
            uri = parts[1] if len(parts) > 1 else ""
            version = "SIP/2.0"
            if error is None:
                error = SipMessageError("malformed Request-Line")
        else:
            uri = parts[1]
            version = parts[2]
            vu = version.upper()
            if vu != "SIP/2.0":
                if error is None:
                    if _VERSION_RE.fullmatch(version):
                        error = SipMessageError("SIP version not supported", 505)
                    else:
                        error = SipMessageError("malformed SIP version")
            else:
                version = vu
        if not _METHOD_RE.fullmatch(method):
            raise SipParseError("malformed Request-Line: invalid method")
        if error is None and not _RURI_RE.fullmatch(uri):
            error = SipMessageError("malformed Request-URI")
        msg = SipRequest.__new__(SipRequest)
        msg.method = method
        msg.uri = uri
    else:
        parts = first.split(" ", 2)
        version = parts[0]
        if version.upper() != "SIP/2.0":
            if _VERSION_RE.fullmatch(version):
                raise SipParseError("SIP version not supported", 505)
            raise SipParseError("malformed SIP version in Status-Line")
        version = "SIP/2.0"
        code = parts[1] if len(parts) > 1 else ""
        if len(code) != 3 or not code.isascii() or not code.isdigit() or code[0] == "0":
            raise SipParseError("malformed status code")
        status = int(code)
        if status < 100 or status > 699:
            raise SipParseError("status code out of range")
        msg = SipResponse.__new__(SipResponse)
        msg.status = status
        msg.reason = parts[2] if len(parts) > 2 else ""

    # -- header lines
    items: list[tuple[str, str, str]] = []
    append = items.append
    cache_get = _NAME_CACHE.get
    for line in lines[1:] if len(lines) <= MAX_HEADERS + 1 else lines[1 : MAX_HEADERS + 1]:
        if not line:
            continue
        c = line[0]
        if c == " " or c == "\t":
            if not items:
                raise SipParseError("continuation line before the first header")
            k, n, v = items[-1]
            items[-1] = (k, n, (v + " " + line.strip()) if v else line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            if error is None:
                error = SipMessageError("header line without colon")
            continue
        kc = cache_get(name)
        if kc is None:
            try:
                kc = _resolve(name)
            except SipParseError as e:
                if error is None:
                    error = SipMessageError(e.reason)
                continue
        if "\r" in value:
            # a bare CR (line ends neither CRLF nor LF): not a header value (RFC 3261 §25.1);
            # kept as a space so the 400 can still echo the header
            if error is None:
                error = SipMessageError("bare CR in a header line")
            value = value.replace("\r", " ")
        append((kc[0], kc[1], value.strip()))
    headers = Headers.from_entries(items)
    cache: dict[str, object] = {}
    msg.adopt_parsed(headers, cache)
    msg.version = version
    msg.body = b""

    # -- typed values for admission
    found: dict[str, str] = {}
    via_top: str | None = None
    require: list[str] = []
    for key, _, value in items:
        if key in _SINGLE:
            if key in found and error is None:
                error = SipMessageError(f"more than one {_resolve(key)[1]} header")
            found[key] = value
        elif key == "via":
            if via_top is None:
                via_top = value
        elif key == "require":
            require.append(value)

    cl: int | None = None
    try:
        if via_top is None:
            raise SipParseError("missing Via header")
        if "," in via_top:
            vs = split_header_list(via_top)
            via_top = vs[0] if vs else ""
        cache["via"] = Via.parse(via_top)
        for key, label in (
            ("from", "From"),
            ("to", "To"),
            ("call-id", "Call-ID"),
            ("cseq", "CSeq"),
        ):
            if key not in found:
                raise SipParseError(f"missing {label} header")
        cache["from"] = NameAddr.parse(found["from"])
        cache["to"] = NameAddr.parse(found["to"])
        cid = found["call-id"]
        if not cid or " " in cid or "\t" in cid:
            raise SipParseError("malformed Call-ID")
        cache["call-id"] = cid
        cseq = CSeq.parse(found["cseq"])
        cache["cseq"] = cseq
        if is_request and cseq.method != cast(SipRequest, msg).method:
            raise SipParseError("CSeq method does not match the request method")
        mf = found.get("max-forwards")
        cache["max-forwards"] = None if mf is None else parse_max_forwards(mf)
        clv = found.get("content-length")
        cl = None if clv is None else parse_content_length(clv)
        cache["content-length"] = cl
        ctv = found.get("content-type")
        cache["content-type"] = None if ctv is None else parse_media_type(ctv)[0]
        tags: list[str] = []
        for rv in require:
            tags.extend(parse_option_tags(rv))
        cache["require"] = tags
    except SipParseError as e:
        if error is None:
            error = SipMessageError(e.reason, e.status)

    # -- body
    available = len(data) - body_start
    if cl is None:
        msg.body = data[body_start:] if available > 0 else b""
    elif cl > available:
        if error is None:
            error = SipMessageError("Content-Length larger than the message body")
        msg.body = data[body_start:]
    else:
        msg.body = data[body_start : body_start + cl]

    if error is not None:
        if is_request:
            error.message = msg
        raise error
    return msg
