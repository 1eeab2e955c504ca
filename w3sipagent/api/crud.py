"""CRUD of a tenant's stores, agents, DIDs, trunks and destinations: the same five routes
for each kind (:data:`~w3sipagent.control.kinds.KINDS`), with that kind's body model.

``/api/tenants/{tenant_id}/{kind}`` (GET list, POST create) and
``/api/tenants/{tenant_id}/{kind}/{key}`` (GET, PUT replace, DELETE).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import GenericAlias
from typing import Any

from fastapi import Depends, FastAPI, Response
from pydantic import BaseModel

from w3sipagent.api.context import (
    ApiContext,
    Principal,
    context,
    scoped,
    tenant_scope,
)
from w3sipagent.api.policy import check_item_change
from w3sipagent.control.errors import Conflict, NotFound
from w3sipagent.control.kinds import KINDS, Kind
from w3sipagent.control.schemas import AgentOut, DestinationOut, DidOut
from w3sipagent.tenants.models import TenantConfig

__all__ = ["register"]

Handler = Callable[..., Coroutine[Any, Any, Any]]


def _writable(ctx: ApiContext, tenant_id: str, body: BaseModel | None = None) -> None:
    files = ctx.file_tenants()
    if tenant_id in files:
        raise Conflict(f"tenant {tenant_id!r} is defined in the config file (read-only)")
    number = getattr(body, "number", None)
    if number is not None and any(number in t.dids for t in files.values()):
        raise Conflict(f"did {number} is not available")


def _from_file(k: Kind, tenant: TenantConfig) -> list[BaseModel]:
    """A file tenant's objects of kind ``k``, read-only (stores and trunks: database only)."""
    tid = tenant.id
    if k.plural == "agents":
        return [
            AgentOut.model_validate({**a.model_dump(mode="json"), "name": n, "tenant_id": tid})
            for n, a in tenant.agents.items()
        ]
    if k.plural == "dids":
        return [
            DidOut(number=n, target_ref=a, tenant_id=tid) for n, a in sorted(tenant.dids.items())
        ]
    if k.plural == "destinations":
        return [DestinationOut(name=n, uri=u, tenant_id=tid) for n, u in tenant.transfers.items()]
    return []


def _handlers(k: Kind) -> dict[str, Handler]:
    async def list_(
        tenant_id: str, who: Principal = Depends(tenant_scope), ctx: ApiContext = Depends(context)
    ) -> list[BaseModel]:
        scoped(who, tenant_id)
        filed = ctx.file_tenants().get(tenant_id)
        if filed is not None:
            return _from_file(k, filed)
        return await ctx.repo.list_items(k.plural, tenant_id)

    async def create(
        tenant_id: str,
        body: BaseModel,
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> BaseModel:
        scoped(who, tenant_id)
        _writable(ctx, tenant_id, body)
        if not who.admin:
            check_item_change(k.plural, "POST", body, None)
        out = await ctx.repo.create_item(k.plural, tenant_id, body, actor=who.actor)
        await ctx.changed()
        return out

    async def get(
        tenant_id: str,
        key: str,
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> BaseModel:
        scoped(who, tenant_id)
        filed = ctx.file_tenants().get(tenant_id)
        if filed is not None:
            for item in _from_file(k, filed):
                if str(getattr(item, k.key)) == _key(k, key):
                    return item
            raise NotFound(f"no {k.entity} {key!r} in tenant {tenant_id!r}")
        return await ctx.repo.get_item(k.plural, tenant_id, _key(k, key))

    async def replace(
        tenant_id: str,
        key: str,
        body: BaseModel,
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> BaseModel:
        scoped(who, tenant_id)
        _writable(ctx, tenant_id)
        key = _key(k, key)
        if not who.admin:
            old = await ctx.repo.get_item(k.plural, tenant_id, key)
            check_item_change(k.plural, "PUT", body, old)
        out = await ctx.repo.replace_item(k.plural, tenant_id, key, body, actor=who.actor)
        await ctx.changed()
        return out

    async def remove(
        tenant_id: str,
        key: str,
        who: Principal = Depends(tenant_scope),
        ctx: ApiContext = Depends(context),
    ) -> Response:
        scoped(who, tenant_id)
        _writable(ctx, tenant_id)
        if not who.admin:
            await ctx.repo.get_item(k.plural, tenant_id, _key(k, key))  # 404 first
            check_item_change(k.plural, "DELETE", None, None)
        await ctx.repo.delete_item(k.plural, tenant_id, _key(k, key), actor=who.actor)
        await ctx.changed()
        return Response(status_code=204)

    for fn in (create, replace):
        fn.__annotations__["body"] = k.body
    return {"list": list_, "create": create, "get": get, "replace": replace, "remove": remove}


def _key(k: Kind, key: str) -> str:
    """A DID in the path may be written in any E.164 spelling (``%2B3906…``, ``003906…``)."""
    if k.entity == "did":
        from w3sipagent.control.schemas import parse_did

        try:
            return parse_did(key)
        except ValueError:
            return key
    return key


def register(app: FastAPI) -> None:
    """Add the five routes of every kind to ``app``."""
    for k in KINDS.values():
        h = _handlers(k)
        base = f"/api/tenants/{{tenant_id}}/{k.plural}"
        tags: list[str | Any] = [k.plural]
        app.add_api_route(
            base,
            h["list"],
            methods=["GET"],
            response_model=GenericAlias(list, (k.out,)),
            tags=tags,
            summary=f"List the tenant's {k.plural}",
            name=f"list_{k.plural}",
        )
        app.add_api_route(
            base,
            h["create"],
            methods=["POST"],
            response_model=k.out,
            status_code=201,
            tags=tags,
            summary=f"Create a {k.entity}",
            name=f"create_{k.entity}",
        )
        item = f"{base}/{{key}}"
        app.add_api_route(
            item,
            h["get"],
            methods=["GET"],
            response_model=k.out,
            tags=tags,
            summary=f"Get a {k.entity}",
            name=f"get_{k.entity}",
        )
        app.add_api_route(
            item,
            h["replace"],
            methods=["PUT"],
            response_model=k.out,
            tags=tags,
            summary=f"Replace a {k.entity}",
            name=f"replace_{k.entity}",
        )
        app.add_api_route(
            item,
            h["remove"],
            methods=["DELETE"],
            status_code=204,
            tags=tags,
            summary=f"Delete a {k.entity}",
            name=f"delete_{k.entity}",
        )
