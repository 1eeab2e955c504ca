"""The control plane inside ``serve``: the database as a tenant source (``control.source``)
and the HTTP API (``api.listen`` / ``--api``), composed around the tenant registry."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from w3sipagent.cli.common import CliError
from w3sipagent.config import Settings, parse_hostport

if TYPE_CHECKING:
    from w3sipagent.agent.reload import TenantRegistry
    from w3sipagent.agent.service import AgentService
    from w3sipagent.api.server import ApiServer
    from w3sipagent.control.repo import ControlRepo

log = logging.getLogger("w3sipagent.serve")


class ControlPlane:
    """What ``serve`` starts for the control plane; :meth:`close` stops it."""

    def __init__(self) -> None:
        self.repo: ControlRepo | None = None
        self.api: ApiServer | None = None

    @classmethod
    async def start(
        cls, settings: Settings, registry: TenantRegistry, service: AgentService
    ) -> ControlPlane:
        """Open the database when a source or the API needs it, start the API when set."""
        plane = cls()
        database = settings.control.source != "file"
        if not database and settings.api.listen is None:
            return plane
        from w3sipagent.control.repo import ControlRepo

        plane.repo = await ControlRepo.open(settings.records.url(), readonly=registry.readonly_ids)
        if database:
            registry.attach_control(plane.repo)
            await registry.refresh_control(force=True)
        if settings.api.listen is not None:
            await plane._start_api(settings, registry, service, database)
        return plane

    async def _start_api(
        self, settings: Settings, registry: TenantRegistry, service: AgentService, database: bool
    ) -> None:
        from w3sipagent.api import ApiContext, create_app
        from w3sipagent.api.server import ApiServer

        assert self.repo is not None and settings.api.listen is not None
        if settings.api.admin_token is None:
            log.warning("api: no admin token (W3SIPAGENT_API__ADMIN_TOKEN): tenant tokens only")
        else:
            from w3sipagent.redact import REDACTOR

            REDACTOR.add(settings.api.admin_token.get_secret_value())  # masked in every log

        async def changed() -> Any:
            return await registry.refresh_control(force=True) if database else None

        ctx = ApiContext(
            repo=self.repo,
            settings=settings,
            tables=lambda: registry.table,
            admin_token=settings.api.admin_token,
            file_tenants=lambda: (
                registry.settings.tenants if settings.control.source != "database" else {}
            ),
            live_calls=service.live_calls,
            live_bridges=lambda: service.bridges,
            addresses=agent_addresses(settings),
            on_change=changed,
            token_cache_ttl=settings.api.token_cache_ttl,
        )
        host, port = parse_hostport(settings.api.listen)
        self.api = ApiServer(create_app(ctx), host, port)
        await self.api.start()
        log.info("control-plane API on %s (OpenAPI at /docs)", self.api.url)

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()
        if self.repo is not None:
            await self.repo.close()


def agent_addresses(settings: Settings) -> list[str]:
    """``api.agent_addresses``, else the one address FreeSWITCH reaches this agent at."""
    if settings.api.agent_addresses:
        return list(settings.api.agent_addresses)
    from w3sipagent.cli.freeswitch import agent_address

    try:
        return [agent_address(settings)]
    except CliError as e:
        log.warning("api: routing answers 'not found' until api.agent_addresses is set: %s", e)
        return []
