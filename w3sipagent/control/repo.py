"""The control-plane repository: tenants and their stores, agents, DIDs, trunks and
destinations in the records database, every change checked, audited and counted.

Each write is one transaction that (1) checks the tenant and the references (a DID's agent
or destination, a store), (2) writes, (3) validates the whole tenant again with the same
model as a TOML tenant (:class:`~w3sipagent.tenants.models.TenantConfig`), (4) adds the audit
row and (5) bumps the change counter that agent processes poll. Errors are
:class:`~w3sipagent.control.errors.ControlError` with messages safe to show the caller: a
tenant never learns which other tenant holds a number, a host or a gateway.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from w3sipagent.control import audit, snapshot
from w3sipagent.control.errors import Conflict, Invalid, NotFound
from w3sipagent.control.kinds import KINDS, Kind
from w3sipagent.control.models import (
    AgentRow,
    ControlStateRow,
    DestinationRow,
    DidRow,
    HostRow,
    StoreRow,
    TenantRow,
    TokenRow,
    TrunkRow,
)
from w3sipagent.control.schemas import TenantIn, TenantOut, TenantSettings
from w3sipagent.records.cdr import utcnow
from w3sipagent.records.db import make_engine, run_migrations
from w3sipagent.tenants.models import TenantConfig

__all__ = ["ControlRepo"]

log = logging.getLogger("w3sipagent.control")

_CHILD_ROWS = (AgentRow, DidRow, TrunkRow, DestinationRow, StoreRow, HostRow, TokenRow)


class ControlRepo:
    """Async CRUD over the control-plane tables of ``engine``.

    ``readonly``: the ids of tenants that come from the config file (source ``both``): they
    cannot be created (nor their hosts taken) in the database.
    """

    def __init__(
        self, engine: AsyncEngine, *, readonly: Callable[[], Collection[str]] = lambda: ()
    ) -> None:
        self.engine = engine
        self.readonly = readonly
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._listeners: list[Callable[[], None]] = []
        self._owned = False

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> ControlRepo:
        """Connect to ``url`` and run the migrations (the same ones as the CDR store)."""
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(run_migrations)
        except BaseException:
            await engine.dispose()
            raise
        repo = cls(engine, **kwargs)
        repo._owned = True
        return repo

    async def close(self) -> None:
        """Dispose of the engine when :meth:`open` made it."""
        if self._owned:
            await self.engine.dispose()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every committed change made through this repository."""
        self._listeners.append(callback)

    # -------------------------------------------------------------- reads for the registry

    async def version(self) -> int:
        """The change counter."""
        async with self.engine.connect() as conn:
            return await snapshot.version_of(conn)

    async def snapshot(self, previous: snapshot.Snapshot | None = None) -> snapshot.Snapshot:
        """Every tenant, DID route and trunk, as the tenant table needs them (tenants that
        did not change since ``previous`` are reused)."""
        async with self.engine.connect() as conn:
            return await snapshot.load_snapshot(conn, previous)

    async def audit(
        self, *, tenant_id: str | None = None, limit: int = 100
    ) -> list[audit.AuditEntry]:
        """The audit trail, newest first."""
        async with self.engine.connect() as conn:
            return await audit.list_audit(conn, tenant_id=tenant_id, limit=limit)

    # -------------------------------------------------------------- tenants

    async def list_tenants(self, only: str | None = None) -> list[TenantOut]:
        """Tenants by id (only ``only`` when given)."""
        async with self._sessions() as s:
            q = select(TenantRow).order_by(TenantRow.id)
            if only is not None:
                q = q.where(TenantRow.id == only)
            rows = (await s.execute(q)).scalars().all()
            return [await self._tenant_out(s, r) for r in rows]

    async def get_tenant(self, tenant_id: str) -> TenantOut:
        async with self._sessions() as s:
            return await self._tenant_out(s, await self._tenant(s, tenant_id))

    async def create_tenant(self, body: TenantIn, *, actor: str) -> TenantOut:
        """A new tenant (409 when the id exists here or in the config file)."""
        if body.id in self.readonly():
            raise Conflict(f"tenant {body.id!r} is defined in the config file (read-only)")
        _check_text(body)
        async with self._write() as s:
            if await s.get(TenantRow, body.id) is not None:
                raise Conflict(f"tenant {body.id!r} already exists")
            now = utcnow()
            s.add(
                TenantRow(
                    id=body.id,
                    name=body.name,
                    settings=_settings_json(body),
                    created_at=now,
                    updated_at=now,
                )
            )
            await s.flush()
            await self._set_hosts(s, body.id, body.hosts)
            await self._validate(s, body.id)
            out = await self._tenant_out(s, await self._tenant(s, body.id))
            await self._changed(s, actor, "create", "tenant", body.id, body.id, None, out)
        self._notify()
        return out

    async def update_tenant(self, tenant_id: str, body: TenantSettings, *, actor: str) -> TenantOut:
        """Replace a tenant's settings (and hosts)."""
        _check_text(body)
        async with self._write() as s:
            row = await self._tenant(s, tenant_id)
            before = await self._tenant_out(s, row)
            row.name = body.name
            row.settings = _settings_json(body)
            row.updated_at = utcnow()
            await self._set_hosts(s, tenant_id, body.hosts)
            await s.flush()
            await self._validate(s, tenant_id)
            out = await self._tenant_out(s, row)
            await self._changed(s, actor, "update", "tenant", tenant_id, tenant_id, before, out)
        self._notify()
        return out

    async def delete_tenant(self, tenant_id: str, *, actor: str) -> None:
        """Delete a tenant with everything it has (its CDRs stay)."""
        async with self._write() as s:
            row = await self._tenant(s, tenant_id)
            before = await self._tenant_out(s, row)
            for table in _CHILD_ROWS:
                await s.execute(delete(table).where(table.tenant_id == tenant_id))
            await s.delete(row)
            await self._changed(s, actor, "delete", "tenant", tenant_id, tenant_id, before, None)
        self._notify()

    async def tenant_config(self, tenant_id: str) -> TenantConfig | None:
        """The tenant as the call path sees it (None while it has no agent)."""
        async with self._sessions() as s:
            await self._tenant(s, tenant_id)
            return await self._assemble(s, tenant_id)

    # -------------------------------------------------------------- stores, agents, DIDs...

    async def list_items(self, kind: str, tenant_id: str) -> list[BaseModel]:
        k = KINDS[kind]
        async with self._sessions() as s:
            await self._tenant(s, tenant_id)
            col = getattr(k.row, k.key)
            q = select(k.row).where(k.row.tenant_id == tenant_id).order_by(col)  # type: ignore[attr-defined]
            return [k.to_out(r) for r in (await s.execute(q)).scalars().all()]

    async def get_item(self, kind: str, tenant_id: str, key: str) -> BaseModel:
        k = KINDS[kind]
        async with self._sessions() as s:
            await self._tenant(s, tenant_id)
            return k.to_out(await self._item(s, k, tenant_id, key))

    async def create_item(
        self, kind: str, tenant_id: str, body: BaseModel, *, actor: str
    ) -> BaseModel:
        k = KINDS[kind]
        key = str(getattr(body, k.key))
        _check_text(body)
        async with self._write() as s:
            await self._tenant(s, tenant_id)
            pk = key if k.global_key else (tenant_id, key)
            existing = await s.get(k.row, pk)
            if existing is not None:
                if k.global_key and existing.tenant_id != tenant_id:  # type: ignore[attr-defined]
                    raise Conflict(f"{k.entity} {key} is not available")
                raise Conflict(f"{k.entity} {key} already exists")
            await self._check_refs(s, k, tenant_id, body)
            s.add(k.row(**k.to_row(tenant_id, body)))
            await s.flush()
            await self._validate(s, tenant_id)
            out = k.to_out(await self._item(s, k, tenant_id, key))
            await self._changed(s, actor, "create", k.entity, key, tenant_id, None, out)
        self._notify()
        return out

    async def replace_item(
        self, kind: str, tenant_id: str, key: str, body: BaseModel, *, actor: str
    ) -> BaseModel:
        k = KINDS[kind]
        if str(getattr(body, k.key)) != key:
            raise Invalid((k.key,), f"differs from the {k.entity} in the path ({key!r})")
        _check_text(body)
        async with self._write() as s:
            await self._tenant(s, tenant_id)
            row = await self._item(s, k, tenant_id, key)
            before = k.to_out(row)
            await self._check_refs(s, k, tenant_id, body)
            for name, value in k.to_row(tenant_id, body).items():
                setattr(row, name, value)
            await s.flush()
            await self._validate(s, tenant_id)
            out = k.to_out(row)
            await self._changed(s, actor, "update", k.entity, key, tenant_id, before, out)
        self._notify()
        return out

    async def delete_item(self, kind: str, tenant_id: str, key: str, *, actor: str) -> None:
        k = KINDS[kind]
        async with self._write() as s:
            await self._tenant(s, tenant_id)
            row = await self._item(s, k, tenant_id, key)
            before = k.to_out(row)
            await self._check_unused(s, k, tenant_id, key)
            await s.delete(row)
            await s.flush()
            try:
                await self._validate(s, tenant_id)
            except Invalid as e:
                raise Conflict(f"{k.entity} {key} is still used ({e})") from None
            await self._changed(s, actor, "delete", k.entity, key, tenant_id, before, None)
        self._notify()

    # -------------------------------------------------------------- internals

    def _write(self) -> _WriteTx:
        return _WriteTx(self._sessions())

    def _notify(self) -> None:
        for cb in self._listeners:
            cb()

    async def _tenant(self, s: AsyncSession, tenant_id: str) -> TenantRow:
        row = await s.get(TenantRow, tenant_id)
        if row is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return row

    async def _item(self, s: AsyncSession, k: Kind, tenant_id: str, key: str) -> Any:
        row = await s.get(k.row, key if k.global_key else (tenant_id, key))
        if row is None or row.tenant_id != tenant_id:  # type: ignore[attr-defined]
            raise NotFound(f"no {k.entity} {key!r} in tenant {tenant_id!r}")
        return row

    async def _tenant_out(self, s: AsyncSession, row: TenantRow) -> TenantOut:
        q = select(HostRow.host).where(HostRow.tenant_id == row.id).order_by(HostRow.host)
        hosts = list((await s.execute(q)).scalars().all())
        return TenantOut.model_validate(
            {**row.settings, "name": row.name, "id": row.id, "hosts": hosts}
        )

    async def _set_hosts(self, s: AsyncSession, tenant_id: str, hosts: list[str]) -> None:
        for host in hosts:
            owner = await s.get(HostRow, host)
            if owner is not None and owner.tenant_id != tenant_id:
                raise Conflict(f"host {host!r} is not available")
        await s.execute(delete(HostRow).where(HostRow.tenant_id == tenant_id))
        s.add_all(HostRow(host=h, tenant_id=tenant_id) for h in hosts)
        await s.flush()

    async def _check_refs(self, s: AsyncSession, k: Kind, tenant_id: str, body: BaseModel) -> None:
        store = getattr(body, "store_id", None)
        if store is not None and await s.get(StoreRow, (tenant_id, store)) is None:
            raise Invalid(("store_id",), f"no store {store!r} in this tenant")
        if k.entity == "did":
            kind, ref = getattr(body, "target_type"), getattr(body, "target_ref")  # noqa: B009
            if (
                kind == "ai_agent"
                and ref is not None
                and await s.get(AgentRow, (tenant_id, ref)) is None
            ):
                raise Invalid(("target_ref",), f"no agent {ref!r} in this tenant")
            if kind == "destination" and await s.get(DestinationRow, (tenant_id, ref)) is None:
                raise Invalid(("target_ref",), f"no destination {ref!r} in this tenant")
        if k.entity == "trunk":
            gateway = getattr(body, "gateway", None)
            if gateway is not None:
                q = select(TrunkRow).where(TrunkRow.gateway == gateway)
                for other in (await s.execute(q)).scalars().all():
                    if (other.tenant_id, other.name) != (tenant_id, getattr(body, "name")):  # noqa: B009
                        raise Conflict(f"gateway {gateway!r} is not available")

    async def _check_unused(self, s: AsyncSession, k: Kind, tenant_id: str, key: str) -> None:
        users: list[tuple[str, Any]] = []
        if k.entity == "store":
            users = [("agent", AgentRow), ("did", DidRow), ("trunk", TrunkRow)]
            for what, table in users:
                q = select(table).where(table.tenant_id == tenant_id, table.store_id == key)
                if (await s.execute(q)).first() is not None:
                    raise Conflict(f"store {key!r} is still used by a {what}")
        if k.entity in ("agent", "destination"):
            kind = "ai_agent" if k.entity == "agent" else "destination"
            q2 = select(DidRow.number).where(
                DidRow.tenant_id == tenant_id,
                DidRow.target_type == kind,
                DidRow.target_ref == key,
            )
            number = (await s.execute(q2)).scalar()
            if number is not None:
                raise Conflict(f"{k.entity} {key!r} is the target of DID {number}")

    async def _assemble(self, s: AsyncSession, tenant_id: str) -> TenantConfig | None:
        row = await self._tenant(s, tenant_id)
        hosts = (
            await s.execute(select(HostRow.host).where(HostRow.tenant_id == tenant_id))
        ).scalars()
        agents = (
            (
                await s.execute(
                    select(AgentRow).where(AgentRow.tenant_id == tenant_id).order_by(AgentRow.name)
                )
            )
            .scalars()
            .all()
        )
        if not agents:
            return None
        dids = (await s.execute(select(DidRow).where(DidRow.tenant_id == tenant_id))).scalars()
        dests = (
            await s.execute(select(DestinationRow).where(DestinationRow.tenant_id == tenant_id))
        ).scalars()
        doc = snapshot.tenant_document(
            tenant_id,
            row.settings,
            list(hosts),
            [(a.name, {**a.config, "policy": a.policy}) for a in agents],
            [(d.number, d.target_type, d.target_ref) for d in dids],
            [(d.name, d.uri) for d in dests],
        )
        return TenantConfig.model_validate(doc)

    async def _validate(self, s: AsyncSession, tenant_id: str) -> None:
        try:
            await self._assemble(s, tenant_id)
        except ValidationError as e:
            first = e.errors()[0]
            msg = str(first["msg"]).removeprefix("Value error, ")
            loc = tuple(p for p in first["loc"] if p != "__root__")
            if not loc:  # a whole-tenant check: its message starts with the field's path
                head, sep, rest = msg.partition(": ")
                if sep and re.fullmatch(r"[A-Za-z_][\w.]*", head):
                    loc, msg = tuple(head.split(".")), rest
                else:
                    loc = ("body",)
            raise Invalid(loc, msg) from None

    async def _changed(
        self,
        s: AsyncSession,
        actor: str,
        action: str,
        entity: str,
        ref: str,
        tenant_id: str,
        before: BaseModel | None,
        after: BaseModel | None,
    ) -> None:
        await audit.write_audit(
            s,
            actor=actor,
            action=action,
            entity=entity,
            ref=ref,
            tenant_id=tenant_id,
            before=None if before is None else before.model_dump(mode="json"),
            after=None if after is None else after.model_dump(mode="json"),
        )
        if action != "delete" or entity != "tenant":
            await s.execute(
                update(TenantRow)
                .where(TenantRow.id == tenant_id)
                .values(revision=TenantRow.revision + 1, updated_at=utcnow())
            )
        await s.execute(
            update(ControlStateRow)
            .where(ControlStateRow.id == 1)
            .values(version=ControlStateRow.version + 1)
        )


class _WriteTx:
    """``async with``: a session in a transaction, committed on success; an integrity
    error (a race on a unique key) becomes a :class:`Conflict`."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def __aenter__(self) -> AsyncSession:
        await self.session.__aenter__()
        await self.session.begin()
        return self.session

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: Any
    ) -> None:
        try:
            if isinstance(e, IntegrityError):
                await self.session.rollback()
                raise Conflict("a concurrent change took this name or number") from None
            if et is None:
                try:
                    await self.session.commit()
                except IntegrityError:
                    await self.session.rollback()
                    raise Conflict("a concurrent change took this name or number") from None
            else:
                await self.session.rollback()
        finally:
            await self.session.close()


def _nul_at(value: Any, loc: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where a NUL character hides in ``value`` (PostgreSQL stores none), or None."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            hit = _nul_at(str(k), (*loc, str(k))) or _nul_at(v, (*loc, str(k)))
            if hit is not None:
                return hit
    if isinstance(value, list):
        for i, v in enumerate(value):
            hit = _nul_at(v, (*loc, i))
            if hit is not None:
                return hit
    return None


def _check_text(body: BaseModel) -> None:
    loc = _nul_at(body.model_dump(mode="json"))
    if loc is not None:
        raise Invalid(loc or ("body",), "must not contain NUL characters")


def _settings_json(body: TenantSettings) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"id", "hosts", "name", "source"})
