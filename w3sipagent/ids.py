"""The runtime :class:`~w3sipagent.idsource.IdSource`, backed by :mod:`secrets`.

Only code above the pure core imports this module; the core names the port through
:mod:`w3sipagent.idsource`, which imports nothing.
"""

from __future__ import annotations

import secrets

from w3sipagent.idsource import IdSource

__all__ = ["IdSource", "SecureIdSource"]


class SecureIdSource:
    """Unpredictable identifiers from the operating system's CSPRNG."""

    def token(self, nbytes: int = 8) -> str:
        return secrets.token_hex(nbytes)

    def randbits(self, k: int) -> int:
        return secrets.randbits(k)
