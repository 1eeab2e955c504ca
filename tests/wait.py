"""Waiting for an outcome instead of sleeping for a guess.

The same ``wait_until`` as tests/agent/helpers.py, with a polling ``interval`` for
predicates that cost something (a ``kamcmd`` run, a file read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(
    pred: Callable[[], object], timeout: float = 3.0, what: str = "", *, interval: float = 0.005
) -> None:
    """Return once ``pred()`` is truthy; AssertionError naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
        await asyncio.sleep(interval)
