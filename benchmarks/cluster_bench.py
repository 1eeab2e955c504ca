"""Cluster-wide tenant limits: what a slot costs in PostgreSQL (docs/cluster.md).

Run::

    .venv/bin/python benchmarks/cluster_bench.py [--url postgresql+asyncpg://...] [--sequential 300] [--burst 50] [--limit 10]

Without ``--url`` a throwaway PostgreSQL server is started (Debian's ``postgresql``
binaries, as the tests do). Two :class:`~w3sipagent.records.slots.SlotLedger` (two engines:
two agents) share the database. Prints a table, then one JSON object (``--json`` only JSON).

- **sequential**: one acquire after another on one tenant (the admission latency a call of a
  limited tenant adds when nothing competes);
- **burst**: both nodes ask ``--burst`` slots each at the same moment for one tenant limited to
  ``--limit``: how long until every INVITE has its answer (the advisory lock serializes them),
  and how many were admitted (must be ``--limit``);
- **spread**: both nodes ask ``4 x --burst`` slots each at once over 20 tenants (no limit
  reached): slots per second when tenants do not wait for each other;
- **release**: one release after another (the background delete when a call's CDR is written).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.records.db import make_engine, run_migrations
from w3sipagent.records.slots import SlotLedger


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, sequential: int, burst: int, limit: int) -> dict[str, Any]:
    setup = make_engine(url)
    async with setup.begin() as conn:
        await conn.run_sync(run_migrations)
    await setup.dispose()
    ea, eb = make_engine(url), make_engine(url)
    out: dict[str, Any] = {"benchmark": "cluster_slots"}
    try:
        async with SlotLedger(ea, node_id="bench-a") as a, SlotLedger(eb, node_id="bench-b") as b:
            lat = []
            for i in range(sequential):
                t = time.perf_counter()
                assert await a.acquire("seq", f"seq-{i}", sequential + 1)
                lat.append((time.perf_counter() - t) * 1000)
            out["sequential_ms"] = {"p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99)}
            t = time.perf_counter()
            got = await asyncio.gather(
                *(
                    n.acquire("burst", f"{n.node_id}-{i}", limit)
                    for n in (a, b)
                    for i in range(burst)
                )
            )
            out["burst"] = {
                "invites": 2 * burst,
                "limit": limit,
                "admitted": sum(got),
                "all_answered_ms": (time.perf_counter() - t) * 1000,
            }
            n = 4 * burst
            t = time.perf_counter()
            await asyncio.gather(
                *(
                    x.acquire(f"t{i % 20}", f"{x.node_id}-s{i}", n + 1)
                    for x in (a, b)
                    for i in range(n)
                )
            )
            took = time.perf_counter() - t
            out["spread"] = {"slots": 2 * n, "tenants": 20, "per_second": 2 * n / took}
            rel = []
            for i in range(min(sequential, 100)):
                t = time.perf_counter()
                a.release(f"seq-{i}")
                while a.unreleased:
                    await asyncio.sleep(0)
                rel.append((time.perf_counter() - t) * 1000)
            out["release_ms"] = {"p50": _pct(rel, 0.5), "p99": _pct(rel, 0.99)}
    finally:
        await ea.dispose()
        await eb.dispose()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", help="a PostgreSQL URL (default: a throwaway server)")
    p.add_argument("--sequential", type=int, default=300)
    p.add_argument("--burst", type=int, default=50, help="INVITEs per node in the burst")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    args = p.parse_args()
    cluster = None
    url = args.url
    if url is None:
        from tests.postgres import PostgresCluster, find_bindir

        bindir = find_bindir()
        if bindir is None:
            sys.exit("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): give --url")
        cluster = PostgresCluster(bindir)
        cluster.start()
        url = cluster.create_database()
    try:
        report = asyncio.run(measure(url, args.sequential, args.burst, args.limit))
    finally:
        if cluster is not None:
            cluster.stop()
    if not args.json:
        s, b, sp, r = (report[k] for k in ("sequential_ms", "burst", "spread", "release_ms"))
        print(f"acquire, one after another: p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms")
        print(
            f"burst: {b['invites']} at once for a limit of {b['limit']}: {b['admitted']} admitted, "
            f"all answered in {b['all_answered_ms']:.0f} ms"
        )
        print(f"spread over {sp['tenants']} tenants: {sp['per_second']:.0f} slots/s")
        print(f"release: p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
