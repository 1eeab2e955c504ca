"""`w3sipagent demo --backend live` end to end in a subprocess, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from w3sipagent.demo_assets import CALLER_LINES


@pytest.mark.slow
def test_demo_runs_offline_on_gpt_live(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("W3SIPAGENT_", "OPENAI"))}
    out = subprocess.run(
        [
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
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "local GPT-Live server on ws://127.0.0.1:" in out.stderr
    assert "agent   Hello, thank you for calling Bistro Lumen." in text
    for line in CALLER_LINES:
        assert f"caller  {line}" in text
    assert "We are open tonight from six until eleven." in text
    assert 'check_reservation({"name": "Martin", "party_size": 2})' in text
    assert "transfer  manager (sip:manager@bistro.example): succeeded" in text
    assert 'backend = "live"' in (run_dir / "w3sipagent.toml").read_text()
