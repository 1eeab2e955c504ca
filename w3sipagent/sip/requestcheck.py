"""The generic checks of an incoming request (RFC 3261 §8.2), sans-IO: the status code,
reason and headers of the error response a request gets, or None when it passes; the
merged-request table (§8.2.2.2, given ``now``) and the re-INVITE / UPDATE glare rule.

The tables (Allow, Supported, Require, Accept) describe this endpoint; the caller adds the
checks that need its own state (the source allow-list) and sends what these return.
"""

from __future__ import annotations

from typing import NamedTuple

from w3sipagent.errors import SipParseError
from w3sipagent.sip.message import SipRequest

__all__ = [
    "ACCEPT",
    "ALLOW",
    "ALLOWED_METHODS",
    "SUPPORTED_EXTENSIONS",
    "UNSUPPORTED_METHODS",
    "MergedRequests",
    "Refusal",
    "accepts_sdp",
    "check_request",
    "glare",
]

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY")
"""What this endpoint takes (the Allow header)."""
UNSUPPORTED_METHODS = frozenset({"REGISTER", "MESSAGE", "PUBLISH", "SUBSCRIBE", "PRACK"})
"""Known methods this endpoint does not take: 405 with Allow."""
SUPPORTED_EXTENSIONS = ("timer", "replaces")
"""Option tags in Supported; a Require naming another one gets 420."""
REQUIRE_OK = frozenset({"timer"})
"""Option tags a Require may name."""
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf"
"""The bodies this endpoint takes (the Accept header)."""
ALLOW = ", ".join(ALLOWED_METHODS)
"""The value of our Allow header."""


class Refusal(NamedTuple):
    """An error response for a request: status, reason (None: the default phrase), headers."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class MergedRequests:
    """RFC 3261 §8.2.2.2: the same request (From tag, Call-ID, CSeq) seen within ``window``
    seconds on another branch is a merged request (482).

    Entries are kept in expiry order (a dict keeps insertion order and every entry lives
    ``window``), so pruning is O(expired).
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[tuple[str, str, int], tuple[str, float]] = {}

    def __len__(self) -> int:
        """The number of requests remembered (expired ones are pruned on the next check)."""
        return len(self._seen)

    def merged(self, request: SipRequest, branch: str, now: float) -> bool:
        """Whether ``request`` (top Via ``branch``) at ``now`` merges with one seen before;
        it is remembered either way."""
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest][1] > now:
                break
            del seen[oldest]
        key = (request.from_.tag or "", request.call_id, request.cseq.seq)
        entry = seen.get(key)
        if entry is not None and entry[0] != branch and entry[1] > now:
            return True
        seen.pop(key, None)  # re-inserted at the end: the dict stays in expiry order
        seen[key] = (branch, now + self.window)
        return False


def check_request(
    request: SipRequest, *, in_dialog: bool, merges: MergedRequests, now: float
) -> Refusal | None:
    """The generic checks of RFC 3261 §8.2 in their order: method (405 / 501), Request-URI
    (its parse error), merged request (482, outside a dialog), Require (420), Content-Encoding
    and Content-Type of an offer (415), Accept (406). None when the request passes."""
    method = request.method
    if method not in ALLOWED_METHODS:
        return Refusal(405 if method in UNSUPPORTED_METHODS else 501, headers=(("Allow", ALLOW),))
    try:
        _ = request.request_uri
    except SipParseError as exc:
        return Refusal(exc.status, exc.reason)
    if not in_dialog and request.to.tag is None:
        branch = request.via.branch
        if branch and merges.merged(request, branch, now):
            return Refusal(482, "Loop Detected (merged request)")
    try:
        require = request.require
        _ = request.supported  # read when answering (session timers): malformed is a 400 now
    except SipParseError as exc:
        return Refusal(400, exc.reason)
    unknown = [t for t in require if t.lower() not in REQUIRE_OK]
    if unknown:
        return Refusal(420, headers=(("Unsupported", ", ".join(unknown)),))
    encoding = request.headers.get("Content-Encoding")
    if request.body and encoding and encoding.strip().lower() != "identity":
        return Refusal(415, "Unsupported Content-Encoding", (("Accept-Encoding", "identity"),))
    if method in ("INVITE", "UPDATE") and request.body:
        try:
            ctype = request.content_type
        except SipParseError as exc:
            return Refusal(400, exc.reason)
        if ctype != "application/sdp":
            return Refusal(415, headers=(("Accept", "application/sdp"),))
    if method in ("INVITE", "UPDATE") and not accepts_sdp(request.headers.get_all("Accept")):
        # Our answer carries SDP; a caller that cannot take it gets 406 (RFC 3261 §21.4.7,
        # RFC 4475 §3.3.15 sdp01).
        return Refusal(406, headers=(("Accept", "application/sdp"),))
    return None


def glare(request: SipRequest, *, offer_pending: bool) -> Refusal | None:
    """491 for a re-INVITE, or an UPDATE with an offer, while our own offer in the dialog is
    outstanding (RFC 3261 §14.2, RFC 3311 §5.2); None otherwise."""
    if offer_pending and (request.method == "INVITE" or request.body):
        return Refusal(491)
    return None


def accepts_sdp(accept: list[str]) -> bool:
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
