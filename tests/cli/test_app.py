"""The command tree: help everywhere, version, exit codes, python -m."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.conftest import invoke

COMMANDS = [
    [],
    ["serve"],
    ["run"],
    ["call"],
    ["dial"],
    ["demo"],
    ["realtime-server"],
    ["doctor"],
    ["cdr"],
    ["cdr", "list"],
    ["cdr", "show"],
    ["cdr", "export"],
    ["config"],
    ["config", "check"],
    ["freeswitch"],
    ["freeswitch", "dialplan"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_everywhere(runner, cmd) -> None:  # type: ignore[no-untyped-def]
    result = invoke(runner, *cmd, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    # a real description, not an empty docstring
    assert len(result.output.split("Usage:", 1)[1].strip()) > 60


def test_version(runner) -> None:  # type: ignore[no-untyped-def]
    from w3sipagent import __version__

    result = invoke(runner, "--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"w3sipagent {__version__}"


def test_unknown_command_is_usage_error(runner) -> None:  # type: ignore[no-untyped-def]
    result = invoke(runner, "frobnicate")
    assert result.exit_code == 2


def test_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "w3sipagent", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("w3sipagent ")
