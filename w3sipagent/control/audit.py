"""The audit trail of provisioning changes: who changed what, before → after, secrets masked.

Values under keys that look secret (``key``, ``password``, ``secret``, ``token``, ``auth``)
are replaced by ``***`` (a :class:`~w3sipagent.tenants.models.SecretRef` ``{env, file}``
names a variable or file, not a value, and is kept); every string also goes through the
process-wide :data:`~w3sipagent.redact.REDACTOR`, which masks any secret value read so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from w3sipagent.control.models import AuditRow
from w3sipagent.records.cdr import utcnow
from w3sipagent.redact import MASK, REDACTOR

__all__ = ["AuditEntry", "list_audit", "redact_doc", "write_audit"]

_SECRET_WORDS = ("key", "password", "secret", "token", "auth")
_REFERENCE_KEYS = {"env", "file"}


def _secret_key(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _SECRET_WORDS)


def redact_doc(value: Any, *, secret: bool = False) -> Any:
    """A copy of ``value`` with secret-looking keys' values and registered secrets masked."""
    if isinstance(value, dict):
        if secret and set(value) <= _REFERENCE_KEYS:
            return {k: redact_doc(v) for k, v in value.items()}
        return {k: redact_doc(v, secret=secret or _secret_key(str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_doc(v, secret=secret) for v in value]
    if secret and value is not None and not isinstance(value, bool):
        return MASK
    if isinstance(value, str):
        return REDACTOR.redact(value)
    return value


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change as read back."""

    at: datetime
    actor: str
    action: str
    entity: str
    ref: str
    tenant_id: str | None
    store_id: str | None
    agent_id: str | None
    did: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


async def write_audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    entity: str,
    ref: str,
    tenant_id: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Add the audit row of one change to ``session``'s transaction."""
    doc = after or before or {}
    store = doc.get("store_id") if entity != "store" else doc.get("id")
    agent = (
        doc.get("target_ref") if entity == "did" and doc.get("target_type") == "ai_agent" else None
    )
    if entity == "agent":
        agent = doc.get("name")
    session.add(
        AuditRow(
            at=utcnow(),
            actor=actor[:128],
            action=action,
            entity=entity,
            ref=ref[:255],
            tenant_id=tenant_id,
            store_id=store,
            agent_id=agent,
            did=doc.get("number") if entity == "did" else None,
            before=None if before is None else redact_doc(before),
            after=None if after is None else redact_doc(after),
        )
    )


async def list_audit(
    conn: AsyncConnection, *, tenant_id: str | None = None, limit: int = 100
) -> list[AuditEntry]:
    """Changes newest first (of one tenant when ``tenant_id`` is given)."""
    q = select(AuditRow)
    if tenant_id is not None:
        q = q.where(AuditRow.tenant_id == tenant_id)
    q = q.order_by(desc(AuditRow.id)).limit(limit)
    rows = (await conn.execute(q)).mappings().all()
    return [
        AuditEntry(
            r["at"],
            r["actor"],
            r["action"],
            r["entity"],
            r["ref"],
            r["tenant_id"],
            r["store_id"],
            r["agent_id"],
            r["did"],
            r["before"],
            r["after"],
        )
        for r in rows
    ]
