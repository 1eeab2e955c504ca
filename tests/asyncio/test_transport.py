"""SIP over TCP: framing of several messages per segment, CRLF keep-alive, reuse, idle close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.agent.helpers import wait_until
from tests.asyncio.conftest import UaFactory
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.transport import TransportConfig, TransportSet
from w3sipagent.errors import ConfigError
from w3sipagent.sip.framing import StreamFramer
from w3sipagent.sip.message import SipResponse


def _options(n: int, port: int) -> bytes:
    return (
        f"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKtcp{n}\r\n"
        f"From: <sip:p@127.0.0.1>;tag=t{n}\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: tcp-{n}\r\n"
        f"CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def _read_messages(reader: asyncio.StreamReader, count: int) -> list[object]:
    framer = StreamFramer()
    items: list[object] = []
    while len(items) < count:
        data = await asyncio.wait_for(reader.read(65535), 2)
        assert data, "connection closed"
        items.extend(framer.feed(data))
    return items


async def test_two_messages_in_one_segment_and_crlf_ping(make_ua: UaFactory) -> None:
    ua = await make_ua(tcp_idle_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", ua.port)
    local_port = writer.get_extra_info("sockname")[1]
    try:
        writer.write(_options(1, local_port) + _options(2, local_port))
        items = await _read_messages(reader, 2)
        assert [(r.status, r.call_id) for r in items] == [(200, "tcp-1"), (200, "tcp-2")]  # type: ignore[attr-defined]
        writer.write(b"\r\n\r\n")
        pong = await asyncio.wait_for(reader.read(100), 2)
        assert pong == b"\r\n"
        # a message split across segments
        data = _options(3, local_port)
        writer.write(data[:40])
        await writer.drain()
        await asyncio.sleep(0.05)  # (the split is the point: the halves in two segments)
        writer.write(data[40:])
        items = await _read_messages(reader, 1)
        assert isinstance(items[0], SipResponse) and items[0].call_id == "tcp-3"
        assert len(ua.transports.connections) == 1
        # idle: closed by the agent
        closed = await asyncio.wait_for(reader.read(100), 2)
        assert closed == b""
        await wait_until(lambda: ua.transports.connections == [], what="connection forgotten")
    finally:
        writer.close()


async def test_malformed_stream_message_gets_400_and_close(make_ua: UaFactory) -> None:
    ua = await make_ua()
    reader, writer = await asyncio.open_connection("127.0.0.1", ua.port)
    try:
        bad = _options(9, 1).replace(b"Content-Length: 0\r\n", b"")
        writer.write(bad)
        items = await _read_messages(reader, 1)
        assert isinstance(items[0], SipResponse) and items[0].status == 400
        assert await asyncio.wait_for(reader.read(100), 2) == b""
    finally:
        writer.close()


async def test_garbage_without_via_after_a_message_is_not_answered(make_ua: UaFactory) -> None:
    """Bytes past a message's Content-Length (RFC 4475 dblreq over TCP) desynchronise the
    stream: the message is answered, the garbage (no Via to answer to) is not, and the
    agent closes the connection."""
    ua = await make_ua()
    reader, writer = await asyncio.open_connection("127.0.0.1", ua.port)
    local_port = writer.get_extra_info("sockname")[1]
    try:
        writer.write(_options(1, local_port) + b"C\r\n\r\n")
        data = b""
        while chunk := await asyncio.wait_for(reader.read(65535), 2):
            data += chunk
        assert data.count(b"SIP/2.0 ") == 1, data
        items = StreamFramer().feed(data)
        assert [(r.status, r.call_id) for r in items] == [(200, "tcp-1")]  # type: ignore[union-attr]
    finally:
        writer.close()


async def test_call_over_tcp_reuses_the_connection(make_ua: UaFactory) -> None:
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        await asyncio.sleep(0.05)  # then hang up: the BYE goes back over TCP

    server = await make_ua(handler=handler)
    client = await make_ua()
    call = await client.dial(f"sip:a@127.0.0.1:{server.port};transport=tcp", transport="TCP")
    assert call.transport == "TCP"
    end = await asyncio.wait_for(call.wait_ended(), 2)
    assert end.reason == "remote_bye"
    assert answered[0].info.transport == "TCP"
    # one connection each way at most: the BYE reused the INVITE's connection
    assert len(server.transports.connections) == 1
    assert len(client.transports.connections) == 1
    assert server.ports.in_use == 0 and client.ports.in_use == 0


async def test_port_0_binds_again_when_udps_port_is_taken_on_tcp() -> None:
    """With port 0 the kernel picks UDP's port without looking at TCP; a TCP socket already
    on that number must not make start() fail (seen as a flaky 'address already in use')."""
    import socket

    loop = asyncio.get_running_loop()
    taken: list[socket.socket] = []
    real_create_datagram_endpoint = loop.create_datagram_endpoint

    async def udp_then_occupy_tcp(*args: Any, **kwargs: Any) -> Any:
        transport, proto = await real_create_datagram_endpoint(*args, **kwargs)
        if not taken:  # the first port UDP gets is already somebody's TCP port
            blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            blocker.bind(("127.0.0.1", transport.get_extra_info("sockname")[1]))
            blocker.listen()
            taken.append(blocker)
        return transport, proto

    received: list[bytes] = []
    ts = TransportSet(TransportConfig(port=0), lambda data, addr, t: received.append(data))
    loop.create_datagram_endpoint = udp_then_occupy_tcp  # type: ignore[method-assign]
    try:
        await ts.start()
    finally:
        loop.create_datagram_endpoint = real_create_datagram_endpoint  # type: ignore[method-assign]
    try:
        assert taken and ts.port != taken[0].getsockname()[1]
        assert ts.udp_address is not None and ts.tcp_address is not None
        assert ts.udp_address[1] == ts.tcp_address[1] == ts.port
        _, writer = await asyncio.open_connection("127.0.0.1", ts.port)
        writer.write(_options(1, 5060))
        await writer.drain()
        await wait_until(lambda: bool(received), what="the OPTIONS")
        assert received and received[0].startswith(b"OPTIONS ")
        writer.close()
    finally:
        ts.close()
        for s in taken:
            s.close()
    # a fixed port that is taken is still an error at once
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        busy = blocker.getsockname()[1]
        fixed = TransportSet(TransportConfig(port=busy, udp=False), lambda *a: None)
        with pytest.raises(ConfigError, match=f"127.0.0.1:{busy}"):
            await fixed.start()
    finally:
        blocker.close()
