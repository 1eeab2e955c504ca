"""Identifier sources for the pure core.

The core never draws randomness itself: tags, branches, Call-IDs, nonces and
SSRCs come from an :class:`IdSource` handed to it. :class:`CountingIdSource`
gives reproducible values for tests. The protocol lives in the neutral,
import-free :mod:`w3sipagent.idsource` (the runtime default, :class:`w3sipagent.ids.SecureIdSource`,
is above the core); ``IdSource`` is re-exported here for the core's importers.
"""

from __future__ import annotations

from w3sipagent.idsource import IdSource

__all__ = ["CountingIdSource", "IdSource"]


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
