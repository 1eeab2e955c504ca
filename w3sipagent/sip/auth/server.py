"""The server side of digest authentication: :class:`DigestServer` issues challenges with
self-validating nonces (HMAC, ``now`` passed in) and verifies ``Authorization`` values
against replay.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from w3sipagent.errors import AuthError
from w3sipagent.sip.auth.digest import (
    MAX_TRACKED_NONCES,
    _base,
    _canonical_algorithm,
    _h,
    _quote,
    compute_response,
    parse_auth_params,
)
from w3sipagent.sip.ids import IdSource


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
