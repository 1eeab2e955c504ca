"""Blind transfer (REFER) logic against a scripted peer that behaves like the measured FreeSWITCH.

The peer here is a fake user agent: ``request_in_dialog`` records the REFER and plays
a scenario from /work/shared/reference/freeswitch-refer.md (202 after ~20 ms, NOTIFYs
with the sipfrags FreeSWITCH writes, a BYE or none) by calling the transferer's NOTIFY
handler and ``call_ended``, as the user agent would. Network-level tests with a real
transferee (baresip) are in tests/interop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.asyncio.helpers import RawUac, RtpPeer, sdp
from w3sipagent.asyncio.call_api import CallInfo, TransferOutcome
from w3sipagent.asyncio.refer import (
    ReferProgress,
    ReferRequest,
    TransferConfig,
    Transferer,
    allow_all,
    classify_final,
)
from w3sipagent.sip.message import SipRequest, SipResponse, make_response
from w3sipagent.sip.sipfrag import parse_sipfrag

FAST = TransferConfig(
    refer_timeout=0.5,
    default_timeout=0.6,
    immediate_window=0.15,
    bye_window=0.15,
    after_bye_grace=0.2,
    attempt_timeout=0.5,
    rtp_gone=0.2,
    rtp_poll=0.01,
)


class FakeCall:
    """A call as the transferer sees it: info and hangup()."""

    def __init__(self, call_id: str = "c1") -> None:
        self.info = CallInfo(
            call_id=call_id,
            direction="inbound",
            request_uri="sip:agent@127.0.0.1:5090",
            from_uri="sip:caller@127.0.0.1",
            to_uri="sip:agent@127.0.0.1:5090",
        )
        self.hangups: list[str] = []

    async def hangup(self, reason: str = "local_hangup") -> None:
        self.hangups.append(reason)


_cseq = itertools.count(100)


def notify(
    body: bytes | None,
    state: str = "terminated;reason=noresource",
    *,
    event: str | None = "refer;id={id}",
    ctype: str = "message/sipfrag;version=2.0",
    event_id: int = 0,
) -> SipRequest:
    """A NOTIFY as FreeSWITCH sends it in the call's dialog."""
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfs" + str(next(_cseq))),
        ("From", "<sip:caller@127.0.0.1>;tag=fs1"),
        ("To", "<sip:agent@127.0.0.1:5090>;tag=ag1"),
        ("Call-ID", "c1"),
        ("CSeq", f"{next(_cseq)} NOTIFY"),
        ("Subscription-State", state),
    ]
    if event is not None:
        headers.append(("Event", event.format(id=event_id)))
    if body is not None:
        headers.append(("Content-Type", ctype))
    return SipRequest("NOTIFY", "sip:agent@127.0.0.1:5090", headers, body or b"")


Step = tuple[float, str, Any]  # (delay after REFER, kind, payload)


@dataclass
class FakePeer:
    """Answers the REFER and plays NOTIFY / BYE steps at scripted times."""

    refer_status: int = 202
    refer_delay: float = 0.02
    steps: list[Step] = field(default_factory=list)
    transferer: Transferer | None = None
    call: FakeCall | None = None
    sent: list[tuple[str, list[tuple[str, str]], bytes, str | None]] = field(default_factory=list)
    notify_replies: list[SipResponse] = field(default_factory=list)
    refer_seq: int = 7

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
        hdrs = list(headers)
        self.sent.append((method, hdrs, body, content_type))
        if method != "REFER":
            return SipResponse(200, headers=[("CSeq", f"{self.refer_seq + 1} {method}")])
        loop = asyncio.get_running_loop()
        for delay, kind, payload in self.steps:
            loop.call_later(delay, self._play, kind, payload)
        await asyncio.sleep(self.refer_delay)
        if self.refer_status == 0:  # never answers
            await asyncio.sleep(3600)
        return SipResponse(
            self.refer_status,
            headers=[("CSeq", f"{self.refer_seq} REFER"), ("Expires", "60")],
        )

    def _play(self, kind: str, payload: Any) -> None:
        assert self.transferer is not None and self.call is not None
        if kind == "notify":
            req = payload
            ev = req.headers.get("Event")
            if ev is not None:  # the id of the REFER's CSeq, unless the step names another
                req.headers.set("Event", ev.replace("id=0", f"id={self.refer_seq}"))
            self.notify_replies.append(self.transferer.handle_notify(self.call, req))
        elif kind == "bye":
            self.transferer.call_ended(self.call)


class RtpCall(FakeCall):
    """A call whose caller RTP (``stats()["packets_received"]``) grows every 10 ms until
    ``stop_at`` seconds after it was made (None: never stops)."""

    def __init__(self, stop_at: float | None) -> None:
        super().__init__()
        self._t0 = asyncio.get_running_loop().time()
        self._stop_at = stop_at

    def stats(self) -> dict[str, object]:
        elapsed = asyncio.get_running_loop().time() - self._t0
        if self._stop_at is not None:
            elapsed = min(elapsed, self._stop_at)
        return {"packets_received": int(elapsed / 0.01)}


def setup(
    peer: FakePeer, config: TransferConfig = FAST, call: FakeCall | None = None
) -> tuple[Transferer, FakeCall]:
    t = Transferer(peer, config)
    call = call or FakeCall()
    peer.transferer, peer.call = t, call
    return t, call


async def run(
    peer: FakePeer,
    config: TransferConfig = FAST,
    timeout: float | None = None,
    call: FakeCall | None = None,
) -> tuple[TransferOutcome, FakeCall, float]:
    t, call = setup(peer, config, call)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    outcome = await t.transfer(call, "sip:1000@127.0.0.1", timeout=timeout)
    return outcome, call, loop.time() - t0


# ----------------------------------------------------------------- the REFER request


async def test_refer_request_headers() -> None:
    peer = FakePeer(steps=[(0.03, "notify", notify(b"SIP/2.0 200 OK\r\n"))])
    await run(peer)
    method, headers, body, _ = peer.sent[0]
    assert method == "REFER"
    h = dict(headers)
    assert h["Refer-To"] == "<sip:1000@127.0.0.1>"
    assert h["Referred-By"] == "<sip:agent@127.0.0.1:5090>"
    assert "Refer-Sub" not in h
    assert body == b""
    assert [r.status for r in peer.notify_replies] == [200]


async def test_refer_sub_false_is_final_at_202() -> None:
    cfg = TransferConfig(subscribe=False, refer_timeout=0.5)
    peer = FakePeer(refer_status=202)

    async def reply_no_sub(*a: Any, **k: Any) -> SipResponse:
        peer.sent.append(("REFER", list(k.get("headers", ())), b"", None))
        return SipResponse(202, headers=[("CSeq", "3 REFER"), ("Refer-Sub", "false")])

    peer.request_in_dialog = reply_no_sub  # type: ignore[method-assign]
    outcome, call, _ = await run(peer, cfg)
    assert dict(peer.sent[0][1])["Refer-Sub"] == "false"
    assert outcome.status == "accepted" and outcome.code == 202
    assert call.hangups == ["transferred"]


# ----------------------------------------------------------------- FreeSWITCH, default profile
# One NOTIFY "SIP/2.0 200 OK" ~20 ms after the REFER, then a BYE ~40 ms after it, whatever
# happens to the caller next (answer, long ringing, busy, no such extension).

DEFAULT_PROFILE = [
    (0.02, "notify", notify(b"SIP/2.0 200 OK\r\n")),
    (0.04, "bye", None),
]


@pytest.mark.parametrize("case", ["answers", "rings long", "busy", "no extension"])
async def test_freeswitch_default_profile_is_unknown(case: str) -> None:
    peer = FakePeer(steps=list(DEFAULT_PROFILE))
    outcome, call, elapsed = await run(peer)
    assert outcome.status == "unknown", case  # FreeSWITCH only took the transfer
    assert outcome.code == 200
    assert outcome.notifications == (200,)
    assert call.hangups == ["transfer_unknown"]  # idempotent on an ended call
    assert elapsed < 0.3


async def test_bye_before_the_notify_is_still_unknown() -> None:
    peer = FakePeer(steps=[(0.02, "bye", None), (0.03, "notify", notify(b"SIP/2.0 200 OK\r\n"))])
    outcome, _, _ = await run(peer)
    assert outcome.status == "unknown"


async def test_one_legged_call_gets_403_and_stays() -> None:
    peer = FakePeer(steps=[(0.02, "notify", notify(b"SIP/2.0 403 Forbidden\r\n"))])
    outcome, call, _ = await run(peer)
    assert outcome == TransferOutcome("rejected", 403, "Forbidden", (403,))
    assert call.hangups == []


# ----------------------------------------------------------------- confirm-blind-transfer


async def test_confirm_blind_bridged_is_succeeded_and_we_hang_up() -> None:
    # Target answers after 0.3 s, NOTIFY 200 13 ms later, no BYE from FreeSWITCH.
    peer = FakePeer(steps=[(0.313, "notify", notify(b"SIP/2.0 200 OK\r\n"))])
    outcome, call, elapsed = await run(peer)
    assert outcome == TransferOutcome("succeeded", 200, "OK", (200,))
    assert call.hangups == ["transferred"]
    assert elapsed < 0.45  # no bye_window wait after a late 2xx


async def test_confirm_blind_fast_answer_without_bye_is_succeeded() -> None:
    # An auto-answering target: the 2xx comes within the immediate window, but no BYE follows.
    peer = FakePeer(steps=[(0.05, "notify", notify(b"SIP/2.0 200 OK\r\n"))])
    outcome, call, elapsed = await run(peer)
    assert outcome.status == "succeeded"
    assert call.hangups == ["transferred"]
    assert 0.19 <= elapsed < 0.4  # waited bye_window for a BYE that never came


async def test_confirm_blind_busy_486_486() -> None:
    peer = FakePeer(steps=[(0.2, "notify", notify(b"SIP/2.0 486 486\r\n"))])
    outcome, call, _ = await run(peer)
    assert outcome == TransferOutcome("busy", 486, "486", (486,))
    assert call.hangups == []  # the caller is back with us


async def test_confirm_blind_no_extension_403() -> None:
    peer = FakePeer(steps=[(0.03, "notify", notify(b"SIP/2.0 403 Forbidden\r\n"))])
    outcome, call, _ = await run(peer)
    assert outcome.status == "rejected" and outcome.code == 403
    assert call.hangups == []


async def test_confirm_blind_decline_603() -> None:
    peer = FakePeer(steps=[(0.1, "notify", notify(b"SIP/2.0 603 603\r\n"))])
    outcome, call, _ = await run(peer)
    assert outcome.status == "rejected" and outcome.code == 603
    assert call.hangups == []


async def test_confirm_blind_unavailable_is_failed() -> None:
    peer = FakePeer(steps=[(0.1, "notify", notify(b"SIP/2.0 480 480\r\n"))])
    outcome, call, _ = await run(peer)
    assert outcome.status == "failed" and outcome.code == 480
    assert call.hangups == []


async def test_confirm_blind_no_notify_without_media_signal_is_unknown() -> None:
    # parked: no NOTIFY at all, and the call cannot say whether the caller's RTP flows
    peer = FakePeer(steps=[])
    outcome, call, elapsed = await run(peer, timeout=0.4)
    assert outcome.status == "unknown" and outcome.code is None
    assert call.hangups == ["transfer_unknown"]
    assert 0.38 <= elapsed < 0.6


async def test_unknown_without_hangup_when_configured() -> None:
    cfg = TransferConfig(
        refer_timeout=0.5, default_timeout=0.3, hangup_on_unknown=False, immediate_window=0.1
    )
    outcome, call, _ = await run(FakePeer(), cfg)
    assert outcome.status == "unknown"
    assert call.hangups == []


async def test_no_notify_caller_rtp_stops_is_unknown_at_the_timeout() -> None:
    # FreeSWITCH with confirm-blind-transfer, target answers by itself: no NOTIFY, no BYE,
    # the caller's RTP stops ~30 ms after the REFER
    call = RtpCall(stop_at=0.03)
    outcome, _, elapsed = await run(FakePeer(), timeout=0.5, call=call)
    assert outcome.status == "unknown" and "RTP stopped" in outcome.reason
    assert call.hangups == ["transfer_unknown"]
    assert 0.48 <= elapsed < 0.7


async def test_rtp_silence_ends_the_wait_early() -> None:
    cfg = dataclasses.replace(FAST, rtp_silence=0.2)
    call = RtpCall(stop_at=0.03)
    outcome, _, elapsed = await run(FakePeer(), cfg, timeout=5.0, call=call)
    assert outcome.status == "unknown" and call.hangups == ["transfer_unknown"]
    assert 0.2 <= elapsed < 0.45  # 202 at 0.02 + 0.2 s of silence, not the 5 s timeout


async def test_rtp_silence_counts_from_the_last_packet() -> None:
    cfg = dataclasses.replace(FAST, rtp_silence=0.2)
    call = RtpCall(stop_at=0.3)  # the caller's RTP goes on 0.28 s after the 202
    outcome, _, elapsed = await run(FakePeer(), cfg, timeout=5.0, call=call)
    assert outcome.status == "unknown"
    assert 0.5 <= elapsed < 0.7


async def test_rtp_silence_then_403_while_ringing_is_rejected() -> None:
    # the target rings (caller's RTP stopped), then 403: with rtp_silence above the ring
    # time the caller comes back to us
    cfg = dataclasses.replace(FAST, rtp_silence=0.5)
    call = RtpCall(stop_at=0.03)
    peer = FakePeer(steps=[(0.3, "notify", notify(b"SIP/2.0 403 Forbidden\r\n"))])
    outcome, _, _ = await run(peer, cfg, timeout=5.0, call=call)
    assert outcome == TransferOutcome("rejected", 403, "Forbidden", (403,))
    assert call.hangups == []


async def test_no_notify_while_caller_rtp_flows_is_timed_out_and_stays() -> None:
    # the peer ignored the REFER: the caller still talks to us, so our leg is kept
    call = RtpCall(stop_at=None)
    outcome, _, _ = await run(FakePeer(), timeout=0.4, call=call)
    assert outcome.status == "timed_out" and call.hangups == []


# ----------------------------------------------------------------- progress, RFC 3515 peers


async def test_progress_then_success() -> None:
    peer = FakePeer(
        steps=[
            (0.01, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active;expires=60")),
            (0.05, "notify", notify(b"SIP/2.0 180 Ringing\r\n", "active;expires=60")),
            (0.09, "notify", notify(b"SIP/2.0 200 OK\r\n")),
        ]
    )
    outcome, call, elapsed = await run(peer)
    assert outcome == TransferOutcome("succeeded", 200, "OK", (100, 180, 200))
    assert elapsed < 0.14  # a 2xx after progress is final at once
    assert call.hangups == ["transferred"]
    assert [r.status for r in peer.notify_replies] == [200, 200, 200]


async def test_notify_before_202_is_counted() -> None:
    peer = FakePeer(
        refer_delay=0.1,
        steps=[
            (0.02, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active")),
            (0.2, "notify", notify(b"SIP/2.0 486 Busy Here\r\n")),
        ],
    )
    outcome, _, _ = await run(peer)
    assert outcome == TransferOutcome("busy", 486, "Busy Here", (100, 486))


async def test_terminated_without_final_is_unknown() -> None:
    peer = FakePeer(
        steps=[
            (0.01, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active")),
            (0.05, "notify", notify(None, "terminated;reason=timeout")),
        ]
    )
    outcome, _, elapsed = await run(peer)
    assert outcome.status == "unknown" and outcome.code is None
    assert outcome.notifications == (100,)
    assert elapsed < 0.2


async def test_peer_hangs_up_without_final_waits_grace() -> None:
    peer = FakePeer(
        steps=[
            (0.01, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active")),
            (0.05, "bye", None),
        ]
    )
    outcome, _, elapsed = await run(peer)
    assert outcome.status == "unknown"
    assert "ended the call" in outcome.reason
    assert 0.24 <= elapsed < 0.45  # BYE at 0.05 + grace 0.2


async def test_final_after_bye_within_grace() -> None:
    peer = FakePeer(
        steps=[
            (0.01, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active")),
            (0.3, "bye", None),
            (0.35, "notify", notify(b"SIP/2.0 200 OK\r\n")),
        ]
    )
    outcome, _, _ = await run(peer, timeout=1.0)
    assert outcome.status == "succeeded"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(403, "rejected"), (405, "rejected"), (481, "rejected"), (603, "rejected"), (500, "rejected")],
)
async def test_refer_refused(status: int, expected: str) -> None:
    outcome, call, _ = await run(FakePeer(refer_status=status))
    assert outcome.status == expected and outcome.code == status
    assert call.hangups == []


async def test_refer_unanswered_is_failed_408() -> None:
    cfg = TransferConfig(refer_timeout=0.1)
    outcome, call, elapsed = await run(FakePeer(refer_status=0), cfg)
    assert outcome.status == "failed" and outcome.code == 408
    assert call.hangups == []
    assert elapsed < 1.3


async def test_second_transfer_while_pending() -> None:
    peer = FakePeer(steps=[(0.2, "notify", notify(b"SIP/2.0 200 OK\r\n"))])
    t, call = setup(peer)
    first = asyncio.ensure_future(t.transfer(call, "sip:1@127.0.0.1"))
    await asyncio.sleep(0.05)
    second = await t.transfer(call, "sip:2@127.0.0.1")
    assert second.status == "failed" and "already" in second.reason
    assert (await first).status == "succeeded"


async def test_bad_target_raises_value_error() -> None:
    t, call = setup(FakePeer())
    with pytest.raises(ValueError, match="transfer target"):
        await t.transfer(call, "not a uri <<")


# ----------------------------------------------------------------- NOTIFY answers


async def test_notify_answers_for_bad_notifies() -> None:
    peer = FakePeer(
        steps=[
            (0.01, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active", event="presence")),
            (0.02, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active", event=None)),
            (0.03, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active", event="refer;id=999")),
            (0.04, "notify", notify(b"hello\r\n", "active")),
            (0.05, "notify", notify(b"SIP/2.0 100 Trying\r\n", "active", ctype="text/plain")),
            (0.06, "notify", notify(b"SIP/2.0 180 Ringing\r\n", "active")),
            (0.1, "notify", notify(b"SIP/2.0 200 OK\r\n")),
        ]
    )
    outcome, _, _ = await run(peer)
    assert [r.status for r in peer.notify_replies] == [489, 400, 481, 400, 415, 200, 200]
    assert peer.notify_replies[0].headers.get("Allow-Events") == "refer"
    assert outcome.notifications == (180, 200)
    assert outcome.status == "succeeded"


async def test_notify_without_transfer_is_481() -> None:
    t, call = setup(FakePeer())
    assert t.handle_notify(call, notify(b"SIP/2.0 200 OK\r\n")).status == 481
    assert t.handle_notify(None, notify(b"SIP/2.0 200 OK\r\n")).status == 481  # no dialog


async def test_refer_outside_a_dialog_is_481() -> None:
    t = Transferer(FakePeer(), FAST, policy=allow_all)
    assert t.handle_refer(None, refer_request()).status == 481


# ----------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, "succeeded"),
        (202, "succeeded"),
        (486, "busy"),
        (600, "busy"),
        (403, "rejected"),
        (603, "rejected"),
        (404, "failed"),
        (480, "failed"),
        (487, "failed"),
        (503, "failed"),
    ],
)
def test_classify_final(code: int, status: str) -> None:
    assert classify_final(code) == status


def test_progress_ignores_statuses_after_final() -> None:
    p = ReferProgress(sent_at=0.0, config=FAST)
    p.notify(100, "Trying", False, 0.01)
    p.notify(486, "Busy", False, 0.5)
    p.notify(200, "OK", True, 0.6)
    assert p.notifications == [100, 486]
    assert p.outcome(0.7) == TransferOutcome("busy", 486, "Busy", (100, 486))


def test_config_rejects_negative_timers() -> None:
    with pytest.raises(ValueError, match="bye_window"):
        TransferConfig(bye_window=-1)


# ----------------------------------------------------------------- incoming REFER


def refer_request(
    refer_to: str | None = "<sip:bob@127.0.0.1:5070>", extra: Iterable[tuple[str, str]] = ()
) -> SipRequest:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKr1"),
        ("From", "<sip:caller@127.0.0.1>;tag=fs1"),
        ("To", "<sip:agent@127.0.0.1:5090>;tag=ag1"),
        ("Call-ID", "c1"),
        ("CSeq", "42 REFER"),
        ("Referred-By", "<sip:caller@127.0.0.1>"),
    ]
    if refer_to is not None:
        headers.append(("Refer-To", refer_to))
    headers += list(extra)
    return SipRequest("REFER", "sip:agent@127.0.0.1:5090", headers)


async def test_incoming_refer_declined_by_default() -> None:
    peer = FakePeer()
    t = Transferer(peer, FAST)
    resp = t.handle_refer(FakeCall(), refer_request())
    assert resp.status == 603
    await asyncio.sleep(0.05)
    assert peer.sent == []  # no NOTIFY


@pytest.mark.parametrize(
    ("refer_to", "extra"),
    [(None, ()), ("not-a-uri", ()), ("<sip:a@b>", [("Refer-To", "<sip:c@d>")])],
)
async def test_incoming_refer_malformed_400(
    refer_to: str | None, extra: list[tuple[str, str]]
) -> None:
    t = Transferer(FakePeer(), FAST, policy=allow_all)
    assert t.handle_refer(FakeCall(), refer_request(refer_to, extra)).status == 400


async def test_incoming_refer_attempted_and_notified() -> None:
    peer = FakePeer()
    seen: list[ReferRequest] = []

    async def attempt(call: Any, refer: ReferRequest) -> tuple[int, str]:
        seen.append(refer)
        await asyncio.sleep(0.02)
        return 200, "OK"

    t = Transferer(peer, FAST, policy=allow_all, attempt=attempt)
    call = FakeCall()
    resp = t.handle_refer(call, refer_request())
    assert resp.status == 202 and resp.headers.get("Expires") == "60"
    await asyncio.sleep(0.1)
    assert seen[0].target == "sip:bob@127.0.0.1:5070"
    assert seen[0].referred_by == "<sip:caller@127.0.0.1>"
    methods = [
        (m, dict(h)["Event"], dict(h)["Subscription-State"], parse_sipfrag(b).status, ct)
        for m, h, b, ct in peer.sent
    ]
    assert methods == [
        ("NOTIFY", "refer;id=42", "active;expires=60", 100, "message/sipfrag;version=2.0"),
        (
            "NOTIFY",
            "refer;id=42",
            "terminated;reason=noresource",
            200,
            "message/sipfrag;version=2.0",
        ),
    ]
    assert call.hangups == ["transferred"]


@pytest.mark.parametrize(("behaviour", "code"), [("busy", 486), ("raise", 500), ("slow", 408)])
async def test_incoming_refer_failure_reported(behaviour: str, code: int) -> None:
    peer = FakePeer()

    async def attempt(call: Any, refer: ReferRequest) -> tuple[int, str]:
        if behaviour == "raise":
            raise RuntimeError("boom")
        if behaviour == "slow":
            await asyncio.sleep(5)
        return 486, "Busy Here"

    cfg = TransferConfig(attempt_timeout=0.1)
    t = Transferer(peer, cfg, policy=allow_all, attempt=attempt)
    call = FakeCall()
    assert t.handle_refer(call, refer_request()).status == 202
    await asyncio.sleep(0.25)
    final = peer.sent[-1]
    assert parse_sipfrag(final[2]).status == code
    assert dict(final[1])["Subscription-State"].startswith("terminated")
    assert call.hangups == []
    await t.aclose()


async def test_incoming_refer_sub_false_sends_no_notify() -> None:
    peer = FakePeer()

    async def attempt(call: Any, refer: ReferRequest) -> tuple[int, str]:
        return 200, "OK"

    t = Transferer(peer, FAST, policy=allow_all, attempt=attempt)
    resp = t.handle_refer(FakeCall(), refer_request(extra=[("Refer-Sub", "false")]))
    assert resp.status == 202 and resp.headers.get("Refer-Sub") == "false"
    await asyncio.sleep(0.05)
    assert peer.sent == []


# ----------------------------------------------------------------- over the network, with the UserAgent
# A raw-socket stand-in plays FreeSWITCH: it bridges a call to the agent (INVITE), answers
# the agent's REFER 202 after 20 ms and then sends exactly what FreeSWITCH 1.10.12 sent in
# each measured case (freeswitch-refer.md). The agent runs the real UserAgent with the
# Transferer installed, and its handler calls ``call.transfer()``.


@dataclass
class FsCase:
    name: str
    notify: bytes | None  # the one sipfrag FreeSWITCH sends (None: no NOTIFY)
    notify_at: float  # seconds after the REFER
    bye_at: float | None  # FreeSWITCH's BYE to the agent, seconds after the REFER
    status: str
    code: int | None
    agent_hangs_up: bool


FS_CASES = [
    FsCase("default: answered", b"SIP/2.0 200 OK\r\n", 0.02, 0.04, "unknown", 200, False),
    FsCase("default: busy target", b"SIP/2.0 200 OK\r\n", 0.02, 0.04, "unknown", 200, False),
    FsCase("default: no extension", b"SIP/2.0 200 OK\r\n", 0.02, 0.04, "unknown", 200, False),
    FsCase("one-legged call", b"SIP/2.0 403 Forbidden\r\n", 0.02, None, "rejected", 403, False),
    FsCase("confirm: bridged", b"SIP/2.0 200 OK\r\n", 0.31, None, "succeeded", 200, True),
    FsCase("confirm: busy", b"SIP/2.0 486 486\r\n", 0.2, None, "busy", 486, False),
    FsCase(
        "confirm: no extension", b"SIP/2.0 403 Forbidden\r\n", 0.03, None, "rejected", 403, False
    ),
    FsCase("confirm: answered unbridged", None, 0.0, None, "unknown", None, True),
]


async def _next_request(uac: RawUac, method: str, timeout: float) -> SipRequest:
    while True:
        req = await uac.recv_request(timeout)
        if req.method == method:
            return req


@pytest.mark.parametrize("case", FS_CASES, ids=lambda c: c.name)
async def test_agent_transfer_against_freeswitch_standin(case: FsCase, make_ua: Any) -> None:
    outcomes: asyncio.Queue[tuple[TransferOutcome, bool]] = asyncio.Queue()

    async def handler(call: Any) -> None:
        outcome = await call.transfer("sip:1000@127.0.0.1", timeout=0.6)
        await outcomes.put((outcome, call.ended))
        await asyncio.wait_for(call.wait_ended(), 3)

    ua = await make_ua(handler=handler)
    t = Transferer(ua, FAST)
    t.install(ua)
    assert ua.transferer is t
    rtp = await RtpPeer.open()
    fs = RawUac(ua.port)
    try:
        fs.send(fs.request("INVITE", body=sdp(rtp.port)))
        ok = await fs.recv_response()
        assert ok.status == 200
        agent_tag = ok.to.tag
        agent_contact = str(ok.contact[0].uri)
        fs.send(fs.ack(ok))
        refer = await _next_request(fs, "REFER", 2.0)
        loop = asyncio.get_running_loop()
        t_refer = loop.time()
        assert refer.refer_to is not None and str(refer.refer_to.uri) == "sip:1000@127.0.0.1"
        await asyncio.sleep(0.02)
        accepted = make_response(refer, 202, headers=[("Expires", "60")])
        fs.sock.sendto(bytes(accepted), ("127.0.0.1", refer.via.port or 5060))
        fs.cseq = 2

        async def later(at: float) -> None:
            await asyncio.sleep(max(0.0, t_refer + at - loop.time()))

        if case.notify is not None:
            await later(case.notify_at)
            fs.send(
                fs.request(
                    "NOTIFY",
                    uri=agent_contact,
                    to_tag=agent_tag,
                    body=case.notify,
                    content_type="message/sipfrag;version=2.0",
                    extra=[
                        f"Event: refer;id={refer.cseq.seq}",
                        "Subscription-State: terminated;reason=noresource",
                    ],
                )
            )
            fs.cseq += 1
            resp = await fs.recv_response()
            assert resp.status == 200 and resp.cseq.method == "NOTIFY"
        if case.bye_at is not None:
            await later(case.bye_at)
            fs.send(fs.request("BYE", uri=agent_contact, to_tag=agent_tag, content_type=None))
            assert (await fs.recv_response()).status == 200
        outcome, ended = await asyncio.wait_for(outcomes.get(), 3)
        assert outcome.status == case.status, outcome
        assert outcome.code == case.code
        if case.agent_hangs_up:
            bye = await _next_request(fs, "BYE", 2.0)
            fs.sock.sendto(bytes(make_response(bye, 200)), ("127.0.0.1", ua.port))
        elif case.bye_at is None:
            # the caller is back with the agent: the call goes on until FreeSWITCH hangs up
            assert not ended
            with pytest.raises(TimeoutError):
                await _next_request(fs, "BYE", 0.3)
            fs.send(fs.request("BYE", uri=agent_contact, to_tag=agent_tag, content_type=None))
            assert (await fs.recv_response()).status == 200
    finally:
        fs.close()
        rtp.close()


# ----------------------------------------------------------------- both directions, three user agents
# A calls B; A transfers B to C with REFER; B (a w3sipagent too) follows it with
# dial_attempt and reports the NOTIFY sipfrags that A's Transferer turns into the outcome.


@pytest.mark.parametrize(
    ("policy", "target_answer", "status", "code", "notes"),
    [
        ("allow", None, "succeeded", 200, (100, 200)),
        ("allow", 486, "busy", 486, (100, 486)),
        ("allow", 404, "failed", 404, (100, 404)),
        ("forbid", None, "rejected", 603, ()),
    ],
)
async def test_refer_between_user_agents(
    make_ua: Any,
    policy: str,
    target_answer: int | None,
    status: str,
    code: int,
    notes: tuple[int, ...],
) -> None:
    from w3sipagent.asyncio.refer import dial_attempt, forbid_all
    from w3sipagent.asyncio.useragent import Accept, Reject

    c_calls: list[Any] = []

    async def c_handler(call: Any) -> None:
        c_calls.append(call)
        await asyncio.wait_for(call.wait_ended(), 3)

    def c_admission(req: Any) -> Accept | Reject:
        return Reject(target_answer) if target_answer else Accept()

    b_transferred: list[Any] = []

    async def b_on_call(call: Any) -> None:
        b_transferred.append(call)
        await asyncio.sleep(0.2)

    async def b_handler(call: Any) -> None:
        await asyncio.wait_for(call.wait_ended(), 3)

    ua_c = await make_ua(handler=c_handler, admission=c_admission)
    ua_b = await make_ua(handler=b_handler)
    ua_a = await make_ua()
    tb = Transferer(
        ua_b,
        FAST,
        policy=allow_all if policy == "allow" else forbid_all,
        attempt=dial_attempt(ua_b, b_on_call, timeout=2),
    )
    tb.install(ua_b)
    Transferer(ua_a, FAST).install(ua_a)
    call = await ua_a.dial(f"sip:b@127.0.0.1:{ua_b.port}")
    outcome = await call.transfer(f"sip:c@127.0.0.1:{ua_c.port}", timeout=2)
    assert outcome.status == status, outcome
    assert outcome.code == code
    assert outcome.notifications == notes
    if status == "succeeded":
        end = await asyncio.wait_for(call.wait_ended(), 2)
        assert end.reason == "transferred" and end.by == "local"
        assert len(b_transferred) == 1 and len(c_calls) == 1
        assert c_calls[0].info.call_id == b_transferred[0].info.call_id
    else:
        assert not call.ended  # the transferee is still with us
        assert c_calls == [] and b_transferred == []
        await call.hangup()
    await tb.aclose()
