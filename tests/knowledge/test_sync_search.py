"""Sync and search on SQLite and a real PostgreSQL, embeddings from the local server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.knowledge.conftest import tenant, write_files
from tests.wait import wait_until
from w3sipagent.knowledge import KnowledgeBases, KnowledgeStore, SyncReport, TenantKnowledge
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.tenants.models import TenantConfig


def _kb(bases: KnowledgeBases, t: TenantConfig) -> TenantKnowledge:
    kb = bases.for_tenant(t)
    assert kb is not None
    return kb


def _embedding_calls(server: CascadeServer) -> int:
    return sum(1 for r in server.requests if r.path == "/v1/embeddings")


async def test_sync_then_search_with_source(
    bases: KnowledgeBases, tenants: dict[str, TenantConfig], server: CascadeServer
) -> None:
    kb = _kb(bases, tenants["acme"])
    report = await kb.sync()
    assert sorted(report.added) == ["hours.md", "menu/parking.md", "menu/pizza.txt"]
    assert report.errors == [] and report.chunks_embedded >= 3
    assert await bases.store.counts("acme") == (3, report.chunks_embedded)
    hits = await kb.search("Where can I park my car?")
    assert hits[0].source == "menu/parking.md" and hits[0].chunk == 0
    assert "Parking for Acme guests" in hits[0].text
    assert hits[0].score > hits[-1].score
    hits = await kb.search("What does the pepperoni cost?", top_k=1)
    assert len(hits) == 1 and hits[0].source == "menu/pizza.txt"
    assert "eleven euros" in hits[0].text
    # the key reached the endpoint from its reference
    assert server.requests[-1].headers["authorization"] == "Bearer sk-knowledge-test"


async def test_unchanged_files_are_not_embedded_again(
    bases: KnowledgeBases, tenants: dict[str, TenantConfig], server: CascadeServer, tmp_path: Path
) -> None:
    kb = _kb(bases, tenants["acme"])
    await kb.sync()
    before = _embedding_calls(server)
    again = await kb.sync()
    assert again.added == again.updated == again.removed == []
    assert len(again.unchanged) == 3 and again.chunks_embedded == 0
    assert _embedding_calls(server) == before  # not one request
    # one file changes, one is removed, one is new: only the changed and new are embedded
    (tmp_path / "acme" / "hours.md").write_text("Acme Pizza now opens at seven.", "utf-8")
    (tmp_path / "acme" / "menu" / "parking.md").unlink()
    (tmp_path / "acme" / "wine.md").write_text("Acme serves red wine by the glass.", "utf-8")
    third = await kb.sync()
    assert third.updated == ["hours.md"] and third.added == ["wine.md"]
    assert third.unchanged == ["menu/pizza.txt"] and len(third.removed) == 1
    assert _embedding_calls(server) == before + 2
    hits = await kb.search("When do you open?", top_k=1)
    assert hits[0].text == "Acme Pizza now opens at seven."
    assert all(h.source != "menu/parking.md" for h in await kb.search("parking", top_k=10))


async def test_tenant_isolation_with_overlapping_content(
    bases: KnowledgeBases, tenants: dict[str, TenantConfig]
) -> None:
    acme, globex = _kb(bases, tenants["acme"]), _kb(bases, tenants["globex"])
    await acme.sync()
    await globex.sync()
    for query in [
        "When is the pizza place open in the evening?",
        "Globex margherita price",  # names the other tenant outright
        "Acme pepperoni",
        "opening hours Sunday",
    ]:
        a_hits = await acme.search(query, top_k=20)
        g_hits = await globex.search(query, top_k=20)
        assert a_hits and g_hits
        assert all("Globex" not in h.text for h in a_hits), query
        assert all("Acme" not in h.text for h in g_hits), query
    assert {h.source for h in await globex.search("pizza", top_k=20)} == {"hours.md", "pizza.txt"}
    # the same relative file name in both tenants stays two documents
    assert await bases.store.counts("globex") == (2, len(await globex.search("x", top_k=20)))


async def test_a_changed_model_reembeds_and_old_vectors_are_not_searched(
    bases: KnowledgeBases, tenants: dict[str, TenantConfig], server: CascadeServer, tmp_path: Path
) -> None:
    await _kb(bases, tenants["acme"]).sync()
    narrow = tenant("acme", tmp_path / "acme", server.base_url, dimensions=256)
    kb = _kb(bases, narrow)
    assert await kb.search("parking") == []  # nothing embedded at 256 dimensions yet
    report = await kb.sync()
    assert len(report.updated) == 3
    assert (await kb.search("parking", top_k=1))[0].source == "menu/parking.md"


async def test_errors_of_one_file_do_not_stop_the_others(
    bases: KnowledgeBases, server: CascadeServer, tmp_path: Path
) -> None:
    root = write_files(tmp_path / "kb", {"ok.txt": "Fine text about parking."})
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    t = tenant("acme", root, server.base_url)
    t.knowledge.paths.append(tmp_path / "missing")  # type: ignore[union-attr]
    report = await _kb(bases, t).sync()
    assert report.added == ["ok.txt"]
    assert any("missing: no such file or folder" in e for e in report.errors)
    assert any(e.startswith("broken.pdf:") for e in report.errors)


async def test_embedding_service_errors_are_reported(
    bases: KnowledgeBases, tenants: dict[str, TenantConfig], server: CascadeServer
) -> None:
    kb = _kb(bases, tenants["acme"])
    server.fail_next("/v1/embeddings", 429, retry_after=0)
    report = await kb.sync()  # one 429 is retried after retry-after
    assert len(report.added) == 3 and report.errors == []
    server.fail_next("/v1/embeddings", 400, message="bad input", type="invalid_request_error")
    (Path(kb.config.paths[0]) / "hours.md").write_text("changed", "utf-8")
    report = await kb.sync()
    assert report.errors == [f"embeddings: HTTP 400 from {server.base_url}/embeddings: bad input"]
    wrong = bases.for_tenant(tenants["globex"])
    assert wrong is not None
    bad = KnowledgeBases(bases.store, environ={"KB_KEY": "sk-wrong-key-000"})
    kb_bad = bad.for_tenant(tenants["globex"])
    assert kb_bad is not None
    report = await kb_bad.sync()
    assert report.errors and "HTTP 401" in report.errors[0]
    assert "sk-wrong-key-000" not in report.errors[0]


async def test_watch_resyncs_on_change(
    bases: KnowledgeBases, tenants: dict[str, TenantConfig], tmp_path: Path
) -> None:
    import asyncio

    reports: list[SyncReport] = []
    task = asyncio.create_task(bases.watch(lambda: tenants, interval=0.05, on_sync=reports.append))
    try:
        await wait_until(
            lambda: {r.tenant for r in reports} == {"acme", "globex"}, 10, "first sync"
        )
        n = len(reports)
        (tmp_path / "globex" / "pizza.txt").write_text("Globex now sells calzone.", "utf-8")
        await wait_until(lambda: len(reports) > n, 10, "the re-sync")
        assert reports[-1].tenant == "globex" and reports[-1].updated == ["pizza.txt"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    kb = _kb(bases, tenants["globex"])
    assert "calzone" in (await kb.search("calzone", top_k=1))[0].text


async def test_store_reopens_and_knows_its_search(
    store: KnowledgeStore, db_url: str, expect_pgvector: bool
) -> None:
    # pgvector on PostgreSQL as superuser where scripts/pgvector.sh installed it; SQLite and
    # a database owner who may not create the extension rank the blobs with numpy
    assert store.pgvector is expect_pgvector
    async with KnowledgeStore(db_url) as again:
        assert again.pgvector is expect_pgvector
        assert await again.counts("acme") == (0, 0)
