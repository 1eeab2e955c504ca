"""The background tasks of one local-server session (the Realtime and GPT-Live ones alike)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["TaskSet"]


class TaskSet:
    """A session's tasks: each is kept until it is done and all are cancelled together.

    A task that fails with anything but one of ``expected`` (the ways a session ends) goes to
    ``report``; a cancelled one is not a failure.
    """

    def __init__(
        self,
        *,
        expected: tuple[type[BaseException], ...],
        report: Callable[[BaseException], None],
    ) -> None:
        self.expected = expected
        self.report = report
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as one of the tasks."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def cancel_all(self) -> None:
        """Cancel every task still running."""
        for task in list(self._tasks):
            task.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if exc is not None and not isinstance(exc, self.expected):
                self.report(exc)
