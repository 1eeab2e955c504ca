"""The WebSocket transport of an OpenAI Realtime (GA) session.

:class:`RealtimeClient` is a :class:`~w3sipagent.realtime.session.RealtimeSessionBase`
(the transport-neutral runner) over a websockets connection::

    client = RealtimeClient(config, api_key=key)          # wss://api.openai.com/v1
    await client.start()                                   # session.updated received
    client.send_audio(frame)                               # 20 ms of PCMU, sent at once
    async for event in client.events(): ...

API keys are never logged, never in exceptions, never in ``repr``.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from w3sipagent.ai import session as ai
from w3sipagent.ai.channel import Channel, ChannelClosed
from w3sipagent.ai.redaction import redact, wire_logger
from w3sipagent.ai.websocket import WebSocketConnector
from w3sipagent.realtime.session import DEFAULT_MODEL, Link, RealtimeSessionBase

DEFAULT_BASE_URL = "wss://api.openai.com/v1"


_WIRE_LOG = wire_logger("w3sipagent.realtime.wire")

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "Channel",
    "ChannelClosed",
    "Link",
    "RealtimeClient",
    "RealtimeSessionBase",
    "redact",
]


class _WebSocketChannel:
    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise ChannelClosed(_closed_reason(exc)) from None

    async def recv(self) -> str:
        try:
            message = await self._ws.recv()
        except ConnectionClosed as exc:
            raise ChannelClosed(_closed_reason(exc)) from None
        return message if isinstance(message, str) else message.decode("utf-8", "replace")

    async def close(self) -> None:
        await self._ws.close()


def _closed_reason(exc: ConnectionClosed) -> str:
    if exc.rcvd is not None:
        text = f"server closed the WebSocket: code {exc.rcvd.code}"
        return f"{text} ({exc.rcvd.reason})" if exc.rcvd.reason else text
    return "WebSocket connection lost without a close frame"


def _http_error_code(body: bytes | None) -> str | None:
    try:
        data = json.loads(body or b"")
        code = data["error"]["code"] or data["error"]["type"]
        return str(code)[:60]
    except (ValueError, KeyError, TypeError):
        return None


class RealtimeClient(RealtimeSessionBase, WebSocketConnector):
    """The OpenAI Realtime GA API over a WebSocket: ``{base_url}/realtime?model=...``.

    ``base_url`` may point at a compatible server (``ws://127.0.0.1:PORT/v1``). The key
    goes in ``Authorization: Bearer``; there is no beta header. ``connect_timeout``
    bounds the TCP/TLS/HTTP handshake; ``ping_interval``/``ping_timeout`` detect a dead
    connection within ``ping_interval + ping_timeout + close_timeout`` (12 s by default);
    ``proxy`` is passed to websockets (True: from
    the environment).
    """

    _wire_log = _WIRE_LOG

    def __init__(
        self,
        config: ai.AISessionConfig,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout: float = 10.0,
        ping_interval: float | None = 5.0,
        ping_timeout: float | None = 5.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        proxy: str | bool | None = True,
        **options: Any,
    ) -> None:
        super().__init__(config, **options)
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_message_bytes = max_message_bytes
        self.proxy: str | Literal[True] | None = True if proxy is True else (proxy or None)

    def __repr__(self) -> str:
        return f"RealtimeClient(url={self.url!r})"

    @property
    def url(self) -> str:
        """The WebSocket URL (no secret in it)."""
        return f"{self.base_url}/realtime?model={quote(self._config.model, safe='')}"

    async def _open_channel(self, link: Link) -> Channel:
        ws = await self._connect_websocket()
        return _WebSocketChannel(ws)

    def _refused(self, exc: InvalidStatus) -> str:
        status = exc.response.status_code
        code = _http_error_code(bytes(exc.response.body or b""))
        detail = f" ({redact(code, self._api_key)})" if code else ""
        hint = ": check the API key" if status in (401, 403) else ""
        return f"Realtime server refused {self.url}: HTTP {status}{detail}{hint}"
