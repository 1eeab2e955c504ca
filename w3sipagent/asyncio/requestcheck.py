"""Generic checks of incoming requests (RFC 3261 §8.2) on the user agent's side: the source
allow-list (403), then the sans-IO checks of :mod:`w3sipagent.sip.requestcheck` (the Allow,
Supported, Require and Accept tables, merged requests given the loop's time, 406/415/420...),
and the Retry-After of our 503s. The tables are re-exported here for the modules that add
them to our responses.
"""

from __future__ import annotations

from collections.abc import Callable

from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.sip.events import Address, RequestReceived
from w3sipagent.sip.requestcheck import (
    ACCEPT,
    ALLOW,
    ALLOWED_METHODS,
    SUPPORTED_EXTENSIONS,
    UNSUPPORTED_METHODS,
    MergedRequests,
    Refusal,
)
from w3sipagent.sip.requestcheck import check_request as _check

__all__ = [
    "ACCEPT",
    "ALLOW",
    "ALLOWED_METHODS",
    "SUPPORTED_EXTENSIONS",
    "UNSUPPORTED_METHODS",
    "Refusal",
    "check_request",
    "retry_after",
]


def retry_after(config: UserAgentConfig) -> tuple[tuple[str, str], ...]:
    """The Retry-After header of our 503s."""
    return (("Retry-After", str(config.retry_after)),)


def check_request(
    ev: RequestReceived,
    *,
    source_allowed: Callable[[Address], bool],
    merges: MergedRequests,
    now: float,
) -> Refusal | None:
    """The generic checks of RFC 3261 §8.2 (and the allow-list for a request outside a
    dialog); None when it passes. ``now`` is the loop's time (for merged requests)."""
    in_dialog = ev.dialog is not None
    if not in_dialog and not source_allowed(ev.source):
        return Refusal(403, "Source not allowed")
    return _check(ev.request, in_dialog=in_dialog, merges=merges, now=now)
