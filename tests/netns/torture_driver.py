"""Send every RFC 4475 torture message to a running agent, over UDP and TCP, and capture
what comes back. Runs only inside a loopback-only network namespace (it refuses otherwise)::

    ip netns exec NS .venv/bin/python -m tests.netns.torture_driver \
        --agent-port 5090 --vectors tests/vectors/rfc4475

Replies go to the source IP and the top Via's port (RFC 3261 §18.2.2; 5060 when absent,
5050 / 5070 in two messages), not to the sending socket, so the driver listens on those
ports (UDP and TCP) and attributes each response to its message by Call-ID (by time for a
message without one). Over TCP each message gets its own connection; responses come back
on it. Afterwards it checks that the agent still answers OPTIONS and still takes a normal
call whose audio it echoes. Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.wait import wait_until

CAPTURE_UDP = (5060, 5050, 5070, 5061)
CAPTURE_TCP = (5060, 5061)
_STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3})", re.IGNORECASE)
_CALL_ID_RE = re.compile(
    rb"^(?:call-id|i)[ \t]*:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)


def only_loopback() -> bool:
    """True when this process sees no network interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def call_id_of(data: bytes) -> str | None:
    m = _CALL_ID_RE.search(data.split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode("utf-8", "replace").strip() if m else None


@dataclass
class Seen:
    """One captured response."""

    at: float
    where: str
    status: int
    call_id: str | None
    reason: str


@dataclass
class Capture:
    """Everything that arrives on the capture ports."""

    responses: list[Seen] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, data: bytes, where: str) -> None:
        for msg in split_stream(data) if where.startswith("tcp") else [data]:
            m = _STATUS_RE.match(msg)
            if m is None:
                self.other.append(f"{where}: {msg[:60]!r}")
                continue
            first = msg.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            self.responses.append(
                Seen(time.monotonic(), where, int(m.group(1)), call_id_of(msg), first[12:])
            )
        self.changed.set()


def split_stream(data: bytes) -> list[bytes]:
    """Cut a captured stream chunk into messages by Content-Length (good enough here)."""
    out: list[bytes] = []
    while data.strip():
        data = data.lstrip(b"\r\n")
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            out.append(data)
            break
        m = re.search(
            rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head, re.IGNORECASE | re.MULTILINE
        )
        n = int(m.group(1)) if m else 0
        out.append(head + sep + rest[:n])
        data = rest[n:]
    return out


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, capture: Capture, where: str) -> None:
        self.capture, self.where = capture, where

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.capture.add(data, self.where)


async def start_capture(
    capture: Capture,
) -> tuple[list[asyncio.DatagramTransport], list[asyncio.Server]]:
    loop = asyncio.get_running_loop()
    udps: list[asyncio.DatagramTransport] = []
    for port in CAPTURE_UDP:
        t, _ = await loop.create_datagram_endpoint(
            functools.partial(_Udp, capture, f"udp:{port}"), local_addr=("127.0.0.1", port)
        )
        udps.append(t)
    servers: list[asyncio.Server] = []
    for port in CAPTURE_TCP:

        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter, p: int = port) -> None:
            try:
                while chunk := await r.read(65536):
                    capture.add(chunk, f"tcp:{p}")
            finally:
                w.close()

        servers.append(await asyncio.start_server(on_conn, "127.0.0.1", port))
    return udps, servers


def attributed(capture: Capture, cid: str | None, since: float, known: set[str]) -> list[Seen]:
    """Responses to the message with Call-ID ``cid`` (or, without one, any unknown one since)."""
    if cid is not None:
        return [s for s in capture.responses if s.call_id == cid and s.at >= since]
    return [s for s in capture.responses if s.at >= since and s.call_id not in known]


async def wait_final(
    capture: Capture, cid: str | None, since: float, known: set[str], limit: float
) -> list[Seen]:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while True:
        got = attributed(capture, cid, since, known)
        if any(s.status >= 200 for s in got):
            await asyncio.sleep(0.02)  # a second final would show up here
            return attributed(capture, cid, since, known)
        remaining = end - loop.time()
        if remaining <= 0:
            return got
        capture.changed.clear()
        try:
            await asyncio.wait_for(capture.changed.wait(), remaining)
        except TimeoutError:
            pass


def summary(seen: list[Seen], **extra: Any) -> dict[str, Any]:
    finals = [s.status for s in seen if s.status >= 200]
    return {
        "statuses": [s.status for s in seen],
        "final": finals[0] if finals else None,
        "finals": sorted(set(finals)),
        "reasons": sorted({f"{s.status} {s.reason}" for s in seen}),
        "where": sorted({s.where for s in seen}),
        **extra,
    }


_VIA_RE = re.compile(rb"^(?:via|v)[ \t]*:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)


def transaction_key(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(method, sent-by, branch) of a request: how RFC 3261 §17.2.3 matches transactions."""
    if data.startswith(b"SIP/"):
        return None
    m = _VIA_RE.search(data.split(b"\r\n\r\n", 1)[0])
    if m is None:
        return None
    via = m.group(1)
    branch = re.search(rb"branch=([^;,\s]+)", via)
    parts = via.split(b";", 1)[0].split()
    return (data.split(b" ", 1)[0], parts[-1] if parts else b"", branch.group(1) if branch else b"")


async def run_udp(
    files: list[Path], agent: tuple[str, int], capture: Capture, limit: float, gap: float
) -> dict[str, Any]:
    """Each message on its own: a message that would match a live server transaction of an
    earlier one (five RFC 4475 messages share method, Via sent-by and branch) waits until
    that transaction is gone (``gap``: Timer J of the agent), else it is a retransmission."""
    loop = asyncio.get_running_loop()
    sender, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(capture, "udp:sender"), local_addr=("127.0.0.1", 0)
    )
    known = {c for f in files if (c := call_id_of(f.read_bytes())) is not None}
    last_sent: dict[tuple[bytes, bytes, bytes], float] = {}
    out: dict[str, Any] = {}
    try:
        for f in files:
            data = f.read_bytes()
            cid = call_id_of(data)
            key = transaction_key(data)
            if key is not None and key in last_sent:
                await asyncio.sleep(max(0.0, last_sent[key] + gap - time.monotonic()))
            since = time.monotonic()
            if key is not None:
                last_sent[key] = since
            sender.sendto(data, agent)
            out[f.name] = summary(await wait_final(capture, cid, since, known, limit))
    finally:
        sender.close()
    return out


async def run_tcp(
    files: list[Path], agent: tuple[str, int], capture: Capture, limit: float
) -> dict[str, Any]:
    known = {c for f in files if (c := call_id_of(f.read_bytes())) is not None}
    out: dict[str, Any] = {}
    for f in files:
        data = f.read_bytes()
        if b"\r\n\r\n" not in data:
            # baddn / inv2543 end after their last header line, as UDP datagrams may;
            # on a stream the blank line is what ends the header block
            data += b"\r\n"
        cid = call_id_of(data)
        since = time.monotonic()
        reader, writer = await asyncio.open_connection(*agent)
        writer.write(data)
        await writer.drain()
        local = Capture()
        closed = False
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), remaining)
            except TimeoutError:
                break
            except ConnectionError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            local.add(chunk, "tcp:conn")
            if any(x.status >= 200 and x.call_id in (cid, None) for x in local.responses):
                await asyncio.sleep(0.02)  # a second final would show up here
                break
        writer.close()
        # dblreq.dat holds a second request after the first one's body: over a stream it
        # is a message of its own (its own Call-ID), answered on the same connection
        mine = [x for x in local.responses if cid is None or x.call_id in (cid, None)]
        seen = mine + attributed(capture, cid, since, known) if cid else mine
        out[f.name] = summary(seen, closed_by_agent=closed)
    return out


async def normal_call(agent_port: int, run: str = "") -> dict[str, Any]:
    """OPTIONS over UDP and TCP, then a call whose echo must carry our tone's energy.
    ``run`` sets the OPTIONS apart from an earlier run's (else they are merged: 482)."""
    from w3sipagent.asyncio.useragent import UserAgent, UserAgentConfig
    from w3sipagent.sip.message import SipRequest

    result: dict[str, Any] = {}
    ua = UserAgent(
        UserAgentConfig(host="127.0.0.1", port=0, rtp_port_min=22000, rtp_port_max=22099,
                        t1=0.05, drain_timeout=0.2, bye_timeout=0.5)
    )  # fmt: skip
    await ua.start()
    try:
        for transport in ("UDP", "TCP"):
            opts = SipRequest(
                "OPTIONS",
                f"sip:127.0.0.1:{agent_port}",
                [
                    ("Max-Forwards", "70"),
                    ("From", f"<sip:probe@127.0.0.1>;tag=probe{transport}{run}"),
                    ("To", f"<sip:127.0.0.1:{agent_port}>"),
                    ("Call-ID", f"after-torture-{transport}{run}"),
                    ("CSeq", "1 OPTIONS"),
                ],
            )
            resp = await ua.request(opts, ("127.0.0.1", agent_port), transport)
            result[f"options_{transport.lower()}"] = resp.status
        call = await ua.dial(f"sip:support@127.0.0.1:{agent_port}", timeout=5)
        rate = call.sample_rate
        t = np.arange(rate // 50) / rate
        heard: list[bytes] = []

        async def listen() -> None:
            async for pcm in call.audio():
                heard.append(pcm)

        task = asyncio.ensure_future(listen())
        for k in range(75):  # 1.5 s of a 440 Hz tone, at the pace of a real source
            tone = (8000 * np.sin(2 * np.pi * 440 * (t + k / 50))).astype("<i2").tobytes()
            call.send_audio(tone)
            await asyncio.sleep(0.02)
        heard_s = lambda: sum(map(len, heard)) / (2 * rate)  # noqa: E731
        with contextlib.suppress(AssertionError):  # the test judges what was heard
            await wait_until(lambda: heard_s() >= 1.4, 5, "the echo of the tone")
        await call.hangup()
        task.cancel()
        pcm = np.frombuffer(b"".join(heard), dtype="<i2").astype(np.float64)
        rms = float(np.sqrt(np.mean(np.square(pcm)))) if pcm.size else 0.0
        result.update(call_codec=call.media.encoding, echo_rms=rms, echo_seconds=pcm.size / rate)
    finally:
        await ua.close(timeout=0.5)
    return result


async def main(agent_port: int, vectors: Path, limit: float, gap: float) -> dict[str, Any]:
    files = sorted(p for p in vectors.glob("*.dat") if p.name != "test.dat")
    agent = ("127.0.0.1", agent_port)
    capture = Capture()
    udps, servers = await start_capture(capture)
    try:
        t0 = time.monotonic()
        udp = await run_udp(files, agent, capture, limit, gap)
        t1 = time.monotonic()
        await asyncio.sleep(
            gap
        )  # the UDP transactions are gone before the same messages come over TCP
        tcp = await run_tcp(files, agent, capture, limit)
        t2 = time.monotonic()
        after = await normal_call(agent_port)
        after["seconds"] = {"udp": t1 - t0, "tcp": t2 - t1, "after": time.monotonic() - t2}
    finally:
        for u in udps:
            u.close()
        for s in servers:
            s.close()
    return {"udp": udp, "tcp": tcp, "after": after, "other": capture.other[:20]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent-port", type=int, default=5090)
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--wait", type=float, default=0.4, help="seconds to wait for a final reply")
    parser.add_argument(
        "--gap", type=float, default=1.6, help="Timer J of the agent (64*T1) + margin"
    )
    args = parser.parse_args()
    if not only_loopback():
        sys.exit("refusing to send RFC 4475 messages: this namespace has interfaces other than lo")
    print(json.dumps(asyncio.run(main(args.agent_port, args.vectors, args.wait, args.gap))))
