"""The knowledge bases of a running service: opened when a tenant has one, kept in sync.

:meth:`KnowledgeRuntime.start` opens the store on the records database and starts the
watch (a first sync of every tenant's base, then again whenever its files change); a
database that cannot be opened is logged and the calls go on without knowledge search.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import httpx
from pydantic import SecretStr

from w3sipagent.knowledge.base import KnowledgeBases, TenantKnowledge
from w3sipagent.knowledge.store import KnowledgeStore
from w3sipagent.tenants.models import AgentConfig, TenantConfig

__all__ = ["KnowledgeRuntime"]

log = logging.getLogger("w3sipagent.knowledge")


class KnowledgeRuntime:
    """The service's knowledge bases (None until started, and when no tenant has one)."""

    def __init__(
        self,
        url: str,
        tenants: Callable[[], Mapping[str, TenantConfig]],
        *,
        default_key: SecretStr | None = None,
        environ: Mapping[str, str] | None = None,
        interval: float = 5.0,
    ) -> None:
        self.url = url
        self._tenants = tenants
        self.default_key = default_key
        self.environ = environ
        self.interval = interval
        self.bases: KnowledgeBases | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self, http: httpx.AsyncClient | None = None) -> None:
        """Open the store and start the watch when some tenant has a knowledge base."""
        if not any(t.knowledge is not None for t in self._tenants().values()):
            return
        store = KnowledgeStore(self.url)
        try:
            await store.open()
        except Exception as exc:  # the calls go on without knowledge search
            log.error("knowledge bases unavailable: %s", str(exc).splitlines()[0])
            await store.close()
            return
        self.bases = KnowledgeBases(
            store, default_key=self.default_key, http=http, environ=self.environ
        )
        self._watch = asyncio.create_task(self.bases.watch(self._tenants, self.interval))

    def for_call(self, tenant: TenantConfig, agent: AgentConfig) -> TenantKnowledge | None:
        """The base a call's ``search_knowledge`` searches (None: the agent has no tool)."""
        if self.bases is None or not agent.knowledge:
            return None
        return self.bases.for_tenant(tenant)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.bases is not None:
            await self.bases.store.close()
            self.bases = None
