"""Helpers for driving the local Realtime server with a raw websockets client."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from w3sipagent.localai import RealtimeServer, Scenario, ServerOptions
from w3sipagent.localai.realtime.events import SERVER_EVENTS

AUTH = {"Authorization": "Bearer test-key"}

TOOLS = [
    {
        "type": "function",
        "name": "check_order",
        "description": "Look up an order",
        "parameters": {"type": "object"},
    },
]

SCENARIO = Scenario.loads(
    """
name = "test"
fallback = "Anything else?"
[greeting]
say = "Hello caller."
[[turns]]
caller = "Where is my order?"
say = "Let me check."
call = { name = "check_order", arguments = { order_id = "42" }, after = "It shipped today." }
[[turns]]
caller = "Thanks, bye."
say = "Goodbye."
"""
)


class Client:
    """A raw Realtime WebSocket client for tests: send dicts, receive dicts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.rate_limits: list[dict[str, Any]] = []  # taken by until("response.done")
        self._pending: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        ev: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        # every event a test sees is one the server lists (and the SDK names)
        assert ev["type"] in SERVER_EVENTS, ev
        self.received.append(ev)
        return ev

    async def until(self, etype: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Events up to and including the first of type ``etype``.

        For ``response.done``, the ``rate_limits.updated`` that the service sends about
        40 ms after it is taken too (into :attr:`rate_limits`, not the list), so that the
        next ``until`` starts with the next turn's events."""
        out = []
        while True:
            ev = await self.recv(timeout)
            out.append(ev)
            if ev["type"] == etype:
                if etype == "response.done":
                    await self._take_rate_limits()
                return out

    async def _take_rate_limits(self) -> None:
        try:
            ev = await self.recv(1.0)
        except (TimeoutError, websockets.ConnectionClosed):
            return
        if ev["type"] == "rate_limits.updated":
            self.rate_limits.append(ev)
        else:
            self._pending.append(ev)

    async def append(self, audio: bytes, chunk: int = 160) -> None:
        for i in range(0, len(audio), chunk):
            await self.send(
                {
                    "type": "input_audio_buffer.append",
                    "audio": base64.b64encode(audio[i : i + chunk]).decode(),
                }
            )

    async def update(self, **session: Any) -> dict[str, Any]:
        await self.send({"type": "session.update", "session": {"type": "realtime", **session}})
        ev = await self.recv()
        return ev


def g711_session(td: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    return {
        "audio": {
            "input": {"format": {"type": "audio/pcmu"}, "turn_detection": td},
            "output": {"format": {"type": "audio/pcmu"}},
        },
        **extra,
    }


def types(events: list[dict[str, Any]], skip_deltas: bool = True) -> list[str]:
    out = [e["type"] for e in events]
    if skip_deltas:
        out = [t for t in out if not t.endswith(".delta")]
    return out


@pytest.fixture
def make_server() -> Callable[..., RealtimeServer]:
    def make(**kw: Any) -> RealtimeServer:
        kw.setdefault("scenario", SCENARIO)
        kw.setdefault("tts_engine", "tone")
        return RealtimeServer("127.0.0.1", 0, **kw)

    return make


@pytest.fixture
async def server(make_server: Callable[..., RealtimeServer]) -> AsyncIterator[RealtimeServer]:
    async with make_server() as srv:
        yield srv


async def connect(srv: RealtimeServer, headers: dict[str, str] | None = None) -> Client:
    ws = await websockets.connect(srv.ws_url, additional_headers=headers or AUTH)
    c = Client(ws)
    first = await c.recv()
    assert first["type"] == "session.created"
    return c


@pytest.fixture
async def client(server: RealtimeServer) -> AsyncIterator[Client]:
    c = await connect(server)
    yield c
    await c.ws.close()


__all__ = [
    "AUTH",
    "SCENARIO",
    "TOOLS",
    "Client",
    "ServerOptions",
    "connect",
    "g711_session",
    "types",
]
