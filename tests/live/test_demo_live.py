"""`w3sipagent demo --backend live` end to end in a subprocess, offline: inside a network
namespace that has only ``lo`` (no route out) when this machine allows creating one."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agentleaks import assert_released_at_shutdown
from w3sipagent.demo_assets import CALLER_LINES


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@contextlib.contextmanager
def no_route_out() -> Iterator[list[str]]:
    """The command prefix that runs inside a fresh loopback-only namespace ([] when namespaces
    cannot be made here: the demo then runs in the test's own network)."""
    name = f"w3s-live-{secrets.token_hex(4)}"
    if shutil.which("ip") is None or _ip("netns", "add", name).returncode != 0:
        yield []
        return
    try:
        assert _ip("netns", "exec", name, "ip", "link", "set", "lo", "up").returncode == 0
        links = _ip("netns", "exec", name, "ip", "-o", "link", "show").stdout
        assert [ln.split(":")[1].strip() for ln in links.splitlines() if ":" in ln] == ["lo"]
        yield ["ip", "netns", "exec", name]
    finally:
        _ip("netns", "del", name)


@pytest.mark.slow
def test_demo_runs_offline_on_gpt_live(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("W3SIPAGENT_", "OPENAI"))}
    with no_route_out() as prefix:
        out = _run_demo(prefix, run_dir, env)
    _check(out, run_dir)


def _run_demo(
    prefix: list[str], run_dir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "w3sipagent",
            "demo",
            "--backend",
            "live",
            "--tts",
            "tone",
            "--dir",
            str(run_dir),
            "--max-duration",
            "45",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env={**env, "COLUMNS": "200"},
    )


def _check(out: subprocess.CompletedProcess[str], run_dir: Path) -> None:
    assert out.returncode == 0, out.stdout + out.stderr
    assert_released_at_shutdown(out.stderr)  # the GPT-Live session closed, its CDR written
    assert "nothing left open (1 admitted + 0 dialed, 1 CDRs)" in out.stderr
    text = out.stdout
    assert "local GPT-Live server on ws://127.0.0.1:" in out.stderr
    assert "agent   Hello, thank you for calling Bistro Lumen." in text
    for line in CALLER_LINES:
        assert f"caller  {line}" in text
    assert "We are open tonight from six until eleven." in text
    assert 'check_reservation({"name": "Martin", "party_size": 2})' in text
    assert "transfer  manager (sip:manager@bistro.example): succeeded" in text
    assert 'backend = "live"' in (run_dir / "w3sipagent.toml").read_text()
