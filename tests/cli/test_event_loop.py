"""The event loop the CLI runs on: asyncio by default, uvloop on request, a clear error otherwise."""

from __future__ import annotations

import asyncio

import pytest

from w3sipagent.cli.common import EVENT_LOOP_ENV, CliError, run_async


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_default_loop_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert run_async(_loop_module()).startswith("asyncio")


def test_uvloop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop", reason="uvloop (the speed extra) is not installed")
    monkeypatch.setenv(EVENT_LOOP_ENV, "uvloop")
    assert run_async(_loop_module()).startswith("uvloop")


def test_unknown_loop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")
    with pytest.raises(CliError, match="use asyncio or uvloop") as info:
        run_async(_loop_module())
    assert info.value.code == 2
