"""Two user agents on loopback: UserAgent.dial as the UAC, the other answering."""

from __future__ import annotations

import asyncio

import pytest

from tests.asyncio.conftest import UaFactory
from tests.asyncio.helpers import pcm_rms
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import DtmfReceived, HoldChanged, MediaChanged
from w3sipagent.asyncio.useragent import (
    Accept,
    AdmissionRequest,
    CallRejected,
    DialTimeout,
    Reject,
)
from w3sipagent.codecs import get_codec


def _tone(rate: int, ms: int, freq: float = 500.0, amp: float = 6000.0) -> bytes:
    import numpy as np

    t = np.arange(rate * ms // 1000) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


async def _wait_for(pred: object, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def test_dial_echo_audio_and_bye_from_caller(make_ua: UaFactory) -> None:
    async def echo(call: Call) -> None:
        async for pcm in call.audio():
            call.send_audio(pcm)

    server = await make_ua(handler=echo)
    client = await make_ua()
    call = await client.dial(f"sip:echo@127.0.0.1:{server.port}")
    assert call.info.direction == "outbound" and call.media.encoding == "PCMU"
    heard: list[bytes] = []

    async def listen() -> None:
        async for pcm in call.audio():
            heard.append(pcm)

    listener = asyncio.create_task(listen())
    await call.play(_tone(8000, 800))
    await asyncio.sleep(0.15)
    loud = [f for f in heard if pcm_rms(f) > 1500]
    assert len(loud) >= 30, f"{len(loud)} loud frames of {len(heard)}"
    assert 3000 < pcm_rms(b"".join(loud)) < 5000  # 6000 peak sine: rms ~4243
    await call.hangup()
    assert call.end is not None and call.end.reason == "local_hangup"
    await asyncio.wait_for(listener, 1)
    await _wait_for(lambda: server.calls == [] and server.ports.in_use == 0)
    assert client.ports.in_use == 0


async def test_bye_from_callee_ends_caller(make_ua: UaFactory) -> None:
    async def short(call: Call) -> None:
        await asyncio.sleep(0.05)

    server = await make_ua(handler=short)
    client = await make_ua()
    call = await client.dial(f"sip:x@127.0.0.1:{server.port}")
    end = await asyncio.wait_for(call.wait_ended(), 2)
    assert (end.reason, end.by) == ("remote_bye", "remote")
    assert client.ports.in_use == 0


@pytest.mark.parametrize(
    ("decision", "code"),
    [
        (Reject(404, "Unknown tenant"), 404),
        (Reject(403), 403),
        (Reject(486), 486),
        (Reject(503, headers=(("Retry-After", "30"),)), 503),
    ],
)
async def test_admission_rejections(make_ua: UaFactory, decision: Reject, code: int) -> None:
    seen: list[AdmissionRequest] = []

    def admission(req: AdmissionRequest) -> Reject:
        seen.append(req)
        return decision

    server = await make_ua(handler=lambda call: call.wait_ended(), admission=admission)
    client = await make_ua()
    with pytest.raises(CallRejected) as info:
        await client.dial("sip:support@acme.example", proxy=("127.0.0.1", server.port))
    assert info.value.status == code
    assert seen[0].host == "acme.example" and seen[0].user == "support"
    assert seen[0].source[0] == "127.0.0.1"
    if code == 503:
        assert info.value.response.headers.get("Retry-After") == "30"
    assert server.ports.in_use == 0 and client.ports.in_use == 0


async def test_tenant_limit_486_and_global_capacity_503(make_ua: UaFactory) -> None:
    server = await make_ua(
        handler=lambda call: call.wait_ended(),
        admission=lambda req: Accept(context="acme", limit_key="acme", limit=1),
        max_calls=2,
        retry_after=7,
    )
    client = await make_ua()
    first = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert server.calls[0].context == "acme"
    with pytest.raises(CallRejected) as busy:
        await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert busy.value.status == 486
    await first.hangup()
    await _wait_for(lambda: not server.calls)
    # global capacity: two other admitted calls fill it
    server.admission = None
    c1 = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    c2 = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    with pytest.raises(CallRejected) as full:
        await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert full.value.status == 503
    assert full.value.response.headers.get("Retry-After") == "7"
    await c1.hangup()
    await c2.hangup()


async def test_source_not_in_allowlist_403(make_ua: UaFactory) -> None:
    server = await make_ua(handler=lambda call: call.wait_ended(), allowed_sources=("10.0.0.0/8",))
    client = await make_ua()
    with pytest.raises(CallRejected) as info:
        await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert info.value.status == 403


async def test_ports_exhausted_503(make_ua: UaFactory) -> None:
    server = await make_ua(
        handler=lambda call: call.wait_ended(), rtp_port_min=31400, rtp_port_max=31401
    )
    client = await make_ua()
    first = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    with pytest.raises(CallRejected) as info:
        await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert info.value.status == 503 and info.value.response.headers.get("Retry-After")
    await first.hangup()


async def test_dial_timeout_cancels(make_ua: UaFactory) -> None:
    gate = asyncio.Event()
    admitting = asyncio.Event()

    async def slow(req: AdmissionRequest) -> Accept:
        admitting.set()
        await gate.wait()
        return Accept()

    server = await make_ua(handler=lambda call: call.wait_ended(), admission=slow)
    client = await make_ua()
    with pytest.raises(DialTimeout):
        await client.dial(f"sip:a@127.0.0.1:{server.port}", timeout=0.3)
    gate.set()
    await asyncio.sleep(0.1)
    assert server.calls == [] and client.calls == []
    assert server.ports.in_use == 0 and client.ports.in_use == 0


async def test_digest_auth_on_401(make_ua: UaFactory) -> None:
    from w3sipagent.ids import SecureIdSource
    from w3sipagent.sip.auth import DigestServer

    digest = DigestServer(secret=b"s" * 32, ids=SecureIdSource())
    loop = asyncio.get_running_loop()

    def admission(req: AdmissionRequest) -> Accept | Reject:
        value = req.header("Authorization")
        if value is None:
            return Reject(
                401,
                headers=tuple(
                    ("WWW-Authenticate", v) for v in digest.challenges("acme", now=loop.time())
                ),
            )
        result = digest.verify(
            value,
            method="INVITE",
            realm="acme",
            now=loop.time(),
            lookup_password=lambda u, r: "pw" if u == "bob" else None,
        )
        return Accept() if result.ok else Reject(403)

    server = await make_ua(handler=lambda call: call.wait_ended(), admission=admission)
    client = await make_ua()
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}", credentials=("bob", "pw"))
    assert call.state == "active"
    await call.hangup()
    with pytest.raises(CallRejected) as info:
        await client.dial(f"sip:a@127.0.0.1:{server.port}", credentials=("bob", "wrong"))
    assert info.value.status in (401, 403)


async def test_hold_unhold_and_codec_change_by_reinvite(make_ua: UaFactory) -> None:
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        await call.wait_ended()

    server = await make_ua(handler=handler)
    client = await make_ua()
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}", codecs=["PCMU/8000", "PCMA/8000"])
    await _wait_for(lambda: answered)
    callee = answered[0]
    events: list[object] = []

    async def collect() -> None:
        async for ev in callee.events():
            events.append(ev)

    collector = asyncio.create_task(collect())
    from w3sipagent.sdp import SessionDescription, assign_version, create_offer

    assert isinstance(call.local_sdp, SessionDescription) and call.endpoint is not None
    port = call.endpoint.local_port
    base = call.local_sdp
    hold = assign_version(
        create_offer(
            ["PCMU/8000"],
            local_address="127.0.0.1",
            port=port,
            session_id=1,
            session_version=1,
            direction="sendonly",
        ),
        base,
    )
    r = await client.request_in_dialog(
        call, "INVITE", body=bytes(hold), content_type="application/sdp"
    )
    assert r.status == 200
    assert SessionDescription.parse(r.body).media[0].direction == "recvonly"
    await _wait_for(lambda: callee.on_hold)
    unhold = assign_version(
        create_offer(
            ["PCMA/8000"], local_address="127.0.0.1", port=port, session_id=1, session_version=1
        ),
        hold,
    )
    r = await client.request_in_dialog(
        call, "INVITE", body=bytes(unhold), content_type="application/sdp"
    )
    assert r.status == 200
    answer = SessionDescription.parse(r.body)
    assert answer.media[0].codecs[0].encoding == "PCMA"
    assert isinstance(callee.local_sdp, SessionDescription)
    assert answer.origin.sess_version == callee.local_sdp.origin.sess_version
    await _wait_for(lambda: not callee.on_hold and callee.media.encoding == "PCMA")
    assert callee.endpoint is not None and callee.endpoint.session.payload_type == 8
    await call.hangup()
    await asyncio.wait_for(collector, 2)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:2] == ["HoldChanged", "HoldChanged"] or "HoldChanged" in kinds
    holds = [e.on_hold for e in events if isinstance(e, HoldChanged)]
    assert holds == [True, False]
    changes = [e for e in events if isinstance(e, MediaChanged)]
    assert changes and changes[-1].media.encoding == "PCMA"
    assert kinds[-1] == "CallEnded"


async def test_info_dtmf_and_rfc4733_dtmf(make_ua: UaFactory) -> None:
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        await call.wait_ended()

    server = await make_ua(handler=handler)
    client = await make_ua()
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    await _wait_for(lambda: answered)
    callee = answered[0]
    r = await client.request_in_dialog(
        call, "INFO", body=b"Signal=5\r\nDuration=160\r\n", content_type="application/dtmf-relay"
    )
    assert r.status == 200
    await call.send_dtmf("7")
    got: list[DtmfReceived] = []

    async def collect() -> None:
        async for ev in callee.events():
            if isinstance(ev, DtmfReceived):
                got.append(ev)
                if len(got) == 2:
                    return

    await asyncio.wait_for(collect(), 3)
    assert (got[0].digit, got[0].duration_ms, got[0].via) == ("5", 160, "info")
    assert (got[1].digit, got[1].via) == ("7", "rfc4733")
    await call.hangup()


async def test_handler_exception_hangs_up_and_releases_ports(make_ua: UaFactory) -> None:
    async def broken(call: Call) -> None:
        raise RuntimeError("boom")

    server = await make_ua(handler=broken)
    client = await make_ua()
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    end = await asyncio.wait_for(call.wait_ended(), 2)
    assert end.reason == "remote_bye"
    await _wait_for(lambda: server.calls == [] and server.ports.in_use == 0)
    # the agent still takes calls
    call2 = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    await asyncio.wait_for(call2.wait_ended(), 2)
    await _wait_for(lambda: server.ports.in_use == 0)
    assert server.ports.in_use == 0 and client.ports.in_use == 0


async def test_options_200_then_503_while_draining(make_ua: UaFactory) -> None:
    from w3sipagent.sip.headers import Headers
    from w3sipagent.sip.message import SipRequest

    server = await make_ua(handler=lambda call: call.wait_ended())
    client = await make_ua()

    def options(n: int) -> SipRequest:
        h = Headers()
        h.add("From", f"<sip:probe@127.0.0.1>;tag=p{n}")
        h.add("To", "<sip:agent@127.0.0.1>")
        h.add("Call-ID", f"options-{n}-{id(h)}")
        h.add("CSeq", "1 OPTIONS")
        return SipRequest("OPTIONS", f"sip:agent@127.0.0.1:{server.port}", h)

    r = await client.request(options(1), ("127.0.0.1", server.port))
    assert r.status == 200
    assert "INVITE" in r.allow and "OPTIONS" in r.allow
    assert "application/sdp" in (r.headers.get("Accept") or "")
    assert "timer" in r.supported
    server.drain()
    r = await client.request(options(2), ("127.0.0.1", server.port))
    assert r.status == 503 and r.headers.get("Retry-After")
    with pytest.raises(CallRejected) as info:
        await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert info.value.status == 503


async def test_shutdown_drains_then_byes(make_ua: UaFactory) -> None:
    async def forever(call: Call) -> None:
        await call.wait_ended()

    server = await make_ua(handler=forever)
    client = await make_ua()
    a = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    b = await client.dial(f"sip:b@127.0.0.1:{server.port}")

    async def end_a_soon() -> None:
        await asyncio.sleep(0.1)
        await a.hangup()

    t = asyncio.create_task(end_a_soon())
    loop = asyncio.get_running_loop()
    start = loop.time()
    await server.close(timeout=0.4)
    elapsed = loop.time() - start
    await t
    assert 0.35 < elapsed < 1.5
    end_b = await asyncio.wait_for(b.wait_ended(), 1)
    assert (end_b.reason, end_b.by) == ("remote_bye", "remote")
    assert a.end is not None and a.end.reason == "local_hangup"
    assert server.ports.in_use == 0


async def test_srtp_only_offer_488_with_warning(make_ua: UaFactory) -> None:
    from tests.asyncio.helpers import RawUac, sdp

    server = await make_ua(handler=lambda call: call.wait_ended())
    uac = RawUac(server.port)
    try:
        uac.send(uac.request("INVITE", body=sdp(40010, proto="RTP/SAVP")))
        r = await uac.recv_response()
        assert r.status == 488
        warning = r.headers.get("Warning") or ""
        assert warning.startswith("302 ") and "SRTP" in warning
        uac.call_id += "-1"
        uac.send(uac.request("INVITE", body=sdp(40010, pts=(9,)), branch="z9hG4bKg722only"))
        r = await uac.recv_response()
        # G.722 is in the default preference: accepted
        assert r.status == 200
        uac.send(uac.ack(r))
        uac.call_id += "-2"
        uac.send(uac.request("INVITE", body=sdp(40012, pts=(18,)), branch="z9hG4bKg729"))
        r = await uac.recv_response()
        assert r.status == 488 and (r.headers.get("Warning") or "").startswith("305 ")
    finally:
        uac.close()
    assert get_codec("PCMU", 8000).sample_rate == 8000


async def test_shutdown_while_admitting_answers_503(make_ua: UaFactory) -> None:
    gate = asyncio.Event()
    admitting = asyncio.Event()

    async def slow(req: AdmissionRequest) -> Accept:
        admitting.set()
        await gate.wait()
        return Accept()

    server = await make_ua(handler=lambda call: call.wait_ended(), admission=slow, retry_after=9)
    client = await make_ua()
    dial = asyncio.create_task(client.dial(f"sip:a@127.0.0.1:{server.port}", timeout=2))
    await asyncio.wait_for(admitting.wait(), 2)
    assert server.admitting == 1
    await server.close(timeout=0.1)
    with pytest.raises(CallRejected) as info:
        await dial
    assert info.value.status == 503
    assert info.value.response.headers.get("Retry-After") == "9"
    assert server.ports.in_use == 0 and client.ports.in_use == 0


async def test_admission_exception_gives_500_and_agent_keeps_serving(make_ua: UaFactory) -> None:
    fail = [True]

    def admission(req: AdmissionRequest) -> Accept:
        if fail[0]:
            raise RuntimeError("tenant store down")
        return Accept()

    server = await make_ua(handler=lambda call: call.wait_ended(), admission=admission)
    client = await make_ua()
    with pytest.raises(CallRejected) as info:
        await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert info.value.status == 500
    assert server.calls == [] and server.ports.in_use == 0
    fail[0] = False
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert call.state == "active"
    await call.hangup()
