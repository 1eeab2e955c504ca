"""A running local cascade server on 127.0.0.1 and an httpx client for it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from w3sipagent.localai import Scenario
from w3sipagent.localai.cascade import CascadeServer

KEY = "sk-test-cascade-0001"
AUTH = {"Authorization": f"Bearer {KEY}"}

SCENARIO = Scenario.loads(
    """
name = "cascade-test"
fallback = "Anything else?"
[greeting]
say = "Hello caller."
[[turns]]
caller = "Where is my order?"
say = "Let me check."
call = { name = "check_order", arguments = { order_id = "42" }, after = "It shipped today." }
[[turns]]
caller = "Thanks, bye."
say = "Goodbye. Have a nice day!"
"""
)

TOOLS_RESPONSES = [
    {"type": "function", "name": "check_order", "parameters": {"type": "object"}},
]
TOOLS_CHAT = [
    {"type": "function", "function": {"name": "check_order", "parameters": {"type": "object"}}},
]


@pytest.fixture
async def server() -> AsyncIterator[CascadeServer]:
    async with CascadeServer(scenario=SCENARIO, api_keys=[KEY], tts_engine="tone") as srv:
        yield srv


@pytest.fixture
async def client(server: CascadeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH, timeout=10) as c:
        yield c


async def sse_events(resp: httpx.Response) -> list[dict[str, Any]]:
    """The JSON data of every event of a streamed response ([DONE] kept as a string)."""
    out: list[Any] = []
    names: list[str] = []
    async for line in resp.aiter_lines():
        if line.startswith("event: "):
            names.append(line[7:])
        elif line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    if names:  # named events: the name must be the type of its data
        assert names == [e["type"] for e in out]
    return out
