"""Database rows → the tenant table's inputs: :class:`TenantConfig` per tenant, DID routes
and trunks (what :class:`~w3sipagent.agent.reload.TenantRegistry` serves calls from).

A tenant without an agent yet is skipped (it cannot take a call); the reason is kept in
:attr:`Snapshot.skipped` for the log.
"""

from __future__ import annotations

import asyncio
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
class _TenantPart:
    """What one tenant contributes, kept while its revision does not change."""

    revision: int
    config: TenantConfig | None
    skipped: str | None
    routes: dict[str, DidRoute]
    trunks: list[TrunkRoute]


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
    parts: dict[str, _TenantPart] = field(default_factory=dict)
    """Per tenant, by revision: the next snapshot reads and validates only the tenants whose
    revision changed (a change to one tenant costs one tenant, not all of them)."""
    reread: int = 0
    """How many tenants this snapshot read and validated anew."""


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


async def load_snapshot(conn: AsyncConnection, previous: Snapshot | None = None) -> Snapshot:
    """Read every control-plane tenant, route and trunk (one consistent read).

    Tenants whose revision is the same as in ``previous`` are reused as they are; the others
    are read and then validated in a worker thread, so that a rebuild of many tenants does
    not hold the event loop (and the calls' media) for its whole duration.
    """
    snap = Snapshot(version=await version_of(conn))
    revisions = dict((await conn.execute(select(TenantRow.id, TenantRow.revision))).all())
    old = previous.parts if previous is not None else {}
    changed = [t for t, rev in revisions.items() if t not in old or old[t].revision != rev]
    fresh: dict[str, _TenantPart] = {}
    for k in range(0, len(changed), 500):
        fresh.update(await _read_parts(conn, changed[k : k + 500], revisions))
    for tid in revisions:
        part = fresh.get(tid) or old[tid]
        snap.parts[tid] = part
        if part.config is not None:
            snap.tenants[tid] = part.config
        if part.skipped is not None:
            snap.skipped[tid] = part.skipped
        snap.routes.update(part.routes)
        snap.trunks.extend(part.trunks)
    snap.reread = len(fresh)
    return snap


async def _read_parts(
    conn: AsyncConnection, ids: list[str], revisions: Mapping[str, int]
) -> dict[str, _TenantPart]:
    tenants = (
        await conn.execute(select(TenantRow.id, TenantRow.settings).where(TenantRow.id.in_(ids)))
    ).all()
    hosts: dict[str, list[str]] = defaultdict(list)
    q0 = select(HostRow.host, HostRow.tenant_id).where(HostRow.tenant_id.in_(ids))
    for host, tid in (await conn.execute(q0)).all():
        hosts[tid].append(host)
    agents: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    q = (
        select(AgentRow.tenant_id, AgentRow.name, AgentRow.config, AgentRow.policy)
        .where(AgentRow.tenant_id.in_(ids))
        .order_by(AgentRow.name)
    )
    for tid, name, cfg, policy in (await conn.execute(q)).all():
        agents[tid].append((name, {**cfg, "policy": policy}))  # the policy has its column
    dids: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
    routes: dict[str, dict[str, DidRoute]] = defaultdict(dict)
    q1 = select(
        DidRow.number, DidRow.tenant_id, DidRow.store_id, DidRow.target_type, DidRow.target_ref
    ).where(DidRow.tenant_id.in_(ids))
    for number, tid, store, kind, ref in (await conn.execute(q1)).all():
        dids[tid].append((number, kind, ref))
        routes[tid][number] = DidRoute(number, tid, cast(TargetType, kind), ref, store)
    dests: dict[str, list[tuple[str, str]]] = defaultdict(list)
    q2 = select(DestinationRow.tenant_id, DestinationRow.name, DestinationRow.uri).where(
        DestinationRow.tenant_id.in_(ids)
    )
    for tid, name, uri in (await conn.execute(q2)).all():
        dests[tid].append((name, uri))
    trunks: dict[str, list[TrunkRoute]] = defaultdict(list)
    q3 = select(
        TrunkRow.tenant_id, TrunkRow.name, TrunkRow.gateway, TrunkRow.source, TrunkRow.store_id
    ).where(TrunkRow.tenant_id.in_(ids))
    for tid, name, gateway, source, store in (await conn.execute(q3)).all():
        net = parse_network(source) if source else None
        trunks[tid].append(TrunkRoute(tid, name, gateway, net, store))
    docs: dict[str, dict[str, Any]] = {}
    parts: dict[str, _TenantPart] = {}
    for tid, settings in tenants:
        parts[tid] = _TenantPart(
            revisions[tid], None, "no agent yet", dict(routes[tid]), list(trunks[tid])
        )
        if agents.get(tid):
            docs[tid] = tenant_document(
                tid, settings, hosts[tid], agents[tid], dids[tid], dests[tid]
            )
    built = await asyncio.to_thread(_validate_all, docs) if docs else {}
    for tid, result in built.items():
        if isinstance(result, TenantConfig):
            parts[tid].config, parts[tid].skipped = result, None
        else:
            parts[tid].skipped = result
    return parts


def _validate_all(docs: Mapping[str, dict[str, Any]]) -> dict[str, TenantConfig | str]:
    out: dict[str, TenantConfig | str] = {}
    for tid, doc in docs.items():
        try:
            out[tid] = TenantConfig.model_validate(doc)
        except ValidationError as e:
            out[tid] = f"invalid: {e.errors()[0]['msg']}"
    return out
