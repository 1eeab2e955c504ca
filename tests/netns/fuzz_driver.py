"""Drive the mutation fuzzer (:mod:`tests.netns.fuzz`) against a running agent, over UDP,
TCP and RTP. Runs only inside a loopback-only network namespace (it refuses otherwise)::

    ip netns exec NS .venv/bin/python -m tests.netns.fuzz_driver --agent-port 5090 \
        --udp 10000 --tcp 2000 --rtp 5000 --seed 7

Sending is paced by the agent itself: after every batch the driver sends an OPTIONS from
a socket of its own and waits for the 200 (retransmitting as a client transaction would,
up to ``--probe-timeout``), so the agent has read the batch before the next one goes and
each probe is an "OPTIONS answered during the fuzz" sample. The RTP part places calls
(a raw INVITE whose SDP names a socket of the driver, then ACK), sends fuzzed packets
mixed with the valid stream from the caller's port and from a foreign port, counts the
echo, and hangs up with BYE; a new call every ``--rtp-per-call`` packets, with PCMU,
PCMA, G.722 and Opus in turn. At the end: OPTIONS over UDP and TCP and a normal call
whose echo is measured (as after the RFC 4475 run). Progress goes to stderr; one JSON
report to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.netns.fuzz import RtpStream, Target, rtp_packet, sip_message
from tests.netns.torture_driver import normal_call, only_loopback

_STATUS = re.compile(rb"^SIP/2\.0 (\d{3})")
TCP_OFFSET = 1 << 40  # TCP messages are indices of their own (never the UDP ones again)


@dataclass
class Probes:
    """The OPTIONS sent during the run and how they were answered."""

    sent: int = 0
    answered: int = 0
    worst: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        med = lat[len(lat) // 2] if lat else None
        return {
            "sent": self.sent,
            "answered": self.answered,
            "median_s": med,
            "worst_s": self.worst,
        }


class _Counting(asyncio.DatagramProtocol):
    """Counts the status codes of what comes back; hands a final response (or a request)
    containing a waited-for key to its future (the probes and the RTP calls' INVITE)."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.other = 0
        self.waiting: dict[bytes, asyncio.Future[bytes]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        m = _STATUS.match(data)
        if m is None:
            self.other += 1
        else:
            self.statuses[int(m.group(1))] += 1
        if data.startswith(b"SIP/2.0 1"):
            return  # a provisional: the waiters want the final
        for key, fut in list(self.waiting.items()):
            if key in data and not fut.done():
                fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable: a reply of the agent to a port nobody listens on


class Driver:
    def __init__(
        self, agent_port: int, seed: int, batch: int, probe_timeout: float, rtp_rate: float
    ) -> None:
        self.rtp_rate = rtp_rate
        self.agent = ("127.0.0.1", agent_port)
        self.seed = seed
        self.batch = batch
        self.probe_timeout = probe_timeout
        self.probes = Probes()
        self.mutations: Counter[str] = Counter()
        self.rtp_mutations: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.replies = _Counting()
        self.probe_rx = _Counting()
        self.t0 = time.monotonic()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(
            lambda: self.replies, local_addr=("127.0.0.1", 0)
        )
        self.probe_sock, _ = await loop.create_datagram_endpoint(
            lambda: self.probe_rx, local_addr=("127.0.0.1", 0)
        )
        self.udp_port = self.udp.get_extra_info("sockname")[1]
        self.probe_port = self.probe_sock.get_extra_info("sockname")[1]

    def close(self) -> None:
        self.udp.close()
        self.probe_sock.close()

    def progress(self, what: str, done: int, total: int) -> None:
        if done % 20000 < self.batch or done == total:
            el = time.monotonic() - self.t0
            print(
                f"[{el:7.1f}s] {what} {done}/{total}; probes {self.probes.answered}/"
                f"{self.probes.sent} (worst {self.probes.worst:.2f} s)",
                file=sys.stderr,
                flush=True,
            )

    async def probe(self) -> None:
        """One OPTIONS, retransmitted every 0.25 s until answered or the timeout."""
        self.probes.sent += 1
        cid = f"probe-{self.probes.sent}-{self.seed}".encode()
        msg = (
            b"OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKprobe%d;rport\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n"
            b"To: <sip:127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ) % (self.agent[1], self.probe_port, self.probes.sent, cid)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.probe_rx.waiting[b"Call-ID: " + cid] = fut
        start = time.monotonic()
        try:
            while time.monotonic() - start < self.probe_timeout:
                self.probe_sock.sendto(msg, self.agent)
                with contextlib.suppress(TimeoutError):
                    reply = await asyncio.wait_for(asyncio.shield(fut), 0.25)
                    if reply.startswith(b"SIP/2.0 200"):
                        took = time.monotonic() - start
                        self.probes.answered += 1
                        self.probes.latencies.append(took)
                        self.probes.worst = max(self.probes.worst, took)
                    return
        finally:
            self.probe_rx.waiting.pop(b"Call-ID: " + cid, None)
            fut.cancel()

    async def fuzz_udp(self, n: int, min_seconds: float = 0.0) -> None:
        """``n`` messages at least, and more (the seed's next indices) until the run has
        lasted ``min_seconds``: the long mode's "at least an hour"."""
        target = Target("127.0.0.1", self.agent[1], self.udp_port, "UDP")
        i = 0
        while i < n or time.monotonic() - self.t0 < min_seconds:
            wire, names = sip_message(self.seed, i, target)
            self.mutations.update(names)
            self.udp.sendto(wire, self.agent)
            self.counts["udp_sent"] += 1
            i += 1
            if i % self.batch == 0 or i == n:
                await self.probe()
                self.progress("udp", i, max(n, i))

    async def fuzz_tcp(self, n: int) -> None:
        i = 0
        while i < n:
            r = i  # a connection carries 1 to 12 messages
            per_conn = 1 + (self.seed + r * 7919) % 12
            try:
                reader, writer = await asyncio.open_connection(*self.agent)
            except OSError:
                self.counts["tcp_connect_refused"] += 1
                await self.probe()
                continue
            self.counts["tcp_connections"] += 1
            port = writer.get_extra_info("sockname")[1]
            target = Target("127.0.0.1", self.agent[1], port, "TCP")
            for _ in range(min(per_conn, n - i)):
                wire, names = sip_message(self.seed, TCP_OFFSET + i, target, max_size=200_000)
                self.mutations.update(names)
                writer.write(wire)
                self.counts["tcp_sent"] += 1
                i += 1
            try:
                await asyncio.wait_for(writer.drain(), 2)
                got = await asyncio.wait_for(reader.read(65536), 0.05)
                self.counts["tcp_reply_bytes"] += len(got)
                if not got:
                    self.counts["tcp_closed_by_agent"] += 1
            except (TimeoutError, ConnectionError):
                pass
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)
            if self.counts["tcp_connections"] % max(1, self.batch // 10) == 0 or i >= n:
                await self.probe()
                self.progress("tcp", i, n)

    async def fuzz_rtp(self, n: int, per_call: int) -> None:
        codecs = ((0, "PCMU/8000"), (8, "PCMA/8000"), (9, "G722/8000"), (111, "opus/48000/2"))
        done = 0
        k = 0
        while done < n:
            pt, name = codecs[k % len(codecs)]
            k += 1
            sent = await self.rtp_call(pt, name, done, min(per_call, n - done))
            if sent == 0:
                self.counts["rtp_call_failed"] += 1
                if self.counts["rtp_call_failed"] > 20:
                    break
                await asyncio.sleep(0.5)
                continue
            done += sent
            self.progress("rtp", done, n)

    async def rtp_call(self, pt: int, codec: str, first: int, count: int) -> int:
        """One call: INVITE, ACK, ``count`` fuzzed packets (each after a valid one), BYE.
        Returns how many fuzzed packets were sent (0: the call was not answered)."""
        loop = asyncio.get_running_loop()
        echo = _Counting()
        rtp, _ = await loop.create_datagram_endpoint(lambda: echo, local_addr=("127.0.0.1", 0))
        rtcp_peer = _Counting()
        foreign, _ = await loop.create_datagram_endpoint(
            lambda: rtcp_peer, local_addr=("127.0.0.1", 0)
        )
        media_port = rtp.get_extra_info("sockname")[1]
        try:
            cid = f"rtpfuzz-{self.seed}-{first}"
            tag = f"c{first}"
            sdp = (
                "v=0\r\no=fuzz 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {media_port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {codec}\r\n"
                "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
                "a=sendrecv\r\n"
            ).encode()
            uri = f"sip:support@127.0.0.1:{self.agent[1]}"

            def request(
                method: str, cseq: int, branch: str, to_tag: str = "", body: bytes = b""
            ) -> bytes:
                head = (
                    f"{method} {uri} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{self.probe_port};branch=z9hG4bK{branch};rport\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:fuzz@127.0.0.1>;tag={tag}\r\n"
                    f"To: <{uri}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n"
                    f"Contact: <sip:fuzz@127.0.0.1:{self.probe_port}>\r\n"
                )
                if body:
                    head += "Content-Type: application/sdp\r\n"
                return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body

            ok: asyncio.Future[bytes] = loop.create_future()
            key = f"Call-ID: {cid}".encode()
            self.probe_rx.waiting[key] = ok  # the final response
            invite = request("INVITE", 1, f"inv{first}", body=sdp)
            answer = b""
            for _ in range(12):
                self.probe_sock.sendto(invite, self.agent)
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(asyncio.shield(ok), 0.5)
                    break
            self.probe_rx.waiting.pop(key, None)
            if not answer.startswith(b"SIP/2.0 200"):
                return 0
            to = re.search(rb"\r\nTo:[^\r]*?(;tag=[^;\r]+)", answer)
            port = re.search(rb"m=audio (\d+)", answer)
            if to is None or port is None:
                return 0
            to_tag = to.group(1).decode()
            self.probe_sock.sendto(request("ACK", 1, f"ack{first}", to_tag), self.agent)
            dest = ("127.0.0.1", int(port.group(1)))
            dest_rtcp = ("127.0.0.1", dest[1] + 1)
            stream = RtpStream(ssrc=0x5EED0000 + first % 65536, pt=pt)
            self.counts["rtp_calls"] += 1
            began = time.monotonic()
            for j in range(count):
                rtp.sendto(stream.valid(bytes(160)), dest)
                pkt, mut = rtp_packet(self.seed, first + j, stream)
                self.rtp_mutations[mut] += 1
                if mut == "rtcp":
                    rtp.sendto(pkt, dest_rtcp)
                elif j % 10 == 9:
                    foreign.sendto(pkt, dest)
                    self.counts["rtp_foreign"] += 1
                else:
                    rtp.sendto(pkt, dest)
                self.counts["rtp_sent"] += 1
                if (j + 1) % self.batch == 0:
                    await self.probe()
                    # paced: 2 packets (valid + fuzzed) per step at rtp_rate packets/s
                    ahead = 2 * (j + 1) / self.rtp_rate - (time.monotonic() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            self.counts["rtp_echo_packets"] += echo.other + sum(echo.statuses.values())
            self.counts["rtp_to_foreign_port"] += rtcp_peer.other
            bye: asyncio.Future[bytes] = loop.create_future()
            self.probe_rx.waiting[b"CSeq: 2 BYE"] = bye
            for _ in range(8):
                self.probe_sock.sendto(request("BYE", 2, f"bye{first}", to_tag), self.agent)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(bye), 0.5)
                    self.counts["rtp_bye_answered"] += 1
                    break
            self.probe_rx.waiting.pop(b"CSeq: 2 BYE", None)
            return count
        finally:
            rtp.close()
            foreign.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    d = Driver(args.agent_port, args.seed, args.batch, args.probe_timeout, args.rtp_rate)
    await d.open()
    seconds: dict[str, float] = {}
    try:
        t = time.monotonic()
        await d.fuzz_udp(args.udp, args.min_seconds)
        seconds["udp"] = time.monotonic() - t
        t = time.monotonic()
        await d.fuzz_tcp(args.tcp)
        seconds["tcp"] = time.monotonic() - t
        t = time.monotonic()
        await d.fuzz_rtp(args.rtp, args.rtp_per_call)
        seconds["rtp"] = time.monotonic() - t
        t = time.monotonic()
        after = await normal_call(args.agent_port, f"-fuzz{args.seed}")
        seconds["after"] = time.monotonic() - t
    finally:
        d.close()
    return {
        "seed": args.seed,
        "counts": dict(d.counts),
        "probes": d.probes.report(),
        "replies": {str(k): v for k, v in sorted(d.replies.statuses.items())},
        "mutations": dict(d.mutations),
        "rtp_mutations": dict(d.rtp_mutations),
        "seconds": seconds,
        "after": after,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent-port", type=int, default=5090)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--udp", type=int, default=2000, help="SIP messages over UDP")
    parser.add_argument("--tcp", type=int, default=500, help="SIP messages over TCP")
    parser.add_argument("--rtp", type=int, default=2000, help="fuzzed RTP packets")
    parser.add_argument("--rtp-per-call", type=int, default=1000)
    parser.add_argument(
        "--rtp-rate", type=float, default=2000.0, help="RTP packets per second (valid + fuzzed)"
    )
    parser.add_argument("--batch", type=int, default=100, help="messages between two probes")
    parser.add_argument("--probe-timeout", type=float, default=5.0)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=0.0,
        help="keep sending UDP messages past --udp until the run has lasted this long",
    )
    args = parser.parse_args()
    if not only_loopback():
        sys.exit("refusing to fuzz: this network namespace has interfaces other than lo")
    # a bug here must not take a shared machine's memory: 2 GB of address space at most
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    print(json.dumps(asyncio.run(main(args))))
