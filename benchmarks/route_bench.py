"""Route lookup benchmark: 10,000 DIDs and 1,000 tenants in SQLite.

Run::

    .venv/bin/python benchmarks/route_bench.py [--tenants 1000] [--dids-per-tenant 10] [--lookups 2000]

Prints a table, then one JSON object (``--json PATH`` also writes it).

What is measured (one process, a fresh SQLite file, nothing else on the event loop):

- **rebuild**: reading every control-plane row and building the live tenant table
  (:meth:`ControlRepo.snapshot` + :func:`table_from_settings`): what each agent process does
  once per change (it polls the change counter every ``control.poll_interval``).
- **poll**: one read of the change counter (what every process does every poll interval).
- **table**: :func:`route_inbound` on the live table (the work behind both routing endpoints).
- **http**: ``GET /api/voip/routes/inbound?did=…`` through the FastAPI app (ASGI, in process:
  auth with the admin token, the lookup, the bridge string, JSON), per request.
- **sql**: one indexed ``SELECT`` of the DID row (for comparison: a lookup that would go to
  the database every time instead of the table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from pydantic import SecretStr
from sqlalchemy import insert, select

from w3sipagent.agent.reload import TenantRegistry, table_from_settings
from w3sipagent.api import ApiContext, create_app
from w3sipagent.config import load_settings
from w3sipagent.control.models import (
    AgentRow,
    DidRow,
    HostRow,
    StoreRow,
    TenantRow,
    TrunkRow,
)
from w3sipagent.control.repo import ControlRepo
from w3sipagent.control.routing import route_inbound
from w3sipagent.tenants.agents import AgentConfig

TOKEN = "bench-admin-token"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def stats(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50_ms": round(pct(samples_ms, 50), 4),
        "p99_ms": round(pct(samples_ms, 99), 4),
        "max_ms": round(max(samples_ms), 4),
        "mean_ms": round(statistics.fmean(samples_ms), 4),
    }


async def populate(repo: ControlRepo, tenants: int, per: int) -> list[str]:
    now = datetime.now(UTC)
    agent = AgentConfig(instructions="You answer the phone.").model_dump(mode="json")
    numbers: list[str] = []
    rows: dict[Any, list[dict[str, Any]]] = {
        TenantRow: [],
        HostRow: [],
        StoreRow: [],
        AgentRow: [],
        DidRow: [],
        TrunkRow: [],
    }
    for i in range(tenants):
        tid = f"t{i:04d}"
        rows[TenantRow].append(
            {
                "id": tid,
                "name": tid,
                "settings": {"codecs": ["PCMA", "PCMU"]},
                "created_at": now,
                "updated_at": now,
            }
        )
        rows[HostRow].append({"host": f"{tid}.example", "tenant_id": tid})
        rows[StoreRow].append({"tenant_id": tid, "id": "main", "name": "Main"})
        rows[AgentRow].append(
            {
                "tenant_id": tid,
                "name": "desk",
                "store_id": "main",
                "policy": "always_answer",
                "config": agent,
            }
        )
        rows[TrunkRow].append(
            {
                "tenant_id": tid,
                "name": "gw",
                "store_id": "main",
                "gateway": f"gw-{tid}",
                "source": None,
            }
        )
        for j in range(per):
            number = f"+3906{i:04d}{j:03d}"
            numbers.append(number)
            rows[DidRow].append(
                {
                    "number": number,
                    "tenant_id": tid,
                    "store_id": "main",
                    "target_type": "ai_agent",
                    "target_ref": "desk",
                }
            )
    async with repo.engine.begin() as conn:
        for table, values in rows.items():
            for k in range(0, len(values), 500):
                await conn.execute(insert(table), values[k : k + 500])
    return numbers


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="w3-route-bench-"))
    url = f"sqlite+aiosqlite:///{tmp / 'control.db'}"
    settings = load_settings(
        None,
        {"records.database_url": url, "control.source": "database"},
        environ={},
        discover=False,
    )
    repo = await ControlRepo.open(url)
    numbers = await populate(repo, args.tenants, args.dids_per_tenant)
    rng = random.Random(7)
    sample = [rng.choice(numbers) for _ in range(args.lookups)]

    rebuild: list[float] = []
    for _ in range(args.rebuilds):
        t0 = time.perf_counter()
        snap = await repo.snapshot()
        table = table_from_settings(settings, snap)
        rebuild.append((time.perf_counter() - t0) * 1000)
    assert len(table.tenants) == args.tenants and len(table.routes) == len(numbers)

    # after one change (a DID re-pointed): unchanged tenants are reused, not validated again
    from w3sipagent.control.schemas import DidIn

    one_change: list[float] = []
    for k in range(args.rebuilds):
        await repo.replace_item(
            "dids",
            "t0000",
            numbers[0],
            DidIn(number=numbers[0], store_id="main" if k % 2 else None, target_ref="desk"),
            actor="bench",
        )
        t0 = time.perf_counter()
        snap = await repo.snapshot(snap)
        table = table_from_settings(settings, snap)
        one_change.append((time.perf_counter() - t0) * 1000)

    poll: list[float] = []
    for _ in range(200):
        t0 = time.perf_counter()
        await repo.version()
        poll.append((time.perf_counter() - t0) * 1000)

    in_table: list[float] = []
    for n in sample:
        t0 = time.perf_counter()
        answer = route_inbound(table, did=n)
        in_table.append((time.perf_counter() - t0) * 1000)
        assert answer is not None

    sql: list[float] = []
    for n in sample:
        t0 = time.perf_counter()
        async with repo.engine.connect() as conn:
            row = (await conn.execute(select(DidRow).where(DidRow.number == n))).first()
        sql.append((time.perf_counter() - t0) * 1000)
        assert row is not None

    registry = TenantRegistry(settings, lambda: settings)
    registry.attach_control(repo)
    await registry.refresh_control(force=True)
    ctx = ApiContext(
        repo=repo,
        settings=settings,
        tables=lambda: registry.table,
        admin_token=SecretStr(TOKEN),
        addresses=["10.0.0.5:5090", "10.0.0.6:5090"],
    )
    app = create_app(ctx)
    http: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
        for n in sample[:50]:  # warm-up
            await c.get("/api/voip/routes/inbound", params={"did": n}, headers=headers)
        for n in sample:
            t0 = time.perf_counter()
            r = await c.get("/api/voip/routes/inbound", params={"did": n}, headers=headers)
            http.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
    await repo.close()
    return {
        "tenants": args.tenants,
        "dids": len(numbers),
        "database": "sqlite",
        "rebuild": stats(rebuild),
        "rebuild_one_change": stats(one_change),
        "poll": stats(poll),
        "table": stats(in_table),
        "http": stats(http),
        "sql": stats(sql),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--dids-per-tenant", type=int, default=10)
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--rebuilds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result = asyncio.run(main(args))
    print(f"route lookup: {result['tenants']} tenants, {result['dids']} DIDs, SQLite")
    print(f"{'what':<20}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for key in ("table", "http", "sql", "poll", "rebuild", "rebuild_one_change"):
        s = result[key]
        print(f"{key:<20}{s['n']:>7}{s['p50_ms']:>10.3f}{s['p99_ms']:>10.3f}{s['max_ms']:>10.3f}")
    text = json.dumps(result)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
