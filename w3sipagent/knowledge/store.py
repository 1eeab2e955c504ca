"""Knowledge passages in the records database, and the search over them.

Every read and write names its tenant: a tenant's search only ever sees rows of that
tenant (``WHERE tenant = :tenant``), and a tenant's sync only replaces its own rows.

Search: on PostgreSQL whose ``knowledge_chunks`` has the ``embedding_vec`` column (the
migration adds it when the ``vector`` extension can be created) the database ranks
(``ORDER BY embedding_vec <=> :query``, cosine distance); otherwise, SQLite or PostgreSQL
without pgvector, the tenant's float32 blobs are loaded into one numpy matrix (cached
until the tenant's rows change) and ranked by dot product (vectors are unit length).
Which one is used is found out when the store opens (:attr:`KnowledgeStore.pgvector`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from w3sipagent.records.db import KNOWLEDGE_CHUNKS, KNOWLEDGE_DOCS, make_engine, run_migrations

__all__ = ["DocState", "KnowledgeStore", "Passage"]

log = logging.getLogger("w3sipagent.knowledge")

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Passage:
    """A search hit: the passage, its file and chunk number, its cosine similarity."""

    text: str
    source: str
    chunk: int
    score: float


@dataclass(frozen=True, slots=True)
class DocState:
    """What the database knows of one file."""

    id: int
    content_hash: str
    model: str
    chunking: str
    chunks: int


@dataclass
class _Matrix:
    key: tuple[int, int]
    ids: list[int]
    vectors: Vectors


class KnowledgeStore:
    """The knowledge tables of one database (opens its own engine on ``url``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None
        self._pgvector = False
        self._cache: dict[tuple[str, str, int], _Matrix] = {}

    @property
    def pgvector(self) -> bool:
        """True when the database ranks with pgvector."""
        return self._pgvector

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the knowledge store is not open")
        return self._engine

    async def open(self) -> None:
        """Create the engine, run the migrations, find out how to search."""
        self._engine = make_engine(self.url)
        async with self._engine.begin() as conn:
            await conn.run_sync(run_migrations)
        if self._engine.dialect.name == "postgresql":
            async with self._engine.connect() as conn:
                ext = (
                    await conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))
                ).first()
                col = (
                    await conn.execute(
                        text(
                            "SELECT 1 FROM information_schema.columns WHERE table_name = "
                            "'knowledge_chunks' AND column_name = 'embedding_vec'"
                        )
                    )
                ).first()
            self._pgvector = ext is not None and col is not None
            if ext is not None and col is None:
                log.warning(
                    "pgvector was installed after the knowledge tables were created: "
                    "searching the stored blobs instead"
                )

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> KnowledgeStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ documents

    async def documents(self, tenant: str) -> dict[str, DocState]:
        """The tenant's files by path."""
        d = KNOWLEDGE_DOCS.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(d.id, d.path, d.content_hash, d.model, d.chunking, d.chunks).where(
                    d.tenant == tenant
                )
            )
            return {
                r.path: DocState(r.id, r.content_hash, r.model, r.chunking, r.chunks) for r in rows
            }

    async def replace_document(
        self,
        tenant: str,
        path: str,
        name: str,
        *,
        content_hash: str,
        model: str,
        chunking: str,
        chunks: list[str],
        vectors: Vectors,
    ) -> None:
        """Store a file's passages (replacing what it had), in one transaction."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        d, c = KNOWLEDGE_DOCS.c, KNOWLEDGE_CHUNKS.c
        now = datetime.now(UTC)
        dims = int(vectors.shape[1]) if len(vectors) else 0
        async with self.engine.begin() as conn:
            doc_id = (
                await conn.execute(select(d.id).where(and_(d.tenant == tenant, d.path == path)))
            ).scalar()
            values: dict[str, Any] = {
                "name": name,
                "content_hash": content_hash,
                "model": model,
                "chunking": chunking,
                "chunks": len(chunks),
                "synced_at": now,
            }
            if doc_id is None:
                res = await conn.execute(
                    insert(KNOWLEDGE_DOCS).values(tenant=tenant, path=path, **values)
                )
                pk = res.inserted_primary_key
                assert pk is not None
                doc_id = int(pk[0])
            else:
                await conn.execute(update(KNOWLEDGE_DOCS).where(d.id == doc_id).values(**values))
                await conn.execute(
                    delete(KNOWLEDGE_CHUNKS).where(and_(c.tenant == tenant, c.doc_id == doc_id))
                )
            if chunks:
                rows = [
                    {
                        "tenant": tenant,
                        "doc_id": doc_id,
                        "chunk": i,
                        "text": chunk,
                        "model": model,
                        "dims": dims,
                        "embedding": vec.astype("<f4").tobytes(),
                    }
                    for i, (chunk, vec) in enumerate(zip(chunks, vectors, strict=True))
                ]
                if self._pgvector:  # the vector column is written in the same INSERT
                    for row, vec in zip(rows, vectors, strict=True):
                        row["vec"] = _pg_literal(vec)
                    await conn.execute(_PG_INSERT, rows)
                else:
                    await conn.execute(insert(KNOWLEDGE_CHUNKS), rows)

    async def remove_documents(self, tenant: str, paths: list[str]) -> None:
        """Forget files of the tenant (and their passages)."""
        if not paths:
            return
        d, c = KNOWLEDGE_DOCS.c, KNOWLEDGE_CHUNKS.c
        async with self.engine.begin() as conn:
            ids = [
                r[0]
                for r in await conn.execute(
                    select(d.id).where(and_(d.tenant == tenant, d.path.in_(paths)))
                )
            ]
            if ids:
                await conn.execute(
                    delete(KNOWLEDGE_CHUNKS).where(and_(c.tenant == tenant, c.doc_id.in_(ids)))
                )
                await conn.execute(delete(KNOWLEDGE_DOCS).where(d.id.in_(ids)))

    async def counts(self, tenant: str) -> tuple[int, int]:
        """(files, passages) of the tenant."""
        d, c = KNOWLEDGE_DOCS.c, KNOWLEDGE_CHUNKS.c
        async with self.engine.connect() as conn:
            docs = (await conn.execute(select(func.count()).where(d.tenant == tenant))).scalar()
            chunks = (await conn.execute(select(func.count()).where(c.tenant == tenant))).scalar()
        return int(docs or 0), int(chunks or 0)

    # ------------------------------------------------------------ search

    async def search(self, tenant: str, model: str, query: Vectors, top_k: int) -> list[Passage]:
        """The ``top_k`` passages of ``tenant`` (embedded with ``model``) nearest ``query``."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if self._pgvector:
            return await self._search_pgvector(tenant, model, q, top_k)
        return await self._search_blobs(tenant, model, q, top_k)

    async def _search_pgvector(
        self, tenant: str, model: str, q: Vectors, top_k: int
    ) -> list[Passage]:
        # the database ranks (the distance computed once per row, named in ORDER BY); the
        # texts and files are then read for the top k only, by primary key
        sql = text(
            "SELECT id, embedding_vec <=> CAST(CAST(:q AS real[]) AS vector) AS dist "
            "FROM knowledge_chunks WHERE tenant = :t AND model = :m AND dims = :n "
            "ORDER BY dist, id LIMIT :k"
        )
        args = {"q": _pg_literal(q), "t": tenant, "m": model, "n": len(q), "k": top_k}
        async with self.engine.connect() as conn:
            ranked = [(int(r.id), 1.0 - float(r.dist)) for r in await conn.execute(sql, args)]
            return await self._passages(conn, tenant, ranked)

    async def _search_blobs(self, tenant: str, model: str, q: Vectors, top_k: int) -> list[Passage]:
        c = KNOWLEDGE_CHUNKS.c
        where = and_(c.tenant == tenant, c.model == model, c.dims == len(q))
        async with self.engine.connect() as conn:
            n, last = (await conn.execute(select(func.count(), func.max(c.id)).where(where))).one()
            if not n:
                return []
            ck = (tenant, model, len(q))
            cached = self._cache.get(ck)
            if cached is None or cached.key != (int(n), int(last)):
                rows = (await conn.execute(select(c.id, c.embedding).where(where))).all()
                ids = [r.id for r in rows]
                mat = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4")
                cached = _Matrix((int(n), int(last)), ids, mat.reshape(len(ids), len(q)))
                self._cache[ck] = cached
            scores = cached.vectors @ q
            k = min(top_k, len(scores))
            best = np.argpartition(-scores, k - 1)[:k]
            best = best[np.argsort(-scores[best], kind="stable")]
            ranked = [(cached.ids[i], float(scores[i])) for i in best]
            return await self._passages(conn, tenant, ranked)

    @staticmethod
    async def _passages(
        conn: AsyncConnection, tenant: str, ranked: list[tuple[int, float]]
    ) -> list[Passage]:
        """The passages of ``ranked`` (chunk id, score), in that order, read by primary key
        (two lookups whatever the table's statistics say) and again limited to ``tenant``."""
        if not ranked:
            return []
        c, d = KNOWLEDGE_CHUNKS.c, KNOWLEDGE_DOCS.c
        chunks = {
            h.id: h
            for h in await conn.execute(
                select(c.id, c.text, c.chunk, c.doc_id).where(
                    and_(c.id.in_([i for i, _ in ranked]), c.tenant == tenant)
                )
            )
        }
        names = {
            r.id: r.name
            for r in await conn.execute(
                select(d.id, d.name).where(
                    and_(d.id.in_(sorted({h.doc_id for h in chunks.values()})), d.tenant == tenant)
                )
            )
        }
        out = []
        for i, score in ranked:
            h = chunks.get(i)
            if h is not None and h.doc_id in names:
                out.append(Passage(h.text, names[h.doc_id], h.chunk, round(score, 4)))
        return out


_PG_INSERT = text(
    "INSERT INTO knowledge_chunks (tenant, doc_id, chunk, text, model, dims, embedding, "
    "embedding_vec) VALUES (:tenant, :doc_id, :chunk, :text, :model, :dims, :embedding, "
    "CAST(CAST(:vec AS real[]) AS vector))"
)


def _pg_literal(vec: Vectors) -> list[float]:
    """A ``real[]`` parameter (cast to ``vector`` in SQL): asyncpg sends it in binary, so the
    float32 values arrive exact, and far faster than pgvector's text form would be built."""
    values: list[float] = np.asarray(vec, dtype=np.float32).tolist()
    return values
