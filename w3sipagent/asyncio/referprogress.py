"""The parts of blind transfer (RFC 3515) that do no I/O, for :mod:`.refer`: what the
transfer code needs from the user agent and a call (:class:`InDialogRequester`,
:class:`TransferableCall`), its timers (:class:`TransferConfig`), how NOTIFY sipfrag
statuses become an outcome (:class:`ReferProgress`, :func:`classify_final`, on the clock
it is given) and the incoming-REFER policy types (:class:`ReferRequest`, ``ReferPolicy``,
``ReferAttempt``, :func:`forbid_all`, :func:`allow_all`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from w3sipagent.asyncio.call_api import CallInfo, TransferOutcome, TransferStatus
from w3sipagent.sip.message import SipRequest, SipResponse

__all__ = [
    "InDialogRequester",
    "ReferAttempt",
    "ReferPolicy",
    "ReferProgress",
    "ReferRequest",
    "TransferConfig",
    "TransferableCall",
    "allow_all",
    "classify_final",
    "forbid_all",
]


class InDialogRequester(Protocol):
    """What the transfer code needs from the user agent: a request in a call's dialog."""

    async def request_in_dialog(
        self,
        dialog_or_call: Any,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> SipResponse:
        """Send ``method`` in the dialog and return its final response."""
        ...


class TransferableCall(Protocol):
    """What the transfer code needs of a call (a subset of ``call_api.CallLike``)."""

    @property
    def info(self) -> CallInfo: ...

    async def hangup(self, reason: str = "local_hangup") -> None: ...


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """Timers and choices of blind transfer (seconds).

    - ``refer_timeout``: wait this long for the answer to the REFER (then ``failed`` 408).
    - ``default_timeout``: wait for the final NOTIFY when ``transfer()`` is given none.
    - ``immediate_window``: a 2xx sipfrag arriving this soon after the REFER, as the first
      NOTIFY, may be a mere "accepted" (FreeSWITCH default profile: ~20 ms) ...
    - ``bye_window``: ... and it is one when the peer's BYE follows within this time
      (FreeSWITCH: ~20 ms after the NOTIFY).
    - ``after_bye_grace``: when the peer hangs up before any final NOTIFY, keep listening
      this long for one (NOTIFYs may follow the BYE), then report ``accepted``.
    - ``accept_202_as_final``: report ``accepted`` right after the 202 (no NOTIFY wait).
    - ``subscribe``: False sends ``Refer-Sub: false`` (RFC 4488): the 202 is then final.
    - ``hangup_after_success`` / ``hangup_on_timeout``: hang up our leg in those cases.
    - ``referred_by``: ``Referred-By`` value; None derives it from the call's local URI.
    - ``notify_expires``: ``Subscription-State`` expires of our NOTIFYs (incoming REFER).
    - ``attempt_timeout``: limit of the incoming-REFER attempt (then NOTIFY 408).
    """

    refer_timeout: float = 8.0
    default_timeout: float = 30.0
    immediate_window: float = 0.5
    bye_window: float = 0.5
    after_bye_grace: float = 2.0
    accept_202_as_final: bool = False
    subscribe: bool = True
    hangup_after_success: bool = True
    hangup_on_timeout: bool = True
    referred_by: str | None = None
    notify_expires: int = 60
    attempt_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "refer_timeout",
            "default_timeout",
            "immediate_window",
            "bye_window",
            "after_bye_grace",
            "attempt_timeout",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"TransferConfig.{name} must not be negative")


def classify_final(code: int) -> TransferStatus:
    """The outcome of a final sipfrag status (>= 200)."""
    if 200 <= code < 300:
        return "succeeded"
    if code in (486, 600):
        return "busy"
    if code in (403, 603):
        return "rejected"
    return "failed"


@dataclass(slots=True)
class ReferProgress:
    """Pure bookkeeping of one outgoing REFER: statuses seen, when, and the outcome.

    Times are seconds on any monotonic clock; ``sent_at`` is when the REFER left.
    """

    sent_at: float
    config: TransferConfig = field(default_factory=TransferConfig)
    event_id: str | None = None
    notifications: list[int] = field(default_factory=list)
    final: tuple[int, str] | None = None
    final_at: float | None = None
    terminated: bool = False
    peer_ended_at: float | None = None

    def notify(self, status: int | None, reason: str, terminated: bool, now: float) -> None:
        """Record one NOTIFY (``status`` None when the body held no status line)."""
        if status is not None and self.final is None:
            self.notifications.append(status)
            if status >= 200:
                self.final = (status, reason)
                self.final_at = now
        if terminated:
            self.terminated = True

    def peer_ended(self, now: float) -> None:
        """The peer ended the call (BYE)."""
        if self.peer_ended_at is None:
            self.peer_ended_at = now

    @property
    def done(self) -> bool:
        """A final status arrived or the subscription ended."""
        return self.final is not None or self.terminated

    def maybe_accepted_only(self) -> bool:
        """A 2xx as the very first NOTIFY, arriving within ``immediate_window``."""
        return (
            self.final is not None
            and 200 <= self.final[0] < 300
            and len(self.notifications) == 1
            and self.final_at is not None
            and self.final_at - self.sent_at <= self.config.immediate_window
        )

    def outcome(self, now: float) -> TransferOutcome:
        """The outcome from what was seen so far (call when done, or at the deadline)."""
        notes = tuple(self.notifications)
        if self.final is not None:
            code, reason = self.final
            status = classify_final(code)
            if status == "succeeded" and self.maybe_accepted_only():
                ended, final_at = self.peer_ended_at, self.final_at
                if (
                    ended is not None
                    and final_at is not None
                    and ended - final_at <= self.config.bye_window
                ):
                    status = "accepted"
            return TransferOutcome(status, code, reason, notes)
        if self.terminated:
            return TransferOutcome(
                "accepted", None, "subscription ended without a final status", notes
            )
        if self.peer_ended_at is not None:
            return TransferOutcome(
                "accepted", None, "the peer ended the call before a final status", notes
            )
        return TransferOutcome("timed_out", None, "no final NOTIFY within the timeout", notes)


@dataclass(frozen=True, slots=True)
class ReferRequest:
    """An incoming REFER as the policy sees it."""

    target: str
    referred_by: str | None
    subscribe: bool
    request: SipRequest


ReferPolicy = Callable[[TransferableCall, ReferRequest], bool]
"""Decides at once whether an incoming REFER is attempted (True) or declined with 603 (False)."""

ReferAttempt = Callable[[TransferableCall, ReferRequest], Awaitable[tuple[int, str]]]
"""Carries out an accepted incoming REFER; returns the final status and reason to report."""


def forbid_all(call: TransferableCall, refer: ReferRequest) -> bool:
    """The default policy: decline every incoming REFER (603)."""
    return False


def allow_all(call: TransferableCall, refer: ReferRequest) -> bool:
    """A policy that attempts every incoming REFER."""
    return True
