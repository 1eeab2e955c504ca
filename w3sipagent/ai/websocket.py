"""Opening the WebSocket of an AI service, shared by the Realtime and GPT-Live clients:
the key in ``Authorization: Bearer`` (never in the URL, never in an error), no
compression, and every way the connection can fail as one :class:`~w3sipagent.errors.AIError`.

:class:`WebSocketConnector` opens it with a client's own settings. How a refusal (an HTTP
status instead of the upgrade) is worded stays with each back end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from w3sipagent.ai.redaction import redact
from w3sipagent.errors import AIError

__all__ = ["WebSocketConnector", "connect_websocket"]


async def connect_websocket(
    url: str,
    api_key: str,
    *,
    refused: Callable[[InvalidStatus], str],
    open_timeout: float,
    ping_interval: float | None,
    ping_timeout: float | None,
    close_timeout: float,
    max_size: int,
    proxy: str | Literal[True] | None,
    logger: logging.Logger,
) -> ClientConnection:
    """Connect to ``url`` with ``api_key``; ``refused`` words an HTTP refusal. Raises
    :class:`~w3sipagent.errors.AIError` (with no key in it)."""
    try:
        return await connect(
            url,
            additional_headers={"Authorization": f"Bearer {api_key}"},
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_size=max_size,
            compression=None,
            proxy=proxy,
            logger=logger,
        )
    except InvalidStatus as exc:
        raise AIError(refused(exc)) from None
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        text = redact(f"{type(exc).__name__}: {exc}", api_key)
        raise AIError(f"cannot connect to {url}: {text}") from None


class WebSocketConnector:
    """Mixin of a WebSocket client: :meth:`_connect_websocket` opens ``url`` with the
    client's key, timeouts, proxy, message limit and wire log; :meth:`_refused` words a
    refusal."""

    _api_key: str
    _wire_log: logging.Logger
    connect_timeout: float
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float
    max_message_bytes: int
    proxy: str | Literal[True] | None

    @property
    def url(self) -> str:
        """The WebSocket URL (no secret in it)."""
        raise NotImplementedError

    def _refused(self, exc: InvalidStatus) -> str:
        """What the error says when the service answers ``exc``'s HTTP status."""
        raise NotImplementedError

    async def _connect_websocket(self) -> ClientConnection:
        return await connect_websocket(
            self.url,
            self._api_key,
            refused=self._refused,
            open_timeout=self.connect_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            max_size=self.max_message_bytes,
            proxy=self.proxy,
            logger=self._wire_log,
        )
