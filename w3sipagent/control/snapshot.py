"""Database rows → the tenant table's inputs: :class:`TenantConfig` per tenant, DID routes
and trunks (what :class:`~w3sipagent.agent.reload.TenantRegistry` serves calls from).

A tenant without an agent yet is skipped (it cannot take a call); the reason is kept in
:attr:`Snapshot.skipped` for the log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from w3sipagent.control.models import (
    AgentRow,
    ControlStateRow,
    DestinationRow,
    DidRow,
    HostRow,
    TenantRow,
    TrunkRow,
)
from w3sipagent.tenants.fields import parse_network
from w3sipagent.tenants.models import TenantConfig
from w3sipagent.tenants.routing import DidRoute, TargetType, TrunkRoute

__all__ = ["Snapshot", "load_snapshot", "tenant_document", "version_of"]


@dataclass
class Snapshot:
    """Everything the database says about routing, at one change-counter value."""

    version: int
    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    routes: dict[str, DidRoute] = field(default_factory=dict)
    trunks: list[TrunkRoute] = field(default_factory=list)
    stores: dict[str, set[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Tenant id → why it is not served (no agent yet, invalid)."""


def tenant_document(
    tenant_id: str,
    settings: Mapping[str, Any],
    hosts: Iterable[str],
    agents: Iterable[tuple[str, Mapping[str, Any]]],
    dids: Iterable[tuple[str, str, str | None]],
    destinations: Iterable[tuple[str, str]],
) -> dict[str, Any]:
    """The TOML-shaped document of a tenant (what :class:`TenantConfig` validates).

    ``dids``: (number, target_type, target_ref); only agent targets are TOML DIDs.
    """
    doc = {k: v for k, v in settings.items() if k != "name"}
    doc["id"] = tenant_id
    doc["hosts"] = sorted(hosts)
    doc["agents"] = {name: dict(cfg) for name, cfg in agents}
    doc["dids"] = {n: ref for n, kind, ref in dids if kind == "ai_agent"}
    doc["transfers"] = dict(destinations)
    return doc


async def version_of(conn: AsyncConnection) -> int:
    """The change counter (0 before the first change)."""
    v = (
        await conn.execute(select(ControlStateRow.version).where(ControlStateRow.id == 1))
    ).scalar()
    return int(v or 0)


async def load_snapshot(conn: AsyncConnection) -> Snapshot:
    """Read every control-plane tenant, route and trunk (one consistent read)."""
    snap = Snapshot(version=await version_of(conn))
    tenants = (await conn.execute(select(TenantRow.id, TenantRow.settings))).all()
    hosts: dict[str, list[str]] = defaultdict(list)
    for host, tid in (await conn.execute(select(HostRow.host, HostRow.tenant_id))).all():
        hosts[tid].append(host)
    agents: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    q = select(AgentRow.tenant_id, AgentRow.name, AgentRow.config).order_by(AgentRow.name)
    for tid, name, cfg in (await conn.execute(q)).all():
        agents[tid].append((name, cfg))
    dids: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
    rows = (
        await conn.execute(
            select(
                DidRow.number,
                DidRow.tenant_id,
                DidRow.store_id,
                DidRow.target_type,
                DidRow.target_ref,
            )
        )
    ).all()
    for number, tid, store, kind, ref in rows:
        dids[tid].append((number, kind, ref))
        snap.routes[number] = DidRoute(number, tid, cast(TargetType, kind), ref, store)
    dests: dict[str, list[tuple[str, str]]] = defaultdict(list)
    q2 = select(DestinationRow.tenant_id, DestinationRow.name, DestinationRow.uri)
    for tid, name, uri in (await conn.execute(q2)).all():
        dests[tid].append((name, uri))
    q3 = select(
        TrunkRow.tenant_id, TrunkRow.name, TrunkRow.gateway, TrunkRow.source, TrunkRow.store_id
    )
    for tid, name, gateway, source, store in (await conn.execute(q3)).all():
        net = parse_network(source) if source else None
        snap.trunks.append(TrunkRoute(tid, name, gateway, net, store))
    for tid, settings in tenants:
        if not agents.get(tid):
            snap.skipped[tid] = "no agent yet"
            continue
        doc = tenant_document(tid, settings, hosts[tid], agents[tid], dids[tid], dests[tid])
        try:
            snap.tenants[tid] = TenantConfig.model_validate(doc)
        except ValidationError as e:
            snap.skipped[tid] = f"invalid: {e.errors()[0]['msg']}"
    return snap
