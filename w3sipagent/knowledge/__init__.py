"""Tenant knowledge bases: files chunked, embedded through any OpenAI-compatible
``/v1/embeddings`` endpoint, stored in the records database and searched per tenant by
the built-in ``search_knowledge`` tool. See docs/knowledge.md."""

from __future__ import annotations

from w3sipagent.knowledge.base import KnowledgeBases, TenantKnowledge
from w3sipagent.knowledge.embedder import Embedder
from w3sipagent.knowledge.runtime import KnowledgeRuntime
from w3sipagent.knowledge.sources import KnowledgeError, chunk_text, extract_text, find_files
from w3sipagent.knowledge.store import KnowledgeStore, Passage
from w3sipagent.knowledge.sync import SyncReport, sync_tenant

__all__ = [
    "Embedder",
    "KnowledgeBases",
    "KnowledgeError",
    "KnowledgeRuntime",
    "KnowledgeStore",
    "Passage",
    "SyncReport",
    "TenantKnowledge",
    "chunk_text",
    "extract_text",
    "find_files",
    "sync_tenant",
]
