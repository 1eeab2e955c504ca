"""Call limits and call-end outcomes alone (pure)."""

from __future__ import annotations

from w3sipagent.agent.lifecycle import outcome_of_call_end
from w3sipagent.agent.watchdog import CallWatchdog
from w3sipagent.asyncio.call_api import CallEnded
from w3sipagent.records.cdr import Disposition


def test_max_duration_counts_from_the_start() -> None:
    w = CallWatchdog(max_duration=60.0, silence_timeout=None)
    w.start(100.0)
    assert w.check(159.9, busy=True) is None
    assert w.check(160.0, busy=True) == "max_duration"


def test_caller_silence_only_while_nothing_is_busy() -> None:
    w = CallWatchdog(max_duration=None, silence_timeout=10.0)
    w.start(0.0)
    assert w.check(9.9, busy=False) is None
    assert w.check(20.0, busy=True) is None  # busy: counts as activity
    assert w.last_activity == 20.0
    assert w.check(29.9, busy=False) is None
    w.touch(29.0)  # a key, a speech event
    assert w.check(38.9, busy=False) is None
    assert w.check(39.0, busy=False) == "caller_silence"


def test_no_limits() -> None:
    w = CallWatchdog(None, None)
    w.start(0.0)
    assert w.check(1e9, busy=False) is None


def test_outcome_of_a_call_that_ended_by_itself() -> None:
    def of(reason: str, by: str = "local") -> tuple[Disposition, str | None, bool]:
        o = outcome_of_call_end(CallEnded(reason, by=by))  # type: ignore[arg-type]
        return o.disposition, o.by, o.hangup

    assert of("remote_bye") == (Disposition.CALLER_HANGUP, "caller", False)
    assert of("anything", by="remote") == (Disposition.CALLER_HANGUP, "caller", False)
    assert of("transferred") == (Disposition.TRANSFERRED, "agent", False)
    assert of("rtp_timeout") == (Disposition.TIMEOUT, "system", False)
    assert of("shutdown") == (Disposition.SHUTDOWN, "system", False)
    assert of("local_hangup") == (Disposition.COMPLETED, "agent", False)
    assert of("error") == (Disposition.FAILED, "system", False)
