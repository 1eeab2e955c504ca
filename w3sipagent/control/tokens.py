"""API tokens: random, shown once, stored as SHA-256 only; per tenant or admin (no tenant)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from w3sipagent.control.models import TenantRow, TokenRow
from w3sipagent.records.cdr import utcnow

__all__ = ["TOKEN_PREFIX", "TokenInfo", "create_token", "hash_token", "lookup_token"]

TOKEN_PREFIX = "w3t_"


def hash_token(token: str) -> str:
    """The stored form of ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """Whom a token speaks for."""

    id: int
    tenant_id: str | None
    """None: an admin token."""
    name: str
    prefix: str


async def create_token(engine: AsyncEngine, tenant_id: str | None, name: str = "") -> str:
    """A new token for ``tenant_id`` (None: admin); returns the token itself (shown once).

    Raises LookupError when the tenant is not in the database.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        if tenant_id is not None:
            q = select(TenantRow.id).where(TenantRow.id == tenant_id)
            if (await conn.execute(q)).first() is None:
                raise LookupError(f"no tenant {tenant_id!r} in the database")
        await conn.execute(
            insert(TokenRow).values(
                token_hash=hash_token(token),
                prefix=token[: len(TOKEN_PREFIX) + 4],
                tenant_id=tenant_id,
                name=name,
                created_at=utcnow(),
            )
        )
    return token


async def lookup_token(engine: AsyncEngine, token: str) -> TokenInfo | None:
    """Who ``token`` is, or None when it is unknown."""
    q = select(TokenRow.id, TokenRow.tenant_id, TokenRow.name, TokenRow.prefix).where(
        TokenRow.token_hash == hash_token(token)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else TokenInfo(row[0], row[1], row[2], row[3])
