"""``w3sipagent knowledge sync | search | status`` as a real process against the local server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.knowledge.conftest import FILES, KEY, write_files
from w3sipagent.localai.cascade import CascadeServer

ROOT = Path(__file__).resolve().parents[2]


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "w3sipagent",
        "knowledge",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_sync_search_status(tmp_path: Path, server: CascadeServer) -> None:
    write_files(tmp_path / "kb", FILES["acme"])
    cfg = tmp_path / "w3sipagent.toml"
    cfg.write_text(
        f"""
[records]
database_url = "sqlite+aiosqlite:///{tmp_path / "records.db"}"
[tenants.acme]
hosts = ["acme.example"]
api_key = {{ env = "KB_KEY" }}
knowledge = {{ paths = ["kb"], base_url = "{server.base_url}", chunk_size = 200, chunk_overlap = 20 }}
[tenants.acme.agents.front]
knowledge = true
[tenants.other]
hosts = ["other.example"]
[tenants.other.agents.front]
""",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "KB_KEY": KEY,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    code, out, err = await _cli("sync", "acme", "-c", str(cfg), env=env)
    assert code == 0, err
    assert "acme: 3 added, 0 updated, 0 unchanged, 0 removed" in out
    code, out, _ = await _cli("sync", "-c", str(cfg), "--json", env=env)
    assert code == 0
    (report,) = json.loads(out)
    assert report["tenant"] == "acme" and len(report["unchanged"]) == 3
    assert report["chunks_embedded"] == 0
    code, out, _ = await _cli(
        "search", "acme", "where can I park", "-c", str(cfg), "--json", "-k", "1", env=env
    )
    assert code == 0
    (hit,) = json.loads(out)
    assert hit["source"] == "menu/parking.md" and hit["chunk"] == 0
    code, out, _ = await _cli("status", "-c", str(cfg), env=env)
    assert code == 0 and "acme" in out and "3" in out
    code, _, err = await _cli("sync", "other", "-c", str(cfg), env=env)
    assert code == 2 and "tenant 'other' has no knowledge base" in err
    code, _, err = await _cli("sync", "nobody", "-c", str(cfg), env=env)
    assert code == 2 and "no tenant 'nobody'" in err
    code, _, err = await _cli("sync", "acme", "-c", str(cfg), env={**env, "KB_KEY": ""})
    assert code == 1 and "KB_KEY" in err and KEY not in err
