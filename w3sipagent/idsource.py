"""The :class:`IdSource` port: where code that must not draw randomness gets identifiers.

The pure core never draws randomness itself: tags, branches, Call-IDs, nonces and SSRCs
come from an :class:`IdSource` handed to it. This module is neutral ground with no
imports, so the SIP core, the media layer and the local AI server can all name the port
without importing one another or a source of randomness. The runtime implementation is
:class:`w3sipagent.ids.SecureIdSource`; tests use :class:`w3sipagent.sip.ids.CountingIdSource`.
"""

from __future__ import annotations

from typing import Protocol


class IdSource(Protocol):
    """Where the core gets the unpredictable values it needs."""

    def token(self, nbytes: int = 8) -> str:
        """A fresh URL- and SIP-token-safe string carrying ``nbytes`` of entropy."""
        ...

    def randbits(self, k: int) -> int:
        """A fresh integer of ``k`` random bits (SSRC, sequence start, CSeq start)."""
        ...
