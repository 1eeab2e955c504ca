"""The agent service: user agent + tenants + records + one bridge per call.

:class:`AgentService` is what ``w3sipagent serve`` runs::

    async with AgentService(settings, store=store) as svc:   # SIP listening on svc.port
        await svc.serve_forever()

Admission (before the 200 OK, called by the user agent for every INVITE):

1. the tenant table snapshot resolves the request (Request-URI host, To host, registration,
   DID, trusted header) → 404 unknown tenant, 403 source not allowed;
2. the tenant's concurrent-call limit → 486 (the user agent enforces it too);
3. the decision goes to the activity log (aggregated counts, never one row per INVITE);
4. accepted: the CDR is created (invite time), the usage cap is checked (over it the caller
   gets the tenant's fallback instead of the AI), and the AI session **starts connecting now**,
   in parallel with the SDP answer and the 200 OK, in the format the offer predicts.

Per call (the user agent's handler, after the ACK): the bridge runs with that tenant's key,
prompt, tools, destinations and webhooks only; the CDR is queued to the store (off the media
path) and, when the tenant has one, posted to its webhook in the background.

REGISTER mode (``register=True``, the default): every tenant ``registrations.NAME`` is kept
registered by a :class:`~w3sipagent.asyncio.register.RegistrationManager` on the service's
user agent (password read from its reference, never logged), with the Contact user
``reg-TENANT-NAME``: a call to that Contact is tagged with the registration and resolves to
its tenant. :meth:`AgentService.sync_registrations` applies a reloaded tenant table (adds and
removes what changed, keeps the unchanged running); draining and closing unregister
(``Expires: 0``). :meth:`AgentService.registration_statuses` and the
``w3sipagent_registration_up{tenant,registration}`` gauge report them.

Also here, for the command line and for operators: :meth:`AgentService.dial` (an outbound AI
call with the same records), :meth:`AgentService.live_calls` (what the live table shows),
Prometheus :class:`~w3sipagent.metrics.Metrics` updates (``metrics=``), one tenant only
(``only_tenant=``, ``w3sipagent run``) and the SIP message trace
(:meth:`AgentService.set_trace`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import Gauge
from pydantic import SecretStr

from w3sipagent.agent.bridge import (
    BridgeOptions,
    CallBridge,
    EarlySession,
    SessionFactory,
    bridge_session_config,
    choose_ai_format,
)
from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.ai.session import AISession, AISessionConfig
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.media import MediaConfig
from w3sipagent.asyncio.refer import TransferConfig, Transferer
from w3sipagent.asyncio.register import (
    RegisterConfig,
    Registration,
    RegistrationManager,
    RegistrationStatus,
)
from w3sipagent.asyncio.useragent import (
    Accept,
    AdmissionRequest,
    CallRejected,
    DialTimeout,
    Reject,
    UserAgent,
    UserAgentConfig,
)
from w3sipagent.config import Settings
from w3sipagent.errors import AIError, ConfigError, SdpError, SipParseError
from w3sipagent.logs import SipTrace
from w3sipagent.metrics import Metrics
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.retention import RetentionTask
from w3sipagent.records.store import CdrStore, RecordsSink
from w3sipagent.records.webhook import CdrWebhookPoster
from w3sipagent.sdp import SessionDescription, negotiate_answer
from w3sipagent.sip.uri import SipUri
from w3sipagent.tenants.models import RegistrationConfig
from w3sipagent.tenants.resolver import (
    CallRequest,
    Rejection,
    Resolution,
    TenantTable,
)
from w3sipagent.tenants.secrets import resolve_api_key, resolve_secret

__all__ = [
    "CODEC_SPECS",
    "AIFactory",
    "Admitted",
    "AgentService",
    "HostResolver",
    "LiveCall",
    "default_ai_factory",
    "negotiated_encoding",
    "registration_contact_user",
    "resolve_registrar_host",
    "tenant_codec_preference",
    "ua_config_from_settings",
]

log = logging.getLogger("w3sipagent.agent.service")

AIFactory = Callable[[str, str, str, AISessionConfig], AISession]
"""``factory(tenant_id, api_key, transport, config)`` → a not yet started AI session."""


def default_ai_factory(settings: Settings) -> AIFactory:
    """Realtime sessions (WebSocket or WebRTC per tenant) at ``settings.realtime.base_url``."""
    from w3sipagent.realtime import open_session

    base = settings.realtime.base_url  # ``…/v1``: the settings trim a trailing /realtime
    timeout = settings.realtime.connect_timeout

    def make(tenant_id: str, api_key: str, transport: str, config: AISessionConfig) -> AISession:
        url = base if transport == "websocket" else base.replace("ws", "http", 1)
        extra = {"connect_timeout": timeout} if transport == "websocket" else {}
        return open_session(
            config,
            api_key=api_key,
            transport="webrtc" if transport == "webrtc" else "websocket",
            base_url=url,
            session_timeout=timeout,
            **extra,
        )

    return make


CODEC_SPECS: dict[str, str] = {
    "PCMU": "PCMU/8000",
    "PCMA": "PCMA/8000",
    "G722": "G722/8000",
    "opus": "opus/48000/2",
}
"""A tenant's codec names (:data:`w3sipagent.tenants.models.CODECS`) → SDP codec specs."""


def tenant_codec_preference(names: Sequence[str], configured: Sequence[str]) -> tuple[str, ...]:
    """The codec preference of a tenant's calls: its ``codecs`` in its order, each as the
    user agent's configured spec of that codec when there is one (else the standard spec)."""
    out: list[str] = []
    for name in names:
        spec = next(
            (c for c in configured if c.split("/", 1)[0].upper() == name.upper()),
            CODEC_SPECS.get(name, name),
        )
        if spec not in out:
            out.append(spec)
    return tuple(out)


def negotiated_encoding(
    body: bytes, preference: Sequence[str], *, telephone_event: bool = True
) -> str | None:
    """The audio codec (``"PCMU"``...) answering the SDP offer ``body`` with ``preference``
    will pick: the very :func:`~w3sipagent.sdp.negotiate_answer` the user agent runs, so the
    AI format chosen at admission is the one the call gets. None: no offer, or no codec."""
    if not body:
        return None
    try:
        offer = SessionDescription.parse(body)
        result = negotiate_answer(
            offer,
            local_address="0.0.0.0",
            ports=lambda _i, _m: 9,
            codec_preference=list(preference),
            session_id=1,
            session_version=1,
            telephone_event=telephone_event,
        )
    except SdpError:
        return None
    stream = result.audio
    if result.failure is not None or stream is None or stream.codec is None:
        return None
    return stream.codec.encoding.upper()


def ua_config_from_settings(settings: Settings, **overrides: object) -> UserAgentConfig:
    """The user agent configuration of a deployment's ``[sip]`` and ``[rtp]`` settings."""
    sip, rtp = settings.sip, settings.rtp
    host, port = sip.listen_address
    adv_host: str | None = None
    adv_port: int | None = None
    if sip.advertised:
        h, _, p = sip.advertised.rpartition(":")
        if h and p.isdigit() and not sip.advertised.endswith("]"):
            adv_host, adv_port = h.strip("[]"), int(p)
        else:
            adv_host = sip.advertised.strip("[]")
    values: dict[str, object] = {
        "host": host,
        "port": port,
        "transports": tuple(sip.transports),
        "advertised_host": adv_host,
        "advertised_port": adv_port,
        "tls_cert": str(sip.tls_cert) if sip.tls_cert else None,
        "tls_key": str(sip.tls_key) if sip.tls_key else None,
        "tls_port": sip.tls_address[1] if "tls" in sip.transports else None,
        "t1": sip.t1,
        "t2": sip.t2,
        "t4": sip.t4,
        "ack_wait": sip.ack_wait,
        "rtp_port_min": rtp.port_min,
        "rtp_port_max": rtp.port_max,
        "media": MediaConfig(
            source_policy=rtp.source_policy,
            inactivity_timeout=rtp.inactivity_timeout,
            silence="silence" if rtp.send_silence else "none",
            kick=rtp.talkspurt_kick,
            receive_buffer=rtp.receive_buffer,
            receive_batch=rtp.receive_batch,
        ),
        "allowed_sources": tuple(str(n) for n in sip.allowed_sources),
        "max_calls": sip.max_calls,
        "drain_timeout": sip.drain_timeout,
        "user_agent": sip.user_agent,
    }
    values.update(overrides)
    return UserAgentConfig(**values)  # type: ignore[arg-type]


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

    @property
    def tenant_id(self) -> str:
        return self.resolution.tenant.id


@dataclass(frozen=True)
class LiveCall:
    """One call in progress, as ``w3sipagent serve``'s live table shows it."""

    call_id: str
    tenant: str
    caller: str
    codec: str
    duration_s: float
    state: str
    """``connecting`` (no AI session yet), ``talking`` or ``fallback``."""
    last_turn_ms: float | None


@dataclass
class _Stats:
    admitted: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    bridged: int = 0


class AgentService:
    """The whole agent: answers SIP calls and bridges each to its tenant's AI.

    ``tenants``: the table, or a callable giving the current snapshot (a
    :class:`~w3sipagent.tenants.reload.TenantRegistry`'s ``lambda: reg.table``), so that a
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
    ) -> None:
        self.settings = settings
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
        self.ai_factory = ai_factory or default_ai_factory(settings)
        self.ua_config = ua_config or ua_config_from_settings(settings)
        self._http = http
        self._own_http = http is None
        self._environ = os.environ if environ is None else environ
        self.early_connect = early_connect
        self.bridge_defaults = bridge_defaults or BridgeOptions()
        self.ua: UserAgent | None = None
        self.bridges: dict[str, CallBridge] = {}
        """Live bridges by Call-ID."""
        self.finished: list[CallRecord] = []
        """CDRs of the calls that ended (most recent last, bounded)."""
        self.stats = _Stats()
        self._stop = asyncio.Event()
        self.register = register
        self.register_config = register_config or RegisterConfig()
        self.resolve_host = resolve_host or resolve_registrar_host
        self.registrations: RegistrationManager | None = None
        """The REGISTER client of the tenants' registrations (after :meth:`start`)."""
        self._reg_applied: dict[str, tuple[str, RegistrationConfig]] = {}
        self._reg_errors: dict[str, RegistrationStatus] = {}
        self._reg_contacts: dict[str, str] = {}
        self._reg_lock = asyncio.Lock()
        self._reg_tasks: set[asyncio.Task[None]] = set()
        self._unregistering: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Create the user agent and bind its listeners."""
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        if self.webhooks is None:
            self.webhooks = CdrWebhookPoster(self._http, environ=self._environ)
        self.ua = ua = UserAgent(self.ua_config, handler=self._handle, admission=self._admit)
        self.transferer = Transferer(ua, self.transfer_config)
        self.transferer.install(ua)
        ua.transferer = self.transferer
        self._install_trace(ua)
        if self.settings.logging.sip_trace:
            self.set_trace(True)
        await ua.start()
        if self.register:
            self.registrations = RegistrationManager(
                ua, config=self.register_config, on_change=self._registration_changed
            )
            await self.sync_registrations()
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
            self._start_unregistering()

    def _start_unregistering(self) -> None:
        if self._unregistering is None and self.registrations is not None:
            self._unregistering = asyncio.get_running_loop().create_task(
                self._unregister_all(), name="w3sipagent-unregister"
            )

    async def _unregister_all(self) -> None:
        """Unregister every registration (``Expires: 0``), concurrently, bounded by
        ``register_config.unregister_timeout``; later syncs add none."""
        async with self._reg_lock:
            mgr = self.registrations
            if mgr is None:
                return
            for rid in list(self._reg_applied):
                self._forget_registration(rid)
            await mgr.aclose()
            self._reg_errors.clear()

    async def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Unregister, stop admitting (503), let calls finish up to ``timeout``, end the rest."""
        for task in list(self._reg_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.ua is not None and not self.ua.closed:
            self._start_unregistering()
        if self._unregistering is not None:
            with contextlib.suppress(Exception):
                await self._unregistering
        if self.ua is not None:
            await self.ua.close(drain=drain, timeout=timeout)
        self.set_trace(False)
        if self.retention is not None:
            await self.retention.stop()
            self.retention = None
        if self.transferer is not None:
            await self.transferer.aclose()
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
        out = dict(self._reg_errors)
        if self.registrations is not None:
            out.update(self.registrations.statuses())
        return dict(sorted(out.items()))

    def tenants_changed(self, table: TenantTable | None = None) -> asyncio.Task[None]:
        """Apply a new tenant table's registrations in the background (a reload listener:
        ``registry.add_listener(service.tenants_changed)``)."""
        task = asyncio.get_running_loop().create_task(
            self.sync_registrations(table), name="w3sipagent-registrations"
        )
        self._reg_tasks.add(task)
        task.add_done_callback(self._reg_tasks.discard)
        return task

    async def sync_registrations(self, table: TenantTable | None = None) -> None:
        """Make the running registrations those of ``table`` (default: the current one).

        A registration whose configuration is unchanged keeps running (not re-registered);
        a removed or changed one is unregistered (``Expires: 0``) first, then the new ones
        are added. One that failed to start (unreadable password, unresolvable registrar)
        is tried again.
        """
        async with self._reg_lock:
            mgr = self.registrations
            if mgr is None or self._unregistering is not None:
                return
            table = table or self._tables()
            wanted = {
                rid: (tenant.id, reg)
                for rid, tenant, reg in table.registrations()
                if self.only_tenant is None or tenant.id == self.only_tenant
            }
            for rid in list(self._reg_applied):
                if wanted.get(rid) != self._reg_applied[rid] or rid in self._reg_errors:
                    self._forget_registration(rid)
                    await mgr.remove(rid)
            for rid, (tenant_id, reg) in wanted.items():
                if rid not in self._reg_applied:
                    await self._add_registration(mgr, rid, tenant_id, reg)

    def _forget_registration(self, rid: str) -> None:
        self._reg_applied.pop(rid, None)
        self._reg_errors.pop(rid, None)
        user = self._reg_contacts.pop(rid, None)
        if user is not None and self.ua is not None:
            self.ua.remove_local_contact(user)
        if self.metrics is not None:
            tenant, _, name = rid.partition("/")
            with contextlib.suppress(KeyError):
                _registration_gauge(self.metrics).remove(tenant, name)

    async def _add_registration(
        self, mgr: RegistrationManager, rid: str, tenant_id: str, reg: RegistrationConfig
    ) -> None:
        self._reg_applied[rid] = (tenant_id, reg)
        name = rid.partition("/")[2]
        try:
            registration = await self._registration(rid, tenant_id, name, reg)
            user = registration.contact_user_part
            mgr.add(registration)
        except ConfigError as exc:
            loop = asyncio.get_running_loop()
            status = RegistrationStatus(rid, "failed", None, str(exc), changed_at=loop.time())
            self._reg_errors[rid] = status
            log.error("registration %s not started: %s", rid, exc)
            self._registration_changed(status)
            return
        self._reg_contacts[rid] = user
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
                resolve_secret, ref, what=f"{what}.password", environ=self._environ
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

    def _registration_changed(self, status: RegistrationStatus) -> None:
        if self.metrics is None:
            return
        tenant, _, name = status.id.partition("/")
        up = 1.0 if status.state == "registered" else 0.0
        _registration_gauge(self.metrics).labels(tenant, name).set(up)

    # ------------------------------------------------------------ operators

    def set_trace(self, on: bool) -> Path | None:
        """Switch the SIP message trace on or off at run time (``serve``: SIGUSR1).

        ``logging.sip_trace_path`` names a file (every call's messages, one JSON line each
        with its ``call_id``) or a folder (no suffix, or an existing directory): one
        ``<call-id>.jsonl`` per call. Authorization and other secrets are masked.
        Returns where the trace goes (None: off).
        """
        if not on:
            if self.trace is not None:
                self.trace.close()
                self.trace = None
            return None
        if self.trace is None:
            path = self.settings.logging.sip_trace_path
            self.trace = SipTrace(path, per_call=path.is_dir() or not path.suffix)
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
        now = datetime.now(UTC)
        out: list[LiveCall] = []
        for call_id, b in self.bridges.items():
            cdr = b.cdr
            began = cdr.answer_at or cdr.invite_at
            lat = cdr.turn_latencies_ms
            state = "talking" if b.session is not None else "connecting"
            if any(e.get("kind") == "fallback" for e in cdr.events):
                state = "fallback"
            out.append(
                LiveCall(
                    call_id=call_id,
                    tenant=cdr.tenant or "-",
                    caller=cdr.caller or "",
                    codec=cdr.codec or b.call.media.encoding,
                    duration_s=max(0.0, (now - began).total_seconds()),
                    state=state,
                    last_turn_ms=lat[-1] if lat else None,
                )
            )
        out.sort(key=lambda c: -c.duration_s)
        return out

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
        table = self._tables()
        tenant = table.get(tenant_id)
        if tenant is None:
            known = ", ".join(table.tenants) or "none"
            raise ValueError(f"no tenant {tenant_id!r} (known: {known})")
        agent_name = agent or tenant.default_agent or next(iter(tenant.agents))
        if agent_name not in tenant.agents:
            raise ValueError(f"tenant '{tenant_id}' has no agent {agent_name!r}")
        host = tenant.hosts[0] if tenant.hosts else self.ua.advertised_host
        me = f"sip:{agent_name}@{host}"
        cdr = CallRecord(
            call_id="pending", tenant=tenant.id, agent=agent_name, caller=me, callee=uri,
            request_uri=uri,
        )  # fmt: skip
        resolution = Resolution(tenant, agent_name, tenant.agents[agent_name], "outbound")
        codecs = tenant_codec_preference(tenant.codecs, self.ua_config.codecs)
        ctx = Admitted(resolution, table, cdr, codecs)
        await self._read_api_key(ctx)
        try:
            call = await self.ua.dial(
                uri, proxy=proxy, from_uri=me, codecs=list(codecs), timeout=timeout
            )
        except (CallRejected, DialTimeout) as exc:
            cdr.call_id = f"outbound-{int(time.time() * 1000)}"
            rejected = isinstance(exc, CallRejected)
            cdr.finish(
                Disposition.REJECTED if rejected else Disposition.TIMEOUT,
                hangup_by="system",
                sip_code=exc.status,
                reason=str(exc)[:200],
            )
            if self.metrics is not None:
                self.metrics.call_started(tenant.id)
                self.metrics.call_ended(cdr)
            if self.store is not None:
                await self.store.call_started(cdr)
                await self.store.call_ended(cdr)
            self._remember(cdr)
            return cdr
        cdr.call_id = call.call_id
        cdr.source = f"{call.info.source[0]}:{call.info.source[1]}"
        call.context = ctx
        await self._bridge(call, ctx)
        return cdr

    def _remember(self, cdr: CallRecord) -> None:
        self.finished.append(cdr)
        del self.finished[:-100]

    # ------------------------------------------------------------ admission

    def _activity(self, source: str, tenant: str | None, code: int, reason: str) -> None:
        record = getattr(self.store, "record_admission", None)
        if record is not None:
            record(source, tenant, code, reason)
        if code >= 300:
            self.stats.rejected[code] = self.stats.rejected.get(code, 0) + 1
            if self.metrics is not None:
                self.metrics.rejected_call(code)

    async def _admit(self, req: AdmissionRequest) -> Accept | Reject:
        table = self._tables()
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
        if limit is not None and self._live_calls(tenant.id) >= limit:
            self._activity(source, tenant.id, 486, "tenant call limit")
            return Reject(486, "Busy Here")
        self._activity(source, tenant.id, 200, "accepted")
        self.stats.admitted += 1
        cdr = CallRecord(
            call_id=req.request.call_id,
            tenant=tenant.id,
            agent=result.agent_name,
            did=result.did,
            caller=req.from_uri,
            callee=req.to_uri,
            request_uri=req.request_uri,
            source=f"{req.source[0]}:{req.source[1]}",
        )
        codecs = tenant_codec_preference(tenant.codecs, self.ua_config.codecs)
        ctx = Admitted(result, table, cdr, codecs)
        over_cap = getattr(self.store, "over_cap", None)
        if over_cap is not None:
            try:
                ctx.over_cap = bool(await over_cap(tenant))
            except Exception as exc:  # the cap check must not refuse calls
                log.warning("usage cap check failed for %s: %r", tenant.id, exc)
        if not ctx.over_cap:
            await self._read_api_key(ctx)
            if self.early_connect:
                ctx.early = self._early_session(ctx, req)
        return Accept(ctx, limit_key=f"tenant:{tenant.id}", limit=limit, codecs=codecs)

    def _live_calls(self, tenant_id: str) -> int:
        if self.ua is None:
            return 0
        n = 0
        for call in self.ua.calls:
            ctx = call.context
            if isinstance(ctx, Admitted) and ctx.tenant_id == tenant_id and not call.ended:
                n += 1
        return n

    async def _read_api_key(self, ctx: Admitted) -> None:
        """The tenant's key, read now: in a worker thread when it lives in a file."""
        tenant = ctx.resolution.tenant
        default = self.settings.realtime.api_key
        try:
            if tenant.api_key is not None and tenant.api_key.file is not None:
                key = await asyncio.to_thread(
                    resolve_api_key, tenant, default, environ=self._environ
                )
            else:
                key = resolve_api_key(tenant, default, environ=self._environ)
        except ConfigError as exc:
            ctx.api_key_error = str(exc)
            return
        if key is None:
            ctx.api_key_error = f"tenant '{tenant.id}': no API key configured"
        ctx.api_key = key

    def _session_parts(
        self, ctx: Admitted, encoding: str
    ) -> tuple[AISessionConfig, ToolRegistry, BridgeOptions, SessionFactory]:
        res = ctx.resolution
        tenant, agent = res.tenant, res.agent
        tools = ToolRegistry.for_tenant(tenant, agent.tools, http=self._http, environ=self._environ)
        fmt = choose_ai_format(encoding)
        options = self._options(ctx)
        config = bridge_session_config(
            agent.session_config(fmt), fmt, tools, options.min_interrupt_ms
        )
        transport = tenant.realtime_transport
        tenant_id = tenant.id

        def factory(cfg: AISessionConfig) -> AISession:
            key = ctx.api_key
            if key is None:
                raise AIError(ctx.api_key_error or f"tenant '{tenant_id}': no API key read")
            return self.ai_factory(tenant_id, key.get_secret_value(), transport, cfg)

        return config, tools, options, factory

    def _early_session(self, ctx: Admitted, req: AdmissionRequest) -> EarlySession | None:
        encoding = negotiated_encoding(
            req.request.body, ctx.codecs, telephone_event=self.ua_config.telephone_event
        )
        if encoding is None:
            return None
        config, _, _, factory = self._session_parts(ctx, encoding)
        try:
            session = factory(config)
        except AIError:
            return None
        task = asyncio.get_running_loop().create_task(session.start(), name="ai-early-start")
        task.add_done_callback(_retrieve)
        return EarlySession(session, task)

    def _options(self, ctx: Admitted) -> BridgeOptions:
        res = ctx.resolution
        tenant, agent = res.tenant, res.agent
        rt = self.settings.realtime
        recording: Path | None = None
        if tenant.recording.enabled:
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            safe_id = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in ctx.cdr.call_id)
            recording = self.settings.records.recordings_dir / tenant.id / day / f"{safe_id}.wav"
        d = self.bridge_defaults
        return BridgeOptions(
            greeting=agent.greeting,
            connect_timeout=rt.connect_timeout,
            reconnect_timeout=rt.reconnect_timeout,
            reconnect_attempts=d.reconnect_attempts,
            resume_instructions=d.resume_instructions,
            max_duration=tenant.max_call_duration or None,
            caller_silence_timeout=tenant.caller_silence_timeout or None,
            min_interrupt_ms=agent.turn_detection.min_interrupt_ms,
            dtmf_collect_timeout=d.dtmf_collect_timeout,
            dtmf_actions=dict(tenant.dtmf),
            transfers=dict(tenant.transfers),
            transfer_timeout=d.transfer_timeout,
            quiet_timeout=d.quiet_timeout,
            end_call_tail=d.end_call_tail,
            fallback_wav=tenant.fallback.wav,
            fallback_uri=tenant.fallback_uri(),
            recording_path=recording,
            announcement=tenant.recording.announcement if recording is not None else None,
            ai_enabled=not ctx.over_cap,
            housekeeping_interval=d.housekeeping_interval,
            max_held_audio_ms=d.max_held_audio_ms,
            hangup_timeout=d.hangup_timeout,
            close_timeout=d.close_timeout,
        )

    # ------------------------------------------------------------ a call

    async def _handle(self, call: Call) -> None:
        ctx = call.context
        if not isinstance(ctx, Admitted):
            log.error("call %s without admission context", call.call_id)
            await call.hangup("error")
            return
        ctx.cdr.answered(call.answered_at)  # the 200 OK, not the ACK that started the handler
        await self._bridge(call, ctx)

    async def _bridge(self, call: Call, ctx: Admitted) -> None:
        """Run the call's bridge to the end; store, count and post its CDR."""
        cdr = ctx.cdr
        config, tools, options, factory = self._session_parts(ctx, call.media.encoding)
        bridge = CallBridge(
            call, factory, config, tools=tools, options=options, cdr=cdr, early=ctx.early
        )
        ctx.early = None
        self.bridges[call.call_id] = bridge
        self.stats.bridged += 1
        sink = self.store
        if self.metrics is not None:
            self.metrics.call_started(cdr.tenant)
        if sink is not None:
            await sink.call_started(cdr)
        try:
            await bridge.run()
        finally:
            self.bridges.pop(call.call_id, None)
            if not cdr.rtp:
                cdr.rtp = {k: v for k, v in call.stats().items() if isinstance(v, int | float)}
            if self.metrics is not None:
                self.metrics.call_ended(cdr)
            self._remember(cdr)
            if sink is not None:
                with contextlib.suppress(Exception):
                    await sink.call_ended(cdr)
            hook = ctx.resolution.tenant.cdr_webhook
            if hook is not None and self.webhooks is not None:
                self.webhooks.submit(cdr, hook)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved here; the bridge reports the failure
