"""Two ``w3sipagent serve`` processes sharing one PostgreSQL: the tenant, its agents and its
number are provisioned through process A's HTTP API only; a real SIP call to the number on
process B reaches the agent the database names (CDR written by B, read through A's API);
the number re-pointed through A, B's next call goes to the other agent, no restart.

The AI is the local Realtime server (``w3sipagent.localai``), so both processes run
exactly as deployed: their own engines, their own polling of the change counter.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.helpers import wait_until
from tests.agentleaks import assert_agent_released, assert_released_at_shutdown
from tests.cli.test_serve import LogLines, poll, wait_ready
from tests.ports import free_port, rtp_block
from tests.postgres import PostgresCluster
from w3sipagent.cli.call import place_call
from w3sipagent.control.repo import ControlRepo
from w3sipagent.localai import RealtimeServer

if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("asyncpg") is None:
    pytest.skip("needs the API and the PostgreSQL driver", allow_module_level=True)

pytestmark = pytest.mark.postgres

ADMIN = "two-serve-admin-token-3"
DID = "+39061234567"
APPLIED = re.compile(r"control plane: change (\d+) applied")


def _config(path: Path, db: str, rt_port: int, *, api: int | None) -> tuple[Path, int, int]:
    sip, metrics = free_port(), free_port()
    lo, hi = rtp_block(40)
    api_table = f'[api]\nlisten = "127.0.0.1:{api}"\n' if api is not None else ""
    path.write_text(
        f"""
[sip]
listen = "127.0.0.1:{sip}"
transports = ["udp"]
[rtp]
port_min = {lo}
port_max = {hi}
[realtime]
base_url = "ws://127.0.0.1:{rt_port}/v1"
api_key = "sk-local-test"
[records]
database_url = "{db}"
[metrics]
listen = "127.0.0.1:{metrics}"
[logging]
json = true
[tenancy]
reload_interval = 0
[control]
source = "database"
poll_interval = 0.2
{api_table}"""
    )
    return path, sip, metrics


@asynccontextmanager
async def serve(cfg: Path, metrics: int) -> AsyncIterator[LogLines]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
    env["W3SIPAGENT_API__ADMIN_TOKEN"] = ADMIN
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "w3sipagent", "serve", "-c", str(cfg), "--no-live",
        "--workers", "1",  # one process each: the "applied" log line is then the process's
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    logs = LogLines(proc.stderr)
    try:
        await wait_ready(metrics)
        yield logs
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        await logs.end()


def applied(logs: LogLines) -> int:
    """The last change counter value this process applied to new calls."""
    versions = [int(m[1]) for m in (APPLIED.search(x) for x in logs.msgs()) if m]
    return max(versions, default=-1)


async def _ok(resp: Any, status: int = 200) -> Any:
    r = await resp
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def test_change_through_a_reaches_b_next_call(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    db = pg_cluster.create_database()
    repo = await ControlRepo.open(db)  # the test's own look at the change counter
    api_port = free_port()
    async with RealtimeServer(port=0, tts_engine="tone") as rt:
        cfg_a, _sip_a, met_a = _config(tmp_path / "a.toml", db, rt.port, api=api_port)
        cfg_b, sip_b, met_b = _config(tmp_path / "b.toml", db, rt.port, api=None)
        async with serve(cfg_a, met_a) as logs_a, serve(cfg_b, met_b) as logs_b:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api_port}",
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as a:
                await _ok(a.post("/api/tenants", json={"id": "acme", "codecs": ["PCMU"]}), 201)
                await _ok(a.post("/api/tenants/acme/stores", json={"id": "rome"}), 201)
                for name in ("support", "sales"):
                    body = {"name": name, "store_id": "rome", "greeting": f"{name} speaking."}
                    await _ok(a.post("/api/tenants/acme/agents", json=body), 201)
                did = {"number": DID, "store_id": "rome", "target_ref": "support"}
                await _ok(a.post("/api/tenants/acme/dids", json=did), 201)

                async def call_b() -> dict[str, Any]:
                    """A call to the DID on process B; its CDR, read through A's API."""
                    version = await repo.version()
                    await wait_until(
                        lambda: applied(logs_b) >= version, timeout=15, what="B polled"
                    )
                    before = await _ok(a.get("/api/tenants/acme/cdrs"))
                    s = await place_call(
                        f"sip:{DID}@127.0.0.1",
                        proxy=("127.0.0.1", sip_b),
                        duration=1.5,
                        rtp_ports=rtp_block(20),
                    )
                    assert s.answered and s.heard_speech_s > 0.3, s

                    rows: list[dict[str, Any]] = []

                    async def written() -> bool:  # B writes the CDR at the call's end
                        rows[:] = (await a.get("/api/tenants/acme/cdrs")).json()
                        return len(rows) > len(before)

                    await poll(written, 15, "the call's CDR")
                    assert len(rows) == len(before) + 1, rows
                    new = [r for r in rows if r["call_id"] not in {b["call_id"] for b in before}]
                    return new[0]

                first = await call_b()
                assert (first["tenant"], first["store_id"], first["agent"], first["did"]) == (
                    "acme", "rome", "support", DID,
                )  # fmt: skip
                put = {"number": DID, "store_id": "rome", "target_ref": "sales"}
                await _ok(a.put(f"/api/tenants/acme/dids/{DID}", json=put))
                second = await call_b()
                assert (second["agent"], second["did"], second["store_id"]) == (
                    "sales",
                    DID,
                    "rome",
                )
                # B released both calls; the shared database has B's two CDRs (A took none)
                await assert_agent_released(met_b, cfg_b, min_calls=2)
                await assert_agent_released(met_a, min_calls=0)
        for logs in (logs_a, logs_b):
            assert_released_at_shutdown("".join(logs.raw))
        assert applied(logs_a) >= 1  # A applied the changes it made at once, too
    await repo.close()
