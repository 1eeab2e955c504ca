"""SIP header fields: the ordered multimap and the typed values (RFC 3261 §7.3, §20, §25).

:class:`Headers` keeps every header line in the order received, repeated names
included; names compare case-insensitively and compact forms (``v``, ``f``,
``t``...) are expanded to their long names. Values are ``str`` with folded
lines joined by a single space.

Typed values (:class:`Via`, :class:`NameAddr`, :class:`CSeq`, :class:`Challenge`,
:class:`Credentials`, :class:`Event`, :class:`SubscriptionState`,
:class:`SessionExpires`) parse one header value each and format back with
:func:`str`. Parameter names are lowercased (they are case-insensitive);
parameter values keep their case, and a quoted value keeps its quotes.
Every parser raises :class:`~w3sipagent.errors.SipParseError` naming the defect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Self

from w3sipagent.errors import SipParseError
from w3sipagent.sip.uri import SipUri, Uri, parse_any_uri, parse_hostport

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "Challenge",
    "Credentials",
    "Event",
    "Headers",
    "NameAddr",
    "SessionExpires",
    "SubscriptionState",
    "Via",
    "canonical_name",
    "format_auth_params",
    "parse_auth_params",
    "parse_challenges",
    "parse_content_length",
    "parse_max_forwards",
    "parse_media_type",
    "parse_option_tags",
    "parse_params",
    "split_auth_values",
    "split_header_list",
]

#: Compact header forms (RFC 3261 §7.3.3 and later RFCs) -> long names.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Diversion", "Error-Info", "Event", "Expires", "From",
    "History-Info", "Identity", "Identity-Info", "In-Reply-To", "Max-Forwards", "Min-Expires",
    "Min-SE", "MIME-Version", "Organization", "P-Asserted-Identity", "P-Preferred-Identity",
    "Path", "Priority", "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require",
    "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Remote-Party-ID",
    "Replaces", "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
    "Server", "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
    "Warning", "WWW-Authenticate", "X-FS-Support",
]  # fmt: skip
_CANONICAL: dict[str, str] = {n.lower(): n for n in _KNOWN_NAMES}

#: Headers whose value is a comma-separated list (RFC 3261 §7.3.1) for get_all().
_LIST_HEADERS = frozenset(
    n.lower()
    for n in [
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "History-Info", "In-Reply-To", "P-Asserted-Identity", "Path",
        "Proxy-Require", "Reason", "Record-Route", "Reject-Contact", "Request-Disposition",
        "Require", "Route", "Security-Client", "Security-Server", "Security-Verify",
        "Service-Route", "Supported", "Unsupported", "Via", "Warning",
    ]
)  # fmt: skip

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX = 1024


def _resolve(name: str) -> tuple[str, str]:
    """(lowercase long key, canonical spelling) for a header name; validates it."""
    hit = _NAME_CACHE.get(name)
    if hit is not None:
        return hit
    stripped = name.rstrip(" \t")
    if not _TOKEN_RE.fullmatch(stripped):
        raise SipParseError(f"invalid header name {stripped[:40]!r}")
    low = stripped.lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        canon = COMPACT_FORMS[low]
        low = canon.lower()
    else:
        canon = _CANONICAL.get(low, stripped)
    result = (low, canon)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = result
    return result


for _n in _KNOWN_NAMES:
    for _spelling in (_n, _n.lower(), _n.upper()):
        _resolve(_spelling)
for _c in COMPACT_FORMS:
    _resolve(_c)
    _resolve(_c.upper())


def canonical_name(name: str) -> str:
    """The long, conventionally spelled form of a header name (``v`` -> ``Via``)."""
    return _resolve(name)[1]


def _key(name: str) -> str:
    hit = _NAME_CACHE.get(name)
    if hit is not None:
        return hit[0]
    low = name.strip().lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        return COMPACT_FORMS[low].lower()
    return low


_LIST_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|<[^>]*>?|[^,"<]+|,', re.DOTALL)


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quoted strings and ``<...>``.

    Empty elements are dropped; each element is stripped.
    """
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    if '"' not in value and "<" not in value:
        return [s for s in (p.strip() for p in value.split(",")) if s]
    out: list[str] = []
    cur: list[str] = []
    for m in _LIST_TOKEN_RE.finditer(value):
        tok = m.group()
        if tok == ",":
            s = "".join(cur).strip()
            if s:
                out.append(s)
            cur = []
        else:
            cur.append(tok)
    s = "".join(cur).strip()
    if s:
        out.append(s)
    return out


class Headers:
    """A case-insensitive, ordered multimap of SIP header fields.

    Repeated headers and their order are kept. Names are resolved to their long
    form (``"v"`` and ``"VIA"`` both mean ``Via``); iteration yields
    ``(canonical name, value)`` pairs in order. Never a plain dict.
    """

    __slots__ = ("_gen", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._gen = 0
        for name, value in items:
            self.add(name, value)

    @classmethod
    def from_entries(cls, entries: list[tuple[str, str, str]]) -> Headers:
        """Headers taking ``entries`` as they are (no copy, no check): ``(lower-case key,
        canonical name, stripped value)`` triples, as the parser builds them."""
        h: Headers = cls.__new__(cls)
        h._items = entries
        h._gen = 0
        return h

    @property
    def entries(self) -> list[tuple[str, str, str]]:
        """The ``(lower-case key, canonical name, value)`` triples in order: the live list,
        for readers on a hot path (serialization); never to be changed in place."""
        return self._items

    @property
    def generation(self) -> int:
        """A counter bumped on every change: a cache of parsed values is valid while it
        holds the generation it was filled at."""
        return self._gen

    @staticmethod
    def _check(name: str, value: str) -> tuple[str, str, str]:
        key, canon = _resolve(name)
        if "\r" in value or "\n" in value:
            raise SipParseError(f"CR or LF in value of header {canon}")
        return key, canon, value.strip()

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (a whole header line's value), or ``default``."""
        key = _key(name)
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; list headers (Via, Contact...) split on commas."""
        key = _key(name)
        values = [v for k, _, v in self._items if k == key]
        if key in _LIST_HEADERS:
            out: list[str] = []
            for v in values:
                out.extend(split_header_list(v))
            return out
        return values

    def get_lines(self, name: str) -> list[str]:
        """Every header line's value of ``name``, unsplit, in order."""
        key = _key(name)
        return [v for k, _, v in self._items if k == key]

    def count(self, name: str) -> int:
        """How many header lines carry ``name``."""
        key = _key(name)
        return sum(1 for k, _, _ in self._items if k == key)

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._items.append(self._check(name, value))
        self._gen += 1

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` line by one, at the position of the first (or append)."""
        item = self._check(name, value)
        key = item[0]
        out: list[tuple[str, str, str]] = []
        placed = False
        for it in self._items:
            if it[0] == key:
                if not placed:
                    out.append(item)
                    placed = True
            else:
                out.append(it)
        if not placed:
            out.append(item)
        self._items = out
        self._gen += 1

    def replace_first(self, name: str, value: str) -> None:
        """Replace the value of the first ``name`` line where it stands (append when absent).

        Unlike :meth:`set`, later lines of ``name`` are kept (e.g. the other Via lines).
        """
        item = self._check(name, value)
        key = item[0]
        items = self._items
        for i, it in enumerate(items):
            if it[0] == key:
                items[i] = (key, it[1], item[2])
                break
        else:
            items.append(item)
        self._gen += 1

    def insert(self, index: int, name: str, value: str) -> None:
        """Insert a header line at ``index`` (0 = first), e.g. a new top Via."""
        self._items.insert(index, self._check(name, value))
        self._gen += 1

    def remove(self, name: str) -> None:
        """Remove every line of ``name`` (no error when absent)."""
        key = _key(name)
        self._items = [it for it in self._items if it[0] != key]
        self._gen += 1

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, n, v in self._items:
            yield n, v

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers.from_entries(list(self._items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._items]!r})"


# --------------------------------------------------------------------------- parameters

_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_PARAM_VALUE_RE = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^\s";,<>]+)', re.DOTALL)
_SEMI_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|[^;"]+|;', re.DOTALL)


def _split_semis(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    out: list[str] = []
    cur: list[str] = []
    for m in _SEMI_TOKEN_RE.finditer(text):
        tok = m.group()
        if tok == ";":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(tok)
    out.append("".join(cur))
    return out


_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_SIMPLE_PARAMS_RE = re.compile(rf"(?:\s*;\s*{_TOKEN}(?:\s*=\s*[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)+\s*")
_SIMPLE_PARAM_RE = re.compile(rf"({_TOKEN})(?:\s*=\s*([A-Za-z0-9\-.!%*_+`'~:\[\]]+))?")


def parse_params(text: str, what: str = "header") -> dict[str, str | None]:
    """Parse ``;name=value;flag`` header parameters (the text from the first ``;``).

    Names are lowercased; a flag has value None; quoted values keep their quotes.
    Empty parameters (``;;``) and malformed values raise :class:`SipParseError`.
    """
    if _SIMPLE_PARAMS_RE.fullmatch(text):
        return {n.lower(): (v or None) for n, v in _SIMPLE_PARAM_RE.findall(text)}
    text = text.strip()
    if not text:
        return {}
    if text[0] != ";":
        raise SipParseError(f"garbage before parameters in {what}")
    params: dict[str, str | None] = {}
    for part in _split_semis(text[1:]):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not name or not _TOKEN_RE.fullmatch(name):
            raise SipParseError(f"empty or invalid parameter name in {what}")
        if eq:
            value = value.strip()
            if not _PARAM_VALUE_RE.fullmatch(value):
                raise SipParseError(f"invalid value of parameter {name[:32]!r} in {what}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _format_params(params: Mapping[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _unquote(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- Via

_VIA_RE = re.compile(
    r"([^/\s]+)\s*/\s*([^/\s]+)\s*/\s*([^\s/;]+)\s+([^;]+?)\s*(;.*)?",
    re.DOTALL,
)

_VIA_FAST_RE = re.compile(
    r"SIP/2\.0/([A-Za-z0-9\-.!%*_+`'~]+) ([A-Za-z0-9][A-Za-z0-9.\-]*)(?::([0-9]{1,5}))?(;.*)?",
    re.DOTALL,
)


@dataclass(slots=True)
class Via:
    """One Via value: ``SIP/2.0/<transport> host[:port];params``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (not a comma-separated list)."""
        f = _VIA_FAST_RE.fullmatch(text)
        if f is not None:
            transport, host, port_text, ptext = f.groups()
            port = None
            if port_text is not None:
                port = int(port_text)
                if port > 65535:
                    raise SipParseError("port out of range in Via sent-by")
            return cls(transport.upper(), host, port, parse_params(ptext, "Via") if ptext else {})
        m = _VIA_RE.fullmatch(text.strip())
        if m is None:
            raise SipParseError("malformed Via")
        proto, version, transport, sent_by, ptext = m.groups()
        if proto.upper() != "SIP":
            raise SipParseError("Via protocol is not SIP")
        if version != "2.0":
            raise SipParseError("Via protocol version is not 2.0", 505)
        if not _TOKEN_RE.fullmatch(transport):
            raise SipParseError("invalid Via transport")
        host, port = parse_hostport(sent_by, "Via sent-by")
        params = parse_params(ptext, "Via") if ptext else {}
        return cls(transport.upper(), host, port, params)

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (transaction id), or None."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter, or None."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The numeric ``rport`` value, or None (also when present without a value)."""
        v = self.params.get("rport")
        if v is not None and v.isascii() and v.isdigit() and len(v) <= 5:
            return int(v)
        return None

    @property
    def has_rport(self) -> bool:
        """True when the ``rport`` parameter is present (RFC 3581), with or without value."""
        return "rport" in self.params

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """(host, port) as written."""
        return self.host, self.port

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {hp}{_format_params(self.params)}"


# --------------------------------------------------------------------------- name-addr

_DISPLAY_TOKENS_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+)*"
)


_NAME_ADDR_RE = re.compile(
    r'\s*(?:"((?:[^"\\]|\\.)*)"\s*|([^"<>]*?)\s*)<\s*([^<>\s]*)\s*>\s*(;.*)?', re.DOTALL
)


@dataclass(slots=True)
class NameAddr:
    """A name-addr or addr-spec (From, To, Contact, Route, Refer-To...) with header params.

    ``display_name`` is unquoted and unescaped (None when absent). In the addr-spec
    form (no ``<>``) everything after the first ``;`` is a header parameter.
    """

    uri: Uri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse one name-addr / addr-spec with its parameters."""
        m = _NAME_ADDR_RE.fullmatch(text)
        if m is not None:
            quoted, plain, uri_text, ptext = m.groups()
            if quoted is not None:
                display: str | None = _unquote(quoted)
            elif plain:
                if not _DISPLAY_TOKENS_RE.fullmatch(plain):
                    raise SipParseError("invalid characters in unquoted display name")
                display = plain
            else:
                display = None
            return cls(parse_any_uri(uri_text), display, parse_params(ptext) if ptext else {})
        return cls._parse_slow(text)

    @classmethod
    def _parse_slow(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise SipParseError("empty address")
        display: str | None = None
        if text[0] == '"':
            m = _QUOTED_RE.match(text)
            if m is None:
                raise SipParseError("unterminated quoted display name")
            display = _unquote(m.group(1))
            rest = text[m.end() :].lstrip()
            if not rest.startswith("<"):
                raise SipParseError("quoted display name not followed by <URI>")
        else:
            lt = text.find("<")
            if lt < 0:
                uri_text, _, ptext = text.partition(";")
                uri_text = uri_text.strip()
                if "?" in uri_text or "," in uri_text:
                    raise SipParseError("URI with '?' or ',' must be enclosed in <>")
                uri = parse_any_uri(uri_text)
                return cls(uri, None, parse_params(";" + ptext) if ptext else {})
            if lt:
                d = text[:lt].strip()
                if not _DISPLAY_TOKENS_RE.fullmatch(d):
                    raise SipParseError("invalid characters in unquoted display name")
                display = d
            rest = text[lt:]
        gt = rest.find(">")
        if gt < 0:
            raise SipParseError("missing '>' in address")
        uri = parse_any_uri(rest[1:gt].strip())
        tail = rest[gt + 1 :]
        params = parse_params(tail) if tail else {}
        return cls(uri, display, params)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (dialog identifier half), or None."""
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri:
        """The URI as a :class:`SipUri`; raises :class:`SipParseError` (416) otherwise."""
        if not isinstance(self.uri, SipUri):
            raise SipParseError("address is not a SIP URI", 416)
        return self.uri

    def with_tag(self, tag: str) -> NameAddr:
        """A copy carrying ``tag``."""
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(self.uri, self.display_name, params)

    def __str__(self) -> str:
        dn = "" if self.display_name is None else _quote(self.display_name) + " "
        return f"{dn}<{self.uri}>{_format_params(self.params)}"


# --------------------------------------------------------------------------- scalars


def _digits(value: str, what: str, max_len: int = 10) -> int:
    v = value.strip()
    if not v or not v.isascii() or not v.isdigit():
        raise SipParseError(f"{what} is not a number")
    if len(v) > max_len:
        raise SipParseError(f"{what} too large")
    return int(v)


def parse_max_forwards(value: str) -> int:
    """Max-Forwards: 0..255."""
    n = _digits(value, "Max-Forwards", 5)
    if n > 255:
        raise SipParseError("Max-Forwards above 255")
    return n


def parse_content_length(value: str) -> int:
    """Content-Length: a non-negative decimal (at most 10 digits)."""
    return _digits(value, "Content-Length")


@dataclass(slots=True)
class CSeq:
    """CSeq: sequence number (< 2**31) and method."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse ``<number> <method>``."""
        num, _, method = text.strip().partition(" ")
        if not method:
            num, _, method = text.strip().partition("\t")
        method = method.strip()
        seq = _digits(num, "CSeq number")
        if seq >= 2**31:
            raise SipParseError("CSeq number not below 2**31")
        if not _TOKEN_RE.fullmatch(method):
            raise SipParseError("invalid CSeq method")
        return cls(seq, method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_media_type(value: str) -> tuple[str, dict[str, str | None]]:
    """Content-Type -> (``type/subtype`` lowercased, parameters)."""
    mt, semi, ptext = value.partition(";")
    t, slash, s = mt.partition("/")
    t = t.strip().lower()
    s = s.strip().lower()
    if not slash or not _TOKEN_RE.fullmatch(t) or not _TOKEN_RE.fullmatch(s):
        raise SipParseError("malformed Content-Type")
    return f"{t}/{s}", (parse_params(";" + ptext, "Content-Type") if semi else {})


def parse_option_tags(value: str) -> list[str]:
    """Supported / Require / Unsupported / Allow values: a list of tokens."""
    out = split_header_list(value)
    for tok in out:
        if not _TOKEN_RE.fullmatch(tok):
            raise SipParseError("invalid token in list header")
    return out


# --------------------------------------------------------------------------- auth

#: Parameters sent as tokens, not quoted strings (RFC 7616 §3.4).
CREDENTIAL_TOKEN_PARAMS = frozenset({"algorithm", "nc", "qop", "stale"})
CHALLENGE_TOKEN_PARAMS = frozenset({"algorithm", "stale"})

#: Longest authentication header value parsed (characters).
MAX_AUTH_HEADER = 8192


def _auth_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i


_AUTH_TOKEN_STOP = frozenset(' \t\r\n,="')


def _auth_token(s: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(s) and s[j] not in _AUTH_TOKEN_STOP:
        j += 1
    return s[i:j], j


def _auth_quoted(s: str, i: int) -> tuple[str, int]:
    """Parse a quoted-string starting at ``s[i] == '"'``; returns the unescaped text."""
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s):
                break
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise SipParseError("unterminated quoted string in authentication header")


def split_auth_values(value: str) -> list[tuple[str, dict[str, str]]]:
    """Split a ``WWW-Authenticate``/``Authorization`` value into ``(scheme, params)`` pairs.

    Handles quoted strings (with commas and escapes inside), token values, extra
    whitespace and several challenges in one value (``Digest a=1, Basic b=2``).
    Parameter names are lower-cased, quoted values unquoted, order kept. Raises
    :class:`SipParseError` on malformed input (also a duplicate parameter, RFC 7616 §3.3).
    """
    if len(value) > MAX_AUTH_HEADER:
        raise SipParseError(f"authentication header longer than {MAX_AUTH_HEADER} characters")
    out: list[tuple[str, dict[str, str]]] = []
    s = value
    i = _auth_ws(s, 0)
    after_scheme = False  # a scheme was just read: parameters, a comma or the end follow
    while i < len(s):
        if s[i] == ",":
            i = _auth_ws(s, i + 1)
            after_scheme = False
            continue
        name, j = _auth_token(s, i)
        if not name:
            raise SipParseError(f"unexpected character {s[i]!r} in authentication header")
        k = _auth_ws(s, j)
        if k < len(s) and s[k] == "=":
            after_scheme = False
            if not out:
                raise SipParseError("authentication parameter before the scheme")
            k = _auth_ws(s, k + 1)
            if k < len(s) and s[k] == '"':
                v, k = _auth_quoted(s, k)
            else:
                v, k = _auth_token(s, k)
            key = name.lower()
            if key in out[-1][1]:
                raise SipParseError(f"duplicate authentication parameter {key!r}")
            out[-1][1][key] = v
            i = _auth_ws(s, k)
            if i < len(s) and s[i] != ",":
                raise SipParseError(f"expected ',' after parameter {key!r}")
        else:
            if after_scheme:
                raise SipParseError(
                    f"expected parameters after authentication scheme {out[-1][0][:40]!r}"
                )
            out.append((name, {}))
            after_scheme = True
            i = k
    if not out:
        raise SipParseError("empty authentication header")
    return out


def parse_auth_params(text: str) -> tuple[str, dict[str, str]]:
    """Parse ``Scheme name=value, name="quoted"`` -> (scheme, params).

    Parameter names are lowercased and quoted values unquoted, order kept.
    Used for WWW-Authenticate, Proxy-Authenticate, Authorization and
    Proxy-Authorization values holding one challenge or credentials.
    """
    values = split_auth_values(text)
    if len(values) != 1:
        raise SipParseError("trailing data after authentication parameters")
    return values[0]


def format_auth_params(
    scheme: str, params: Mapping[str, str], token_params: Iterable[str] = CREDENTIAL_TOKEN_PARAMS
) -> str:
    """Format ``Scheme a="x", b=y``: names in ``token_params`` unquoted, the rest quoted."""
    tokens = set(token_params)
    parts = [f"{k}={v}" if k in tokens else f"{k}={_quote(v)}" for k, v in params.items()]
    return f"{scheme} " + ", ".join(parts)


@dataclass(slots=True)
class _AuthValue:
    """A scheme and its ordered auth-params; ``TOKEN_PARAMS`` are written unquoted."""

    TOKEN_PARAMS: ClassVar[Iterable[str]] = ()

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse one value."""
        return cls(*parse_auth_params(text))

    def __str__(self) -> str:
        return format_auth_params(self.scheme, self.params, self.TOKEN_PARAMS)


@dataclass(slots=True)
class Challenge(_AuthValue):
    """A WWW-Authenticate / Proxy-Authenticate challenge: scheme and ordered params."""

    TOKEN_PARAMS: ClassVar[Iterable[str]] = CHALLENGE_TOKEN_PARAMS


@dataclass(slots=True)
class Credentials(_AuthValue):
    """An Authorization / Proxy-Authorization value: scheme and ordered params."""

    TOKEN_PARAMS: ClassVar[Iterable[str]] = CREDENTIAL_TOKEN_PARAMS


def parse_challenges(text: str) -> list[Challenge]:
    """Parse a header value that may hold several comma-separated challenges."""
    return [Challenge(scheme, params) for scheme, params in split_auth_values(text)]


# --------------------------------------------------------------------------- events & timers


@dataclass(slots=True)
class Event:
    """Event (RFC 6665): package (with template) and params (``id``...)."""

    package: str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Event:
        """Parse ``package[.template];params``."""
        pkg, semi, ptext = text.partition(";")
        pkg = pkg.strip()
        if not _TOKEN_RE.fullmatch(pkg):
            raise SipParseError("invalid Event package")
        return cls(pkg, parse_params(";" + ptext, "Event") if semi else {})

    @property
    def id(self) -> str | None:
        """The ``id`` parameter, or None."""
        return self.params.get("id")

    def __str__(self) -> str:
        return self.package + _format_params(self.params)


@dataclass(slots=True)
class SubscriptionState:
    """Subscription-State: ``active|pending|terminated`` plus expires / reason / retry-after."""

    state: str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SubscriptionState:
        """Parse ``state;params``; the state is lowercased."""
        st, semi, ptext = text.partition(";")
        st = st.strip().lower()
        if not _TOKEN_RE.fullmatch(st):
            raise SipParseError("invalid Subscription-State")
        return cls(st, parse_params(";" + ptext, "Subscription-State") if semi else {})

    @property
    def expires(self) -> int | None:
        """The ``expires`` parameter in seconds, or None."""
        v = self.params.get("expires")
        return None if v is None else _digits(v, "Subscription-State expires")

    @property
    def reason(self) -> str | None:
        """The ``reason`` parameter, or None."""
        return self.params.get("reason")

    def __str__(self) -> str:
        return self.state + _format_params(self.params)


@dataclass(slots=True)
class SessionExpires:
    """Session-Expires (RFC 4028): interval in seconds and the refresher (uac/uas/None)."""

    delta: int
    refresher: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SessionExpires:
        """Parse ``delta[;refresher=uac|uas][;params]``."""
        d, semi, ptext = text.partition(";")
        delta = _digits(d, "Session-Expires")
        params = parse_params(";" + ptext, "Session-Expires") if semi else {}
        refresher = params.pop("refresher", None)
        if refresher is not None:
            refresher = refresher.lower()
            if refresher not in ("uac", "uas"):
                raise SipParseError("Session-Expires refresher is neither uac nor uas")
        return cls(delta, refresher, params)

    def __str__(self) -> str:
        r = "" if self.refresher is None else f";refresher={self.refresher}"
        return f"{self.delta}{r}{_format_params(self.params)}"
