"""The knowledge bases of a deployment: one store, each tenant's search, sync and watch.

:class:`KnowledgeBases` is built once (records database URL, the deployment's default API
key); :meth:`KnowledgeBases.for_tenant` gives the :class:`TenantKnowledge` a call's
``search_knowledge`` tool is bound to: it can only search that tenant's passages.
:meth:`KnowledgeBases.watch` re-syncs a tenant when its files change (mtime or size).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import httpx
from pydantic import SecretStr

from w3sipagent.errors import ConfigError
from w3sipagent.knowledge.embedder import Embedder
from w3sipagent.knowledge.sources import KnowledgeError, find_files, fingerprint
from w3sipagent.knowledge.store import KnowledgeStore, Passage
from w3sipagent.knowledge.sync import SyncReport, sync_tenant
from w3sipagent.tenants.models import KnowledgeConfig, TenantConfig
from w3sipagent.tenants.secrets import resolve_api_key, resolve_secret

__all__ = ["KnowledgeBases", "TenantKnowledge"]

log = logging.getLogger("w3sipagent.knowledge")


class TenantKnowledge:
    """One tenant's knowledge base: search and sync, bound to that tenant."""

    def __init__(
        self,
        tenant: str,
        config: KnowledgeConfig,
        store: KnowledgeStore,
        embedder: Callable[[], Embedder],
    ) -> None:
        self.tenant = tenant
        self.config = config
        self._store = store
        self._embedder = embedder

    @property
    def model(self) -> str:
        """The model name passages are stored under (with the width when one is set)."""
        c = self.config
        return c.embedding_model if c.dimensions is None else f"{c.embedding_model}@{c.dimensions}"

    async def search(self, query: str, top_k: int | None = None) -> list[Passage]:
        """The best passages of this tenant for ``query`` (raises KnowledgeError)."""
        vec = await self._embedder().embed([query])
        return await self._store.search(self.tenant, self.model, vec[0], top_k or self.config.top_k)

    async def sync(self) -> SyncReport:
        """Bring the stored passages in line with the files."""
        return await sync_tenant(self._store, self.tenant, self.config, self._embedder())


class KnowledgeBases:
    """Every tenant's knowledge base over one records database."""

    def __init__(
        self,
        store: KnowledgeStore,
        *,
        default_key: SecretStr | None = None,
        http: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.default_key = default_key
        self.http = http
        self.environ = environ

    def api_key(self, tenant: TenantConfig) -> str:
        """The key for the tenant's embedding endpoint: ``knowledge.api_key``, else the
        tenant's, else the deployment's (raises ConfigError naming the reference)."""
        cfg = tenant.knowledge
        if cfg is not None and cfg.api_key is not None:
            key = resolve_secret(
                cfg.api_key, what=f"tenant '{tenant.id}': knowledge.api_key", environ=self.environ
            )
        else:
            found = resolve_api_key(tenant, self.default_key, environ=self.environ)
            if found is None:
                raise ConfigError(f"tenant '{tenant.id}': no API key for the embeddings")
            key = found
        return key.get_secret_value()

    def for_tenant(self, tenant: TenantConfig) -> TenantKnowledge | None:
        """The tenant's knowledge base (None when it has none)."""
        cfg = tenant.knowledge
        if cfg is None:
            return None

        def embedder() -> Embedder:
            try:
                key = self.api_key(tenant)
            except ConfigError as exc:
                raise KnowledgeError(str(exc)) from None
            return Embedder(
                cfg.base_url,
                cfg.embedding_model,
                key,
                dimensions=cfg.dimensions,
                timeout=cfg.timeout,
                http=self.http,
            )

        return TenantKnowledge(tenant.id, cfg, self.store, embedder)

    async def watch(
        self,
        tenants: Callable[[], Mapping[str, TenantConfig]],
        interval: float = 5.0,
        *,
        on_sync: Callable[[SyncReport], None] | None = None,
    ) -> None:
        """Sync each tenant now, then again whenever its files change; until cancelled.

        ``tenants`` is called each round, so a reloaded configuration is followed.
        """
        seen: dict[str, object] = {}
        while True:
            for tid, tenant in tenants().items():
                kb = self.for_tenant(tenant)
                if kb is None:
                    continue
                files, _ = await asyncio.to_thread(
                    find_files, kb.config.paths, kb.config.extensions
                )
                mark = (fingerprint(files), kb.config.model_dump_json())
                if seen.get(tid) == mark:
                    continue
                try:
                    report = await kb.sync()
                except (KnowledgeError, OSError) as exc:
                    log.warning("knowledge of tenant '%s': sync failed: %s", tid, exc)
                    continue
                seen[tid] = mark
                for err in report.errors:
                    log.warning("knowledge of tenant '%s': %s", tid, err)
                if on_sync is not None:
                    on_sync(report)
            await asyncio.sleep(interval)
