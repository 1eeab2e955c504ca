"""Moving tenants between the TOML file and the database (``tenants import`` / ``export``).

Import validates the file exactly as ``serve`` does, then writes each tenant with its
destinations, agents and DIDs through :class:`~w3sipagent.control.repo.ControlRepo` (so each
step is checked and audited). Export writes the database's tenants as ``[tenants.ID]``
tables; what TOML cannot say (stores, trunks, DIDs to a destination or rejected) is listed
in comments.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from w3sipagent.control import tomlout
from w3sipagent.control.errors import Conflict, NotFound
from w3sipagent.control.repo import ControlRepo
from w3sipagent.control.schemas import AgentIn, DestinationIn, DidIn, TenantIn
from w3sipagent.tenants.models import TenantConfig

__all__ = ["export_toml", "import_tenants"]


async def import_tenants(
    repo: ControlRepo, tenants: Iterable[TenantConfig], *, actor: str, replace: bool = False
) -> list[str]:
    """Write ``tenants`` to the database; returns their ids. An existing tenant is a
    :class:`Conflict` unless ``replace`` (then it is deleted and written anew)."""
    done = []
    for t in tenants:
        try:
            await repo.get_tenant(t.id)
            if not replace:
                raise Conflict(f"tenant {t.id!r} is already in the database (use --replace)")
            await repo.delete_tenant(t.id, actor=actor)
        except NotFound:
            pass
        settings = t.model_dump(mode="json", exclude={"agents", "dids", "transfers"})
        await repo.create_tenant(TenantIn.model_validate(settings), actor=actor)
        for name, uri in t.transfers.items():
            await repo.create_item(
                "destinations", t.id, DestinationIn(name=name, uri=uri), actor=actor
            )
        for name, agent in t.agents.items():
            body = AgentIn.model_validate({**agent.model_dump(mode="json"), "name": name})
            await repo.create_item("agents", t.id, body, actor=actor)
        for number, agent_name in t.dids.items():
            await repo.create_item(
                "dids", t.id, DidIn(number=number, target_ref=agent_name), actor=actor
            )
        done.append(t.id)
    return done


async def export_toml(repo: ControlRepo, only: str | None = None) -> str:
    """The database's tenants (or only ``only``) as TOML text."""
    snap = await repo.snapshot()
    doc: dict[str, Any] = {}
    notes: list[str] = []
    for tid in sorted(snap.tenants):
        if only is not None and tid != only:
            continue
        t = snap.tenants[tid]
        doc[tid] = t.model_dump(mode="json", exclude={"id"}, exclude_none=True)
        # TOML has no null: DIDs to the default agent are a list (or name it when mixed)
        if t.dids and all(a is None for a in t.dids.values()):
            doc[tid]["dids"] = list(t.dids)
        else:
            doc[tid]["dids"] = {n: a or t.default_agent for n, a in t.dids.items()}
        for number, route in sorted(snap.routes.items()):
            if route.tenant_id == tid and route.target_type != "ai_agent":
                notes.append(f"{tid}: DID {number} → {route.target_type} {route.target_ref or ''}")
            if route.tenant_id == tid and route.store_id:
                notes.append(f"{tid}: DID {number} is in store {route.store_id}")
        for trunk in snap.trunks:
            if trunk.tenant_id == tid:
                notes.append(
                    f"{tid}: trunk {trunk.name} (gateway {trunk.gateway}, source {trunk.source})"
                )
    for tid, why in sorted(snap.skipped.items()):
        if only is None or tid == only:
            notes.append(f"{tid}: not exported ({why})")
    header = "Exported by `w3sipagent tenants export`."
    if notes:
        header += "\nKept only in the database (TOML cannot say it):\n" + "\n".join(
            f"  {n}" for n in notes
        )
    return tomlout.dumps({"tenants": doc}, header)
