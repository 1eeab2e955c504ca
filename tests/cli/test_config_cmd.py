"""`w3sipagent config check`: sources shown, one-line errors, exit codes, secrets masked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import TWO_TENANTS, invoke, write_config


def test_valid_config_shows_sources(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, TWO_TENANTS)
    result = invoke(
        runner,
        "config",
        "check",
        "--json",
        "-c",
        str(cfg),
        env={"W3SIPAGENT_SIP__MAX_CALLS": "17", "ACME_KEY_FOR_TEST": "sk-test-not-shown-123"},
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {r["key"]: r for r in data["settings"]}
    assert rows["sip.listen"]["value"] == "127.0.0.1:5090"
    assert rows["sip.listen"]["source"] == f"file:{cfg}"
    assert rows["sip.max_calls"]["value"] == 17
    assert rows["sip.max_calls"]["source"] == "env:W3SIPAGENT_SIP__MAX_CALLS"
    assert rows["sip.t1"]["source"] == "default"
    assert data["tenants"] == ["acme", "globex"]
    assert "sk-test-not-shown-123" not in result.output
    # globex has no key at all: a warning, not an error
    assert any("globex" in w and "api_key" in w for w in data["warnings"])
    assert not any("ACME_KEY_FOR_TEST" in w for w in data["warnings"])


def test_table_output_and_warnings(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, TWO_TENANTS)
    result = invoke(runner, "config", "check", "-c", str(cfg))
    assert result.exit_code == 0
    assert "configuration valid: 2 tenant(s)" in result.output
    assert "ACME_KEY_FOR_TEST is not set" in result.output
    strict = invoke(runner, "config", "check", "--strict", "-c", str(cfg))
    assert strict.exit_code == 1


def test_bad_value_is_one_line_with_file_tenant_key(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, TWO_TENANTS.replace('instructions = "Sales."', 'voice = "bob"'))
    result = invoke(runner, "config", "check", "-c", str(cfg))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("error:"))
    assert str(cfg) in line
    assert "tenant 'acme'" in line
    assert "agents.sales.voice" in line
    assert "'bob'" in line


def test_missing_file(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke(runner, "config", "check", "-c", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "not found" in result.output
    assert "fix:" in result.output


def test_flag_and_env_in_subprocess(tmp_path: Path) -> None:
    """The installed entry point: a bad environment value names the variable, no traceback."""
    cfg = write_config(tmp_path, TWO_TENANTS)
    out = subprocess.run(
        [sys.executable, "-m", "w3sipagent", "config", "check", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "W3SIPAGENT_RTP__PORT_MIN": "banana"},
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "W3SIPAGENT_RTP__PORT_MIN" in out.stderr
    assert "rtp.port_min" in out.stderr
