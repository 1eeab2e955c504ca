"""REGISTER mode: keeping every tenant's ``registrations`` registered, in step with reloads.

:class:`RegistrationSync` keeps each tenant registration ``registrations.NAME`` registered
by a :class:`~w3sipagent.asyncio.register.RegistrationManager` on the service's user agent
(password read from its reference, never logged), with the Contact user
``reg-TENANT-NAME``: a call to that Contact is tagged with the registration and resolves to
its tenant. :meth:`RegistrationSync.sync` applies a reloaded tenant table (adds and removes
what changed, keeps the unchanged running); :meth:`RegistrationSync.close` unregisters
(``Expires: 0``). The ``w3sipagent_registration_up{tenant,registration}`` gauge follows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import Gauge

from w3sipagent.asyncio.register import (
    RegisterConfig,
    Registration,
    RegistrationManager,
    RegistrationStatus,
)
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.errors import ConfigError, SipParseError
from w3sipagent.metrics import Metrics
from w3sipagent.sip.uri import SipUri
from w3sipagent.tenants.models import RegistrationConfig
from w3sipagent.tenants.resolver import TenantTable
from w3sipagent.tenants.secrets import resolve_secret

__all__ = [
    "RESERVED_DOMAINS",
    "HostResolver",
    "RegistrationSync",
    "registration_contact_user",
    "resolve_registrar_host",
]

log = logging.getLogger("w3sipagent.agent.service")

HostResolver = Callable[[str], Awaitable[str]]
"""``await resolve(host)`` → an IP address literal (raises :class:`ConfigError` when none)."""

RESERVED_DOMAINS = ("example", "invalid")
"""Top-level names that never resolve (RFC 2606 / RFC 6761): no DNS query is sent for them."""


async def resolve_registrar_host(host: str) -> str:
    """The address of a registrar host: an IP literal as is, ``localhost`` → 127.0.0.1, a
    reserved name (``.example``, ``.invalid``) refused without a query, else the system
    resolver (``getaddrinfo``, off the event loop). Raises :class:`ConfigError`."""
    h = host.strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        pass
    if h == "localhost" or h.endswith(".localhost"):
        return "127.0.0.1"
    if h.rsplit(".", 1)[-1] in RESERVED_DOMAINS:
        raise ConfigError(f"registrar host {host!r} is a reserved name that never resolves")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(h, None, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConfigError(f"registrar host {host!r} does not resolve: {exc.strerror}") from None
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return str(sockaddr[0])
    raise ConfigError(f"registrar host {host!r} has no IP address")


def registration_contact_user(tenant_id: str, name: str) -> str:
    """The Contact user the agent registers a tenant's registration with: ``reg-TENANT-NAME``
    (characters other than letters, digits, ``-``, ``_`` and ``.`` become ``-``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return f"reg-{tenant_id}-{safe}"


_REG_GAUGES: weakref.WeakKeyDictionary[Metrics, Gauge] = weakref.WeakKeyDictionary()


def _registration_gauge(metrics: Metrics) -> Gauge:
    """``w3sipagent_registration_up{tenant,registration}`` in the metrics' registry (once)."""
    gauge = _REG_GAUGES.get(metrics)
    if gauge is None:
        gauge = Gauge(
            "w3sipagent_registration_up",
            "1 while a tenant registration is registered at its registrar",
            ["tenant", "registration"],
            registry=metrics.registry,
        )
        _REG_GAUGES[metrics] = gauge
    return gauge


class RegistrationSync:
    """The tenants' registrations on one user agent, following the tenant table.

    ``tables()``: the current table; ``only_tenant``: register that tenant's only;
    ``resolve_host``: registrar host name → address; ``environ``: where passwords are read.
    """

    def __init__(
        self,
        tables: Callable[[], TenantTable],
        *,
        environ: Mapping[str, str],
        config: RegisterConfig | None = None,
        resolve_host: HostResolver | None = None,
        only_tenant: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.tables = tables
        self.environ = environ
        self.config = config or RegisterConfig()
        self.resolve_host = resolve_host or resolve_registrar_host
        self.only_tenant = only_tenant
        self.metrics = metrics
        self.manager: RegistrationManager | None = None
        """The REGISTER client (after :meth:`start`)."""
        self._ua: UserAgent | None = None
        self._applied: dict[str, tuple[str, RegistrationConfig]] = {}
        self._errors: dict[str, RegistrationStatus] = {}
        self._contacts: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unregistering: asyncio.Task[None] | None = None

    async def start(self, ua: UserAgent) -> None:
        """Register the current table's registrations on ``ua`` (a started user agent)."""
        self._ua = ua
        self.manager = RegistrationManager(ua, config=self.config, on_change=self._changed)
        await self.sync()

    def statuses(self) -> dict[str, RegistrationStatus]:
        """Every tenant registration by id (``TENANT/NAME``), failed ones included."""
        out = dict(self._errors)
        if self.manager is not None:
            out.update(self.manager.statuses())
        return dict(sorted(out.items()))

    def tenants_changed(self, table: TenantTable | None = None) -> asyncio.Task[None]:
        """Apply a new tenant table's registrations in the background."""
        task = asyncio.get_running_loop().create_task(
            self.sync(table), name="w3sipagent-registrations"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def sync(self, table: TenantTable | None = None) -> None:
        """Make the running registrations those of ``table`` (default: the current one).

        A registration whose configuration is unchanged keeps running (not re-registered);
        a removed or changed one is unregistered (``Expires: 0``) first, then the new ones
        are added. One that failed to start (unreadable password, unresolvable registrar)
        is tried again.
        """
        async with self._lock:
            mgr = self.manager
            if mgr is None or self._unregistering is not None:
                return
            table = table or self.tables()
            wanted = {
                rid: (tenant.id, reg)
                for rid, tenant, reg in table.registrations()
                if self.only_tenant is None or tenant.id == self.only_tenant
            }
            for rid in list(self._applied):
                if wanted.get(rid) != self._applied[rid] or rid in self._errors:
                    self._forget(rid)
                    await mgr.remove(rid)
            for rid, (tenant_id, reg) in wanted.items():
                if rid not in self._applied:
                    await self._add(mgr, rid, tenant_id, reg)

    def start_unregistering(self) -> None:
        """Unregister everything in the background (idempotent); later syncs add none."""
        if self._unregistering is None and self.manager is not None:
            self._unregistering = asyncio.get_running_loop().create_task(
                self._unregister_all(), name="w3sipagent-unregister"
            )

    async def close(self, *, unregister: bool = True) -> None:
        """Stop background syncs; with ``unregister``, unregister all and wait for it."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if unregister:
            self.start_unregistering()
        if self._unregistering is not None:
            with contextlib.suppress(Exception):
                await self._unregistering

    async def _unregister_all(self) -> None:
        """Unregister every registration (``Expires: 0``), concurrently, bounded by
        ``config.unregister_timeout``."""
        async with self._lock:
            mgr = self.manager
            if mgr is None:
                return
            for rid in list(self._applied):
                self._forget(rid)
            await mgr.aclose()
            self._errors.clear()

    def _forget(self, rid: str) -> None:
        self._applied.pop(rid, None)
        self._errors.pop(rid, None)
        user = self._contacts.pop(rid, None)
        if user is not None and self._ua is not None:
            self._ua.remove_local_contact(user)
        if self.metrics is not None:
            tenant, _, name = rid.partition("/")
            with contextlib.suppress(KeyError):
                _registration_gauge(self.metrics).remove(tenant, name)

    async def _add(
        self, mgr: RegistrationManager, rid: str, tenant_id: str, reg: RegistrationConfig
    ) -> None:
        self._applied[rid] = (tenant_id, reg)
        name = rid.partition("/")[2]
        try:
            registration = await self._registration(rid, tenant_id, name, reg)
            user = registration.contact_user_part
            mgr.add(registration)
        except ConfigError as exc:
            loop = asyncio.get_running_loop()
            status = RegistrationStatus(rid, "failed", None, str(exc), changed_at=loop.time())
            self._errors[rid] = status
            log.error("registration %s not started: %s", rid, exc)
            self._changed(status)
            return
        self._contacts[rid] = user
        log.info("registration %s: registering %s at %s", rid, registration.aor, reg.registrar)

    async def _registration(
        self, rid: str, tenant_id: str, name: str, reg: RegistrationConfig
    ) -> Registration:
        """The REGISTER client's view of a tenant registration: password read from its
        reference, registrar host resolved (raises ConfigError naming what is wrong)."""
        what = f"tenant '{tenant_id}': registrations.{name}"
        password: str | None = None
        if reg.password is not None:
            ref = reg.password
            secret = await asyncio.to_thread(
                resolve_secret, ref, what=f"{what}.password", environ=self.environ
            )
            password = secret.get_secret_value()
        try:
            uri = SipUri.parse(reg.registrar)
        except SipParseError as exc:
            raise ConfigError(f"{what}.registrar: {exc.reason}") from None
        try:
            address = await self.resolve_host(uri.hostname)
        except ConfigError as exc:
            raise ConfigError(f"{what}.registrar: {exc}") from None
        host = f"[{address}]" if ":" in address else address
        port = "" if uri.port is None else f":{uri.port}"
        transport = "" if uri.transport is None else f";transport={uri.transport}"
        domain = reg.domain or uri.hostname
        domain = f"[{domain}]" if ":" in domain and not domain.startswith("[") else domain
        return Registration(
            id=rid,
            registrar=f"{uri.scheme}:{host}{port}{transport}",
            aor=f"{uri.scheme}:{reg.user}@{domain}",
            username=reg.auth_user,
            password=password,
            contact_user=registration_contact_user(tenant_id, name),
            expires=reg.expires,
        )

    def _changed(self, status: RegistrationStatus) -> None:
        if self.metrics is None:
            return
        tenant, _, name = status.id.partition("/")
        up = 1.0 if status.state == "registered" else 0.0
        _registration_gauge(self.metrics).labels(tenant, name).set(up)
