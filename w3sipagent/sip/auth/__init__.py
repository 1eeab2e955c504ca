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

The package: :mod:`.digest` (algorithms, hashes, challenge parsing), :mod:`.client` and
:mod:`.server`; every name is importable from here.
"""

from __future__ import annotations

from w3sipagent.sip.auth.client import DigestClient
from w3sipagent.sip.auth.digest import (
    ALGORITHMS,
    MAX_TRACKED_NONCES,
    AuthParseError,
    DigestChallenge,
    best_challenge,
    best_per_realm,
    compute_ha1,
    compute_response,
    parse_auth_params,
    parse_challenges,
)
from w3sipagent.sip.auth.server import AuthResult, AuthStatus, DigestServer
from w3sipagent.sip.authheaders import MAX_AUTH_HEADER

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
