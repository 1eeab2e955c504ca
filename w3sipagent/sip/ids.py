"""Identifier sources for the pure core.

The core never draws randomness itself: tags, branches, Call-IDs, nonces and
SSRCs come from an :class:`IdSource` handed to it. :class:`CountingIdSource`
gives reproducible values for tests; the runtime default
(:class:`w3sipagent.ids.SecureIdSource`) lives outside the pure core.
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


class CountingIdSource:
    """A deterministic :class:`IdSource` for tests: ``t1``, ``t2``, ... and 1, 2, ..."""

    def __init__(self, prefix: str = "t") -> None:
        self._prefix = prefix
        self._n = 0

    def token(self, nbytes: int = 8) -> str:
        self._n += 1
        return f"{self._prefix}{self._n}"

    def randbits(self, k: int) -> int:
        self._n += 1
        return self._n % (1 << k)
