"""The user agent answering and ending calls: raw-socket UAC, exact fields on the wire."""

from __future__ import annotations

import asyncio

from tests.asyncio.conftest import UaFactory
from tests.asyncio.helpers import RawUac, RtpPeer, payload_rms_pcmu, sdp, tone_pcmu
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import CallEnded
from w3sipagent.sdp import SessionDescription
from w3sipagent.sip.message import SipRequest


async def _idle(call: Call) -> None:
    await call.wait_ended()


async def test_invite_answered_with_sdp_then_bye_from_caller(make_ua: UaFactory) -> None:
    calls: list[Call] = []

    async def handler(call: Call) -> None:
        calls.append(call)
        await call.wait_ended()

    ua = await make_ua(handler=handler)
    uac = RawUac(ua.port)
    rtp = await RtpPeer.open()
    try:
        uac.send(uac.request("INVITE", body=sdp(rtp.port)))
        trying = await uac.recv()
        assert getattr(trying, "status", None) == 100
        ok = await uac.recv_response()
        assert ok.status == 200
        assert ok.to.tag
        assert ok.content_type == "application/sdp"
        answer = SessionDescription.parse(ok.body)
        m = answer.media[0]
        assert m.codecs[0].encoding == "PCMU" and m.codecs[0].payload_type == 0
        assert any(c.encoding == "telephone-event" for c in m.codecs)
        assert answer.connection is not None and answer.connection.address == "127.0.0.1"
        assert ua.config.rtp_port_min <= m.port <= ua.config.rtp_port_max
        assert m.direction == "sendrecv"
        contact = ok.contact[0].sip_uri
        assert (contact.host, contact.port) == ("127.0.0.1", ua.port)
        assert "INVITE" in ok.allow and "BYE" in ok.allow
        uac.send(uac.ack(ok))
        for _ in range(50):
            if calls:
                break
            await asyncio.sleep(0.01)
        assert calls and calls[0].info.direction == "inbound"
        assert calls[0].info.from_display == "Alice"
        assert calls[0].info.source == ("127.0.0.1", uac.port)
        # our RTP arrives at the address of the offer (silence payloads, continuous)
        await asyncio.wait_for(rtp.got.wait(), 2)
        uac.cseq = 2
        uac.send(uac.request("BYE", to_tag=ok.to.tag, body=b""))
        bye_ok = await uac.recv_response()
        assert (bye_ok.status, bye_ok.cseq.method) == (200, "BYE")
        end = await asyncio.wait_for(calls[0].wait_ended(), 2)
        assert (end.reason, end.by) == ("remote_bye", "remote")
        assert ua.calls == []
        assert ua.ports.in_use == 0
    finally:
        uac.close()
        rtp.close()


async def test_handler_hangup_sends_bye(make_ua: UaFactory) -> None:
    async def handler(call: Call) -> None:
        await asyncio.sleep(0.05)
        await call.hangup()

    ua = await make_ua(handler=handler)
    uac = RawUac(ua.port)
    try:
        uac.send(uac.request("INVITE", body=sdp(40000)))
        ok = await uac.recv_response()
        uac.send(uac.ack(ok))
        bye = await uac.recv_request()
        assert bye.method == "BYE"
        assert bye.to.tag == uac.from_tag and bye.from_.tag == ok.to.tag
        assert bye.uri == f"sip:alice@127.0.0.1:{uac.port}"
        # answer it
        resp = (
            f"SIP/2.0 200 OK\r\nVia: {bye.headers.get('Via')}\r\nFrom: {bye.headers.get('From')}\r\n"
            f"To: {bye.headers.get('To')}\r\nCall-ID: {bye.call_id}\r\nCSeq: {bye.headers.get('CSeq')}\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        uac.send(resp)
        await asyncio.sleep(0.05)
        assert ua.calls == [] and ua.ports.in_use == 0
    finally:
        uac.close()


async def test_lost_ack_retransmits_200_then_bye(make_ua: UaFactory) -> None:
    ended: list[CallEnded] = []
    ua = await make_ua(handler=_idle, ack_wait=0.3)
    uac = RawUac(ua.port)
    try:
        uac.send(uac.request("INVITE", body=sdp(40002)))
        first = await uac.recv_response()
        assert first.status == 200
        retransmissions = 0
        while True:
            msg = await uac.recv(timeout=2)
            if isinstance(msg, SipRequest):
                assert msg.method == "BYE"
                break
            assert msg.status == 200 and msg.to.tag == first.to.tag
            retransmissions += 1
        assert retransmissions >= 2
        await asyncio.sleep(0.02)
        assert ua.calls == [] and ua.ports.in_use == 0
        del ended
    finally:
        uac.close()


async def test_offerless_invite_offer_in_200_answer_in_ack(make_ua: UaFactory) -> None:
    calls: list[Call] = []

    async def handler(call: Call) -> None:
        calls.append(call)
        await call.wait_ended()

    ua = await make_ua(handler=handler)
    uac = RawUac(ua.port)
    rtp = await RtpPeer.open()
    try:
        uac.send(uac.request("INVITE"))
        ok = await uac.recv_response()
        assert ok.status == 200
        offer = SessionDescription.parse(ok.body)
        names = [c.encoding for c in offer.media[0].codecs]
        assert names[:2] == ["PCMU", "PCMA"] and "telephone-event" in names
        uac.send(uac.ack(ok, body=sdp(rtp.port, pts=(8, 101))))
        await asyncio.wait_for(rtp.got.wait(), 2)
        for _ in range(50):
            if calls:
                break
            await asyncio.sleep(0.01)
        assert calls[0].media.encoding == "PCMA"
        assert rtp.packets[-1][1] & 0x7F == 8
    finally:
        uac.close()
        rtp.close()


async def test_cancel_before_answer_gives_487(make_ua: UaFactory) -> None:
    gate = asyncio.Event()

    async def admission(req: object) -> object:
        from w3sipagent.asyncio.useragent import Accept

        await gate.wait()
        return Accept()

    ua = await make_ua(handler=_idle, admission=admission)
    uac = RawUac(ua.port)
    try:
        invite = uac.request("INVITE", body=sdp(40004), branch="z9hG4bKcancelme")
        uac.send(invite)
        assert (await uac.recv()).status == 100  # type: ignore[union-attr]
        cancel = invite.decode().split("\r\n\r\n")[0]
        cancel = cancel.replace("INVITE sip:", "CANCEL sip:", 1).replace("1 INVITE", "1 CANCEL")
        cancel = "\r\n".join(
            ln for ln in cancel.split("\r\n") if not ln.startswith(("Content-", "Contact"))
        )
        uac.send(cancel + "\r\nContent-Length: 0\r\n\r\n")
        got = {}
        for _ in range(2):
            r = await uac.recv_response()
            got[r.cseq.method] = r.status
        assert got == {"CANCEL": 200, "INVITE": 487}
        gate.set()
        await asyncio.sleep(0.05)
        assert ua.calls == [] and ua.ports.in_use == 0
    finally:
        uac.close()


async def test_unknown_dialog_gets_481(make_ua: UaFactory) -> None:
    ua = await make_ua(handler=_idle)
    uac = RawUac(ua.port)
    try:
        for method in ("BYE", "INFO", "INVITE"):
            uac.send(uac.request(method, to_tag="nosuchtag", body=b""))
            r = await uac.recv_response()
            assert (r.status, r.cseq.method) == (481, method)
    finally:
        uac.close()


async def test_echo_handler_returns_callers_audio(make_ua: UaFactory) -> None:
    async def echo(call: Call) -> None:
        async for pcm in call.audio():
            call.send_audio(pcm)

    ua = await make_ua(handler=echo)
    uac = RawUac(ua.port)
    rtp = await RtpPeer.open()
    try:
        uac.send(uac.request("INVITE", body=sdp(rtp.port, pts=(0, 101))))
        ok = await uac.recv_response()
        uac.send(uac.ack(ok))
        port = SessionDescription.parse(ok.body).media[0].port
        frames = tone_pcmu(40)
        for i, frame in enumerate(frames):
            rtp.send_rtp(("127.0.0.1", port), frame, 100 + i)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        payloads = [p[12:] for p in rtp.packets if p[1] & 0x7F == 0]
        sent_rms = payload_rms_pcmu(frames)
        echoed = [p for p in payloads if payload_rms_pcmu([p]) > 0.3 * sent_rms]
        assert len(echoed) >= 30, f"{len(echoed)} loud frames of {len(payloads)}"
        assert payload_rms_pcmu(echoed) > 0.8 * sent_rms
    finally:
        uac.close()
        rtp.close()


async def test_who_hung_up_is_explicit_local_system_remote(make_ua: UaFactory) -> None:
    """CallEnded.by says who ended the call: the application (``hangup()``: local, whatever
    the reason), the user agent (a failed handler, shutdown: system), the peer (remote)."""
    modes = ["wait", "raise", "wait"]
    started: asyncio.Queue[Call] = asyncio.Queue()

    async def handler(call: Call) -> None:
        mode = modes.pop(0)
        started.put_nowait(call)
        if mode == "raise":
            raise RuntimeError("handler bug")
        await call.wait_ended()

    server = await make_ua(handler=handler)
    client = await make_ua()
    target = f"sip:a@127.0.0.1:{server.port}"

    first = await client.dial(target)
    theirs = await asyncio.wait_for(started.get(), 2)
    await first.hangup("error")  # the application's own reason: still the application
    assert first.end is not None and (first.end.reason, first.end.by) == ("error", "local")
    end = await asyncio.wait_for(theirs.wait_ended(), 2)
    assert (end.reason, end.by) == ("remote_bye", "remote")

    second = await client.dial(target)  # the handler raises: the user agent ends the call
    theirs = await asyncio.wait_for(started.get(), 2)
    end = await asyncio.wait_for(theirs.wait_ended(), 2)
    assert (end.reason, end.by) == ("error", "system")
    end = await asyncio.wait_for(second.wait_ended(), 2)
    assert (end.reason, end.by) == ("remote_bye", "remote")

    third = await client.dial(target)
    theirs = await asyncio.wait_for(started.get(), 2)
    await server.close(timeout=0)
    assert theirs.end is not None and (theirs.end.reason, theirs.end.by) == ("shutdown", "system")
    end = await asyncio.wait_for(third.wait_ended(), 2)
    assert (end.reason, end.by) == ("remote_bye", "remote")
