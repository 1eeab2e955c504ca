"""Bringing a tenant's stored passages in line with its files.

A file is embedded again only when its content hash, the embedding model or the chunking
changed; a file gone from the configured paths is forgotten; an unreadable file is an
error of its own (the others are still synced, and its old passages are kept).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from w3sipagent.knowledge.embedder import Embedder
from w3sipagent.knowledge.sources import (
    KnowledgeError,
    SourceFile,
    chunk_text,
    content_hash,
    extract_text,
    find_files,
)
from w3sipagent.knowledge.store import KnowledgeStore
from w3sipagent.tenants.models import KnowledgeConfig

__all__ = ["SyncReport", "sync_tenant"]


@dataclass
class SyncReport:
    """What a sync did, by file name."""

    tenant: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    chunks_embedded: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def _read(f: SourceFile) -> tuple[bytes, str]:
    data = f.path.read_bytes()
    return data, extract_text(f.name, data)


async def sync_tenant(
    store: KnowledgeStore, tenant: str, config: KnowledgeConfig, embedder: Embedder
) -> SyncReport:
    """Sync ``tenant``'s knowledge base from ``config.paths`` (see the module docstring)."""
    report = SyncReport(tenant)
    files, problems = await asyncio.to_thread(find_files, config.paths, config.extensions)
    report.errors += problems
    stored = await store.documents(tenant)
    chunking = f"{config.chunk_size}/{config.chunk_overlap}"
    model = (
        config.embedding_model
        if config.dimensions is None
        else (f"{config.embedding_model}@{config.dimensions}")
    )
    seen: set[str] = set()
    for f in files:
        key = str(f.path)
        seen.add(key)
        try:
            data = await asyncio.to_thread(f.path.read_bytes)
        except OSError as exc:
            report.errors.append(f"{f.name}: cannot read ({exc.strerror})")
            continue
        digest = content_hash(data)
        old = stored.get(key)
        if (
            old is not None
            and old.content_hash == digest
            and old.model == model
            and old.chunking == chunking
        ):
            report.unchanged.append(f.name)
            continue
        try:
            body = await asyncio.to_thread(extract_text, f.name, data)
            chunks = chunk_text(body, config.chunk_size, config.chunk_overlap)
            vectors = await embedder.embed(chunks)
        except KnowledgeError as exc:
            report.errors.append(str(exc))
            continue
        await store.replace_document(
            tenant,
            key,
            f.name,
            content_hash=digest,
            model=model,
            chunking=chunking,
            chunks=chunks,
            vectors=vectors,
        )
        report.chunks_embedded += len(chunks)
        (report.added if old is None else report.updated).append(f.name)
    gone = [p for p in stored if p not in seen]
    if problems:  # a path missing for now: keep what it had rather than forget it
        gone = [p for p in gone if not any(p.startswith(str(r)) for r in config.paths)]
    await store.remove_documents(tenant, gone)
    report.removed += gone
    return report
