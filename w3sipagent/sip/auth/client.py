"""The client side of digest authentication: :class:`DigestClient` answers the challenges
of a 401/407 (strongest algorithm, ``qop``, ``nc`` per nonce, ``stale`` retries).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from w3sipagent.errors import AuthError
from w3sipagent.sip.auth.digest import (
    DigestChallenge,
    _h,
    _quote,
    best_challenge,
    best_per_realm,
    compute_response,
    parse_challenges,
)
from w3sipagent.sip.ids import IdSource


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
