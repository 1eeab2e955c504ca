"""The user agent under hostile and faulty peers (issue 12): limits hold under a burst of
INVITEs (the place is held from the INVITE on), every admitted INVITE whose handler never
ran is reported once to ``unhandled``, refusals before the admission go to ``refused``,
a client transaction that times out after its waiter left logs nothing at ERROR.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket

import pytest

from tests.asyncio.conftest import UaFactory
from tests.asyncio.helpers import RawUac, RtpPeer, sdp
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import CallEnded
from w3sipagent.asyncio.useragent import Accept, AdmissionRequest
from w3sipagent.sip.headers import Headers
from w3sipagent.sip.message import SipRequest, SipResponse


async def _final(uac: RawUac, body: bytes) -> SipResponse:
    uac.send(uac.request("INVITE", body=body))
    while True:
        r = await uac.recv_response(timeout=5)
        if r.status >= 200:
            return r


async def _burst(port: int, n: int) -> list[int]:
    rtp = await RtpPeer.open()
    uacs = [RawUac(port) for _ in range(n)]
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_final(u, sdp(rtp.port))) for u in uacs]
    finally:
        rtp.close()
        for u in uacs:
            u.close()
    return [t.result().status for t in tasks]


async def _slow_admission(req: AdmissionRequest) -> Accept:
    await asyncio.sleep(0.01)  # an admission that awaits (a database, a key file)
    return Accept(limit_key="tenant:acme", limit=3)


async def test_a_burst_never_over_admits_a_limit_key(make_ua: UaFactory) -> None:
    server = await make_ua(handler=lambda call: call.wait_ended(), admission=_slow_admission)
    statuses = await _burst(server.port, 20)
    assert statuses.count(200) == 3, sorted(statuses)
    assert statuses.count(486) == 17


async def test_a_burst_never_over_admits_max_calls(make_ua: UaFactory) -> None:
    refused: list[tuple[int, str]] = []

    async def admission(req: AdmissionRequest) -> Accept:
        await asyncio.sleep(0.01)
        return Accept()

    server = await make_ua(handler=lambda call: call.wait_ended(), admission=admission, max_calls=3)
    server.refused = lambda source, status, reason: refused.append((status, reason))
    statuses = await _burst(server.port, 20)
    assert statuses.count(200) == 3, sorted(statuses)
    assert statuses.count(503) == 17
    assert refused == [(503, "over capacity (max_calls)")] * 17


async def test_unhandled_hears_once_of_each_admitted_invite_whose_handler_never_ran(
    make_ua: UaFactory,
) -> None:
    heard: list[tuple[object, Call | None, CallEnded]] = []
    handled: list[str] = []

    async def handler(call: Call) -> None:
        handled.append(call.call_id)
        await call.wait_ended()

    def admission(req: AdmissionRequest) -> Accept:
        return Accept(context=req.request.call_id, limit_key="k", limit=1)

    server = await make_ua(handler=handler, admission=admission, ack_wait=0.3)
    server.unhandled = lambda ctx, call, end: heard.append((ctx, call, end))
    never_acked, refused, acked = RawUac(server.port), RawUac(server.port), RawUac(server.port)
    rtp = await RtpPeer.open()
    try:
        ok = await _final(never_acked, sdp(rtp.port))
        assert ok.status == 200
        busy = await _final(refused, sdp(rtp.port))  # the limit key is held by the first
        assert busy.status == 486
        end = await asyncio.wait_for(_ended_call(server, never_acked.call_id), 5)
        assert end.reason == "ack_timeout"
        ok = await _final(acked, sdp(rtp.port))  # the key is free again
        acked.send(acked.ack(ok))
        await asyncio.wait_for(_handled(handled, acked.call_id), 5)
        acked.cseq = 2
        acked.send(acked.request("BYE", body=b"", to_tag=ok.to.tag))
        await asyncio.wait_for(_no_calls(server), 5)
    finally:
        for u in (never_acked, refused, acked):
            u.close()
        rtp.close()
    got = {ctx: (call is not None, end.reason, end.sip_code) for ctx, call, end in heard}
    assert got == {
        never_acked.call_id: (True, "ack_timeout", 408),
        refused.call_id: (False, "call_limit", 486),
    }
    assert len(heard) == 2 and handled == [acked.call_id]


async def _ended_call(server: object, call_id: str) -> CallEnded:
    calls: list[Call] = [c for c in server.calls if c.call_id == call_id]  # type: ignore[attr-defined]
    return await calls[0].wait_ended()


async def _handled(handled: list[str], call_id: str) -> None:
    while call_id not in handled:
        await asyncio.sleep(0.01)


async def _no_calls(server: object) -> None:
    while server.calls or server.ports.in_use:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)


async def test_a_request_timing_out_after_its_waiter_left_logs_no_error(
    make_ua: UaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Timer F fires after the task awaiting the response was cancelled: the exception is
    retrieved, no "Future exception was never retrieved" at ERROR."""
    ua = await make_ua()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        h = Headers()
        h.add("From", "<sip:probe@127.0.0.1>;tag=p1")
        h.add("To", "<sip:nobody@127.0.0.1>")
        h.add("Call-ID", "timer-f-probe")
        h.add("CSeq", "1 OPTIONS")
        port = silent.getsockname()[1]
        request = SipRequest("OPTIONS", f"sip:nobody@127.0.0.1:{port}", h)
        task = asyncio.create_task(
            ua.request(request, ("127.0.0.1", port), timeout=5.0)  # longer than timer F
        )
        await asyncio.sleep(0.05)
        task.cancel()  # the waiter leaves; the transaction goes on to timer F (1.28 s)
        with pytest.raises(asyncio.CancelledError):
            await task
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            await asyncio.sleep(64 * 0.02 + 0.4)
            gc.collect()
            await asyncio.sleep(0)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not any("never retrieved" in m for m in errors), errors
    finally:
        silent.close()
