"""Garbage, floods, half-open connections and mutated torture messages never hurt other calls;
stray CRLFs over UDP are ignored; nothing is ever sent to (or resolved from) a host name."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from pathlib import Path

import pytest

from tests.asyncio.conftest import UaFactory
from tests.asyncio.helpers import fast_config
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import Accept, AdmissionRequest, Reject, UserAgent
from w3sipagent.errors import TransactionError
from w3sipagent.sip.headers import Headers
from w3sipagent.sip.message import SipRequest, SipResponse, parse_message

SOURCE = ("127.0.0.1", 5070)
OPTIONS = (
    b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKok{n}\r\n"
    b"From: <sip:p@127.0.0.1>;tag=a\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: ok-{n}\r\n"
    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _admission(req: AdmissionRequest) -> Accept | Reject:
    return Reject(404, "Unknown tenant") if req.host != "127.0.0.1" else Accept()


async def test_stray_crlf_and_empty_datagrams_get_no_answer() -> None:
    sent: list[bytes] = []
    ua = UserAgent(fast_config(), sender=lambda d, a, t: sent.append(d))
    try:
        for data in (b"\r\n\r\n", b"\r\n", b"", b"\x00\x00\x00\x00", b"   \r\n"):
            ua.feed(data, SOURCE)
        assert sent == []
    finally:
        await ua.close(timeout=0)


async def test_mutated_torture_messages_never_break_the_receive_path(
    vectors: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """2000 mutations (byte flips, cuts, duplicated and dropped lines) of the RFC 4475
    messages through :meth:`UserAgent.feed`: no error logged, replies only to the source,
    and an OPTIONS is still answered 200 afterwards."""
    seeds = [p.read_bytes() for p in sorted((vectors / "rfc4475").glob("*.dat"))]
    assert len(seeds) >= 40
    rng = random.Random(4475)
    sent: list[tuple[bytes, tuple[str, int]]] = []
    ua = UserAgent(fast_config(), admission=_admission, sender=lambda d, a, t: sent.append((d, a)))
    caplog.set_level(logging.ERROR)
    try:
        for i in range(2000):
            data = bytearray(rng.choice(seeds))
            kind = i % 4
            if kind == 0:
                for _ in range(rng.randint(1, 8)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            elif kind == 1:
                data = data[: rng.randrange(1, len(data))]
            else:
                lines = bytes(data).split(b"\r\n")
                j = rng.randrange(len(lines))
                if kind == 2:
                    lines.insert(j, lines[rng.randrange(len(lines))])
                else:
                    del lines[j]
                data = bytearray(b"\r\n".join(lines))
            ua.feed(bytes(data), SOURCE, "TCP" if i % 5 == 0 else "UDP")
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert all(addr[0] == SOURCE[0] for _, addr in sent)
        sent.clear()
        ua.feed(OPTIONS.replace(b"{n}", b"1"), SOURCE)
        reply = parse_message(sent[-1][0])
        assert isinstance(reply, SipResponse) and reply.status == 200
        assert ua.ports.in_use == 0
    finally:
        await ua.close(timeout=0)


async def test_garbage_flood_and_half_open_tcp_do_not_hurt_a_call(make_ua: UaFactory) -> None:
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        await call.wait_ended()

    server = await make_ua(handler=handler, tcp_idle_timeout=5.0)
    client = await make_ua()
    rng = random.Random(7)
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    half_open: list[asyncio.StreamWriter] = []
    try:
        for _ in range(1500):
            junk.sendto(rng.randbytes(rng.randint(1, 1400)), ("127.0.0.1", server.port))
        for n in range(30):  # headers that never end, and a huge Content-Length never sent
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z")
            if n % 2:
                writer.write(b"9hG4bKx\r\nContent-Length: 60000\r\n\r\npartial body")
            half_open.append(writer)
        loop = asyncio.get_running_loop()
        start = loop.time()
        call = await client.dial(f"sip:a@127.0.0.1:{server.port}")
        assert loop.time() - start < 1.0
        assert call.state == "active"
        for _ in range(100):
            if answered:
                break
            await asyncio.sleep(0.01)
        assert answered and not answered[0].ended
        await call.hangup()
        assert len(server.transports.connections) == 30
    finally:
        junk.close()
        for w in half_open:
            w.close()


async def test_no_dns_for_host_names(make_ua: UaFactory) -> None:
    ua = await make_ua()
    with pytest.raises(TransactionError, match="not an IP address"):
        ua.transports.send(b"x", ("sip.example.com", 5060), "UDP")
    with pytest.raises(TransactionError, match="not an IP address"):
        ua.transports.send(b"x", ("sip.example.com", 5060), "TCP")
    h = Headers()
    h.add("From", "<sip:p@127.0.0.1>;tag=p")
    h.add("To", "<sip:x@sip.example.com>")
    h.add("Call-ID", "dns-1")
    h.add("CSeq", "1 OPTIONS")
    with pytest.raises(TransactionError, match="not an IP address"):
        await ua.request(
            SipRequest("OPTIONS", "sip:x@sip.example.com", h), ("sip.example.com", 5060)
        )
    with pytest.raises(TransactionError, match="no DNS"):
        await ua.dial("sip:x@sip.example.com")
    with pytest.raises(TransactionError, match="no DNS"):
        await ua.dial("sip:x@sip.example.com", proxy=("proxy.example.com", 5060))
    assert ua.calls == [] and ua.ports.in_use == 0 and ua.transports.connections == []


async def test_host_name_in_sdp_is_refused_not_resolved(make_ua: UaFactory) -> None:
    from tests.asyncio.helpers import RawUac, sdp

    ua = await make_ua(handler=lambda call: call.wait_ended())
    uac = RawUac(ua.port)
    try:
        uac.send(uac.request("INVITE", body=sdp(40040, ip="media.example.com")))
        r = await uac.recv_response()
        assert r.status == 488
        assert (r.headers.get("Warning") or "").startswith("301 ")
        assert ua.calls == [] and ua.ports.in_use == 0
    finally:
        uac.close()
