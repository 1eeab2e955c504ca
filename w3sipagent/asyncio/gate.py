"""The request gate of a user agent (:class:`RequestGate`): the source allowlist and the
merged-request table, and the generic checks of RFC 3261 §8.2 (:mod:`.requestcheck`)
every request passes before it is routed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from w3sipagent.asyncio.requestcheck import check_request
from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.sip.events import Address, RequestReceived
from w3sipagent.sip.requestcheck import MergedRequests, Refusal

_ALLOWED_CACHE = 4096  # bounded: a flood of sources cannot grow it


class RequestGate:
    """Which sources may talk to us, which requests were merged, the §8.2 checks."""

    def __init__(self, config: UserAgentConfig, now: Callable[[], float]) -> None:
        self.config = config
        self.now = now
        self._networks = [ipaddress.ip_network(n, strict=False) for n in config.allowed_sources]
        self._allowed: dict[str, bool] = {}  # source IP -> allowlist verdict
        self.merge = MergedRequests(config.merge_window)
        """The requests seen lately, to detect merged ones (RFC 3261 §8.2.2.2)."""

    def source_allowed(self, source: Address) -> bool:
        """Whether ``source`` is in the allowlist (``allowed_sources``)."""
        host = source[0]
        allowed = self._allowed.get(host)
        if allowed is None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return False
            allowed = any(ip in net for net in self._networks)
            if len(self._allowed) >= _ALLOWED_CACHE:
                self._allowed.clear()
            self._allowed[host] = allowed
        return allowed

    def check(self, ev: RequestReceived) -> Refusal | None:
        """The error response (status, reason, headers) a request gets, or None when it
        passes; merged requests are told at the gate's ``now``."""
        return check_request(
            ev, source_allowed=self.source_allowed, merges=self.merge, now=self.now()
        )
