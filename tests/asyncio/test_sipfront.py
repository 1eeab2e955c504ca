"""SipFront on real sockets: routing by Call-ID over UDP and TCP, what a worker sends leaves
from the public address, 481 for a dead worker's dialogs, 503 with no worker ready."""

from __future__ import annotations

import asyncio
import socket

from tests.wait import wait_until
from w3sipagent.asyncio.sipfront import SipFront
from w3sipagent.asyncio.transport import TransportConfig
from w3sipagent.sip.message import parse_message
from w3sipagent.sip.sipmessage import SipRequest, SipResponse, make_response

Address = tuple[str, int]


def request(method: str, call_id: str, to_tag: str = "") -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} sip:support@acme.example SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-" + call_id + method + "\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        f"To: <sip:support@acme.example>{tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Workers:
    """Two pretend workers: what each got, which are alive, which is next."""

    def __init__(self) -> None:
        self.got: dict[int, list[tuple[bytes, Address, str]]] = {0: [], 1: []}
        self.alive = {0: True, 1: True}
        self.next: int | None = 0

    def deliver(self, worker: int, data: bytes, source: Address, transport: str) -> bool:
        if not self.alive[worker]:
            return False
        self.got[worker].append((data, source, transport))
        return True

    def pick(self) -> int | None:
        return self.next


async def test_routing_by_call_id_dead_workers_and_no_worker() -> None:
    w = Workers()
    front = SipFront(w.deliver, w.pick, linger=30.0)
    addr = await front.start(TransportConfig(host="127.0.0.1", port=0, udp=True, tcp=False))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    src = peer.getsockname()
    loop = asyncio.get_running_loop()

    async def recv() -> tuple[bytes, Address]:
        data, frm = await asyncio.wait_for(loop.sock_recvfrom(peer, 4096), 5)
        return data, (str(frm[0]), int(frm[1]))

    try:
        peer.sendto(request("INVITE", "c1"), addr)  # new: to the picked worker
        await wait_until(lambda: len(w.got[0]) == 1, what="c1 on worker 0")
        w.next = 1
        peer.sendto(request("INVITE", "c2"), addr)
        peer.sendto(request("BYE", "c1", "t1"), addr)  # known Call-ID: its worker, not the pick
        await wait_until(lambda: len(w.got[0]) == 2 and len(w.got[1]) == 1, what="routing")
        data, source, transport = w.got[0][1]
        assert parse_message(data).method == "BYE"  # type: ignore[union-attr]
        assert source == src and transport == "UDP"  # the real source, not the front's
        # a worker's message leaves from the public address; its new Call-ID is its own
        front.send(request("OPTIONS", "c3"), src, "UDP", worker=1)
        got, frm = await recv()
        assert frm == addr and b"Call-ID: c3" in got
        w.next = 0
        peer.sendto(bytes(make_response(parse_message(got), 200)), addr)  # type: ignore[arg-type]
        await wait_until(lambda: len(w.got[1]) == 2, what="the answer to worker 1's request")
        # worker 1 dies: its dialogs get 481, their ACKs and responses are dropped
        w.alive[1] = False
        assert sorted(front.worker_gone(1)) == ["c2", "c3"]
        peer.sendto(request("BYE", "c2", "t2"), addr)
        answer = parse_message((await recv())[0])
        assert isinstance(answer, SipResponse) and answer.status == 481
        dropped = front.dropped
        peer.sendto(request("ACK", "c2", "t2"), addr)
        await wait_until(lambda: front.dropped == dropped + 1, what="the ACK dropped")
        # no worker ready: a new INVITE gets 503 with Retry-After
        w.next = None
        peer.sendto(request("INVITE", "c4"), addr)
        busy = parse_message((await recv())[0])
        assert isinstance(busy, SipResponse) and busy.status == 503
        assert busy.headers.get("Retry-After") == "5"
        assert len(w.got[0]) == 2  # worker 0 saw only its own call
    finally:
        peer.close()
        front.close()


async def test_tcp_messages_are_framed_routed_and_answered_on_the_connection() -> None:
    w = Workers()
    front = SipFront(w.deliver, w.pick)
    addr = await front.start(TransportConfig(host="127.0.0.1", port=0, udp=False, tcp=True))
    reader, writer = await asyncio.open_connection(*addr)
    try:
        # two messages in one segment: the front frames them and routes each
        writer.write(request("OPTIONS", "t1") + request("INVITE", "t2"))
        await writer.drain()
        await wait_until(lambda: len(w.got[0]) == 2, what="both framed messages")
        (first, source, transport), _ = w.got[0]
        assert transport == "TCP" and isinstance(parse_message(first), SipRequest)
        # the worker's answer goes back on that connection
        answer = make_response(parse_message(first), 200)  # type: ignore[arg-type]
        front.send(bytes(answer), source, "TCP", worker=0)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"SIP/2.0 200") and b"Call-ID: t1" in head
    finally:
        writer.close()
        front.close()
