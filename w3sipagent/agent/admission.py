"""Tenant admission: who may call, at what limit, with which key, and the early AI session.

:class:`TenantAdmission` is the user agent's ``admission`` hook (called for every INVITE,
before the 200 OK):

1. the tenant table snapshot resolves the request (Request-URI host, To host, registration,
   DID, trusted header) → 404 unknown tenant, 403 source not allowed;
2. the tenant's concurrent-call limit → 486: a slot is held from here (before any await,
   so a burst cannot over-admit) until the call's CDR is written (:meth:`release`); with
   cluster limits (:mod:`~w3sipagent.agent.cluster`) a slot in the shared database too, so
   the limit holds across every agent;
3. the decision goes to the activity log (aggregated counts, never one row per INVITE),
   and so do the INVITEs the user agent refused before asking (:meth:`refused`: 403
   source not allowed, 503 over capacity or draining);
4. accepted: the CDR is created (invite time), the usage cap is checked (over it the caller
   gets the tenant's fallback instead of the AI), and the AI session **starts connecting now**,
   in parallel with the SDP answer and the 200 OK, in the format the offer predicts.

It also builds a call's AI session recipe (:meth:`TenantAdmission.session_parts`): that
tenant's key, prompt, tools and bridge options only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from pydantic import SecretStr

from w3sipagent.agent.bridge import (
    BridgeOptions,
    EarlySession,
    SessionFactory,
    bridge_session_config,
    choose_ai_format,
)
from w3sipagent.agent.cluster import ClusterLimits
from w3sipagent.agent.mappers import (
    AIFactory,
    bridge_options,
    cascade_factory,
    negotiated_encoding,
    tenant_codec_preference,
)
from w3sipagent.agent.resources import SessionLedger
from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.ai.session import AISession, AISessionConfig
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import Accept, AdmissionRequest, Reject, UserAgentConfig
from w3sipagent.config import Settings
from w3sipagent.errors import AIError, ConfigError
from w3sipagent.knowledge.runtime import KnowledgeRuntime
from w3sipagent.metrics import Metrics
from w3sipagent.records.cdr import CallRecord
from w3sipagent.records.store import CdrStore, RecordsSink
from w3sipagent.sip.uri import SipUri
from w3sipagent.tenants.resolver import CallRequest, Rejection, Resolution, TenantTable
from w3sipagent.tenants.secrets import resolve_api_key

__all__ = ["Admitted", "ServiceStats", "SharedSlots", "TenantAdmission"]

log = logging.getLogger("w3sipagent.agent.service")

TENANT_LIMIT_REASON = (("Reason", 'SIP;cause=486;text="tenant call limit"'),)
"""The RFC 3326 Reason header of a 486 for a tenant at its concurrent-call limit."""


@dataclass
class Admitted:
    """What admission attaches to a call (:attr:`Call.context`)."""

    resolution: Resolution
    table: TenantTable
    cdr: CallRecord
    codecs: tuple[str, ...] = ()
    """The codec preference the call is answered with (the tenant's)."""
    over_cap: bool = False
    early: EarlySession | None = None
    api_key_error: str | None = None
    api_key: SecretStr | None = None
    """Read once at admission (a key file off the event loop); the call's sessions use it."""
    slot: bool = False
    """A slot of the tenant's concurrent-call limit is held for this call."""
    done: bool = False
    """The call's CDR was written (once per admitted call)."""

    @property
    def tenant_id(self) -> str:
        return self.resolution.tenant.id


@dataclass
class ServiceStats:
    """Counts since start: INVITEs admitted, refused by status code, calls bridged, CDRs."""

    admitted: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    bridged: int = 0
    dialed: int = 0
    """Outbound calls placed (each gets a CDR too)."""
    cdrs: int = 0
    """CDRs written: one per admitted or dialed call once it ended."""


class SharedSlots(Protocol):
    """Limits shared with other processes (``serve --workers N``: the supervisor's ledger)."""

    async def acquire(self, cdr: CallRecord, limit: int | None) -> int:
        """0: the call may go on; else the SIP status to refuse it with (503, 486)."""
        ...

    def release(self, call_id: str) -> None:
        """The call is over (idempotent)."""
        ...


class TenantAdmission:
    """Admits INVITEs for the tenants of ``tables()`` and builds their calls' AI sessions.

    ``calls()``: the user agent's calls (the per-tenant limit counts the live ones);
    ``http()``: the client webhook tools use (None before the service starts).
    """

    def __init__(
        self,
        settings: Settings,
        tables: Callable[[], TenantTable],
        *,
        ua_config: UserAgentConfig,
        ai_factory: AIFactory,
        bridge_defaults: BridgeOptions,
        environ: Mapping[str, str],
        stats: ServiceStats,
        calls: Callable[[], Iterable[Call]],
        http: Callable[[], httpx.AsyncClient | None],
        store: CdrStore | RecordsSink | None = None,
        metrics: Metrics | None = None,
        only_tenant: str | None = None,
        early_connect: bool = True,
    ) -> None:
        self.settings = settings
        self.tables = tables
        self.ua_config = ua_config
        self.ai_factory = ai_factory
        self.bridge_defaults = bridge_defaults
        self.environ = environ
        self.stats = stats
        self.store = store
        self.metrics = metrics
        self.only_tenant = only_tenant
        self.early_connect = early_connect
        self._calls = calls
        self._http = http
        self.knowledge: KnowledgeRuntime | None = None
        """The tenants' knowledge bases (set by the service when one is configured)."""
        self.cluster: ClusterLimits | None = None
        """Cluster-wide tenant limits (set by the service when the database holds them)."""
        self._slots: dict[str, int] = {}  # tenant id -> calls admitted and not ended
        self.shared: SharedSlots | None = None
        """Limits held with the other worker processes of this machine (None: this process
        alone)."""
        self.sessions = SessionLedger()
        """The AI sessions the calls' factories made and closed, per back end."""

    def held(self, tenant_id: str) -> int:
        """The tenant's calls admitted and not finished (its concurrent-call count)."""
        return self._slots.get(tenant_id, 0)

    def release(self, ctx: Admitted) -> None:
        """The call is over: give back its tenant slot (idempotent)."""
        if not ctx.slot:
            return
        ctx.slot = False
        if self.shared is not None:
            self.shared.release(ctx.cdr.call_id)
        self._give_back(ctx.tenant_id, ctx.cdr.call_id)

    def _give_back(self, tenant_id: str, call_id: str) -> None:
        n = self._slots.get(tenant_id, 0) - 1
        if n > 0:
            self._slots[tenant_id] = n
        else:
            self._slots.pop(tenant_id, None)
        if self.cluster is not None:
            self.cluster.release(call_id)

    def refused(self, source: tuple[str, int], status: int, reason: str) -> None:
        """The user agent's ``refused`` hook: an INVITE refused before the admission."""
        self._activity(source[0], None, status, reason)

    def codecs_for(self, resolution: Resolution) -> tuple[str, ...]:
        """The codec preference of the tenant's calls (see :func:`tenant_codec_preference`)."""
        return tenant_codec_preference(resolution.tenant.codecs, self.ua_config.codecs)

    async def admit(self, req: AdmissionRequest) -> Accept | Reject:
        """The user agent's admission hook: accept with an :class:`Admitted` context, or
        refuse with the status the tenant table (or the limit) gives."""
        table = self.tables()
        to = req.request.to.uri
        cr = CallRequest(
            request_uri_host=req.host,
            source_ip=req.source[0],
            request_uri_user=req.user,
            to_host=to.hostname if isinstance(to, SipUri) else None,
            to_user=to.user if isinstance(to, SipUri) else None,
            registration=req.registration,
            header=req.header,
        )
        result = table.resolve(cr)
        source = req.source[0]
        if isinstance(result, Rejection):
            self._activity(source, result.tenant_id, result.status, result.detail)
            return Reject(result.status, result.reason)
        tenant = result.tenant
        if self.only_tenant is not None and tenant.id != self.only_tenant:
            self._activity(source, tenant.id, 404, f"only {self.only_tenant} served here")
            return Reject(404, "Not Found")
        limit = tenant.max_concurrent_calls
        if limit is not None and self.held(tenant.id) >= limit:
            self._activity(source, tenant.id, 486, "tenant call limit")
            return Reject(486, "Busy Here", TENANT_LIMIT_REASON)
        self._slots[tenant.id] = self.held(tenant.id) + 1  # held before any await
        if limit is not None and self.cluster is not None:
            refused = await self._cluster_slot(source, tenant.id, req.request.call_id, limit)
            if refused is not None:
                return refused
        elif self.cluster is not None:
            self.cluster.note(tenant.id, req.request.call_id)
        cdr = CallRecord(
            call_id=req.request.call_id,
            tenant=tenant.id,
            agent=result.agent_name,
            did=result.did,
            store_id=result.store_id,
            caller=req.from_uri,
            callee=req.to_uri,
            request_uri=req.request_uri,
            source=f"{req.source[0]}:{req.source[1]}",
        )
        codecs = self.codecs_for(result)
        ctx = Admitted(result, table, cdr, codecs, slot=True)
        if self.shared is not None:  # the machine-wide limits (other worker processes)
            code = await self.shared.acquire(cdr, limit)
            if code:
                self.release(ctx)
                why = "tenant call limit" if code == 486 else "max_calls of the machine"
                self._activity(source, tenant.id, code, why)
                if code == 486:
                    return Reject(486, "Busy Here", TENANT_LIMIT_REASON)
                return Reject(code, "Service Unavailable")
        self._activity(source, tenant.id, 200, "accepted")
        self.stats.admitted += 1
        try:
            await self._prepare(ctx, req)
        except BaseException:  # cancelled (shutdown) or failed: no call, no CDR, no slot
            self.stats.admitted -= 1
            self.release(ctx)
            raise
        return Accept(ctx, limit_key=f"tenant:{tenant.id}", limit=limit, codecs=codecs)

    async def _cluster_slot(
        self, source: str, tenant_id: str, call_id: str, limit: int
    ) -> Reject | None:
        """The tenant's slot in the cluster (the local one is held): None when taken."""
        assert self.cluster is not None
        try:
            answer = await self.cluster.acquire(tenant_id, call_id, limit)
        except BaseException:  # cancelled (shutdown): nothing held
            self._give_back(tenant_id, call_id)
            raise
        if answer == "ok":
            return None
        self._give_back(tenant_id, call_id)
        if answer == "full":
            self._activity(source, tenant_id, 486, "tenant call limit (cluster)")
            return Reject(486, "Busy Here", TENANT_LIMIT_REASON)
        self._activity(source, tenant_id, 503, "cluster limits unavailable")
        return Reject(503, "Service Unavailable", (("Retry-After", "5"),))

    async def _prepare(self, ctx: Admitted, req: AdmissionRequest) -> None:
        """The usage cap, the API key and the early AI session of an admitted call."""
        tenant = ctx.resolution.tenant
        over_cap = getattr(self.store, "over_cap", None)
        if over_cap is not None:
            try:
                ctx.over_cap = bool(await over_cap(tenant))
            except Exception as exc:  # the cap check must not refuse calls
                log.warning("usage cap check failed for %s: %r", tenant.id, exc)
        if not ctx.over_cap:
            await self.read_api_key(ctx)
            if self.early_connect:
                ctx.early = self._early_session(ctx, req)

    def _activity(self, source: str, tenant: str | None, code: int, reason: str) -> None:
        record = getattr(self.store, "record_admission", None)
        if record is not None:
            record(source, tenant, code, reason)
        if code >= 300:
            self.stats.rejected[code] = self.stats.rejected.get(code, 0) + 1
            if self.metrics is not None:
                self.metrics.rejected_call(code, reject_kind(code, reason))

    async def read_api_key(self, ctx: Admitted) -> None:
        """The tenant's key, read now: in a worker thread when it lives in a file."""
        tenant = ctx.resolution.tenant
        default = self.settings.realtime.api_key
        try:
            if tenant.api_key is not None and tenant.api_key.file is not None:
                key = await asyncio.to_thread(
                    resolve_api_key, tenant, default, environ=self.environ
                )
            else:
                key = resolve_api_key(tenant, default, environ=self.environ)
        except ConfigError as exc:
            ctx.api_key_error = str(exc)
            return
        if key is None:
            ctx.api_key_error = f"tenant '{tenant.id}': no API key configured"
        ctx.api_key = key

    def session_parts(
        self, ctx: Admitted, encoding: str
    ) -> tuple[AISessionConfig, ToolRegistry, BridgeOptions, SessionFactory]:
        """A call's AI session config, tool registry, bridge options and session factory,
        for the audio ``encoding`` the call was answered with."""
        res = ctx.resolution
        tenant, agent = res.tenant, res.agent
        kb = self.knowledge.for_call(tenant, agent) if self.knowledge is not None else None
        tools = ToolRegistry.for_tenant(
            tenant, agent.tools, http=self._http(), environ=self.environ, knowledge=kb
        )
        fmt = choose_ai_format(encoding)
        options = bridge_options(
            self.settings,
            self.bridge_defaults,
            res,
            ctx.cdr.call_id,
            ai_enabled=not ctx.over_cap,
            environ=self.environ,
        )
        config = bridge_session_config(
            agent.session_config(fmt), fmt, tools, options.min_interrupt_ms
        )
        transport = tenant.realtime_transport
        tenant_id = tenant.id
        make = self.ai_factory

        def realtime(cfg: AISessionConfig) -> AISession:
            key = ctx.api_key
            if key is None:
                raise AIError(ctx.api_key_error or f"tenant '{tenant_id}': no API key read")
            return make(tenant_id, key.get_secret_value(), transport, cfg)

        factory: SessionFactory = realtime

        if agent.backend == "cascade" and agent.cascade is not None:  # its own stages' endpoints

            def tenant_key() -> str:
                if ctx.api_key is None:
                    raise AIError(ctx.api_key_error or f"tenant '{tenant_id}': no API key read")
                return ctx.api_key.get_secret_value()

            factory = cascade_factory(
                self.settings, agent.cascade, tenant_key, environ=self.environ
            )

        return config, tools, options, self.sessions.wrap(factory, agent.backend)

    def _early_session(self, ctx: Admitted, req: AdmissionRequest) -> EarlySession | None:
        encoding = negotiated_encoding(
            req.request.body, ctx.codecs, telephone_event=self.ua_config.telephone_event
        )
        if encoding is None:
            return None
        config, _, _, factory = self.session_parts(ctx, encoding)
        try:
            session = factory(config)
        except AIError:
            return None
        task = asyncio.get_running_loop().create_task(session.start(), name="ai-early-start")
        task.add_done_callback(_retrieve)
        return EarlySession(session, task)


def reject_kind(code: int, reason: str) -> str:
    """The bounded ``reason`` label of a refusal (see :data:`w3sipagent.metrics.REJECT_REASONS`)."""
    text = reason.lower()
    if "not allowed" in text:
        return "source_not_allowed"
    if code == 503:
        if "cluster" in text:
            return "cluster_unavailable"
        return "draining" if "draining" in text else "max_calls"
    if code == 486:
        return "tenant_limit"
    if "served here" in text:
        return "not_served_here"
    return {404: "unknown_tenant", 403: "forbidden"}.get(code, "other")


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved here; the bridge reports the failure
