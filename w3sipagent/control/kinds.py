"""The tenant-scoped object kinds of the control plane (stores, agents, DIDs, trunks,
destinations): their table, key, body model and row ↔ model mapping, so that
:class:`~w3sipagent.control.repo.ControlRepo` handles them with one set of CRUD methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from w3sipagent.control.models import AgentRow, DestinationRow, DidRow, StoreRow, TrunkRow
from w3sipagent.control.schemas import (
    AgentIn,
    AgentOut,
    DestinationIn,
    DestinationOut,
    DidIn,
    DidOut,
    StoreIn,
    StoreOut,
    TrunkIn,
    TrunkOut,
)
from w3sipagent.records.models import Base

__all__ = ["KINDS", "Kind"]


@dataclass(frozen=True)
class Kind:
    """One kind of tenant-scoped object."""

    plural: str
    entity: str
    row: type[Base]
    key: str
    """The attribute naming the object within its tenant (``number`` for a DID)."""
    body: type[BaseModel]
    out: type[BaseModel]
    to_row: Callable[[str, Any], dict[str, Any]]
    to_out: Callable[[Any], BaseModel]
    global_key: bool = False
    """The key is unique across tenants (a DID's number)."""


def _plain_row(tid: str, body: BaseModel) -> dict[str, Any]:
    return {"tenant_id": tid, **body.model_dump(mode="json")}


def _agent_row(tid: str, body: AgentIn) -> dict[str, Any]:
    cfg = body.model_dump(mode="json", exclude={"name", "store_id", "policy"}, exclude_unset=False)
    return {
        "tenant_id": tid,
        "name": body.name,
        "store_id": body.store_id,
        "policy": body.policy,
        "config": cfg,
    }


def _agent_out(row: AgentRow) -> AgentOut:
    return AgentOut.model_validate(
        {
            **row.config,
            "name": row.name,
            "store_id": row.store_id,
            "policy": row.policy,
            "tenant_id": row.tenant_id,
        }
    )


def _columns(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(row, n) for n in names}


KINDS: dict[str, Kind] = {
    "stores": Kind(
        "stores",
        "store",
        StoreRow,
        "id",
        StoreIn,
        StoreOut,
        _plain_row,
        lambda r: StoreOut.model_validate(_columns(r, ("tenant_id", "id", "name"))),
    ),
    "agents": Kind("agents", "agent", AgentRow, "name", AgentIn, AgentOut, _agent_row, _agent_out),
    "dids": Kind(
        "dids",
        "did",
        DidRow,
        "number",
        DidIn,
        DidOut,
        _plain_row,
        lambda r: DidOut.model_validate(
            _columns(r, ("tenant_id", "number", "store_id", "target_type", "target_ref"))
        ),
        global_key=True,
    ),
    "trunks": Kind(
        "trunks",
        "trunk",
        TrunkRow,
        "name",
        TrunkIn,
        TrunkOut,
        _plain_row,
        lambda r: TrunkOut.model_validate(
            _columns(r, ("tenant_id", "name", "store_id", "gateway", "source"))
        ),
    ),
    "destinations": Kind(
        "destinations",
        "destination",
        DestinationRow,
        "name",
        DestinationIn,
        DestinationOut,
        _plain_row,
        lambda r: DestinationOut.model_validate(_columns(r, ("tenant_id", "name", "uri"))),
    ),
}
