"""Small CLI items: a reversed --rtp-ports range, doctor's hint for a missing key naming the
tenant's configured variable or file, and the help texts of serve / run for REGISTER mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli.conftest import TWO_TENANTS, invoke, write_config


@pytest.mark.parametrize("command", [["serve"], ["run", "acme"]])
def test_reversed_rtp_range_says_min_above_max(
    runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    cfg = write_config(tmp_path, TWO_TENANTS)
    result = invoke(runner, *command, "-c", str(cfg), "--rtp-ports", "5-3")
    assert result.exit_code == 2, result.output
    assert "--rtp-ports 5-3: min > max (5 > 3)" in result.output
    assert "--rtp-ports 3-5" in result.output  # the fix
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("value", "needle"),
    [("20000-20000", "min = max"), ("80-90", "1024-65535"), ("20000", "expected MIN-MAX")],
)
def test_other_bad_rtp_ranges(runner: CliRunner, tmp_path: Path, value: str, needle: str) -> None:
    cfg = write_config(tmp_path, TWO_TENANTS)
    result = invoke(runner, "serve", "-c", str(cfg), "--rtp-ports", value)
    assert result.exit_code == 2 and needle in result.output, result.output


def doctor_fix(output: str, check: str) -> str:
    """The "fix" cell of a doctor check, its folded lines joined."""
    parts: list[str] = []
    inside = False
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) != 4:
            inside = False
            continue
        if cells[0]:
            inside = cells[0] == check
        if inside and cells[3]:
            parts.append(cells[3])
    return " ".join(parts)


DOCTOR_CONFIG = """
[sip]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[records]
database_url = "sqlite+aiosqlite:///doc.db"
[tenants.acme]
hosts = ["acme.example"]
api_key = {{ {ref} }}
[tenants.acme.agents.main]
instructions = "Acme."
"""


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ('env = "ACME_OPENAI_KEY_UNSET"', "environment variable ACME_OPENAI_KEY_UNSET is not set"),
        ('file = "missing/acme.key"', "file {dir}/missing/acme.key not found"),
    ],
)
def test_doctor_missing_key_hint_names_the_tenants_reference(
    runner: CliRunner, tmp_path: Path, ref: str, needle: str
) -> None:
    cfg = write_config(tmp_path, DOCTOR_CONFIG.format(ref=ref))
    # port 9 (discard) is never contacted: without a key the check stops before connecting
    result = invoke(runner, "doctor", "-c", str(cfg), "--realtime-url", "ws://127.0.0.1:9/v1")
    assert result.exit_code == 1, result.output
    assert "no API key to try" in result.output
    fix = doctor_fix(result.output, "Realtime API")
    expected = (
        f"tenant 'acme': api_key: {needle.format(dir=tmp_path)}: set it, or give realtime.api_key"
    )
    assert "".join(fix.split()) == "".join(expected.split()), fix  # folded cells


def test_doctor_without_any_key_reference_names_the_setting(
    runner: CliRunner, tmp_path: Path
) -> None:
    body = DOCTOR_CONFIG.replace("api_key = {{ {ref} }}\n", "")
    cfg = write_config(tmp_path, body)
    result = invoke(runner, "doctor", "-c", str(cfg), "--realtime-url", "ws://127.0.0.1:9/v1")
    assert result.exit_code == 1
    fix = doctor_fix(result.output, "Realtime API")
    assert fix.startswith("set W3SIPAGENT_REALTIME__API_KEY (realtime.api_key) or give"), fix


@pytest.mark.parametrize("command", [["serve"], ["run"]])
def test_serve_and_run_help_explain_register_mode(runner: CliRunner, command: list[str]) -> None:
    result = invoke(runner, *command, "--help")
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    assert "REGISTER mode" in flat and "registrations" in flat
    assert "unregister" in flat
