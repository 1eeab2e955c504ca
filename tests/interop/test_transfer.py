"""Blind transfer with a real transferee: baresip calls the agent, the agent REFERs it.

baresip 1.0 as transferee answers the REFER 202, sends NOTIFY ``SIP/2.0 100 Trying``, calls
the Refer-To target and reports its final status in a NOTIFY. The agent's
:class:`~w3sipagent.asyncio.refer.Transferer` must turn that into the right outcome:

- the target (a second baresip, auto-answer) answers -> ``succeeded``; the agent hangs up;
- the target rejects the call (baresip's ``hangup`` on an incoming call: 486 Rejected)
  -> ``busy`` 486; the caller stays with the agent;
- the target does not exist (nothing listens) -> baresip's INVITE runs into its own
  timeout long after ours -> ``timed_out`` and the agent hangs up.

Measured with baresip 1.0.0: NOTIFYs (100, 200), (100, 486 "Rejected") and (100) then
nothing; each one ``Subscription-State: active`` until the final one.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.interop.conftest import BaresipFactory, free_port
from tests.interop.test_baresip import agent_config
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import TransferOutcome
from w3sipagent.asyncio.refer import TransferConfig, Transferer
from w3sipagent.asyncio.useragent import UserAgent


async def transfer_from_baresip(
    baresip: BaresipFactory, target: str, timeout: float
) -> tuple[TransferOutcome, Call, UserAgent, list[str], bool]:
    """baresip calls the agent; the handler transfers the call to ``target``.

    Returns the outcome, the call, the agent, the caller's event types and whether the
    call had ended when the outcome was known.
    """
    outcomes: asyncio.Queue[tuple[TransferOutcome, Call, bool]] = asyncio.Queue()
    established = asyncio.Event()  # baresip says the call is up: it will take a REFER

    async def handler(call: Call) -> None:
        await established.wait()
        outcome = await call.transfer(target, timeout=timeout)
        await outcomes.put((outcome, call, call.ended))
        await call.wait_ended()  # a caller back with us stays until the test closes the agent

    ua = UserAgent(agent_config(), handler=handler)
    await ua.start()
    transferer = Transferer(ua, TransferConfig(default_timeout=timeout))
    transferer.install(ua)
    caller = await baresip("baresip-caller", codecs="PCMU/8000/1")
    await caller.ctrl.command("dial", f"sip:support@127.0.0.1:{ua.port}")
    await caller.ctrl.wait_event("CALL_ESTABLISHED", 5)
    established.set()
    try:
        outcome, call, ended = await asyncio.wait_for(outcomes.get(), timeout + 5)
    except TimeoutError:
        await ua.close(timeout=0)
        raise
    return outcome, call, ua, caller.ctrl.types(), ended


async def test_transfer_to_answering_baresip_succeeds(
    baresip: BaresipFactory, interop_log: list[str]
) -> None:
    target = await baresip("baresip-answer")
    outcome, call, ua, events, _ = await transfer_from_baresip(baresip, target.uri, 6.0)
    try:
        interop_log.append(f"answering target: {outcome} caller events {events}")
        assert outcome.status == "succeeded", outcome
        assert outcome.code == 200
        assert outcome.notifications[-1] == 200
        end = await asyncio.wait_for(call.wait_ended(), 3)
        assert end.reason in ("transferred", "remote_bye")
        await target.ctrl.wait_event("CALL_ESTABLISHED", 3)  # the caller reached the target
    finally:
        await ua.close(timeout=0)


async def test_transfer_to_rejecting_baresip(
    baresip: BaresipFactory, interop_log: list[str]
) -> None:
    target = await baresip("baresip-answer", answermode="manual")

    async def reject_incoming() -> None:
        await target.ctrl.wait_event("CALL_INCOMING", 8)
        await target.ctrl.command("hangup")

    rejecter = asyncio.ensure_future(reject_incoming())
    outcome, _call, ua, events, ended_at_outcome = await transfer_from_baresip(
        baresip, target.uri, 6.0
    )
    try:
        await rejecter
        interop_log.append(f"rejecting target: {outcome} caller events {events}")
        assert outcome.status == "busy", outcome
        assert outcome.code == 486
        assert outcome.notifications == (100, 486)
        assert not ended_at_outcome  # the caller is back with the agent
    finally:
        await ua.close(timeout=0)


async def test_transfer_to_unreachable_target_times_out(
    baresip: BaresipFactory, interop_log: list[str]
) -> None:
    nowhere = f"sip:nobody@127.0.0.1:{free_port()}"  # nothing listens there
    outcome, call, ua, events, _ = await transfer_from_baresip(baresip, nowhere, 2.5)
    try:
        interop_log.append(f"unreachable target: {outcome} caller events {events}")
        # baresip keeps sending the caller's RTP to us: the caller is still with us, so
        # the outcome is timed_out and our leg stays up
        assert outcome.status == "timed_out", outcome
        assert outcome.notifications == (100,)
        assert not call.ended
        await call.hangup()
        end = await asyncio.wait_for(call.wait_ended(), 3)
        assert end.reason == "local_hangup" and end.by == "local"
    finally:
        await ua.close(timeout=0)


pytestmark = pytest.mark.interop
