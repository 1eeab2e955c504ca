"""SIP header values, typed (RFC 3261 §20, §25). The multimap :class:`Headers` and the name
and parameter grammar live in :mod:`.fields`, the digest challenge/credential values in
:mod:`.authheaders`; both are importable from here too.

Typed values (:class:`Via`, :class:`NameAddr`, :class:`CSeq`, :class:`Event`,
:class:`SubscriptionState`, :class:`SessionExpires`) parse one header value each and format
back with :func:`str`. Parameter names are lowercased (they are case-insensitive);
parameter values keep their case, and a quoted value keeps its quotes.
Every parser raises :class:`~w3sipagent.errors.SipParseError` naming the defect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from w3sipagent.errors import SipParseError
from w3sipagent.sip.authheaders import (
    Challenge,
    Credentials,
    format_auth_params,
    parse_auth_params,
    parse_challenges,
    split_auth_values,
)
from w3sipagent.sip.fields import (
    _QUOTED_RE,
    _TOKEN_RE,
    COMPACT_FORMS,
    Headers,
    _format_params,
    _quote,
    _unquote,
    canonical_name,
    parse_params,
    split_header_list,
)
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

# --------------------------------------------------------------------------- Via

_VIA_RE = re.compile(
    r"([^/\s]+)\s*+/\s*+([^/\s]+)\s*+/\s*+([^\s/;]+)\s++([^;]++)(;.*)?",
    re.DOTALL,
)
"""The general Via form. Possessive quantifiers (no backtracking): the lazy sent-by
followed by optional blanks took quadratic time on a long blank run inside the value
(20 kB: seconds, a UDP datagram's 64 kB: minutes of a blocked event loop). The sent-by
keeps its trailing blanks here and is stripped after the match."""

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
        host, port = parse_hostport(sent_by.rstrip(), "Via sent-by")
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
    r'\s*+(?:"((?:[^"\\]|\\.)*+)"\s*+|([^"<>]*+))<\s*+([^<>\s]*+)\s*+>\s*+(;.*)?', re.DOTALL
)
"""The fast path of :meth:`NameAddr.parse`. Possessive quantifiers only: with backtracking,
a long run of blanks with no ``<`` after it took cubic time (30 kB of them held the event
loop for minutes; found by the fuzz long mode, seed 31 message 150,315). The unquoted
display name keeps its trailing blanks here and is stripped after the match."""


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
            elif plain and (plain := plain.rstrip()):
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
