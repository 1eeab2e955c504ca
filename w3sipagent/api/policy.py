"""What a tenant token may change, and what stays with the operator (an admin token).

A tenant manages its own agents' prompts and voices, its stores, destinations and where its
numbers go. It may not claim what reaches other tenants or spends the operator's resources
(hosts, numbers, trunks, limits, caps, allowed sources), nor touch anything that names a
file or a variable on the agent's machine (key references, ``auth_env`` of tools and
webhooks, registration passwords, ``instructions_file``, WAV paths): such a reference would
let a tenant read another tenant's key or a file of the host into a prompt or a webhook.
A tenant token may leave those fields as they are (a PUT repeats them); changing one is 403
naming it.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel

__all__ = ["OPERATOR_TENANT_FIELDS", "check_item_change", "check_tenant_change"]

OPERATOR_TENANT_FIELDS = (
    "hosts",
    "api_key",
    "allowed_sources",
    "max_concurrent_calls",
    "max_call_duration",
    "usage_caps",
    "registrations",
    "cdr_webhook",
    "fallback.wav",
    "recording.announcement",
    "knowledge",  # its paths are files on the agent's machine, its key a reference
)
OPERATOR_AGENT_FIELDS = ("instructions_file",)
OPERATOR_KINDS_CREATE_DELETE = ("dids", "trunks")
"""A tenant re-points its numbers (PUT) but numbers and trunks are given by the operator."""
OPERATOR_KINDS_ALL = ("trunks",)


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _refuse(field: str) -> HTTPException:
    return HTTPException(403, f"{field}: set by the operator (an admin token)")


def _compare(new: dict[str, Any], old: dict[str, Any], fields: tuple[str, ...]) -> None:
    for f in fields:
        if _get(new, f) != _get(old, f):
            raise _refuse(f)


def check_tenant_change(new: BaseModel, old: BaseModel) -> None:
    """403 when a tenant token changes an operator field of its tenant."""
    _compare(new.model_dump(mode="json"), old.model_dump(mode="json"), OPERATOR_TENANT_FIELDS)


def check_item_change(kind: str, method: str, new: BaseModel | None, old: BaseModel | None) -> None:
    """403 when a tenant token makes an operator change to a store, agent, DID, trunk or
    destination (``old``: the object before, None when creating)."""
    if kind in OPERATOR_KINDS_ALL or (
        kind in OPERATOR_KINDS_CREATE_DELETE and method in ("POST", "DELETE")
    ):
        raise HTTPException(403, f"{kind} are given by the operator (an admin token)")
    if kind != "agents" or new is None:
        return
    n = new.model_dump(mode="json")
    o = old.model_dump(mode="json") if old is not None else {}
    for f in OPERATOR_AGENT_FIELDS:
        if n.get(f) != o.get(f):
            raise _refuse(f)
    before = {t["name"]: t.get("auth_env") for t in o.get("tools", [])}
    for i, tool in enumerate(n.get("tools", [])):
        env = tool.get("auth_env")
        if env is not None and before.get(tool["name"]) != env:
            raise _refuse(f"tools.{i}.auth_env")
