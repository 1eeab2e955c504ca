"""SIP header fields as a message holds them (RFC 3261 §7.3): the ordered, case-insensitive
multimap :class:`Headers`, header names (compact forms, canonical spelling) and the shared
grammar of values (comma lists, ``;`` parameters, quoting).

:class:`Headers` keeps every header line in the order received, repeated names
included; names compare case-insensitively and compact forms (``v``, ``f``,
``t``...) are expanded to their long names. Values are ``str`` with folded
lines joined by a single space. The typed values live in :mod:`.headers`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from w3sipagent.errors import SipParseError

__all__ = [
    "COMPACT_FORMS",
    "Headers",
    "canonical_name",
    "parse_params",
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
