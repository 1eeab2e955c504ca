"""What a GPT-Live client session runs over: a :class:`Channel` of JSON events (shared with
the Realtime back end in :mod:`w3sipagent.ai.channel`), the GPT-Live WebSocket as one, and
:class:`Conn`, one session's protocol state, channel, writer queue and tasks."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from w3sipagent.ai.channel import Channel, ChannelClosed, SessionLink
from w3sipagent.live.protocol import LiveProtocol

__all__ = ["Channel", "ChannelClosed", "Conn", "WebSocketChannel"]


class WebSocketChannel:
    """A websockets client connection as a :class:`Channel`."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except ConnectionClosed:
            raise ChannelClosed("connection lost") from None

    async def recv(self) -> str:
        try:
            message = await self._ws.recv()
        except ConnectionClosed as exc:
            reason = f"WebSocket closed: code {exc.rcvd.code}" if exc.rcvd else "connection lost"
            raise ChannelClosed(reason) from None
        return message if isinstance(message, str) else ""

    async def close(self) -> None:
        await self._ws.close()

    def abort(self) -> None:
        """Drop the connection at once (no closing handshake)."""
        self._ws.transport.abort()


class Conn(SessionLink[LiveProtocol]):
    """One session of a client: protocol state, channel, writer queue, tasks; ``extra``
    holds transport state (WebRTC tracks); ``ended`` is set when its reader stopped."""

    def __init__(self, proto: LiveProtocol) -> None:
        super().__init__(proto)
        self.ended = asyncio.Event()
