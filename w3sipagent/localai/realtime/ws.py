"""The WebSocket side of the local Realtime server: one connection, one session."""

from __future__ import annotations

import json
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from w3sipagent.localai.realtime.ports import SessionEnded
from w3sipagent.localai.realtime.session import ServerSession

log = logging.getLogger(__name__)


class WebSocketTransport:
    """Sends server events as JSON text frames on a websockets connection."""

    kind = "websocket"

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    async def send_json(self, event: dict[str, Any]) -> None:
        """Send one event; a closed connection raises ``ConnectionError``."""
        try:
            await self.connection.send(json.dumps(event, separators=(",", ":")))
        except ConnectionClosed as exc:
            raise ConnectionError("WebSocket closed") from exc

    async def close(self, code: int, reason: str) -> None:
        """Close with a close frame (``code``, ``reason``)."""
        await self.connection.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self.connection.transport.abort()


async def run_websocket_session(connection: ServerConnection, session: ServerSession) -> None:
    """Drive ``session`` from ``connection`` until either side ends it."""
    reason = "client closed"
    try:
        await session.start()
        async for message in connection:
            await session.handle_text(message)
    except (SessionEnded, ConnectionError):
        reason = "server ended the session"
    except ConnectionClosed:
        reason = "connection lost"
    finally:
        session.closed(reason)
