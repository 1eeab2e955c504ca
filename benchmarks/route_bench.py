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
- **socket_***: the API served by uvicorn on 127.0.0.1 (as ``serve --api`` does), asked by a
  *separate client process* (plain ``http.client``, so the client's own work stays out of
  the server's process), timed in the client from the request sent to the whole answer
  read: ``socket_json_keepalive`` the JSON lookup on one kept-alive connection,
  ``socket_json_new_conn`` a new TCP connection per lookup, ``socket_xml_curl`` what
  FreeSWITCH's mod_xml_curl does: a new connection per lookup, a form POST of the call's
  variables with HTTP Basic credentials holding an admin token *from the database*
  (``api-token create --admin``), answered with the dialplan XML.

The machine's load average is printed with the results: on a shared machine the wall-clock
percentiles move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

CLIENT = r"""
import base64, http.client, json, sys, time
from urllib.parse import urlencode
host, port, mode, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
numbers = json.loads(sys.stdin.read())
out = []
conn = None
for k, n in enumerate(numbers):
    if mode == "xml_curl":
        body = urlencode({"section": "dialplan", "Hunt-Context": "public",
                          "Caller-Destination-Number": n, "Caller-Caller-ID-Number": "0612345678",
                          "variable_sip_req_host": "127.0.0.1"})
        cred = base64.b64encode(("freeswitch:" + token).encode()).decode()
        method, path = "POST", "/api/freeswitch/dialplan"
        headers = {"Authorization": "Basic " + cred,
                   "Content-Type": "application/x-www-form-urlencoded"}
    else:
        body = None
        method, path = "GET", "/api/voip/routes/inbound?" + urlencode({"did": n})
        headers = {"Authorization": "Bearer " + token}
    t0 = time.perf_counter()
    if conn is None or mode != "keepalive":
        conn = http.client.HTTPConnection(host, port)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    dt = (time.perf_counter() - t0) * 1000
    if mode != "keepalive":
        conn.close()
    assert r.status == 200 and (b"bridge" in data), (r.status, data[:200])
    if k >= 50:  # the first 50: warm-up
        out.append(dt)
print(json.dumps(out))
"""


class Timed:
    """The app, timed inside the server: from the ASGI call (the request parsed) to the
    answer's last byte handed to uvicorn."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state  # what ApiServer.close looks at
        self.samples: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        t0 = time.perf_counter()
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.samples.append((time.perf_counter() - t0) * 1000)


def _http_parser() -> str:
    """uvicorn's HTTP/1.1 parser here: ``httptools`` (C) when installed, else ``h11``."""
    import importlib.util

    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


async def socket_client(
    host: str, port: int, mode: str, token: str, sample: list[str]
) -> list[float]:
    """Latencies (ms) measured by a separate client process (see :data:`CLIENT`)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, host, str(port), mode, token,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate(json.dumps(sample[:50] + sample).encode())
    if proc.returncode != 0:
        raise RuntimeError(f"client {mode} failed ({proc.returncode})")
    result: list[float] = json.loads(out)
    return result


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

    from w3sipagent.api.server import ApiServer
    from w3sipagent.control.tokens import create_token

    db_admin = await create_token(repo.engine, None, "freeswitch")
    ctx.token_cache_ttl = settings.api.token_cache_ttl
    timed = Timed(app)
    server = ApiServer(timed, "127.0.0.1", 0)  # type: ignore[arg-type]
    await server.start()
    cpu: dict[str, float] = {}  # the server process's CPU time per request (ms)
    runs: dict[str, list[float]] = {}
    inside: dict[str, list[float]] = {}  # in the server: request in → last byte handed out
    try:
        for mode, token in (("keepalive", TOKEN), ("new_conn", TOKEN), ("xml_curl", db_admin)):
            c0 = time.process_time()
            timed.samples = []
            runs[mode] = await socket_client("127.0.0.1", server.port, mode, token, sample)
            cpu[mode] = round((time.process_time() - c0) * 1000 / (len(sample) + 50), 4)
            inside[mode] = timed.samples[50:]
    finally:
        await server.close()
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
        "socket_json_keepalive": {
            **stats(runs["keepalive"]),
            "server_cpu_ms": cpu["keepalive"],
            "in_server": stats(inside["keepalive"]),
        },
        "socket_json_new_conn": {
            **stats(runs["new_conn"]),
            "server_cpu_ms": cpu["new_conn"],
            "in_server": stats(inside["new_conn"]),
        },
        "socket_xml_curl": {
            **stats(runs["xml_curl"]),
            "server_cpu_ms": cpu["xml_curl"],
            "in_server": stats(inside["xml_curl"]),
        },
        "http_parser": _http_parser(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
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
    print(
        f"route lookup: {result['tenants']} tenants, {result['dids']} DIDs, SQLite; "
        f"load average {result['loadavg_1min']} on {result['cpus']} CPUs"
    )
    print(f"uvicorn's HTTP parser: {result['http_parser']}")
    print(f"{'what':<24}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'server CPU ms':>15}")
    keys = ("table", "http", "socket_json_keepalive", "socket_json_new_conn", "socket_xml_curl")
    for key in (*keys, "sql", "poll", "rebuild", "rebuild_one_change"):
        s = result[key]
        row = f"{key:<24}{s['n']:>7}{s['p50_ms']:>10.3f}{s['p99_ms']:>10.3f}{s['max_ms']:>10.3f}"
        print(row + (f"{s['server_cpu_ms']:>15.3f}" if "server_cpu_ms" in s else ""))
        if "in_server" in s:
            t = s["in_server"]
            print(
                f"{'  in the server':<24}{t['n']:>7}{t['p50_ms']:>10.3f}{t['p99_ms']:>10.3f}"
                f"{t['max_ms']:>10.3f}"
            )
    text = json.dumps(result)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
