"""The parts of blind transfer (RFC 3515) that do no I/O, for :mod:`.refer`: what the
transfer code needs from the user agent and a call (:class:`InDialogRequester`,
:class:`TransferableCall`), its timers (:class:`TransferConfig`), how the signals (NOTIFY sipfrag statuses,
Subscription-State, the peer's BYE, the caller's RTP after the 202) become an outcome
(:class:`ReferProgress`, :func:`classify_final`, on the clock it is given) and the incoming-REFER policy types (:class:`ReferRequest`, ``ReferPolicy``,
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
      this long for one (NOTIFYs may follow the BYE), then report ``unknown``.
    - ``rtp_silence``: when set, no final NOTIFY and the caller's RTP missing this long
      after the 202 end the wait as ``unknown`` (FreeSWITCH with ``confirm-blind-transfer``
      sends nothing when the target answers by itself or hangs up). FreeSWITCH also stops
      the caller's RTP while the target rings, so keep it above the targets' ring time, or
      a ring-out (NOTIFY 403, caller back) is reported ``unknown`` with our leg gone.
      None (default): the wait ends at the timeout.
    - ``rtp_gone``: at the timeout, the caller's RTP missing this long means the caller
      left our leg (``unknown``, our leg hung up); RTP still flowing means they did not
      (``timed_out``, the call goes on).
    - ``rtp_poll``: how often the caller's RTP counter is read during a transfer.
    - ``accept_202_as_final``: report ``accepted`` right after the 202 (no NOTIFY wait).
    - ``subscribe``: False sends ``Refer-Sub: false`` (RFC 4488): the 202 is then final.
    - ``hangup_after_success`` / ``hangup_on_unknown``: hang up our leg after ``succeeded``
      / ``accepted`` and after ``unknown`` (the caller has left it).
    - ``referred_by``: ``Referred-By`` value; None derives it from the call's local URI.
    - ``notify_expires``: ``Subscription-State`` expires of our NOTIFYs (incoming REFER).
    - ``attempt_timeout``: limit of the incoming-REFER attempt (then NOTIFY 408).
    """

    refer_timeout: float = 8.0
    default_timeout: float = 30.0
    immediate_window: float = 0.5
    bye_window: float = 0.5
    after_bye_grace: float = 2.0
    rtp_silence: float | None = None
    rtp_gone: float = 1.0
    rtp_poll: float = 0.05
    accept_202_as_final: bool = False
    subscribe: bool = True
    hangup_after_success: bool = True
    hangup_on_unknown: bool = True
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
            "rtp_silence",
            "rtp_gone",
            "rtp_poll",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
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


UNKNOWN_ACCEPTED_ONLY = "the peer only accepted the transfer (NOTIFY 2xx at once, then BYE)"
UNKNOWN_TERMINATED = "subscription ended without a final status"
UNKNOWN_BYE = "the peer ended the call before a final status"
UNKNOWN_MEDIA_GONE = "no final NOTIFY; the caller's RTP stopped after the REFER was accepted"


@dataclass(slots=True)
class ReferProgress:
    """Pure bookkeeping of one outgoing REFER: the signals seen, when, and the verdict.

    Times are seconds on any monotonic clock; ``sent_at`` is when the REFER left. The
    signals: each NOTIFY (:meth:`notify`: sipfrag status, ``Subscription-State``), the
    peer's BYE on our leg (:meth:`peer_ended`), the 202 (:meth:`accepted_at`) and the
    caller's RTP on our leg (:meth:`rtp_seen`: the last time a packet arrived; never
    called when the call cannot say). :meth:`verdict` turns them into an outcome, or None
    while the answer is still open (:meth:`next_check` says when to look again).
    """

    sent_at: float
    config: TransferConfig = field(default_factory=TransferConfig)
    event_id: str | None = None
    notifications: list[int] = field(default_factory=list)
    final: tuple[int, str] | None = None
    final_at: float | None = None
    terminated: bool = False
    peer_ended_at: float | None = None
    answered_at: float | None = None
    rtp_last: float | None = None

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

    def accepted_at(self, now: float) -> None:
        """The REFER was accepted (202): the caller's media may leave our leg from now."""
        self.answered_at = now

    def rtp_seen(self, at: float) -> None:
        """The caller's RTP reached our leg at ``at`` (the latest packet)."""
        if self.rtp_last is None or at > self.rtp_last:
            self.rtp_last = at

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

    def media_silent_since(self) -> float | None:
        """Since when the caller's RTP has been missing after the 202 (None: unknown)."""
        if self.rtp_last is None or self.answered_at is None:
            return None
        return max(self.rtp_last, self.answered_at)

    def media_gone(self, now: float, after: float) -> bool:
        """The caller's RTP has been missing for ``after`` seconds since the 202."""
        since = self.media_silent_since()
        return since is not None and now - since >= after

    def verdict(self, now: float, deadline: float) -> TransferOutcome | None:
        """The outcome the signals give at ``now``, or None while it is still open.

        ========================================  =========================================
        final 2xx NOTIFY, first and immediate,    ``unknown`` (FreeSWITCH without
        and the peer's BYE within ``bye_window``  ``confirm-blind-transfer``: it only took
                                                  the transfer)
        final 2xx NOTIFY otherwise                ``succeeded``
        final >= 300 NOTIFY                       busy (486/600), rejected (403/603),
                                                  failed: the caller is back with us
        subscription terminated, no final         ``unknown``
        the peer's BYE, no final after the grace  ``unknown``
        no NOTIFY, caller RTP gone ``rtp_silence``  ``unknown`` (when ``rtp_silence`` is set)
        the deadline, caller RTP gone (or the     ``unknown``: the caller left our leg
        call cannot tell)
        the deadline, caller RTP still flowing    ``timed_out``: the caller is still with us
        ========================================  =========================================
        """
        cfg = self.config
        notes = tuple(self.notifications)
        if self.final is not None:
            code, reason = self.final
            status = classify_final(code)
            if status == "succeeded" and self.maybe_accepted_only():
                final_at = self.final_at if self.final_at is not None else now
                ended = self.peer_ended_at
                if ended is not None and ended - final_at <= cfg.bye_window:
                    return TransferOutcome("unknown", code, UNKNOWN_ACCEPTED_ONLY, notes)
                if ended is None and now < final_at + cfg.bye_window:
                    return None  # the BYE that tells "unknown" from "succeeded" may follow
            return TransferOutcome(status, code, reason, notes)
        if self.terminated:
            return TransferOutcome("unknown", None, UNKNOWN_TERMINATED, notes)
        if self.peer_ended_at is not None:
            if now >= min(self.peer_ended_at + cfg.after_bye_grace, deadline):
                return TransferOutcome("unknown", None, UNKNOWN_BYE, notes)
            return None
        if cfg.rtp_silence is not None and self.media_gone(now, cfg.rtp_silence):
            return TransferOutcome("unknown", None, UNKNOWN_MEDIA_GONE, notes)
        if now >= deadline:
            if self.media_silent_since() is None or self.media_gone(now, cfg.rtp_gone):
                return TransferOutcome("unknown", None, UNKNOWN_MEDIA_GONE, notes)
            return TransferOutcome(
                "timed_out", None, "no final NOTIFY; the caller is still with us", notes
            )
        return None

    def next_check(self, now: float, deadline: float) -> float:
        """When :meth:`verdict` may change without a new signal (a time >= ``now``)."""
        cfg = self.config
        times = [deadline]
        if self.final_at is not None:
            times.append(self.final_at + cfg.bye_window)
        if self.peer_ended_at is not None:
            times.append(self.peer_ended_at + cfg.after_bye_grace)
        since = self.media_silent_since()
        if since is not None and cfg.rtp_silence is not None:
            times.append(since + cfg.rtp_silence)
        later = [t for t in times if t > now]
        return min(later) if later else now

    def outcome(self, now: float) -> TransferOutcome:
        """The outcome at the deadline ``now`` (what :meth:`verdict` gives then)."""
        verdict = self.verdict(now, now)
        assert verdict is not None  # at the deadline every case is decided
        return verdict


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
