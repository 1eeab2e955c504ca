"""Mid-call offers over the wire: re-INVITE and UPDATE hold / unhold / re-target / codec change
stop, restart and move the RTP we send; the advertised address; 180 / 183 early media."""

from __future__ import annotations

import asyncio

from tests.asyncio.conftest import UaFactory
from tests.asyncio.helpers import RawUac, RtpPeer, sdp
from w3sipagent.asyncio.call import Call
from w3sipagent.sdp import SessionDescription
from w3sipagent.sip.message import SipRequest, SipResponse, make_response


async def _idle(call: Call) -> None:
    await call.wait_ended()


async def _flowing(peer: RtpPeer, *, pt: int | None = None, window: float = 0.15) -> int:
    """RTP packets (of payload type ``pt``) that arrived at ``peer`` within ``window``."""
    peer.packets.clear()
    await asyncio.sleep(window)
    return sum(1 for p in peer.packets if pt is None or p[1] & 0x7F == pt)


async def _offer(
    uac: RawUac, method: str, to_tag: str, body: bytes, *, ack: bool = True
) -> SipResponse:
    uac.cseq += 1
    uac.send(uac.request(method, to_tag=to_tag, body=body))
    while True:
        r = await uac.recv_response()
        if r.cseq.method == method:
            break
    if method == "INVITE" and ack:
        uac.send(uac.request("ACK", to_tag=to_tag, cseq=uac.cseq))
    return r


async def test_hold_unhold_retarget_by_reinvite_and_update(make_ua: UaFactory) -> None:
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        await call.wait_ended()

    ua = await make_ua(handler=handler, codecs=("PCMU/8000", "PCMA/8000"))
    uac = RawUac(ua.port)
    first, second = await RtpPeer.open(), await RtpPeer.open()
    try:
        uac.send(uac.request("INVITE", body=sdp(first.port, pts=(0, 8, 101))))
        ok = await uac.recv_response()
        uac.send(uac.ack(ok))
        tag = ok.to.tag
        assert tag
        assert await _flowing(first, pt=0) >= 4
        # re-INVITE a=inactive: we answer inactive and stop sending
        r = await _offer(uac, "INVITE", tag, sdp(first.port, direction="inactive", version=2))
        assert r.status == 200
        assert SessionDescription.parse(r.body).media[0].direction == "inactive"
        await asyncio.sleep(0.05)
        assert await _flowing(first) == 0
        assert answered[0].on_hold
        # UPDATE: unhold to another port with PCMA only: media moves there and changes codec
        r = await _offer(uac, "UPDATE", tag, sdp(second.port, pts=(8, 101), version=3))
        assert r.status == 200
        answer = SessionDescription.parse(r.body)
        assert answer.media[0].direction == "sendrecv"
        assert answer.media[0].codecs[0].encoding == "PCMA"
        assert await _flowing(second, pt=8) >= 4
        assert await _flowing(first) == 0
        assert not answered[0].on_hold and answered[0].media.encoding == "PCMA"
        # UPDATE sendonly (the peer holds us): we answer recvonly and stop sending
        r = await _offer(
            uac, "UPDATE", tag, sdp(second.port, pts=(8,), direction="sendonly", version=4)
        )
        assert SessionDescription.parse(r.body).media[0].direction == "recvonly"
        await asyncio.sleep(0.05)
        assert await _flowing(second) == 0
        # re-INVITE sendrecv: sending restarts
        r = await _offer(uac, "INVITE", tag, sdp(second.port, pts=(8,), version=5))
        assert r.status == 200
        assert await _flowing(second, pt=8) >= 4
        # RFC 2543 hold, c=0.0.0.0: stop again
        r = await _offer(uac, "INVITE", tag, sdp(second.port, ip="0.0.0.0", pts=(8,), version=6))
        assert r.status == 200
        await asyncio.sleep(0.05)
        assert await _flowing(second) == 0 and answered[0].on_hold
        # a new address in a re-INVITE without hold re-targets back to the first socket
        r = await _offer(uac, "INVITE", tag, sdp(first.port, pts=(0, 8), version=7))
        assert r.status == 200
        assert await _flowing(first, pt=8) >= 4  # the current codec is kept when offered
        uac.cseq += 1
        uac.send(uac.request("BYE", to_tag=tag))
        assert (await uac.recv_response()).status == 200
    finally:
        uac.close()
        first.close()
        second.close()


async def test_advertised_address_in_via_contact_and_sdp(make_ua: UaFactory) -> None:
    async def short(call: Call) -> None:
        await asyncio.sleep(0.05)

    ua = await make_ua(handler=short, advertised_host="192.0.2.10", advertised_port=5999)
    uac = RawUac(ua.port)
    rtp = await RtpPeer.open()
    try:
        uac.send(uac.request("INVITE", body=sdp(rtp.port)))
        ok = await uac.recv_response()
        contact = ok.contact[0].sip_uri
        assert (contact.host, contact.port) == ("192.0.2.10", 5999)
        answer = SessionDescription.parse(ok.body)
        assert answer.connection is not None and answer.connection.address == "192.0.2.10"
        assert answer.origin.address == "192.0.2.10"
        uac.send(uac.ack(ok))
        # RTP still leaves from the bind address and reaches the offer's address
        await asyncio.wait_for(rtp.got.wait(), 2)
        bye = await uac.recv_request()
        assert bye.method == "BYE"
        via = bye.via
        assert (via.host, via.port) == ("192.0.2.10", 5999)
        bye_contact = bye.contact[0].sip_uri if bye.contact else None
        assert bye_contact is None or (bye_contact.host, bye_contact.port) == ("192.0.2.10", 5999)
        assert isinstance(bye, SipRequest)
    finally:
        uac.close()
        rtp.close()


async def test_ringing_and_183_early_media_before_200(make_ua: UaFactory) -> None:
    ua = await make_ua(handler=_idle, send_ringing=True, early_media=True)
    uac = RawUac(ua.port)
    try:
        uac.send(uac.request("INVITE", body=sdp(40030)))
        got = [await uac.recv_response() for _ in range(3)]
        assert [r.status for r in got] == [180, 183, 200]
        assert not got[0].body
        assert got[1].content_type == "application/sdp"
        assert got[1].body == got[2].body  # the same answer, not a new one
        assert got[0].to.tag == got[1].to.tag == got[2].to.tag
        uac.send(uac.ack(got[2]))
    finally:
        uac.close()


def _reply(request: SipRequest, status: int, reason: str, *, tag: str, body: bytes = b"") -> bytes:
    h = request.headers
    to = h.get("To") or ""
    lines = [
        f"SIP/2.0 {status} {reason}",
        *(f"Via: {v}" for v in h.get_all("Via")),
        f"From: {h.get('From')}",
        f"To: {to}" + ("" if ";tag=" in to else f";tag={tag}"),
        f"Call-ID: {request.call_id}",
        f"CSeq: {h.get('CSeq')}",
        "Contact: <sip:uas@127.0.0.1>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_dial_early_media_then_timeout_cancels(make_ua: UaFactory) -> None:
    """A raw UAS answers 183 with SDP and never 200: our RTP flows to it before the answer;
    at the dial timeout we CANCEL, it answers 487, we ACK, dial raises DialTimeout."""
    from w3sipagent.asyncio.useragent import DialTimeout

    client = await make_ua()
    uas = RawUac(client.port)  # a bare socket: it plays the UAS here
    rtp = await RtpPeer.open()
    loop = asyncio.get_running_loop()
    try:
        dial = asyncio.create_task(client.dial(f"sip:a@127.0.0.1:{uas.port}", timeout=0.5))
        invite = await uas.recv_request()
        assert invite.method == "INVITE"
        uas.send(_reply(invite, 183, "Session Progress", tag="u1", body=sdp(rtp.port)))
        await asyncio.wait_for(rtp.got.wait(), 1)  # early media: before any 200
        assert client.calls[0].state == "early"
        start = loop.time()
        cancel = await uas.recv_request()
        assert cancel.method == "CANCEL" and cancel.via.branch == invite.via.branch
        assert cancel.cseq.seq == invite.cseq.seq and cancel.cseq.method == "CANCEL"
        uas.send(_reply(cancel, 200, "OK", tag="u1"))
        uas.send(_reply(invite, 487, "Request Terminated", tag="u1"))
        ack = await uas.recv_request()
        assert ack.method == "ACK" and ack.via.branch == invite.via.branch
        try:
            await asyncio.wait_for(dial, 2)
        except DialTimeout as exc:
            assert exc.status is None
        else:
            raise AssertionError("dial did not raise DialTimeout")
        assert loop.time() - start < 1.0
        assert client.calls == [] and client.ports.in_use == 0
    finally:
        uas.close()
        rtp.close()


async def test_glare_our_reinvite_pending_gives_491(make_ua: UaFactory) -> None:
    answered: list[Call] = []
    got_call = asyncio.Event()

    async def handler(call: Call) -> None:
        answered.append(call)
        got_call.set()
        await call.wait_ended()

    ua = await make_ua(handler=handler)
    uac = RawUac(ua.port)
    try:
        uac.send(uac.request("INVITE", body=sdp(40050)))
        ok = await uac.recv_response()
        uac.send(uac.ack(ok))
        tag = ok.to.tag
        assert tag
        await asyncio.wait_for(got_call.wait(), 5)
        call = answered[0]
        assert isinstance(call.local_sdp, SessionDescription)
        # Our re-INVITE stays pending until the peer answers it (a long timeout: the
        # glare window must not close by itself on a slow machine).
        ours = asyncio.create_task(
            ua.request_in_dialog(
                call,
                "INVITE",
                body=bytes(call.local_sdp),
                content_type="application/sdp",
                timeout=10,
            )
        )
        theirs = await uac.recv_request()
        assert theirs.method == "INVITE"
        r = await _offer(uac, "INVITE", tag, sdp(40050, version=2))
        assert r.status == 491
        r = await _offer(uac, "UPDATE", tag, sdp(40050, version=2))
        assert r.status == 491
        assert call.reinvite_pending
        # the peer resolves the glare its way (491 to ours): the offer is no longer pending
        uac.send(bytes(make_response(theirs, 491)))
        mine = await asyncio.wait_for(ours, 5)
        assert mine.status == 491
        assert not call.reinvite_pending
        r = await _offer(uac, "UPDATE", tag, sdp(40050, version=2))
        assert r.status == 200
    finally:
        uac.close()
