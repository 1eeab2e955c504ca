"""The agent service: user agent + tenants + records + one bridge per call.

:class:`AgentService` is what ``w3sipagent serve`` runs::

    async with AgentService(settings, store=store) as svc:   # SIP listening on svc.port
        await svc.serve_forever()

It is the composition root; each job lives in its own module:

- :mod:`~w3sipagent.agent.admission`: tenant admission before the 200 OK (tenant table,
  per-tenant limit, usage cap, activity log, API key, the AI session started early);
- :mod:`~w3sipagent.agent.callrunner`: one bridge per call, its CDR finished (store,
  metrics, webhook), :meth:`AgentService.dial` and :meth:`AgentService.live_calls`;
- :mod:`~w3sipagent.agent.registrations`: REGISTER mode (``register=True``, the default),
  every tenant ``registrations.NAME`` kept registered and synced on reloads;
- :mod:`~w3sipagent.agent.mappers`: settings → user agent config, bridge options, AI sessions;
- :mod:`~w3sipagent.agent.reload`: the reloadable tenant table (SIGHUP, file watch);
- :mod:`~w3sipagent.agent.cluster`: tenant limits shared by every agent on one PostgreSQL.

Here: the life cycle (start, drain, close), the SIP message trace (:meth:`set_trace`) and
the public face the command line and the tests use.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from w3sipagent.agent.admission import Admitted, ServiceStats, TenantAdmission
from w3sipagent.agent.bridge import BridgeOptions, CallBridge
from w3sipagent.agent.callrunner import CallRunner, LiveCall
from w3sipagent.agent.cluster import ClusterLimits
from w3sipagent.agent.mappers import (
    CODEC_SPECS,
    AIFactory,
    default_ai_factory,
    negotiated_encoding,
    tenant_codec_preference,
    transfer_config_from,
    ua_config_from_settings,
)
from w3sipagent.agent.registrations import (
    HostResolver,
    RegistrationSync,
    registration_contact_user,
    resolve_registrar_host,
)
from w3sipagent.asyncio.refer import TransferConfig, Transferer
from w3sipagent.asyncio.register import RegisterConfig, RegistrationManager, RegistrationStatus
from w3sipagent.asyncio.useragent import UserAgent, UserAgentConfig
from w3sipagent.config import Settings
from w3sipagent.knowledge.runtime import KnowledgeRuntime
from w3sipagent.logs import SipTrace
from w3sipagent.metrics import Metrics
from w3sipagent.records.cdr import CallRecord
from w3sipagent.records.retention import RetentionTask
from w3sipagent.records.store import CdrStore, RecordsSink
from w3sipagent.records.webhook import CdrWebhookPoster
from w3sipagent.tenants.resolver import TenantTable

__all__ = [
    "CODEC_SPECS",
    "AIFactory",
    "Admitted",
    "AgentService",
    "HostResolver",
    "LiveCall",
    "ServiceStats",
    "default_ai_factory",
    "negotiated_encoding",
    "registration_contact_user",
    "resolve_registrar_host",
    "tenant_codec_preference",
    "ua_config_from_settings",
]


class AgentService:
    """The whole agent: answers SIP calls and bridges each to its tenant's AI.

    ``tenants``: the table, or a callable giving the current snapshot (a
    :class:`~w3sipagent.agent.reload.TenantRegistry`'s ``lambda: reg.table``), so that a
    reload applies to new calls while active calls keep theirs. ``store``: the CDR store
    (activity log, usage caps) or any records sink. ``ai_factory`` builds AI sessions (tests
    inject a scripted one). ``environ``: where API keys and auth variables are read.
    ``early_connect``: start the AI session at admission (default) or only after the ACK.
    ``webhooks``: the CDR webhook poster (default: one of the service's own, closed with it).
    ``transfer_config``: REFER timers; transfers report the real outcome from the NOTIFYs.
    ``retention_interval``: with a :class:`CdrStore`, purge expired transcripts and
    recordings this often (first run at start; None: not run by the service).
    ``metrics``: Prometheus metrics to update (calls, refusals, set-up, turns, RTP, Realtime
    errors, from each CDR). ``only_tenant``: answer that tenant's calls only (others 404).
    ``register``: keep the tenants' ``registrations`` registered (REGISTER mode) with the
    ``register_config`` timers; ``resolve_host`` turns a registrar host name into an address.
    ``sender(data, addr, transport)``: send SIP messages through it instead of the user
    agent's sockets (the worker processes of ``serve --workers``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tenants: TenantTable | Callable[[], TenantTable] | None = None,
        store: CdrStore | RecordsSink | None = None,
        webhooks: CdrWebhookPoster | None = None,
        ai_factory: AIFactory | None = None,
        ua_config: UserAgentConfig | None = None,
        http: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
        early_connect: bool = True,
        bridge_defaults: BridgeOptions | None = None,
        transfer_config: TransferConfig | None = None,
        retention_interval: float | None = 3600.0,
        metrics: Metrics | None = None,
        only_tenant: str | None = None,
        register: bool = True,
        register_config: RegisterConfig | None = None,
        resolve_host: HostResolver | None = None,
        sender: Callable[[bytes, tuple[str, int], str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender
        """Where the user agent's SIP messages go (None: its own sockets; a worker process
        of ``serve --workers``: the supervisor's public address)."""
        self.metrics = metrics
        self.only_tenant = only_tenant
        self.trace: SipTrace | None = None
        """The SIP message trace while it is on (:meth:`set_trace`)."""
        if tenants is None:
            table = TenantTable(
                settings.tenants, settings.tenancy, list(settings.sip.allowed_sources)
            )
            self._tables: Callable[[], TenantTable] = lambda: table
        elif isinstance(tenants, TenantTable):
            fixed = tenants
            self._tables = lambda: fixed
        else:
            self._tables = tenants
        self.store = store
        self.webhooks = webhooks
        self._own_webhooks = webhooks is None
        self.transfer_config = transfer_config
        self.transferer: Transferer | None = None
        self.retention: RetentionTask | None = None
        self.retention_interval = retention_interval
        self._http = http
        self._own_http = http is None
        self._environ = os.environ if environ is None else environ
        self.ua: UserAgent | None = None
        self.stats = ServiceStats()
        self.admission = TenantAdmission(
            settings,
            self._tables,
            ua_config=ua_config or ua_config_from_settings(settings, environ=self._environ),
            ai_factory=ai_factory or default_ai_factory(settings),
            bridge_defaults=bridge_defaults
            or BridgeOptions(transfer_timeout=settings.transfer.timeout),
            environ=self._environ,
            stats=self.stats,
            calls=lambda: self.ua.calls if self.ua is not None else (),
            http=lambda: self._http,
            store=store,
            metrics=metrics,
            only_tenant=only_tenant,
            early_connect=early_connect,
        )
        """Admits INVITEs (the user agent's admission hook)."""
        self.call_runner = CallRunner(
            self.admission,
            stats=self.stats,
            webhooks=lambda: self.webhooks,
            store=store,
            metrics=metrics,
        )
        """Runs each call's bridge and finishes its CDR (the user agent's handler)."""
        self.bridges: dict[str, CallBridge] = self.call_runner.bridges
        """Live bridges by Call-ID."""
        self.finished: list[CallRecord] = self.call_runner.finished
        """CDRs of the calls that ended (most recent last, bounded)."""
        self._stop = asyncio.Event()
        self.register = register
        self.register_config = register_config or RegisterConfig()
        self.resolve_host = resolve_host or resolve_registrar_host
        self.registration_sync = RegistrationSync(
            self._tables,
            environ=self._environ,
            config=self.register_config,
            resolve_host=self.resolve_host,
            only_tenant=only_tenant,
            metrics=metrics,
        )
        """REGISTER mode: the tenants' registrations (started by :meth:`start`)."""
        self.knowledge = KnowledgeRuntime(
            settings.records.database_url,
            lambda: self._tables().tenants,
            default_key=settings.realtime.api_key,
            environ=self._environ,
        )
        """The tenants' knowledge bases (opened by :meth:`start` when a tenant has one)."""
        self.admission.knowledge = self.knowledge

    @property
    def environ(self) -> Mapping[str, str]:
        """Where API keys, passwords and auth variables are read (at call time)."""
        return self._environ

    @property
    def ua_config(self) -> UserAgentConfig:
        return self.admission.ua_config

    @property
    def ai_factory(self) -> AIFactory:
        return self.admission.ai_factory

    @property
    def early_connect(self) -> bool:
        return self.admission.early_connect

    @property
    def bridge_defaults(self) -> BridgeOptions:
        return self.admission.bridge_defaults

    @property
    def registrations(self) -> RegistrationManager | None:
        """The REGISTER client of the tenants' registrations (after :meth:`start`)."""
        return self.registration_sync.manager

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Create the user agent and bind its listeners."""
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        if self.webhooks is None:
            self.webhooks = CdrWebhookPoster(self._http, environ=self._environ)
        await self.knowledge.start(self._http)
        if self.admission.cluster is None:
            self.admission.cluster = await ClusterLimits.start_for(self.settings, self.store)
        self.ua = ua = UserAgent(
            self.ua_config,
            handler=self.call_runner.handle,
            admission=self.admission.admit,
            unhandled=self.call_runner.unhandled,
            refused=self.admission.refused,
            sender=self.sender,
        )
        self.transferer = Transferer(
            ua, self.transfer_config or transfer_config_from(self.settings)
        )
        self.transferer.install(ua)
        ua.transferer = self.transferer
        self._install_trace(ua)
        if self.metrics is not None:
            self.metrics.watch_refused_connections(lambda: ua.transports.refused_connections)
        if self.settings.logging.sip_trace:
            self.set_trace(True)
        await ua.start()
        if self.register:
            await self.registration_sync.start(ua)
        if isinstance(self.store, CdrStore) and self.retention_interval is not None:
            self.retention = RetentionTask(
                self.store, lambda: self._tables().tenants, interval=self.retention_interval
            )
            self.retention.start()

    @property
    def port(self) -> int:
        """The SIP port (useful with port 0)."""
        assert self.ua is not None
        return self.ua.port

    def drain(self) -> None:
        """Stop taking calls (new INVITEs get 503) and unregister; the active ones go on."""
        if self.ua is not None:
            self.ua.drain()
            self.registration_sync.start_unregistering()

    async def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Unregister, stop admitting (503), let calls finish up to ``timeout``, end the rest."""
        await self.registration_sync.close(unregister=self.ua is not None and not self.ua.closed)
        if self.ua is not None:
            await self.ua.close(drain=drain, timeout=timeout)
        await self.call_runner.aclose()  # the CDRs of calls that never reached a bridge
        if self.admission.cluster is not None:  # every call ended: leave the cluster
            await self.admission.cluster.close()
            self.admission.cluster = None
        self.set_trace(False)
        if self.retention is not None:
            await self.retention.stop()
            self.retention = None
        if self.transferer is not None:
            await self.transferer.aclose()
        await self.knowledge.close()
        if self._own_webhooks and self.webhooks is not None:
            await self.webhooks.close()  # bounded by its close_timeout
            self.webhooks = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
        self._stop.set()

    async def __aenter__(self) -> AgentService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(timeout=0)

    async def serve_forever(self) -> None:
        """Run until :meth:`close`."""
        await self._stop.wait()

    # ------------------------------------------------------------ REGISTER mode

    def registration_statuses(self) -> dict[str, RegistrationStatus]:
        """Every tenant registration by id (``TENANT/NAME``): registered, failed with the
        reason (a password reference that cannot be read, a registrar that does not resolve,
        the registrar's answer)..."""
        return self.registration_sync.statuses()

    def tenants_changed(self, table: TenantTable | None = None) -> asyncio.Task[None]:
        """Apply a new tenant table's registrations in the background (a reload listener:
        ``registry.add_listener(service.tenants_changed)``)."""
        return self.registration_sync.tenants_changed(table)

    async def sync_registrations(self, table: TenantTable | None = None) -> None:
        """Make the running registrations those of ``table`` (default: the current one):
        see :meth:`RegistrationSync.sync`."""
        await self.registration_sync.sync(table)

    # ------------------------------------------------------------ operators

    def set_trace(self, on: bool) -> Path | None:
        """Switch the SIP message trace on or off at run time (``serve``: SIGUSR1).

        ``logging.sip_trace_path`` names a file (every call's messages, one JSON line each
        with its ``call_id``) or a folder (no suffix, or an existing directory): one
        ``<call-id>.jsonl`` per call. Authorization and other secrets are masked. Each file
        is rotated at ``logging.sip_trace_max_bytes``, ``logging.sip_trace_files`` kept.
        Returns where the trace goes (None: off).
        """
        if not on:
            if self.trace is not None:
                self.trace.close()
                self.trace = None
            return None
        if self.trace is None:
            logging = self.settings.logging
            path = logging.sip_trace_path
            self.trace = SipTrace(
                path,
                per_call=path.is_dir() or not path.suffix,
                max_bytes=logging.sip_trace_max_bytes,
                files=logging.sip_trace_files,
            )
        return self.trace.path

    def _install_trace(self, ua: UserAgent) -> None:
        """Pass every SIP message sent and received through :attr:`trace` while it is on."""
        send = ua.driver.send
        received = ua.transports.received

        def traced_send(data: bytes, addr: Any, transport: str) -> None:
            trace = self.trace
            if trace is not None:
                trace.record("out", data, (str(addr[0]), int(addr[1])), transport)
            send(data, addr, transport)

        def traced_received(data: bytes, addr: Any, transport: str) -> None:
            trace = self.trace
            if trace is not None:
                trace.record("in", data, (str(addr[0]), int(addr[1])), transport)
            received(data, addr, transport)

        ua.driver.send = traced_send
        ua.transports.received = traced_received

    def live_calls(self) -> list[LiveCall]:
        """The calls in progress, oldest first."""
        return self.call_runner.live_calls()

    async def dial(
        self,
        uri: str,
        tenant_id: str,
        *,
        agent: str | None = None,
        proxy: tuple[str, int] | None = None,
        timeout: float = 60.0,
    ) -> CallRecord:
        """An outbound AI call: the tenant's agent calls ``uri`` (reminders, call-backs).

        The INVITE goes to ``proxy`` (FreeSWITCH) when given. The call gets the same bridge,
        CDR, metrics and webhook as an inbound one; a refused or unanswered call gets a CDR
        too (``rejected`` / ``timeout``). Returns the CDR. Raises ValueError for an unknown
        tenant or agent.
        """
        if self.ua is None:
            raise RuntimeError("dial() before start()")
        return await self.call_runner.dial(
            self.ua, uri, tenant_id, agent=agent, proxy=proxy, timeout=timeout
        )
