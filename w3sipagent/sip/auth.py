"""Digest authentication for SIP (RFC 7616 as used by SIP per RFC 8760; RFC 2617 compatible).

Client side, :class:`DigestClient` answers the ``WWW-Authenticate`` (401) and
``Proxy-Authenticate`` (407) challenges of a response::

    client = DigestClient()
    if client.should_retry(values):                  # False: give up (wrong password)
        name, value = client.build_authorization(values, method="REGISTER",
            uri="sip:pbx.example.com", username="1000", password=pw, ids=ids)

It picks the strongest challenge it supports (SHA-512-256 > SHA-256 > MD5), uses
``qop=auth`` (``auth-int`` when that is all that is offered), counts ``nc`` per nonce and
draws the ``cnonce`` from the injected :class:`~w3sipagent.sip.ids.IdSource`. A new
challenge after an answered one is only retried when it says ``stale=true`` (once by
default), so a wrong password never loops.

Server side, :class:`DigestServer` issues challenges and verifies ``Authorization``
values. Nonces are self-validating (an HMAC over the issue time, a salt and the realm with
a secret the caller passes in), expire after ``nonce_lifetime`` seconds (``now`` is passed
in) and their ``nc`` is tracked against replay.

Passwords are never stored by these classes, never logged and never put in an exception.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from w3sipagent.errors import AuthError, SipParseError
from w3sipagent.sip.headers import MAX_AUTH_HEADER, split_auth_values
from w3sipagent.sip.ids import IdSource

__all__ = [
    "ALGORITHMS",
    "MAX_AUTH_HEADER",
    "MAX_TRACKED_NONCES",
    "AuthParseError",
    "AuthResult",
    "AuthStatus",
    "DigestChallenge",
    "DigestClient",
    "DigestServer",
    "best_challenge",
    "best_per_realm",
    "compute_ha1",
    "compute_response",
    "parse_auth_params",
    "parse_challenges",
]


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
    (the scanner is :func:`w3sipagent.sip.headers.split_auth_values`, shared with the
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


# --------------------------------------------------------------------------- client


class DigestClient:
    """Answers 401/407 challenges for one registration, call or request series.

    Keeps per-nonce ``nc`` counters and which realms it has already answered, so that
    :meth:`should_retry` can tell a stale nonce (retry) from rejected credentials (stop).
    Call :meth:`reset` after a request succeeded, so the next challenge is answered again.
    """

    def __init__(self, *, max_stale_retries: int = 1) -> None:
        self.max_stale_retries = max_stale_retries
        self._nc: OrderedDict[str, int] = OrderedDict()
        self._answered: dict[str, int] = {}  # realm -> stale retries used
        self._last: dict[bool, DigestChallenge] = {}
        self._last_all: dict[bool, list[DigestChallenge]] = {}

    def __repr__(self) -> str:
        return f"DigestClient(realms={sorted(self._answered)!r})"

    @staticmethod
    def is_stale(challenge_header_values: Sequence[str]) -> bool:
        """Whether the best challenge says ``stale=true`` (the nonce expired, not the password)."""
        return best_challenge(parse_challenges(challenge_header_values)).stale

    def should_retry(self, challenge_header_values: Sequence[str]) -> bool:
        """Whether answering this challenge makes sense.

        True for a realm not answered yet, or for ``stale=true`` while stale retries are
        left; False when our credentials were just rejected (same realm, not stale) or no
        challenge is usable.
        """
        try:
            realms = best_per_realm(parse_challenges(challenge_header_values))
        except AuthError:
            return False
        for c in realms:
            used = self._answered.get(c.realm)
            if used is None or (c.stale and used < self.max_stale_retries):
                return True
        return False

    def reset(self) -> None:
        """Forget answered realms (call after a successful request); nc counters are kept."""
        self._answered.clear()

    def build_authorization(
        self,
        challenge_header_values: Sequence[str],
        *,
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
        ids: IdSource,
        proxy: bool = False,
    ) -> tuple[str, str]:
        """``(header name, value)`` answering the best challenge of a 401 (or 407 with ``proxy``).

        ``challenge_header_values`` are all the ``WWW-Authenticate`` (or ``Proxy-Authenticate``)
        values of the response. Raises :class:`AuthError` when none is usable.
        """
        c = best_challenge(parse_challenges(challenge_header_values))
        self._note_answered(c)
        self._last[proxy] = c
        self._last_all[proxy] = [c]
        return self._authorize(c, method, uri, username, password, body, ids, proxy)

    def build_authorizations(
        self,
        challenge_header_values: Sequence[str],
        *,
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
        ids: IdSource,
        proxy: bool = False,
        credentials: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> list[tuple[str, str]]:
        """One ``(header name, value)`` per challenged realm (RFC 3261 §22.3).

        A 407 that crossed several proxies carries a challenge for each proxy's realm; the
        retried request must carry a ``Proxy-Authorization`` for each (every proxy consumes
        only the one with its realm). For each realm the strongest usable challenge is
        answered. ``credentials(realm)`` may supply ``(username, password)`` per realm
        (None: no credentials, that realm is skipped); by default ``username``/``password``
        serve every realm. Raises :class:`AuthError` when no realm can be answered.
        """
        out: list[tuple[str, str]] = []
        answered: list[DigestChallenge] = []
        for c in best_per_realm(parse_challenges(challenge_header_values)):
            user, pw = username, password
            if credentials is not None:
                found = credentials(c.realm)
                if found is None:
                    continue
                user, pw = found
            self._note_answered(c)
            answered.append(c)
            out.append(self._authorize(c, method, uri, user, pw, body, ids, proxy))
        if not out:
            raise AuthError("no credentials for any challenged realm")
        self._last[proxy] = answered[0]
        self._last_all[proxy] = answered
        return out

    def _note_answered(self, c: DigestChallenge) -> None:
        if c.realm in self._answered and c.stale:
            self._answered[c.realm] += 1
        else:
            self._answered.setdefault(c.realm, 0)

    def authorization_for(
        self,
        *,
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
        ids: IdSource,
        proxy: bool = False,
    ) -> tuple[str, str] | None:
        """Pre-emptive credentials for a further request, reusing the last challenge (nc + 1).

        None when no challenge has been answered yet.
        """
        c = self._last.get(proxy)
        if c is None:
            return None
        return self._authorize(c, method, uri, username, password, body, ids, proxy)

    def authorizations_for(
        self,
        *,
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
        ids: IdSource,
        proxy: bool = False,
        credentials: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> list[tuple[str, str]]:
        """Pre-emptive credentials for every realm answered last time (nc + 1 each).

        Empty when no challenge has been answered yet.
        """
        out: list[tuple[str, str]] = []
        for c in self._last_all.get(proxy, ()):
            found = (username, password) if credentials is None else credentials(c.realm)
            if found is not None:
                out.append(self._authorize(c, method, uri, *found, body, ids, proxy))
        return out

    def _next_nc(self, nonce: str) -> int:
        n = self._nc.pop(nonce, 0) + 1
        self._nc[nonce] = n
        while len(self._nc) > 64:
            self._nc.popitem(last=False)
        return n

    def _authorize(
        self,
        c: DigestChallenge,
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes,
        ids: IdSource,
        proxy: bool,
    ) -> tuple[str, str]:
        qop: str | None = None
        if "auth" in c.qop:
            qop = "auth"
        elif "auth-int" in c.qop:
            qop = "auth-int"
        ha1 = _h(c.algorithm, f"{username}:{c.realm}:{password}")
        nc = cnonce = ""
        if qop is not None or c.algorithm.endswith("-sess"):
            cnonce = ids.token(16)
        if qop is not None:
            nc = f"{self._next_nc(c.nonce):08x}"
        response = compute_response(
            algorithm=c.algorithm,
            ha1=ha1,
            nonce=c.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        user = _h(c.algorithm, f"{username}:{c.realm}") if c.userhash else username
        parts = [
            f"username={_quote(user)}",
            f"realm={_quote(c.realm)}",
            f"nonce={_quote(c.nonce)}",
            f"uri={_quote(uri)}",
            f"response={_quote(response)}",
            f"algorithm={c.algorithm}",
        ]
        if cnonce:
            parts.append(f"cnonce={_quote(cnonce)}")
        if c.opaque is not None:
            parts.append(f"opaque={_quote(c.opaque)}")
        if qop is not None:
            parts += [f"qop={qop}", f"nc={nc}"]
        if c.userhash:
            parts.append("userhash=true")
        name = "Proxy-Authorization" if proxy else "Authorization"
        return name, "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------- server


class AuthStatus(Enum):
    """Outcome of :meth:`DigestServer.verify`."""

    OK = "ok"
    #: The response is right but the nonce expired: challenge again with ``stale=true``.
    STALE = "stale"
    #: Wrong credentials, unknown user, forged/replayed nonce or malformed header: 401/407.
    BAD = "bad"


@dataclass(frozen=True)
class AuthResult:
    """What :meth:`DigestServer.verify` found. ``reason`` is for logs (never a secret)."""

    status: AuthStatus
    username: str | None = None
    reason: str = ""
    algorithm: str | None = None

    @property
    def ok(self) -> bool:
        """True when the request is authenticated."""
        return self.status is AuthStatus.OK


@dataclass
class _NonceState:
    issued: float
    last_nc: int = 0
    seen_without_qop: bool = False


class DigestServer:
    """Issues Digest challenges and verifies answers (protecting REGISTER/INVITE).

    ``secret`` keys the HMAC that makes nonces self-validating (any restart with a new
    secret invalidates old nonces). ``nonce_lifetime`` seconds after issue a nonce is
    stale. ``algorithms`` are offered strongest first (RFC 8760 §2.4: SHA-256 before MD5
    so old clients still find MD5). ``now`` is the caller's monotonic clock.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        ids: IdSource,
        nonce_lifetime: float = 300.0,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        qop: Sequence[str] = ("auth",),
        opaque: str | None = None,
        require_qop: bool = True,
        max_tracked_nonces: int = MAX_TRACKED_NONCES,
    ) -> None:
        if len(secret) < 16:
            raise AuthError("the nonce secret must be at least 16 bytes")
        algos: list[str] = []
        for a in algorithms:
            ca = _canonical_algorithm(a)
            if ca is None:
                raise AuthError(f"unsupported digest algorithm {a[:40]!r}")
            algos.append(ca)
        if not algos:
            raise AuthError("at least one algorithm is needed")
        for q in qop:
            if q not in ("auth", "auth-int"):
                raise AuthError(f"unsupported qop {q[:40]!r}")
        self._secret = secret
        self._ids = ids
        self.nonce_lifetime = nonce_lifetime
        self.algorithms = tuple(algos)
        self.qop = tuple(qop)
        self.opaque = opaque
        self.require_qop = require_qop
        self.max_tracked_nonces = max_tracked_nonces
        self._nonces: OrderedDict[str, _NonceState] = OrderedDict()

    def __repr__(self) -> str:
        return f"DigestServer(algorithms={self.algorithms!r}, nonce_lifetime={self.nonce_lifetime})"

    # -- nonces

    def _mac(self, body: str, realm: str) -> str:
        return hmac.new(self._secret, f"{body}|{realm}".encode(), hashlib.sha256).hexdigest()[:32]

    def make_nonce(self, realm: str, *, now: float) -> str:
        """A fresh nonce: issue time (ms), salt and an HMAC of both and the realm."""
        body = f"{max(0, int(now * 1000)):x}.{self._ids.token(8)}"
        return f"{body}.{self._mac(body, realm)}"

    def _nonce_time(self, nonce: str, realm: str) -> float | None:
        """Issue time of a nonce we made for this realm, else None."""
        body, _, mac = nonce.rpartition(".")
        ts, sep, _ = body.partition(".")
        if not sep or not mac or not hmac.compare_digest(mac, self._mac(body, realm)):
            return None
        try:
            return int(ts, 16) / 1000.0
        except ValueError:  # pragma: no cover - the HMAC matched, so we wrote it
            return None

    # -- challenges

    def challenge(
        self, realm: str, *, now: float, stale: bool = False, algorithm: str | None = None
    ) -> str:
        """One ``WWW-Authenticate``/``Proxy-Authenticate`` value (first configured algorithm
        unless ``algorithm`` is given)."""
        algo = self.algorithms[0] if algorithm is None else _canonical_algorithm(algorithm)
        if algo is None or algo not in self.algorithms:
            raise AuthError(f"algorithm {algorithm!r} is not enabled")
        parts = [f"realm={_quote(realm)}", f"nonce={_quote(self.make_nonce(realm, now=now))}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if stale:
            parts.append("stale=true")
        parts.append(f"algorithm={algo}")
        if self.qop:
            parts.append(f'qop="{",".join(self.qop)}"')
        return "Digest " + ", ".join(parts)

    def challenges(self, realm: str, *, now: float, stale: bool = False) -> list[str]:
        """One challenge per enabled algorithm, strongest first (put each in its own header)."""
        return [self.challenge(realm, now=now, stale=stale, algorithm=a) for a in self.algorithms]

    # -- verification

    def verify(
        self,
        authorization_value: str,
        *,
        method: str,
        realm: str,
        now: float,
        lookup_password: Callable[[str, str], str | None] | None = None,
        lookup_ha1: Callable[[str, str, str], str | None] | None = None,
        request_uri: str | None = None,
        body: bytes = b"",
    ) -> AuthResult:
        """Check an ``Authorization``/``Proxy-Authorization`` value.

        ``lookup_password(username, realm)`` or ``lookup_ha1(username, realm, algorithm)``
        supplies the secret (None: unknown user). ``request_uri``, when given, must equal
        the ``uri`` parameter. Returns OK, STALE (right answer, expired nonce: challenge
        again with ``stale=True``) or BAD with a reason.
        """
        if (lookup_password is None) == (lookup_ha1 is None):
            raise AuthError("pass exactly one of lookup_password and lookup_ha1")
        try:
            parsed = parse_auth_params(authorization_value)
        except AuthError as exc:
            return AuthResult(AuthStatus.BAD, reason=str(exc))
        digest = [p for s, p in parsed if s.lower() == "digest"]
        if len(digest) != 1 or len(parsed) != 1:
            return AuthResult(AuthStatus.BAD, reason="not a single Digest credential")
        p = digest[0]
        for name in ("username", "realm", "nonce", "uri", "response"):
            if name not in p:
                return AuthResult(AuthStatus.BAD, reason=f"missing parameter {name}")
        username = p["username"]
        bad = _Bad(username)
        if p.get("userhash", "").lower() == "true":
            return bad("userhash is not supported")
        if p["realm"] != realm:
            return bad("wrong realm")
        algo = _canonical_algorithm(p.get("algorithm"))
        if algo is None or algo not in self.algorithms:
            return bad("algorithm not enabled")
        if request_uri is not None and p["uri"] != request_uri:
            return bad("uri does not match the request")
        if self.opaque is not None and p.get("opaque") != self.opaque:
            return bad("wrong opaque")
        nonce = p["nonce"]
        issued = self._nonce_time(nonce, realm)
        if issued is None:
            return bad("unknown nonce")
        qop = p.get("qop")
        nc_value = 0
        if qop is not None:
            qop = qop.lower()
            if qop not in self.qop:
                return bad("qop not offered")
            nc_text, cnonce = p.get("nc", ""), p.get("cnonce", "")
            if len(nc_text) != 8 or not cnonce:
                return bad("qop without a valid nc and cnonce")
            try:
                nc_value = int(nc_text, 16)
            except ValueError:
                return bad("nc is not hexadecimal")
        elif self.require_qop and self.qop:
            return bad("qop missing")
        if lookup_ha1 is not None:
            ha1 = lookup_ha1(username, realm, _base(algo))
        else:
            assert lookup_password is not None
            password = lookup_password(username, realm)
            ha1 = None if password is None else _h(algo, f"{username}:{realm}:{password}")
        if ha1 is None:
            return bad("unknown user")
        expected = compute_response(
            algorithm=algo,
            ha1=ha1,
            nonce=nonce,
            method=method,
            uri=p["uri"],
            qop=qop,
            nc=p.get("nc", ""),
            cnonce=p.get("cnonce", ""),
            body=body,
        )
        if not hmac.compare_digest(expected, p["response"].lower()):
            return bad("wrong response (credentials)")
        if now - issued > self.nonce_lifetime or now < issued:
            return AuthResult(AuthStatus.STALE, username, "nonce expired", algo)
        if not self._accept_nc(nonce, issued, nc_value, qop is not None, now):
            return bad("nonce count replayed")
        return AuthResult(AuthStatus.OK, username, "", algo)

    def _accept_nc(self, nonce: str, issued: float, nc: int, with_qop: bool, now: float) -> bool:
        state = self._nonces.get(nonce)
        if state is None:
            self._prune(now)
            state = _NonceState(issued)
            self._nonces[nonce] = state
        if with_qop:
            if nc <= state.last_nc:
                return False
            state.last_nc = nc
            return True
        # without qop there is no counter: a nonce is good for one request only
        if state.seen_without_qop:
            return False
        state.seen_without_qop = True
        return True

    def _prune(self, now: float) -> None:
        while self._nonces:
            oldest = next(iter(self._nonces.values()))
            if (
                now - oldest.issued > self.nonce_lifetime
                or len(self._nonces) >= self.max_tracked_nonces
            ):
                self._nonces.popitem(last=False)
            else:
                break


class _Bad:
    """Builds BAD results for one username."""

    def __init__(self, username: str) -> None:
        self.username = username

    def __call__(self, reason: str) -> AuthResult:
        return AuthResult(AuthStatus.BAD, self.username, reason)
