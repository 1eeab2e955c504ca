"""Knowledge search: what one search costs in each store (docs/knowledge.md).

Run::

    .venv/bin/python benchmarks/knowledge_bench.py [--passages 5000] [--dims 1536] [--queries 30]

Starts a throwaway PostgreSQL server (Debian's binaries, as the tests do, but with
``--shared-buffers``, 256 MB, so that the vectors stay in the server's cache) and measures three
stores holding the same random unit vectors for one tenant (and as many for a second tenant,
which every search must skip): SQLite (numpy over the blobs), PostgreSQL with pgvector (when
installed: scripts/pgvector.sh) and PostgreSQL whose user may not create the extension (numpy
over the blobs). Per store: the time to write the passages (files of 50) and the search's
p50/p99 (``KnowledgeStore.search``: the query's own embedding request is not included; the
blob search's first call, which loads the matrix, is reported apart). Prints a table, then one
JSON object (``--json`` only JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from w3sipagent.knowledge import KnowledgeStore  # noqa: E402

PER_FILE = 50


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs), p))


async def _one(url: str, vecs: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    async with KnowledgeStore(url) as store:
        t0 = time.perf_counter()
        for tenant in ("acme", "globex"):
            for f in range(0, len(vecs), PER_FILE):
                part = vecs[f : f + PER_FILE]
                await store.replace_document(
                    tenant, f"f{f}.txt", f"f{f}.txt", content_hash="h", model="m",
                    chunking="c", chunks=[f"passage {f + i}" for i in range(len(part))],
                    vectors=part,
                )  # fmt: skip
        write_s = (time.perf_counter() - t0) / 2
        t0 = time.perf_counter()
        await store.search("acme", "m", queries[0], 4)
        first_ms = (time.perf_counter() - t0) * 1000
        times = []
        for q in queries:
            t0 = time.perf_counter()
            hits = await store.search("acme", "m", q, 4)
            times.append((time.perf_counter() - t0) * 1000)
            assert len(hits) == 4
        return {
            "pgvector": store.pgvector,
            "write_s": round(write_s, 2),
            "first_search_ms": round(first_ms, 2),
            "search_p50_ms": round(_pct(times, 50), 2),
            "search_p99_ms": round(_pct(times, 99), 2),
        }


async def measure(urls: dict[str, str], n: int, dims: int, nq: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((n, dims)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = rng.standard_normal((nq, dims)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    out: dict[str, Any] = {"passages": n, "dims": dims, "queries": nq}
    for name, url in urls.items():
        out[name] = await _one(url, vecs, queries)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--passages", type=int, default=5000, help="passages per tenant")
    p.add_argument("--dims", type=int, default=1536)
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--shared-buffers", default="256MB", help="the server's shared_buffers")
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    args = p.parse_args()
    from tests.postgres import PostgresCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    # the tests' 16 MB of shared buffers would make pgvector read every vector from the OS
    cluster = PostgresCluster(bindir, settings=(f"shared_buffers={args.shared_buffers}",))
    tmp = tempfile.TemporaryDirectory()
    try:
        cluster.start()
        urls = {"sqlite": f"sqlite+aiosqlite:///{tmp.name}/kb.db"}
        if cluster.has_extension("vector"):
            urls["postgresql_pgvector"] = cluster.create_database()
        urls["postgresql_blobs"] = cluster.create_database(owner="w3kb_bench")
        report = asyncio.run(measure(urls, args.passages, args.dims, args.queries))
    finally:
        cluster.stop()
        tmp.cleanup()
    if not args.json:
        print(f"{report['passages']} passages of {report['dims']} dimensions per tenant, 2 tenants")
        for name in urls:
            r = report[name]
            print(
                f"{name:22} write {r['write_s']:6.2f} s  first search {r['first_search_ms']:7.1f} ms"
                f"  search p50 {r['search_p50_ms']:6.1f} ms  p99 {r['search_p99_ms']:6.1f} ms"
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
