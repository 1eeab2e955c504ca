"""The suite-wide release check (tests/leaks.py) sees what it should: a user agent left
open, a socket left open, a task of the package left pending; and nothing after a clean
close."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.leaks import ServiceWatch
from w3sipagent.agent.lifecycle import BridgeLife
from w3sipagent.asyncio.useragent import UserAgent, UserAgentConfig


def _config() -> UserAgentConfig:
    return UserAgentConfig(host="127.0.0.1", port=0, rtp_port_min=41000, rtp_port_max=41099)


async def test_clean_close_leaves_nothing() -> None:
    with pytest.MonkeyPatch.context() as mp:
        watch = ServiceWatch()
        watch.install(mp)
        ua = UserAgent(_config())
        await ua.start()
        await ua.close(timeout=0)
        await asyncio.sleep(0)  # a transport's socket closes on the next loop turn
        assert watch.problems() == []


async def test_open_user_agent_and_socket_are_seen() -> None:
    with pytest.MonkeyPatch.context() as mp:
        watch = ServiceWatch()
        watch.install(mp)
        ua = UserAgent(_config())
        await ua.start()
        stray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            problems = watch.problems()
            assert any("not closed by the test" in p for p in problems), problems
            await ua.close(timeout=0)
            await asyncio.sleep(0)
            problems = watch.problems()
            assert any("sockets opened during the test" in p for p in problems), problems
        finally:
            stray.close()
        assert watch.problems() == []


async def test_package_task_left_pending_is_seen(release_watch: ServiceWatch) -> None:
    with pytest.MonkeyPatch.context() as mp:
        watch = ServiceWatch()
        watch.install(mp)
        ua = UserAgent(_config())
        await ua.start()
        life = BridgeLife()  # a coroutine of the package that waits until told
        life.start()
        stuck = asyncio.ensure_future(life.wait())
        own = asyncio.ensure_future(asyncio.sleep(30))  # the test's own: not judged
        await ua.close(timeout=0)
        assert len(watch.package_tasks_left) == 1, watch.package_tasks_left
        assert "BridgeLife.wait" in watch.package_tasks_left[0]
        for task in (stuck, own):
            task.cancel()
        await asyncio.gather(stuck, own, return_exceptions=True)
    # the suite's own watch saw the same task; it is gone now
    release_watch.package_tasks_left = release_watch.pending_package_tasks()
