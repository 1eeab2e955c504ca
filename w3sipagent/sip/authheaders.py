"""The values of the digest authentication headers (RFC 7616, RFC 8760, RFC 3261 §20.27,
§20.44): ``WWW-Authenticate`` / ``Proxy-Authenticate`` challenges and ``Authorization`` /
``Proxy-Authorization`` credentials, split, parsed and formatted (the digest computation is in
:mod:`w3sipagent.sip.auth`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Self

from w3sipagent.errors import SipParseError
from w3sipagent.sip.fields import _quote

__all__ = [
    "CHALLENGE_TOKEN_PARAMS",
    "CREDENTIAL_TOKEN_PARAMS",
    "MAX_AUTH_HEADER",
    "Challenge",
    "Credentials",
    "format_auth_params",
    "parse_auth_params",
    "parse_challenges",
    "split_auth_values",
]

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
