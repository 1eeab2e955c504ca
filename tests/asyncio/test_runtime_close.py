"""Closing a user agent leaves none of its tasks running: the tasks its cancelled tasks
spawn while ending (a call's end callback spawning its BYE) are cancelled too."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from w3sipagent.asyncio.runtime import UaRuntime
from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.sip.ids import CountingIdSource


async def test_cancel_tasks_also_ends_what_ending_tasks_spawn() -> None:
    rt = UaRuntime(
        UserAgentConfig(),
        cast(Any, None),
        cast(Any, None),
        cast(Any, None),
        CountingIdSource(),
        asyncio.get_running_loop(),
    )
    spawned: list[asyncio.Task[Any]] = []

    async def late_bye() -> None:
        await asyncio.sleep(30)

    async def handler() -> None:
        try:
            await asyncio.sleep(30)
        finally:  # as a call's end callback does: another task of the user agent
            spawned.append(rt.spawn(late_bye()))

    first = rt.spawn(handler())
    await asyncio.sleep(0)
    await rt.cancel_tasks(timeout=2.0)
    assert first.done() and len(spawned) == 1
    assert spawned[0].done(), "a task spawned while closing was left running"


async def test_cancel_tasks_cancels_each_task_once() -> None:
    """A task cleaning up after its cancellation (a bridge closing its AI session) is not
    cancelled again while other tasks are still ending."""
    rt = UaRuntime(
        UserAgentConfig(),
        cast(Any, None),
        cast(Any, None),
        cast(Any, None),
        CountingIdSource(),
        asyncio.get_running_loop(),
    )
    cleaned: list[str] = []

    async def bridge() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.2)  # closing its AI session
            cleaned.append("closed")

    async def quick() -> None:
        await asyncio.sleep(30)

    rt.spawn(bridge())
    rt.spawn(quick())
    await asyncio.sleep(0)
    await rt.cancel_tasks(timeout=2.0)
    assert cleaned == ["closed"]
