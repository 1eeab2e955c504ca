"""The pgvector path on a real PostgreSQL 15 with the extension (scripts/pgvector.sh builds
Debian's pgvector 0.8.0 source): the migration's vector column, rankings equal to the numpy
blob search on SQLite, tenant isolation, re-syncs, and pgvector arriving after the tables."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from tests.knowledge.conftest import BLOB_ROLE, ENV, FILES, tenant, write_files
from tests.postgres import PostgresCluster
from w3sipagent.knowledge import KnowledgeBases, KnowledgeStore, Passage, TenantKnowledge
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.tenants.models import TenantConfig

pytestmark = pytest.mark.postgres

QUERIES = [
    "Where can I park my car?",
    "What does the pepperoni cost?",
    "When is the pizza place open in the evening?",
    "opening hours Sunday",
    "gluten free",
    "Globex margherita price",
]


@pytest.fixture
def vector_cluster(pg_cluster: PostgresCluster) -> PostgresCluster:
    if not pg_cluster.has_extension("vector"):
        pytest.skip(
            "pgvector is not installed for this PostgreSQL (Debian 12 has no package): "
            "run scripts/pgvector.sh as root to build it from Debian's source"
        )
    return pg_cluster


@pytest.fixture
async def pg_store(vector_cluster: PostgresCluster) -> AsyncIterator[KnowledgeStore]:
    async with KnowledgeStore(vector_cluster.create_database()) as s:
        yield s


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[KnowledgeStore]:
    async with KnowledgeStore(f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}") as s:
        yield s


async def _bases(store: KnowledgeStore, http: httpx.AsyncClient) -> KnowledgeBases:
    return KnowledgeBases(store, http=http, environ=ENV)


def _kb(bases: KnowledgeBases, t: TenantConfig) -> TenantKnowledge:
    kb = bases.for_tenant(t)
    assert kb is not None
    return kb


def _ranking(hits: list[Passage]) -> list[tuple[str, int, str]]:
    return [(h.source, h.chunk, h.text) for h in hits]


async def _vectors_in_db(store: KnowledgeStore, tenant_id: str) -> dict[tuple[str, int], bool]:
    """(file, chunk) → whether the pgvector column equals the stored float32 blob exactly."""
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT d.name, c.chunk, c.embedding, c.embedding_vec::text AS vec, "
                    "vector_dims(c.embedding_vec) AS n, c.dims FROM knowledge_chunks c "
                    "JOIN knowledge_docs d ON d.id = c.doc_id WHERE c.tenant = :t"
                ),
                {"t": tenant_id},
            )
        ).all()
    out = {}
    for r in rows:
        blob = np.frombuffer(r.embedding, dtype="<f4")
        vec = np.array([float(x) for x in r.vec.strip("[]").split(",")], dtype=np.float32)
        out[(r.name, r.chunk)] = r.n == r.dims == len(blob) and bool(np.array_equal(blob, vec))
    return out


async def test_migration_creates_the_vector_column(pg_store: KnowledgeStore) -> None:
    assert pg_store.pgvector is True
    async with pg_store.engine.connect() as conn:
        ext = (
            await conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
        ).scalar()
        col = (
            await conn.execute(
                text(
                    "SELECT udt_name FROM information_schema.columns WHERE table_name = "
                    "'knowledge_chunks' AND column_name = 'embedding_vec'"
                )
            )
        ).scalar()
    assert ext == "0.8.0" and col == "vector"


async def test_pgvector_ranks_like_the_blob_search(
    pg_store: KnowledgeStore,
    sqlite_store: KnowledgeStore,
    tenants: dict[str, TenantConfig],
) -> None:
    async with httpx.AsyncClient() as http:
        pg, lite = await _bases(pg_store, http), await _bases(sqlite_store, http)
        for t in tenants.values():
            a, b = await _kb(pg, t).sync(), await _kb(lite, t).sync()
            assert a.errors == b.errors == [] and a.chunks_embedded == b.chunks_embedded > 0
        assert set((await _vectors_in_db(pg_store, "acme")).values()) == {True}
        for tid, t in tenants.items():
            for query in QUERIES:
                p_hits = await _kb(pg, t).search(query, top_k=20)
                s_hits = await _kb(lite, t).search(query, top_k=20)
                assert len(p_hits) == (await pg_store.counts(tid))[1]
                assert _ranking(p_hits) == _ranking(s_hits), (tid, query)
                for p, s in zip(p_hits, s_hits, strict=True):
                    assert abs(p.score - s.score) <= 2e-4, (tid, query, p, s)
                top = await _kb(pg, t).search(query, top_k=2)
                assert _ranking(top) == _ranking(s_hits[:2])


async def test_pgvector_ranks_like_numpy_on_many_random_vectors(
    pg_store: KnowledgeStore, sqlite_store: KnowledgeStore
) -> None:
    # 400 random unit vectors of 96 dimensions in 4 files: the database's order of all of
    # them equals numpy's for 20 random queries (scores as computed by each side)
    rng = np.random.default_rng(20261208)
    vecs = rng.standard_normal((400, 96)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for store in (pg_store, sqlite_store):
        for f in range(4):
            part = vecs[f * 100 : (f + 1) * 100]
            await store.replace_document(
                "acme", f"f{f}.txt", f"f{f}.txt", content_hash=f"h{f}", model="m",
                chunking="c", chunks=[f"passage {f}-{i}" for i in range(100)], vectors=part,
            )  # fmt: skip
    for _ in range(20):
        q = rng.standard_normal(96).astype(np.float32)
        q /= np.linalg.norm(q)
        p_hits = await pg_store.search("acme", "m", q, 400)
        s_hits = await sqlite_store.search("acme", "m", q, 400)
        expected = np.argsort(-(vecs @ q), kind="stable")
        assert [h.text for h in s_hits] == [f"passage {i // 100}-{i % 100}" for i in expected]
        assert [h.text for h in p_hits] == [h.text for h in s_hits]
        assert max(abs(p.score - s.score) for p, s in zip(p_hits, s_hits, strict=True)) < 2e-4
        assert [h.text for h in await pg_store.search("acme", "m", q, 5)] == [
            h.text for h in s_hits[:5]
        ]
    # another model or width is never compared (nor mixed) with these vectors
    assert await pg_store.search("acme", "other", vecs[0], 5) == []
    assert await pg_store.search("acme", "m", vecs[0][:48], 5) == []


async def test_tenant_isolation_with_identical_texts(
    pg_store: KnowledgeStore, server: CascadeServer, tmp_path: Path
) -> None:
    # both tenants hold the very same files (same names, same texts, so the same vectors);
    # globex has one more file
    same = FILES["acme"]
    acme = tenant("acme", write_files(tmp_path / "acme", same), server.base_url)
    globex_files = {**same, "extra.md": "Globex also delivers."}
    globex = tenant("globex", write_files(tmp_path / "globex", globex_files), server.base_url)
    async with httpx.AsyncClient() as http:
        bases = await _bases(pg_store, http)
        a, g = _kb(bases, acme), _kb(bases, globex)
        await a.sync()
        await g.sync()
        n_acme, n_globex = (await pg_store.counts("acme"))[1], (await pg_store.counts("globex"))[1]
        assert n_globex == n_acme + 1
        for query in [*QUERIES, "deliver"]:
            a_hits = await a.search(query, top_k=100)
            g_hits = await g.search(query, top_k=100)
            assert len(a_hits) == n_acme and len(g_hits) == n_globex  # each only its own rows
            assert all(h.source != "extra.md" for h in a_hits)
            assert [h for h in g_hits if h.source != "extra.md"] == a_hits
        # acme's files are removed: acme finds nothing, globex still everything
        for f in same:
            (tmp_path / "acme" / f).unlink()
        report = await a.sync()
        assert sorted(report.removed) == sorted(str(tmp_path / "acme" / f) for f in same)
        assert await a.search("parking", top_k=100) == []
        assert len(await g.search("parking", top_k=100)) == n_globex


async def test_resync_updates_the_vectors(
    pg_store: KnowledgeStore, tenants: dict[str, TenantConfig], tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as http:
        kb = _kb(await _bases(pg_store, http), tenants["acme"])
        await kb.sync()
        before = await _vectors_in_db(pg_store, "acme")
        (tmp_path / "acme" / "hours.md").write_text("Acme Pizza now opens at seven.", "utf-8")
        (tmp_path / "acme" / "menu" / "parking.md").unlink()
        report = await kb.sync()
        assert report.updated == ["hours.md"]
        assert report.removed == [str(tmp_path / "acme" / "menu" / "parking.md")]
        after = await _vectors_in_db(pg_store, "acme")
        assert set(after.values()) == {True}  # the column was rewritten with the new blobs
        assert ("menu/parking.md", 0) in before and ("menu/parking.md", 0) not in after
        assert ("hours.md", 0) in after and ("hours.md", 1) not in after
        hits = await kb.search("When do you open?", top_k=1)
        assert hits[0].text == "Acme Pizza now opens at seven."
        # a changed width re-embeds: the column then holds 256-dimension vectors
        narrow = tenant("acme", tmp_path / "acme", kb.config.base_url or "", dimensions=256)
        kb256 = _kb(await _bases(pg_store, http), narrow)
        await kb256.sync()
        async with pg_store.engine.connect() as conn:
            dims = (
                await conn.execute(
                    text(
                        "SELECT DISTINCT vector_dims(embedding_vec) FROM knowledge_chunks "
                        "WHERE tenant = 'acme'"
                    )
                )
            ).all()
        assert [d[0] for d in dims] == [256]
        assert (await kb256.search("pepperoni", top_k=1))[0].source == "menu/pizza.txt"


async def test_pgvector_installed_after_the_tables_keeps_the_blob_search(
    vector_cluster: PostgresCluster,
    tenants: dict[str, TenantConfig],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the tables are created by a user who may not create the extension: no vector column
    url = vector_cluster.create_database(owner=BLOB_ROLE)
    async with KnowledgeStore(url) as store, httpx.AsyncClient() as http:
        assert store.pgvector is False
        await _kb(await _bases(store, http), tenants["acme"]).sync()
    # then an administrator creates the extension in that database
    vector_cluster.sql("CREATE EXTENSION vector", database=url.rsplit("/", 1)[1])
    with caplog.at_level(logging.WARNING, logger="w3sipagent.knowledge"):
        async with KnowledgeStore(url) as store, httpx.AsyncClient() as http:
            assert store.pgvector is False
            hits = await _kb(await _bases(store, http), tenants["acme"]).search("park my car")
            assert hits[0].source == "menu/parking.md"
    assert [r.getMessage() for r in caplog.records if r.name == "w3sipagent.knowledge"] == [
        "pgvector was installed after the knowledge tables were created: "
        "searching the stored blobs instead"
    ]
