"""Generic checks of incoming requests (RFC 3261 §8.2) and their error replies: the Allow,
Supported, Require and Accept tables, the merged-request table (482) and the Accept check (406).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.errors import (
    SipParseError,
)
from w3sipagent.sip.events import (
    RequestReceived,
)
from w3sipagent.sip.message import SipRequest

if TYPE_CHECKING:
    from w3sipagent.asyncio.gate import RequestGate


ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY")
"""What this endpoint takes (the Allow header)."""
UNSUPPORTED_METHODS = frozenset({"REGISTER", "MESSAGE", "PUBLISH", "SUBSCRIBE", "PRACK"})
"""Known methods this endpoint does not take: 405 with Allow."""
SUPPORTED_EXTENSIONS = ("timer", "replaces")
"""Option tags in Supported; a Require naming another one gets 420."""
_REQUIRE_OK = frozenset({"timer"})
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf"
_ALLOW = ", ".join(ALLOWED_METHODS)


def _retry_after(config: UserAgentConfig) -> tuple[tuple[str, str], ...]:
    return (("Retry-After", str(config.retry_after)),)


def merged(gate: RequestGate, request: SipRequest, branch: str) -> bool:
    """RFC 3261 §8.2.2.2: the same request (From tag, Call-ID, CSeq) seen within
    ``merge_window`` on another branch. Entries are kept in expiry order (a dict keeps
    insertion order and every entry lives ``merge_window``), so pruning is O(expired)."""
    merge = gate.merge
    key = (request.from_.tag or "", request.call_id, request.cseq.seq)
    now = gate.now()
    while merge:
        oldest = next(iter(merge))
        if merge[oldest][1] > now:
            break
        del merge[oldest]
    seen = merge.get(key)
    if seen is not None and seen[0] != branch and seen[1] > now:
        return True
    merge.pop(key, None)  # re-inserted at the end: the dict stays in expiry order
    merge[key] = (branch, now + gate.config.merge_window)
    return False


def check_request(
    gate: RequestGate, ev: RequestReceived
) -> tuple[int, str | None, list[tuple[str, str]]] | None:
    """The generic checks of RFC 3261 §8.2 (and the allowlist); None when it passes."""
    request = ev.request
    method = request.method
    if ev.dialog is None and not gate.source_allowed(ev.source):
        return (403, "Source not allowed", [])
    if method not in ALLOWED_METHODS:
        if method in UNSUPPORTED_METHODS:
            return (405, None, [("Allow", _ALLOW)])
        return (501, None, [("Allow", _ALLOW)])
    try:
        _ = request.request_uri
    except SipParseError as exc:
        return (exc.status, exc.reason, [])
    if ev.dialog is None and request.to.tag is None:
        branch = request.via.branch
        if branch and merged(gate, request, branch):
            return (482, "Loop Detected (merged request)", [])
    try:
        require = request.require
    except SipParseError as exc:
        return (400, exc.reason, [])
    unknown = [t for t in require if t.lower() not in _REQUIRE_OK]
    if unknown:
        return (420, None, [("Unsupported", ", ".join(unknown))])
    encoding = request.headers.get("Content-Encoding")
    if request.body and encoding and encoding.strip().lower() != "identity":
        return (415, "Unsupported Content-Encoding", [("Accept-Encoding", "identity")])
    if method in ("INVITE", "UPDATE") and request.body:
        try:
            ctype = request.content_type
        except SipParseError as exc:
            return (400, exc.reason, [])
        if ctype != "application/sdp":
            return (415, None, [("Accept", "application/sdp")])
    if method in ("INVITE", "UPDATE") and not _accepts_sdp(request.headers.get_all("Accept")):
        # Our answer carries SDP; a caller that cannot take it gets 406 (RFC 3261 §21.4.7,
        # RFC 4475 §3.3.15 sdp01).
        return (406, None, [("Accept", "application/sdp")])
    return None


def _accepts_sdp(accept: list[str]) -> bool:
    """Whether an Accept header (absent means application/sdp, RFC 3261 §20.1) admits SDP."""
    if not accept:
        return True
    for item in accept:
        media, _, params = item.partition(";")
        media = media.strip().lower()
        if media in ("application/sdp", "application/*", "*/*"):
            q = 1.0
            for param in params.split(";"):
                name, _, value = param.partition("=")
                if name.strip().lower() == "q":
                    try:
                        q = float(value)
                    except ValueError:
                        q = 0.0
            if q > 0:
                return True
    return False
