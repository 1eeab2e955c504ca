"""Digest computation and challenge parsing (RFC 7616, RFC 8760, RFC 2617): algorithms,
``HA1`` and the response, the challenges of a 401/407 and which one to answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from w3sipagent.errors import AuthError, SipParseError
from w3sipagent.sip.authheaders import split_auth_values


class AuthParseError(AuthError, ValueError):
    """A ``WWW-Authenticate``/``Authorization`` value is malformed (bad input from the
    network, so also a :class:`ValueError`; still an :class:`AuthError` for old callers)."""


#: Supported algorithms, strongest first (RFC 7616 §6.1, RFC 8760 §2.4).
ALGORITHMS: tuple[str, ...] = (
    "SHA-512-256",
    "SHA-512-256-sess",
    "SHA-256",
    "SHA-256-sess",
    "MD5",
    "MD5-sess",
)
_STRENGTH = {"SHA-512-256": 3, "SHA-256": 2, "MD5": 1}
_HASHLIB = {"SHA-512-256": "sha512_256", "SHA-256": "sha256", "MD5": "md5"}

#: Nonces tracked by a :class:`DigestServer` for nc replay protection.
MAX_TRACKED_NONCES = 10000


def _base(algorithm: str) -> str:
    return algorithm[:-5] if algorithm.endswith("-sess") else algorithm


def _canonical_algorithm(name: str | None) -> str | None:
    """``md5`` -> ``MD5``; None when unsupported. Absent algorithm means MD5."""
    if name is None:
        return "MD5"
    for a in ALGORITHMS:
        if a.lower() == name.strip().lower():
            return a
    return None


def _h(algorithm: str, data: str) -> str:
    return hashlib.new(_HASHLIB[_base(algorithm)], data.encode("utf-8")).hexdigest()


def _hb(algorithm: str, data: bytes) -> str:
    return hashlib.new(_HASHLIB[_base(algorithm)], data).hexdigest()


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """``H(username:realm:password)``: what a server may store instead of the password."""
    algo = _canonical_algorithm(algorithm)
    if algo is None:
        raise AuthError(f"unsupported digest algorithm {algorithm[:40]!r}")
    return _h(algo, f"{username}:{realm}:{password}")


def compute_response(
    *,
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1-3.4.3; RFC 2069 form when ``qop`` is None).

    ``ha1`` is ``H(username:realm:password)``; for ``-sess`` algorithms the session key
    ``H(ha1:nonce:cnonce)`` is derived here.
    """
    algo = _canonical_algorithm(algorithm)
    if algo is None:
        raise AuthError(f"unsupported digest algorithm {algorithm[:40]!r}")
    if algo.endswith("-sess"):
        ha1 = _h(algo, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _h(algo, f"{method}:{uri}:{_hb(algo, body)}")
    else:
        ha2 = _h(algo, f"{method}:{uri}")
    if qop is None:
        return _h(algo, f"{ha1}:{nonce}:{ha2}")
    return _h(algo, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --------------------------------------------------------------------------- parsing


def parse_auth_params(value: str) -> list[tuple[str, dict[str, str]]]:
    """Split a ``WWW-Authenticate``/``Authorization`` value into ``(scheme, params)`` pairs.

    Handles quoted strings (with commas and escapes inside), token values, extra
    whitespace and several challenges in one value (``Digest a=1, Basic b=2``).
    Parameter names are lower-cased. Raises :class:`AuthParseError` on malformed input
    (the scanner is :func:`w3sipagent.sip.authheaders.split_auth_values`, shared with the
    typed header values).
    """
    try:
        return split_auth_values(value)
    except SipParseError as exc:
        raise AuthParseError(str(exc)) from None


@dataclass(frozen=True)
class DigestChallenge:
    """One Digest challenge from a ``WWW-Authenticate``/``Proxy-Authenticate`` value."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False
    domain: str | None = None
    charset: str | None = None

    @property
    def strength(self) -> int:
        """Higher is stronger (SHA-512-256 3, SHA-256 2, MD5 1)."""
        return _STRENGTH[_base(self.algorithm)]


def parse_challenges(values: Sequence[str]) -> list[DigestChallenge]:
    """Every supported Digest challenge in these header values (others are skipped).

    Raises :class:`AuthError` only for malformed values; an unsupported algorithm or
    another scheme (Basic...) is skipped silently.
    """
    out: list[DigestChallenge] = []
    for value in values:
        for scheme, params in parse_auth_params(value):
            if scheme.lower() != "digest":
                continue
            algo = _canonical_algorithm(params.get("algorithm"))
            if algo is None:
                continue
            if "realm" not in params or "nonce" not in params:
                raise AuthParseError("Digest challenge without realm or nonce")
            qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
            out.append(
                DigestChallenge(
                    realm=params["realm"],
                    nonce=params["nonce"],
                    algorithm=algo,
                    qop=qop,
                    opaque=params.get("opaque"),
                    stale=params.get("stale", "").lower() == "true",
                    userhash=params.get("userhash", "").lower() == "true",
                    domain=params.get("domain"),
                    charset=params.get("charset"),
                )
            )
    return out


def best_challenge(challenges: Sequence[DigestChallenge]) -> DigestChallenge:
    """The strongest challenge we can answer (ties: the first; a usable qop preferred)."""
    usable = [c for c in challenges if not c.qop or {"auth", "auth-int"} & set(c.qop)]
    if not usable:
        raise AuthError("no Digest challenge with a supported algorithm and qop")
    return max(usable, key=lambda c: c.strength)  # max keeps the first of equals


def best_per_realm(challenges: Sequence[DigestChallenge]) -> list[DigestChallenge]:
    """The strongest usable challenge of each realm, realms in order of first appearance.

    A 401/407 that went through several proxies carries one challenge (or one per
    algorithm) for each realm; RFC 3261 §22.3 wants credentials for every one of them.
    """
    by_realm: dict[str, list[DigestChallenge]] = {}
    for c in challenges:
        by_realm.setdefault(c.realm, []).append(c)
    out: list[DigestChallenge] = []
    for group in by_realm.values():
        try:
            out.append(best_challenge(group))
        except AuthError:
            continue
    if not out:
        raise AuthError("no Digest challenge with a supported algorithm and qop")
    return out


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
