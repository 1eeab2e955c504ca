"""Serving the API with uvicorn inside the agent's event loop (``serve --api``).

uvicorn is run as a task of the running loop; it does not take SIGTERM/SIGINT over (the
agent drains on them itself), and :meth:`ApiServer.close` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

__all__ = ["ApiServer"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the agent owns the signals


class ApiServer:
    """uvicorn serving ``app`` on ``host``:``port`` (0: a free port, see :attr:`port`)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        self._app = app
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self.host = host

    @property
    def port(self) -> int:
        """The port listened on (after :meth:`start`)."""
        sock = self._server.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen; raises OSError (e.g. address in use) when it cannot."""
        self._task = asyncio.create_task(self._server.serve(), name="w3sipagent-api")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # the reason it stopped (bind error...)
                raise OSError("the API server stopped at start-up")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop accepting, finish the requests in progress, stop."""
        if self._task is None:
            return
        closing = getattr(self._app.state, "streams_closing", None)
        if closing is not None:
            closing.set()  # end the console's event streams, which never finish by themselves
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
