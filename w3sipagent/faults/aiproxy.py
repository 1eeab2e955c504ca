"""A TCP proxy in front of an AI service that misbehaves on purpose.

:class:`FaultProxy` listens on loopback and forwards each connection to the real service
(the OpenAI APIs through a tunnel, or the local servers of :mod:`w3sipagent.localai`):
WebSocket (Realtime, GPT-Live) and HTTP (the cascade's stages) alike, byte for byte. A
:class:`FaultPlan` picks the connections to spoil (``connections``: the first N, 0 = all)
and, ``after`` seconds into each, does one :class:`AIFault`:

- ``stall``: nothing is read or forwarded any more, both ways; the sockets stay open (the
  peer's writes back up, its pings go unanswered);
- ``slow_reader``: what the client sends is read at ``slow_rate`` bytes per second;
- ``half_open``: the service side is dropped silently; what the client sends is read and
  thrown away, nothing comes back, no FIN, no RST (a peer that vanished);
- ``close``: both sides are reset at once, without a WebSocket close frame or an HTTP
  response;
- ``garbage``: ``garbage_bytes`` random bytes (seeded) reach the client in the middle of
  the service's stream, which then goes on.

``faulted`` counts the connections that got their fault, ``connections`` all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from dataclasses import dataclass

__all__ = ["AIFault", "FaultPlan", "FaultProxy"]

log = logging.getLogger(__name__)

_CHUNK = 65536


class AIFault(enum.StrEnum):
    """What :class:`FaultProxy` does to a spoiled connection (see the module docstring)."""

    NONE = "none"
    STALL = "stall"
    SLOW_READER = "slow_reader"
    HALF_OPEN = "half_open"
    CLOSE = "close"
    GARBAGE = "garbage"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which connections get which fault, and when (seconds after the connection opened)."""

    fault: AIFault = AIFault.NONE
    after: float = 0.5
    connections: int = 1
    slow_rate: int = 2000
    garbage_bytes: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.after <= 3600.0:
            raise ValueError(f"fault plan after={self.after!r}: seconds from 0 to 3600")
        if self.connections < 0:
            raise ValueError(f"fault plan connections={self.connections!r}: 0 (all) or more")
        if self.slow_rate < 1 or self.garbage_bytes < 1:
            raise ValueError("fault plan: slow_rate and garbage_bytes must be positive")


class _Conn:
    """One proxied connection: two pumps and the fault that may strike it."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        fault: AIFault,
    ) -> None:
        self.proxy = proxy
        self.c_reader, self.c_writer = client
        self.u_reader, self.u_writer = upstream
        self.fault = fault
        self.struck = False
        self.frozen = asyncio.Event()  # set: the stall / half-open began

    async def run(self) -> None:
        plan = self.proxy.plan
        tasks = [
            asyncio.create_task(self._pump(self.c_reader, self.u_writer, upstream=True)),
            asyncio.create_task(self._pump(self.u_reader, self.c_writer, upstream=False)),
        ]
        if self.fault is not AIFault.NONE:
            tasks.append(asyncio.create_task(self._strike(plan.after)))
        try:
            await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
            if self.frozen.is_set():  # stalled or half-open: hold the client until it leaves
                await tasks[0]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (self.c_writer, self.u_writer):
                w.close()

    async def _strike(self, after: float) -> None:
        await asyncio.sleep(after)
        plan = self.proxy.plan
        self.struck = True
        self.proxy.faulted += 1
        log.info("fault proxy: %s on connection %d", self.fault, self.proxy.connections)
        if self.fault is AIFault.CLOSE:
            for w in (self.c_writer, self.u_writer):
                w.transport.abort()
        elif self.fault is AIFault.GARBAGE:
            self.c_writer.write(self.proxy.rng.randbytes(plan.garbage_bytes))
        elif self.fault is AIFault.HALF_OPEN:
            self.frozen.set()
            self.u_writer.transport.abort()
        elif self.fault is AIFault.STALL:
            self.frozen.set()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        plan = self.proxy.plan
        try:
            while True:
                if self.frozen.is_set() and self.fault is AIFault.STALL:
                    await asyncio.Event().wait()  # read nothing more: the peer backs up
                slow = upstream and self.struck and self.fault is AIFault.SLOW_READER
                data = await reader.read(max(1, plan.slow_rate // 10) if slow else _CHUNK)
                if not data:
                    if not self.frozen.is_set() and writer.can_write_eof():
                        writer.write_eof()
                    return
                if self.frozen.is_set():
                    if self.fault is AIFault.STALL:
                        await asyncio.Event().wait()
                    continue  # half-open: the client's bytes go nowhere
                writer.write(data)
                await writer.drain()
                if slow:
                    await asyncio.sleep(len(data) / plan.slow_rate)
        except (ConnectionError, OSError):
            return


class FaultProxy:
    """``async with FaultProxy(("127.0.0.1", 8080), FaultPlan(AIFault.CLOSE)) as p:`` then
    use :meth:`url` instead of the service's URL."""

    def __init__(
        self, upstream: tuple[str, int], plan: FaultPlan | None = None, *, host: str = "127.0.0.1"
    ) -> None:
        self.upstream = upstream
        self.plan = plan or FaultPlan()
        self.host = host
        self.rng = random.Random(self.plan.seed)
        self.connections = 0
        self.faulted = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, service_url: str) -> str:
        """``service_url`` (``ws://127.0.0.1:PORT/v1``...) pointed at the proxy instead."""
        old = f"{self.upstream[0]}:{self.upstream[1]}"
        if old not in service_url:
            raise ValueError(f"{service_url!r} does not name the proxied service {old}")
        return service_url.replace(old, f"{self.host}:{self.port}", 1)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._handlers):
            t.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        n = self.connections
        try:
            try:
                upstream = await asyncio.open_connection(*self.upstream)
            except OSError as exc:
                log.warning("fault proxy: upstream %s:%d: %s", *self.upstream, exc)
                writer.close()
                return
            spoil = self.plan.connections == 0 or n <= self.plan.connections
            fault = self.plan.fault if spoil else AIFault.NONE
            await _Conn(self, (reader, writer), upstream, fault).run()
        except asyncio.CancelledError:
            # the proxy is closing: end quietly (a cancelled handler makes asyncio log an error)
            writer.close()
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
