"""What the relay changes in SIP on its way (a raw peer and a raw "agent" socket): the SDP's
address and port point at the relay's RTP socket facing the agent, ``a=rtcp`` is dropped,
``Content-Length`` matches the new body, ``Contact`` points at the relay; RTP then flows
through it; the call's RTP sockets close after its BYE."""

from __future__ import annotations

import asyncio
import re
import socket

from tests.wait import wait_until
from w3sipagent.faults import ImpairingRelay

BODY = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtcp:{rtcp}\r\na=sendrecv\r\n"
)


def request(method: str, body: str, peer_port: int) -> bytes:
    head = (
        f"{method} sip:desk@shop.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer_port};branch=z9hG4bK{method};rport\r\n"
        "From: <sip:caller@127.0.0.1>;tag=a\r\nTo: <sip:desk@shop.example>\r\n"
        f"Call-ID: rewrite-1\r\nCSeq: 1 {method}\r\n"
        f"Contact: <sip:caller@127.0.0.1:{peer_port}>\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return (head + body).encode()


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def recv(s: socket.socket) -> tuple[bytes, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    data, addr = await asyncio.wait_for(loop.sock_recvfrom(s, 65536), 5)
    return data, addr


async def test_sdp_contact_and_length_rewritten_rtp_relayed_sockets_closed_after_bye() -> None:
    agent, peer, peer_rtp = udp(), udp(), udp()
    peer_port, rtp_port = peer.getsockname()[1], peer_rtp.getsockname()[1]
    async with ImpairingRelay(("127.0.0.1", agent.getsockname()[1])) as relay:
        relay.media_linger = 0.05
        body = BODY.format(port=rtp_port, rtcp=rtp_port + 1)
        peer.sendto(request("INVITE", body, peer_port), relay.address)
        data, _ = await recv(agent)
        head, _, got_body = data.decode().partition("\r\n\r\n")
        m = re.search(r"^m=audio (\d+) ", got_body, re.M)
        assert m is not None and int(m.group(1)) != rtp_port
        assert "a=rtcp" not in got_body and "c=IN IP4 127.0.0.1" in got_body
        assert f"Content-Length: {len(got_body.encode())}" in head
        assert f"127.0.0.1:{peer_port}>" not in head.split("Contact:")[1].split("\r\n")[0]
        assert f"Via: SIP/2.0/UDP 127.0.0.1:{peer_port}" in head  # Via untouched (rport)
        # RTP from the agent to the port it was given reaches the peer's RTP socket
        agent_rtp = udp()
        packet = b"\x80\x00\x00\x01" + bytes(168)
        agent_rtp.sendto(packet, ("127.0.0.1", int(m.group(1))))
        got, source = await recv(peer_rtp)
        assert got == packet and source[1] not in (int(m.group(1)), agent_rtp.getsockname()[1])
        # and back: the peer answers the relay's socket, the agent gets it from its own
        peer_rtp.sendto(packet[::-1], source)
        assert (await recv(agent_rtp))[0] == packet[::-1]
        assert relay.open_calls == 1
        peer.sendto(request("BYE", "", peer_port), relay.address)
        await recv(agent)
        await wait_until(lambda: relay.open_calls == 0, 2, "the call's RTP sockets closed")
        agent_rtp.close()
    for s in (agent, peer, peer_rtp):
        s.close()
