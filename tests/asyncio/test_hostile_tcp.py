"""Hostile TCP against a real TransportSet on loopback (issue 12 item 4): connection caps
(total, per source), the partial-message and idle timeouts, a busy connection kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.agent.helpers import wait_until
from w3sipagent.asyncio.transport import TransportConfig, TransportSet
from w3sipagent.sip.events import Address

HOST = "127.0.0.1"
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def options(n: int) -> bytes:
    return (
        f"OPTIONS sip:agent@{HOST} SIP/2.0\r\nVia: SIP/2.0/TCP {HOST}:5999;branch=z9hG4bKh{n}\r\n"
        f"From: <sip:p@{HOST}>;tag=t{n}\r\nTo: <sip:agent@{HOST}>\r\nCall-ID: h-{n}\r\n"
        f"CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Listener:
    def __init__(self, transports: TransportSet, got: list[tuple[bytes, Address]]) -> None:
        self.transports = transports
        self.got = got

    async def connect(self, source: str = HOST) -> Streams:
        assert self.transports.tcp_address is not None
        return await asyncio.open_connection(
            HOST, self.transports.tcp_address[1], local_addr=(source, 0)
        )


@pytest.fixture
async def listen() -> AsyncIterator[Callable[..., Awaitable[Listener]]]:
    made: list[TransportSet] = []

    async def factory(**kw: float) -> Listener:
        got: list[tuple[bytes, Address]] = []
        ts = TransportSet(
            TransportConfig(host=HOST, port=0, udp=False, **kw),  # type: ignore[arg-type]
            lambda data, addr, _t: got.append((data, addr)),
        )
        await ts.start()
        made.append(ts)
        return Listener(ts, got)

    yield factory
    for ts in made:
        ts.close()


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    """True once the other side closed (EOF or reset) within ``timeout``."""
    try:
        return await asyncio.wait_for(reader.read(100), timeout) == b""
    except ConnectionResetError:
        return True


async def test_connection_over_the_total_cap_is_closed_at_once(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    srv = await listen(tcp_max_connections=3, tcp_max_per_source=3)
    held = [await srv.connect() for _ in range(3)]
    await wait_until(lambda: len(srv.transports.connections) == 3, what="3 connections")
    reader, writer = await srv.connect()
    assert await closed_by_peer(reader)
    assert srv.transports.refused_connections == 1
    for i, (_r, w) in enumerate(held):  # the first three still work
        w.write(options(i))
    await wait_until(lambda: len(srv.got) == 3, what="3 messages on the held connections")
    held[0][1].close()  # one closes: a new one fits again
    await wait_until(lambda: len(srv.transports.connections) == 2, what="one gone")
    r5, w5 = await srv.connect()
    w5.write(options(5))
    await wait_until(lambda: len(srv.got) == 4, what="a message on the new connection")
    for _r, w in [*held, (reader, writer), (r5, w5)]:
        w.close()


async def test_connection_over_the_per_source_cap_is_closed(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    srv = await listen(tcp_max_connections=10, tcp_max_per_source=2)
    held = [await srv.connect() for _ in range(2)]
    await wait_until(lambda: len(srv.transports.connections) == 2, what="2 connections")
    reader, writer = await srv.connect()
    assert await closed_by_peer(reader)
    other = await srv.connect("127.0.0.2")  # another address still gets in
    other[1].write(options(1))
    await wait_until(lambda: len(srv.got) == 1, what="a message from 127.0.0.2")
    assert srv.got[0][1][0] == "127.0.0.2"
    assert srv.transports.refused_connections == 1
    for _r, w in [*held, (reader, writer), other]:
        w.close()


async def test_half_header_is_closed_after_the_message_timeout(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    srv = await listen(tcp_message_timeout=0.3, tcp_idle_timeout=30.0)
    reader, writer = await srv.connect()
    writer.write(options(1)[:60])  # a header that never ends, and no more traffic
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await closed_by_peer(reader)
    assert 0.25 <= loop.time() - start < 2.5
    await wait_until(lambda: srv.transports.connections == [], what="forgotten")
    assert srv.got == []
    writer.close()


async def test_slow_drip_is_closed_after_the_message_timeout(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    srv = await listen(tcp_message_timeout=0.3, tcp_idle_timeout=30.0)
    reader, writer = await srv.connect()
    data = options(1)

    async def drip() -> None:  # a byte every 50 ms: never idle, never a whole message
        for i in range(len(data) - 1):
            writer.write(data[i : i + 1])
            await asyncio.sleep(0.05)

    task = asyncio.create_task(drip())
    try:
        assert await closed_by_peer(reader)
    finally:
        task.cancel()
    assert srv.got == []
    writer.close()


async def test_idle_connection_is_closed(listen: Callable[..., Awaitable[Listener]]) -> None:
    srv = await listen(tcp_idle_timeout=0.3)
    reader, writer = await srv.connect()
    assert await closed_by_peer(reader)
    await wait_until(lambda: srv.transports.connections == [], what="forgotten")
    writer.close()


async def test_connection_with_traffic_stays(listen: Callable[..., Awaitable[Listener]]) -> None:
    srv = await listen(tcp_message_timeout=0.3, tcp_idle_timeout=0.3)
    reader, writer = await srv.connect()
    for i in range(10):  # 1 s of traffic, over three times each timeout
        msg = options(i)
        writer.write(msg[:30])  # each message in two segments, 50 ms apart
        await asyncio.sleep(0.05)
        writer.write(msg[30:] + b"\r\n\r\n")
        await asyncio.sleep(0.05)
    await wait_until(lambda: len(srv.got) == 10, what="10 messages")
    assert len(srv.transports.connections) == 1
    assert reader.at_eof() is False
    writer.close()
