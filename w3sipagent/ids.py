"""Identifier sources: the :class:`IdSource` port and its runtime implementation.

The pure core never draws randomness itself: tags, branches, Call-IDs, nonces and
SSRCs come from an :class:`IdSource` handed to it. This module is neutral ground:
the SIP core, the media layer and the local AI server all take an ``IdSource``
without importing one another. :class:`SecureIdSource` is the runtime default;
tests use :class:`w3sipagent.sip.ids.CountingIdSource`.
"""

from __future__ import annotations

import secrets
from typing import Protocol


class IdSource(Protocol):
    """Where the core gets the unpredictable values it needs."""

    def token(self, nbytes: int = 8) -> str:
        """A fresh URL- and SIP-token-safe string carrying ``nbytes`` of entropy."""
        ...

    def randbits(self, k: int) -> int:
        """A fresh integer of ``k`` random bits (SSRC, sequence start, CSeq start)."""
        ...


class SecureIdSource:
    """Unpredictable identifiers from the operating system's CSPRNG."""

    def token(self, nbytes: int = 8) -> str:
        return secrets.token_hex(nbytes)

    def randbits(self, k: int) -> int:
        return secrets.randbits(k)
