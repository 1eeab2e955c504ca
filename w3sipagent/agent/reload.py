"""Reloading tenants on a config file change or on demand (SIGHUP), without dropping calls.

:class:`TenantRegistry` holds the current :class:`TenantTable`. A call takes
``registry.table`` once when it is admitted and keeps that snapshot to its end; a reload
only swaps the registry's reference. A new file that fails validation keeps the running
table and logs one line saying why. The CLI wires SIGHUP to :meth:`TenantRegistry.reload`
(or :meth:`TenantRegistry.areload`); :meth:`TenantRegistry.watch` polls the files' mtimes.

It sits in the agent layer, not in ``tenants/``: it loads :mod:`w3sipagent.config`, which
itself builds on the tenant models.

With ``control.source`` ``database`` or ``both``, :meth:`TenantRegistry.attach_control` adds
the control-plane database as a second source: its change counter is polled every
``control.poll_interval`` (one single-row SELECT, the same on SQLite and PostgreSQL and on
every machine sharing the database), and a change rebuilds the table for new calls. File
tenants come first and are read-only: a database tenant with the same id is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Protocol

from w3sipagent.config import Settings, load_settings
from w3sipagent.errors import ConfigError
from w3sipagent.tenants.models import TenantConfig
from w3sipagent.tenants.resolver import TenantTable
from w3sipagent.tenants.routing import DidRoute, TrunkRoute

log = logging.getLogger("w3sipagent.tenants")

Signature = tuple[tuple[str, int, int], ...]
RESTART_SECTIONS = ("sip", "rtp", "realtime", "records", "metrics", "logging", "control", "api")
"""Sections read once at start: a change is logged as needing a restart, not applied
(except ``sip.allowed_sources``, which the resolver applies at once)."""


class ControlSnapshot(Protocol):
    """What the control-plane database holds (:class:`w3sipagent.control.snapshot.Snapshot`)."""

    version: int
    tenants: dict[str, TenantConfig]
    routes: dict[str, DidRoute]
    trunks: list[TrunkRoute]
    skipped: dict[str, str]
    reread: int
    """How many tenants this snapshot read and validated anew."""


class ControlSource(Protocol):
    """The control-plane database (:class:`w3sipagent.control.repo.ControlRepo`)."""

    async def version(self) -> int: ...

    async def snapshot(self, previous: Any = None) -> ControlSnapshot: ...


def table_from_settings(settings: Settings, control: ControlSnapshot | None = None) -> TenantTable:
    """The :class:`TenantTable` for ``settings`` (tenants, tenancy, sip.allowed_sources) and,
    per ``control.source``, the control-plane ``control`` snapshot (file tenants win)."""
    mode = settings.control.source
    tenants: dict[str, TenantConfig] = dict(settings.tenants) if mode != "database" else {}
    routes: dict[str, DidRoute] = {}
    trunks: list[TrunkRoute] = []
    if control is not None and mode != "file":
        for tid, tenant in control.tenants.items():
            if tid in tenants:
                log.warning("tenant %s is in the config file and the database: file kept", tid)
                continue
            tenants[tid] = tenant
        ours = set(control.tenants) - set(settings.tenants if mode == "both" else ())
        routes = {n: r for n, r in control.routes.items() if r.tenant_id in ours}
        trunks = [t for t in control.trunks if t.tenant_id in ours]
    return TenantTable(
        tenants,
        settings.tenancy,
        list(settings.sip.allowed_sources),
        routes=routes,
        trunks=trunks,
    )


def files_signature(settings: Settings) -> Signature:
    """(path, mtime_ns, size) of every config file, include globs re-expanded; -1 if missing."""
    paths: list[str] = [str(p) for p in settings.files]
    for pattern in settings.include_globs:
        matches = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
        paths.extend(m for m in matches if m not in paths)
    sig = []
    for p in sorted(set(paths)):
        try:
            st = Path(p).stat()
            sig.append((p, st.st_mtime_ns, st.st_size))
        except OSError:
            sig.append((p, -1, -1))
    return tuple(sig)


class TenantRegistry:
    """The live tenant table, reloadable.

    ``loader`` builds fresh :class:`Settings` (default: the same main file, no flags —
    pass a closure over the CLI overrides to keep them).
    """

    def __init__(
        self,
        settings: Settings,
        loader: Callable[[], Settings] | None = None,
        *,
        interval: float | None = None,
    ) -> None:
        self._settings = settings
        self._table = table_from_settings(settings)
        path = settings.config_file
        self._loader = loader or (lambda: load_settings(path, discover=False))
        self.interval = settings.tenancy.reload_interval if interval is None else interval
        self._signature = files_signature(settings)
        self._listeners: list[Callable[[TenantTable], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._control: ControlSource | None = None
        self._snapshot: ControlSnapshot | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._refreshes: set[asyncio.Task[bool]] = set()
        self.control_interval = settings.control.poll_interval
        self.reloads = 0
        """Successful reloads so far."""
        self.failures = 0
        """Reloads refused because the new config was bad."""
        self.last_error: str | None = None

    @property
    def table(self) -> TenantTable:
        """The current snapshot: take it once per call and keep it."""
        return self._table

    @property
    def settings(self) -> Settings:
        """The settings the current table was built from."""
        return self._settings

    def readonly_ids(self) -> Collection[str]:
        """Tenant ids the database may not define (the file's, with source ``both``)."""
        return set(self._settings.tenants) if self._settings.control.source == "both" else set()

    def attach_control(self, source: ControlSource, *, interval: float | None = None) -> None:
        """Serve the control-plane database's tenants too (``control.source``)."""
        self._control = source
        if interval is not None:
            self.control_interval = interval

    async def refresh_control(self, *, force: bool = False) -> bool:
        """Poll the database's change counter; on a change, rebuild the table for new calls.

        True when the table was rebuilt. A database error keeps the running table (logged).
        """
        if self._control is None:
            return False
        try:
            version = await self._control.version()
            if not force and self._snapshot is not None and version == self._snapshot.version:
                return False
            snap = await self._control.snapshot(self._snapshot)
        except Exception as e:  # a database outage must not stop the calls on the old table
            log.warning("control plane: database not read, keeping the running tenants: %r", e)
            return False
        before = self._snapshot.skipped if self._snapshot is not None else {}
        for tid, why in snap.skipped.items():
            if before.get(tid) != why:  # once per tenant and reason, not at every change
                log.info("control plane: tenant %s not served: %s", tid, why)
        self._snapshot = snap
        self._table = table_from_settings(self._settings, snap)
        log.info(
            "control plane: change %d applied to new calls (%d tenants, %d re-read)",
            snap.version,
            len(snap.tenants),
            snap.reread,
        )
        for cb in self._listeners:
            cb(self._table)
        return True

    def schedule_refresh(self) -> None:
        """Refresh from the database soon (a change was made in this process)."""
        task = asyncio.get_running_loop().create_task(self.refresh_control(force=True))
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def watch_control(self) -> None:
        """Poll the database every ``control_interval`` seconds (until cancelled)."""
        while True:
            await self.refresh_control()
            await asyncio.sleep(self.control_interval)

    def add_listener(self, callback: Callable[[TenantTable], None]) -> None:
        """Call ``callback(new_table)`` after every successful reload."""
        self._listeners.append(callback)

    def changed(self) -> bool:
        """True when a config file (or an include match) changed since the last load."""
        return files_signature(self._settings) != self._signature

    def reload(self) -> bool:
        """Load and validate now; swap the table if good. False (old kept, logged) if bad."""
        signature = files_signature(self._settings)
        try:
            new = self._loader()
        except ConfigError as e:
            self._signature = signature
            return self._refuse(str(e))
        return self._apply(new)

    async def areload(self) -> bool:
        """:meth:`reload` with the file reading done in a worker thread."""
        signature = files_signature(self._settings)
        try:
            new = await asyncio.to_thread(self._loader)
        except ConfigError as e:
            self._signature = signature
            return self._refuse(str(e))
        return self._apply(new)

    def _refuse(self, why: str) -> bool:
        self.failures += 1
        self.last_error = why
        log.error("config reload refused, keeping the running tenants: %s", why)
        return False

    def _apply(self, new: Settings) -> bool:
        old = self._settings
        for section in RESTART_SECTIONS:
            a = getattr(old, section).model_dump(exclude={"allowed_sources"})
            b = getattr(new, section).model_dump(exclude={"allowed_sources"})
            if a != b:
                log.warning("config reload: [%s] changed; restart to apply it", section)
        self._settings = new
        self._table = table_from_settings(new, self._snapshot)
        self._signature = files_signature(new)
        self.reloads += 1
        self.last_error = None
        log.info(
            "config reloaded: %d tenants (%s)", len(self._table), ", ".join(self._table.tenants)
        )
        for cb in self._listeners:
            cb(self._table)
        return True

    async def watch(self) -> None:
        """Poll the files every ``interval`` seconds and reload on change (until cancelled)."""
        if self.interval <= 0:
            return
        while True:
            await asyncio.sleep(self.interval)
            if await asyncio.to_thread(self.changed):
                await self.areload()

    def start(self) -> asyncio.Task[None]:
        """Start :meth:`watch` (and :meth:`watch_control` with a database) as tasks
        (idempotent)."""
        if self._control is not None and (self._control_task is None or self._control_task.done()):
            self._control_task = asyncio.create_task(
                self.watch_control(), name="w3sipagent-control-watch"
            )
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.watch(), name="w3sipagent-config-watch")
        return self._task

    async def stop(self) -> None:
        """Stop the watcher tasks."""
        for task in (self._task, self._control_task, *self._refreshes):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None
        self._control_task = None
