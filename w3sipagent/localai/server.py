"""What the local Realtime and GPT-Live servers share once bound: the port, closing with
their WebRTC calls, ``async with`` and serving until cancelled.

Each server binds in its own :meth:`LocalServer.start` (its own handler, paths, message
size and wire log).
"""

from __future__ import annotations

from typing import Any, Self

from websockets.asyncio.server import Server

__all__ = ["LocalServer"]


class LocalServer:
    """The shared lifecycle of a local server; subclasses set ``_port``, ``calls`` and
    ``_server`` (None until :meth:`start`) and give :meth:`start`."""

    _port: int
    _server: Server | None
    calls: dict[str, Any]

    async def start(self) -> None:
        """Bind and start serving."""
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop serving, end every session and call."""
        for call in list(self.calls.values()):
            await call.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()
