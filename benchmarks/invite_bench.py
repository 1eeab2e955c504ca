"""INVITE -> 200 OK time of the user agent on loopback, and call set-ups per second.

A raw UDP client sends INVITEs (with an SDP offer) to a running :class:`UserAgent` whose
handler answers at once, and measures the time from sending the INVITE to receiving the
200 OK (p50/p99), then ACKs and BYEs each call. A second phase keeps ``--concurrency``
set-ups in flight to measure complete set-ups per second (INVITE/100/200/ACK/BYE/200).

    .venv/bin/python benchmarks/invite_bench.py --calls 500 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import UserAgent, UserAgentConfig

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiters: dict[tuple[str, str], asyncio.Future[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.startswith(b"SIP/2.0 100"):
            return
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        call_id = method = ""
        for line in head.split("\r\n"):
            if line.lower().startswith("call-id:"):
                call_id = line.split(":", 1)[1].strip()
            elif line.lower().startswith("cseq:"):
                method = line.split()[-1]
        if not data.startswith(b"SIP/2.0"):
            method = "REQ"
        fut = self.waiters.pop((call_id, method), None)
        if fut is not None and not fut.done():
            fut.set_result(data)


def _headers_of(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]:
        k, _, v = line.partition(":")
        out.setdefault(k.strip().lower(), v.strip())
    return out


async def one_call(client: Client, port: int, local: int, n: int, rtp_port: int) -> float:
    loop = asyncio.get_running_loop()
    call_id = f"bench-{n}-{time.monotonic_ns()}"
    body = SDP.format(port=rtp_port).encode()
    base = (
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{n}{{m}};rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:bench@127.0.0.1>;tag=b{n}\r\nTo: <sip:echo@127.0.0.1>{{to}}\r\n"
        f"Call-ID: {call_id}\r\nContact: <sip:bench@127.0.0.1:{local}>\r\n"
    )
    invite = (
        f"INVITE sip:echo@127.0.0.1:{port} SIP/2.0\r\n"
        + base.format(m="i", to="")
        + f"CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    fut: asyncio.Future[bytes] = loop.create_future()
    client.waiters[(call_id, "INVITE")] = fut
    assert client.transport is not None
    t0 = time.perf_counter()
    client.transport.sendto(invite, ("127.0.0.1", port))
    ok = await asyncio.wait_for(fut, 5)
    elapsed = time.perf_counter() - t0
    assert ok.startswith(b"SIP/2.0 200"), ok[:40]
    tag = _headers_of(ok)["to"].split("tag=")[1]
    ack = (
        f"ACK sip:echo@127.0.0.1:{port} SIP/2.0\r\n"
        + base.format(m="a", to=f";tag={tag}")
        + "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    client.transport.sendto(ack, ("127.0.0.1", port))
    bye = (
        f"BYE sip:echo@127.0.0.1:{port} SIP/2.0\r\n"
        + base.format(m="b", to=f";tag={tag}")
        + "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    fut2: asyncio.Future[bytes] = loop.create_future()
    client.waiters[(call_id, "BYE")] = fut2
    client.transport.sendto(bye, ("127.0.0.1", port))
    await asyncio.wait_for(fut2, 5)
    return elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    async def answer(call: Call) -> None:
        await call.wait_ended()

    config = UserAgentConfig(port=0, transports=("udp",), rtp_port_min=42000, rtp_port_max=42999)
    ua = UserAgent(config, handler=answer)
    await ua.start()
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    local = transport.get_extra_info("sockname")[1]
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp_port = rtp.getsockname()[1]
    try:
        for i in range(20):  # warm-up
            await one_call(client, ua.port, local, -i - 1, rtp_port)
        times = [await one_call(client, ua.port, local, i, rtp_port) for i in range(args.calls)]
        times.sort()
        p50 = statistics.median(times) * 1000
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
        print(
            f"INVITE -> 200 OK, sequential, {args.calls} calls: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )
        sem = asyncio.Semaphore(args.concurrency)

        async def limited(i: int) -> float:
            async with sem:
                return await one_call(client, ua.port, local, 100000 + i, rtp_port)

        t0 = time.perf_counter()
        await asyncio.gather(*(limited(i) for i in range(args.calls)))
        wall = time.perf_counter() - t0
        print(
            f"complete set-ups (INVITE/100/200/ACK/BYE/200), {args.concurrency} in flight: "
            f"{args.calls / wall:.0f} calls/s"
        )
        assert ua.ports.in_use <= args.concurrency
    finally:
        transport.close()
        rtp.close()
        await ua.close(timeout=1)


if __name__ == "__main__":
    asyncio.run(main())
