"""``w3sipagent demo --console``: the console served beside the demo's agent, its URL and a
one-off admin token printed."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import httpx

from w3sipagent.cli.demo import start_console
from w3sipagent.config import load_settings


class StubService:
    bridges: dict[str, Any] = {}

    def live_calls(self) -> list[Any]:
        return []


async def test_start_console_prints_url_and_token(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {"records.database_url": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"},
        environ={},
        discover=False,
    )
    said: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        url = await start_console(stack, settings, StubService(), said.append)
        [line] = said
        assert url in line and url.endswith("/console/")
        token = re.search(r"admin token (\S+)\)", line)
        assert token is not None
        async with httpx.AsyncClient() as c:
            page = await c.get(url)
            assert page.status_code == 200 and "w3sipagent console" in page.text
            base = url.removesuffix("/console/")
            auth = {"Authorization": f"Bearer {token.group(1)}"}
            assert (await c.get(f"{base}/api/live/calls", headers=auth)).status_code == 200
            assert (await c.get(f"{base}/api/live/calls")).status_code == 401
