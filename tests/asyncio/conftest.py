"""Fixtures for the user agent tests: user agents that are always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.asyncio.helpers import fast_config
from w3sipagent.asyncio.useragent import UserAgent

UaFactory = Callable[..., Awaitable[UserAgent]]


@pytest.fixture
async def make_ua() -> AsyncIterator[UaFactory]:
    """``await make_ua(handler=..., admission=..., **config_overrides)``: a started UA."""
    made: list[UserAgent] = []

    async def factory(**kwargs: Any) -> UserAgent:
        ua_kwargs = {
            k: kwargs.pop(k) for k in ("handler", "admission", "ids", "sender") if k in kwargs
        }
        ua = UserAgent(fast_config(**kwargs), **ua_kwargs)
        await ua.start()
        made.append(ua)
        return ua

    yield factory
    for ua in made:
        await ua.close(timeout=0)
        assert ua.ports.in_use == 0, "RTP ports leaked"
