"""The runtime :class:`~w3sipagent.sip.ids.IdSource`, backed by :mod:`secrets`."""

from __future__ import annotations

import secrets


class SecureIdSource:
    """Unpredictable identifiers from the operating system's CSPRNG."""

    def token(self, nbytes: int = 8) -> str:
        return secrets.token_hex(nbytes)

    def randbits(self, k: int) -> int:
        return secrets.randbits(k)
