"""Reload: a good new file swaps the table, a bad one keeps the old; calls keep their snapshot."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.agent.helpers import wait_until
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.config import load_settings
from w3sipagent.tenants.resolver import CallRequest, Rejection, Resolution

BASE = """
include = ["tenants.d/*.toml"]
[tenancy]
reload_interval = "50ms"
[tenants.acme]
hosts = ["acme.example"]
[tenants.acme.agents.support]
instructions = "{prompt}"
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    st = path.stat()  # make sure the mtime moves even on coarse clocks
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    p = tmp_path / "w3sipagent.toml"
    write(p, BASE.format(prompt="v1"))
    return p


def registry(conf: Path) -> TenantRegistry:
    return TenantRegistry(
        load_settings(conf, {}, environ={}), lambda: load_settings(conf, {}, environ={})
    )


def prompt_of(reg: TenantRegistry) -> str:
    r = reg.table.resolve(CallRequest("acme.example", "127.0.0.1"))
    assert isinstance(r, Resolution)
    return r.agent.instructions


def test_reload_swaps_and_active_calls_keep_snapshot(conf: Path) -> None:
    reg = registry(conf)
    call_table = reg.table  # an active call took its snapshot at admission
    write(conf, BASE.format(prompt="v2"))
    assert reg.changed()
    assert reg.reload() is True
    assert prompt_of(reg) == "v2" and reg.reloads == 1 and not reg.changed()
    r = call_table.resolve(CallRequest("acme.example", "127.0.0.1"))
    assert isinstance(r, Resolution) and r.agent.instructions == "v1"


def test_bad_file_keeps_old_config_and_logs_one_line(
    conf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reg = registry(conf)
    write(
        conf,
        BASE.format(prompt="v2").replace(
            "[tenants.acme.agents.support]", "[tenants.acme.agents.support]\nvoice = 'bob'"
        ),
    )
    with caplog.at_level(logging.ERROR, logger="w3sipagent.tenants"):
        assert reg.reload() is False
    assert prompt_of(reg) == "v1" and reg.failures == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "w3sipagent.tenants"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("config reload refused, keeping the running tenants: ")
    assert f"{conf}: tenant 'acme': agents.support.voice: must be one of" in lines[0]
    assert not reg.changed()  # the bad version is not retried in a loop


async def test_watch_polls_files_and_includes(conf: Path) -> None:
    reg = registry(conf)
    seen: list[int] = []
    reg.add_listener(lambda table: seen.append(len(table)))
    assert reg.interval == 0.05
    reg.start()
    try:
        write(
            conf.parent / "tenants.d" / "globex.toml",
            '[tenants.globex]\nhosts = ["globex.example"]\n[tenants.globex.agents.main]\n',
        )
        await wait_until(lambda: reg.table.get("globex") is not None, what="globex added")
        assert reg.table.get("globex") is not None and seen == [2]
        r = reg.table.resolve(CallRequest("globex.example", "127.0.0.1"))
        assert isinstance(r, Resolution) and r.tenant.id == "globex"
        (conf.parent / "tenants.d" / "globex.toml").unlink()
        await wait_until(lambda: reg.table.get("globex") is None, what="globex removed")
        assert isinstance(reg.table.resolve(CallRequest("globex.example", "127.0.0.1")), Rejection)
    finally:
        await reg.stop()


async def test_areload_and_restart_sections_warned(
    conf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reg = registry(conf)
    write(conf, BASE.format(prompt="v3") + '[sip]\nlisten = "127.0.0.1:5999"\n')
    with caplog.at_level(logging.WARNING, logger="w3sipagent.tenants"):
        assert await reg.areload() is True
    assert prompt_of(reg) == "v3"
    assert any("[sip] changed; restart to apply it" in r.getMessage() for r in caplog.records)
