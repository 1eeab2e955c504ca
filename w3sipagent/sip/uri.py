"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): parse, format, compare.

Escaped octets (``%HH``) in the user, password, parameters and headers of a SIP URI
are decoded on parse (so ``sip:%75ser@h`` and ``sip:user@h`` hold the same ``user``)
and re-escaped on :func:`str` where the grammar requires it. Hosts keep the case
and form they were written in; an IPv6 reference keeps its brackets
(``[2001:db8::1]``), :attr:`SipUri.hostname` gives the bare address.

Comparison (:meth:`SipUri.equivalent`) follows RFC 3261 §19.1.4; ``==`` is plain
structural equality of the decoded fields.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from w3sipagent.errors import SipParseError

__all__ = [
    "AbsoluteUri",
    "SipUri",
    "TelUri",
    "Uri",
    "parse_any_uri",
    "parse_hostport",
    "parse_uri",
]

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_MARK = "-_.!~*'()"
# Characters that may stand unescaped in each part (RFC 3261 §25.1).
_USER_SAFE = _MARK + "&=+$,;?/"
_PASSWORD_SAFE = _MARK + "&=+$,"
_PARAM_SAFE = _MARK + "[]/:&+$"
_HEADER_SAFE = _MARK + "[]/?:+$"

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*)")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URI_FORBIDDEN_RE = re.compile(r'[\x00-\x20\x7f<>"]')
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#().\-]+")
_TEL_VISUAL = str.maketrans("", "", "-.()")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")

# Fast path: a plain SIP URI (no escapes, password, IPv6 or headers) in one regex.
_PLAIN_SIP_RE = re.compile(
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/]+)@)?([A-Za-z0-9][A-Za-z0-9.\-]*)(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$=]+)*)"
)

#: URI parameters that must match when present in either URI (RFC 3261 §19.1.4).
_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _unescape(text: str, what: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text):
        raise SipParseError(f"bad %-escape in URI {what}")
    return unquote(text, errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, errors="surrogateescape")


_UNRESERVED = frozenset(_ALNUM + _MARK)
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))


def _canonical_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _canonical(text: str) -> str:
    """A URI component as written, in the form RFC 3261 §19.1.4 compares: escapes of
    unreserved characters decoded, every other escape kept (upper-case hex), so ``%61``
    equals ``a`` but ``%3B`` differs from ``;``."""
    text = quote(text, safe=_PRINTABLE, errors="surrogateescape")
    return _ESCAPE_RE.sub(_canonical_escape, text) if "%" in text else text


def parse_hostport(text: str, what: str = "host") -> tuple[str, int | None]:
    """Split ``host[:port]`` (host name, IPv4 or bracketed IPv6) and validate both.

    Whitespace around the ``:`` is tolerated (Via sent-by allows LWS there).
    Raises :class:`SipParseError` naming the defect.
    """
    text = text.strip()
    if not text:
        raise SipParseError(f"empty {what}")
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {what}")
        host = text[: end + 1]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipParseError(f"invalid IPv6 address in {what}") from None
        rest = text[end + 1 :].strip()
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError(f"garbage after IPv6 reference in {what}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.partition(":")
        host = host.rstrip()
        if not _HOSTNAME_RE.fullmatch(host):
            raise SipParseError(f"invalid {what}")
        if not colon:
            return host, None
    port_text = port_text.strip()
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise SipParseError(f"invalid port in {what}")
    port = int(port_text)
    if port > 65535:
        raise SipParseError(f"port out of range in {what}")
    return host, port


def _parse_uri_params(parts: list[str], raw: dict[str, str] | None = None) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for p in parts:
        name, eq, value = p.partition("=")
        if not name:
            raise SipParseError("empty URI parameter")
        name = _unescape(name, "parameter").lower()
        params[name] = _unescape(value, "parameter") if eq else None
        if raw is not None and "%" in value:
            raw[";" + name] = value
    return params


@dataclass(slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI with decoded user, password, parameters and headers."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] | None = field(default=None, compare=False, repr=False)
    """Components as written, kept only when they held %-escapes (for §19.1.4 comparison):
    keys ``user``, ``password``, ``;<param>``, ``?<header>``. Not part of ``==``."""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP or SIPS URI; raises :class:`SipParseError` (416 for another scheme)."""
        uri = parse_uri(text)
        if not isinstance(uri, SipUri):
            raise SipParseError("not a SIP URI", 416)
        return uri

    @property
    def hostname(self) -> str:
        """The host without IPv6 brackets (what a socket API wants)."""
        h = self.host
        return h[1:-1] if h.startswith("[") else h

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lowercased, or None."""
        t = self.params.get("transport")
        return t.lower() if t else None

    def equivalent(self, other: object) -> bool:
        """Compare two URIs by the rules of RFC 3261 §19.1.4.

        Scheme, host, parameter names and values and header names compare
        case-insensitively, user and password case-sensitively; an escaped unreserved
        character equals the character, an escaped reserved one (``%3B``...) does not.
        ``user``, ``ttl``, ``method``, ``maddr`` and ``transport`` must be in both or
        neither; other parameters count only when in both; headers must all match.
        IPv6 references compare as addresses.
        """
        if not isinstance(other, SipUri):
            return False
        if self.scheme.lower() != other.scheme.lower() or self.port != other.port:
            return False
        if not _same_host(self.host, other.host):
            return False
        if _cmp(self, "user", self.user, _USER_SAFE) != _cmp(other, "user", other.user, _USER_SAFE):
            return False
        if _cmp(self, "password", self.password, _PASSWORD_SAFE) != _cmp(
            other, "password", other.password, _PASSWORD_SAFE
        ):
            return False
        a, b = self.params, other.params
        for name in _MUST_MATCH_PARAMS:
            if (name in a) != (name in b):
                return False
        for name in a.keys() & b.keys():
            va = _cmp(self, ";" + name, a[name], _PARAM_SAFE)
            vb = _cmp(other, ";" + name, b[name], _PARAM_SAFE)
            if (va is None) != (vb is None):
                return False
            if va is not None and vb is not None and va.lower() != vb.lower():
                return False
        ha = {k.lower(): _cmp(self, "?" + k, v, _HEADER_SAFE) for k, v in self.headers.items()}
        hb = {k.lower(): _cmp(other, "?" + k, v, _HEADER_SAFE) for k, v in other.headers.items()}
        return ha == hb

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                out.append(":")
                out.append(_escape(self.password, _PASSWORD_SAFE))
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for name, value in self.params.items():
            out.append(";")
            out.append(_escape(name, _PARAM_SAFE))
            if value is not None:
                out.append("=")
                out.append(_escape(value, _PARAM_SAFE))
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}"
                    for k, v in self.headers.items()
                )
            )
        return "".join(out)


@dataclass(slots=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966): the number as written plus its parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_global(self) -> bool:
        """True for a global number (``+`` and digits)."""
        return self.number.startswith("+")

    def equivalent(self, other: object) -> bool:
        """Same number once visual separators are dropped, and the same parameters."""
        if not isinstance(other, TelUri):
            return False
        a = {k.lower(): (v.lower() if v else v) for k, v in self.params.items()}
        b = {k.lower(): (v.lower() if v else v) for k, v in other.params.items()}
        return (
            self.number.translate(_TEL_VISUAL).lower()
            == other.number.translate(_TEL_VISUAL).lower()
            and a == b
        )

    def __str__(self) -> str:
        out = ["tel:", self.number]
        for name, value in self.params.items():
            out.append(f";{name}" if value is None else f";{name}={_escape(value, _PARAM_SAFE)}")
        return "".join(out)


@dataclass(slots=True)
class AbsoluteUri:
    """A URI of another scheme (``http:``, ``urn:``...), kept opaque."""

    scheme: str
    text: str

    def equivalent(self, other: object) -> bool:
        """Exact text comparison, scheme case-insensitive."""
        return (
            isinstance(other, AbsoluteUri)
            and self.scheme.lower() == other.scheme.lower()
            and self.text.partition(":")[2] == other.text.partition(":")[2]
        )

    def __str__(self) -> str:
        return self.text


Uri = SipUri | TelUri | AbsoluteUri


def _cmp(uri: SipUri, key: str, value: str | None, safe: str) -> str | None:
    """``value`` (a component of ``uri``) in comparison form: from its raw text when it was
    written with escapes, else as :func:`str` writes it (``safe``: what that component
    leaves unescaped)."""
    if value is None:
        return None
    raw = uri.raw.get(key) if uri.raw is not None else None
    if raw is None or unquote(raw, errors="surrogateescape") != value:
        if value.isascii() and value.isalnum():
            return value
        raw = _escape(value, safe)
    return _canonical(raw)


def _same_host(a: str, b: str) -> bool:
    if a.lower() == b.lower():
        return True
    if a.startswith("[") and b.startswith("["):
        try:
            return ipaddress.IPv6Address(a[1:-1]) == ipaddress.IPv6Address(b[1:-1])
        except ValueError:
            return False
    return False


def _parse_sip(scheme: str, rest: str) -> SipUri:
    m = _PLAIN_SIP_RE.fullmatch(rest)
    if m is not None:
        p_user, p_host, p_port, p_params = m.groups()
        port_num = None
        if p_port is not None:
            port_num = int(p_port)
            if port_num > 65535:
                raise SipParseError("port out of range in URI host")
        plain = _parse_uri_params(p_params[1:].split(";")) if p_params else {}
        return SipUri(scheme, p_user, None, p_host, port_num, plain, {})
    at = rest.find("@")
    user: str | None = None
    password: str | None = None
    raw: dict[str, str] = {}
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        u, colon, pw = userinfo.partition(":")
        if not u:
            raise SipParseError("empty user in SIP URI")
        user = _unescape(u, "user")
        if "%" in u:
            raw["user"] = u
        if colon:
            password = _unescape(pw, "password")
            if "%" in pw:
                raw["password"] = pw
    before, qmark, htext = rest.partition("?")
    if ";" in before:
        parts = before.split(";")
        hostport = parts[0]
        params = _parse_uri_params(parts[1:], raw)
    else:
        hostport = before
        params = {}
    host, port = parse_hostport(hostport, "URI host")
    headers: dict[str, str] = {}
    if qmark:
        for item in htext.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise SipParseError("malformed URI header")
            hname = _unescape(name, "header")
            headers[hname] = _unescape(value, "header")
            if "%" in value:
                raw["?" + hname] = value
    return SipUri(scheme, user, password, host, port, params, headers, raw or None)


def _parse_tel(rest: str) -> TelUri:
    number, _, ptext = rest.partition(";")
    if not _TEL_NUMBER_RE.fullmatch(number):
        raise SipParseError("invalid tel URI number")
    params: dict[str, str | None] = _parse_uri_params(ptext.split(";")) if ptext else {}
    return TelUri(number, params)


def parse_uri(text: str) -> SipUri | TelUri:
    """Parse a ``sip:``, ``sips:`` or ``tel:`` URI.

    Any other (well-formed) scheme raises :class:`SipParseError` with status 416
    (Unsupported URI Scheme); malformed text raises it with status 400.
    """
    uri = parse_any_uri(text)
    if isinstance(uri, AbsoluteUri):
        raise SipParseError(f"unsupported URI scheme {uri.scheme[:32]!r}", 416)
    return uri


def parse_any_uri(text: str) -> Uri:
    """Parse a URI of any scheme: SIP/SIPS/tel typed, others as :class:`AbsoluteUri`."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError("malformed URI: no scheme")
    if not rest:
        raise SipParseError("malformed URI: empty after scheme")
    if _URI_FORBIDDEN_RE.search(text):
        raise SipParseError("malformed URI: whitespace or delimiter inside")
    low = scheme.lower()
    if low == "sip" or low == "sips":
        return _parse_sip(low, rest)
    if low == "tel":
        return _parse_tel(rest)
    return AbsoluteUri(scheme, text)
