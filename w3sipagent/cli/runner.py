"""The agent process the CLI runs: user agent + tenants + bridge + records + metrics.

:class:`AgentRunner` answers calls for every tenant (or one, for ``w3sipagent run``):
admission resolves the tenant from the INVITE (404 unknown, 403 source, 486 over the
tenant's limit, 503 draining / full), each admitted call gets a
:class:`~w3sipagent.agent.bridge.CallBridge` to a Realtime session, and the CDR goes to the
store through :class:`~w3sipagent.metrics.MetricsSink`. ``dial()`` places an outbound AI
call. :attr:`live` holds what the rich live table shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w3sipagent.agent.bridge import BridgeOptions, CallBridge, choose_ai_format
from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.ai.session import AISession, AISessionConfig
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import (
    Accept,
    AdmissionRequest,
    Reject,
    UserAgent,
    UserAgentConfig,
)
from w3sipagent.config import Settings, parse_hostport
from w3sipagent.logs import SipTrace
from w3sipagent.metrics import HealthState, Metrics, MetricsSink
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants.models import TenantConfig, normalize_host
from w3sipagent.tenants.reload import TenantRegistry
from w3sipagent.tenants.resolver import CallRequest, Rejection, Resolution
from w3sipagent.tenants.secrets import resolve_api_key

log = logging.getLogger("w3sipagent.agent")

CODEC_SPECS = {
    "PCMU": "PCMU/8000",
    "PCMA": "PCMA/8000",
    "G722": "G722/8000",
    "opus": "opus/48000/2",
}


@dataclass
class LiveCall:
    """One call in progress, for the live table."""

    call_id: str
    tenant: str
    caller: str
    codec: str
    started: float = field(default_factory=time.monotonic)
    state: str = "answered"
    last_turn_ms: float | None = None
    bridge: CallBridge | None = None

    def refresh(self) -> None:
        """Pull the latest turn latency and state from the bridge."""
        b = self.bridge
        if b is None:
            return
        lat = b.cdr.turn_latencies_ms
        if lat:
            self.last_turn_ms = lat[-1]
        self.state = "talking" if b.session is not None else "connecting"


def realtime_base(url: str) -> str:
    """The client's base URL (``…/v1``) from a configured one that may end in ``/realtime``."""
    base = url.rstrip("/")
    return base[: -len("/realtime")] if base.endswith("/realtime") else base


class AgentRunner:
    """Runs the agents of ``settings`` on one SIP listener. ``await start()``, ``close()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: TenantRegistry | None = None,
        only_tenant: str | None = None,
        metrics: Metrics | None = None,
        health: HealthState | None = None,
        api_key: str | None = None,
        session_factory: Callable[[TenantConfig, str, AISessionConfig], AISession] | None = None,
        bridge_options: dict[str, Any] | None = None,
        on_call_ended: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or TenantRegistry(settings)
        self.only_tenant = only_tenant
        self.metrics = metrics or Metrics()
        self.health = health or HealthState(self.metrics)
        self.api_key = api_key
        self._factory = session_factory
        self._bridge_extra = bridge_options or {}
        self.on_call_ended = on_call_ended
        self.store = CdrStore.from_settings(settings.records)
        self.sink = MetricsSink(self.metrics, self.store)
        self.ua: UserAgent | None = None
        self.live: dict[str, LiveCall] = {}
        self.records: list[CallRecord] = []
        self.trace: SipTrace | None = None
        self.transferer: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ life cycle

    def ua_config(self) -> UserAgentConfig:
        """The user agent's configuration from the settings."""
        s = self.settings
        host, port = s.sip.listen_address
        adv_host, adv_port = None, None
        if s.sip.advertised:
            adv_host, adv_port = parse_hostport(s.sip.advertised, default_port=port)
        codecs: list[str] = []
        for t in self.registry.table.tenants.values():
            for c in t.codecs:
                if CODEC_SPECS[c] not in codecs:
                    codecs.append(CODEC_SPECS[c])
        return UserAgentConfig(
            host=host,
            port=port,
            transports=tuple(t for t in s.sip.transports if t != "tls"),
            advertised_host=adv_host,
            advertised_port=adv_port,
            t1=s.sip.t1,
            t2=s.sip.t2,
            t4=s.sip.t4,
            ack_wait=s.sip.ack_wait,
            rtp_port_min=s.rtp.port_min,
            rtp_port_max=s.rtp.port_max,
            codecs=tuple(codecs or CODEC_SPECS.values()),
            allowed_sources=tuple(str(n) for n in s.sip.allowed_sources),
            max_calls=s.sip.max_calls,
            drain_timeout=s.sip.drain_timeout,
            user_agent=s.sip.user_agent,
        )

    async def start(self) -> None:
        """Open the CDR store, bind SIP, start the config watcher."""
        await self.store.open()
        self.ua = UserAgent(self.ua_config(), handler=self._handle, admission=self._admit)
        from w3sipagent.asyncio.refer import Transferer

        self.transferer = Transferer(self.ua)
        self.transferer.install(self.ua)
        self.ua.transferer = self.transferer
        self._install_trace(self.ua)
        if self.settings.logging.sip_trace:
            self.set_trace(True)
        await self.ua.start()
        self.registry.start()
        self.health.set_started()
        log.info(
            "agent listening on %s:%d (%s) for %s",
            self.ua.config.host,
            self.ua.port,
            ",".join(self.ua.config.transports),
            self.only_tenant or ", ".join(self.registry.table.tenants) or "no tenants",
        )

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
            per_call = path.is_dir() or not path.suffix
            self.trace = SipTrace(path, per_call=per_call)
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

    @property
    def port(self) -> int:
        """The SIP port (after start)."""
        assert self.ua is not None
        return self.ua.port

    def drain(self) -> None:
        """Stop taking calls (503), readiness off."""
        self.health.set_draining()
        if self.ua is not None:
            self.ua.drain()

    async def close(self, *, timeout: float | None = None) -> None:
        """Drain: wait for the calls up to ``timeout`` (default sip.drain_timeout), then stop."""
        self.drain()
        await self.registry.stop()
        if self.ua is not None:
            await self.ua.close(drain=True, timeout=timeout)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self.transferer is not None:
            await self.transferer.aclose()
        await self.store.close()
        if self.trace is not None:
            self.trace.close()

    # ------------------------------------------------------------ admission

    def _resolve(self, req: AdmissionRequest) -> Resolution | Rejection:
        r = req.request
        to = r.headers.get("To") or ""
        to_host, to_user = _uri_parts(to)
        call_req = CallRequest(
            request_uri_host=req.host,
            source_ip=req.source[0],
            request_uri_user=req.user,
            to_host=to_host,
            to_user=to_user,
            registration=req.registration,
            header=req.header,
        )
        return self.registry.table.resolve(call_req)

    def _admit(self, req: AdmissionRequest) -> Accept | Reject:
        res = self._resolve(req)
        if isinstance(res, Rejection):
            self.metrics.rejected_call(res.status)
            log.info("INVITE from %s refused %d: %s", req.source[0], res.status, res.detail)
            return Reject(res.status, res.reason)
        if self.only_tenant is not None and res.tenant.id != self.only_tenant:
            self.metrics.rejected_call(404)
            return Reject(404, "Not Found")
        t = res.tenant
        return Accept(context=res, limit_key=t.id, limit=t.max_concurrent_calls)

    # ------------------------------------------------------------ calls

    def _key(self, tenant: TenantConfig) -> str:
        if self.api_key:
            return self.api_key
        default = self.settings.realtime.api_key
        key = resolve_api_key(tenant, default)
        if key is None:
            raise ValueError(f"tenant '{tenant.id}': no API key (api_key or realtime.api_key)")
        return key.get_secret_value()

    def _session_factory(
        self, tenant: TenantConfig, agent: str
    ) -> Callable[[AISessionConfig], AISession]:
        if self._factory is not None:
            factory = self._factory
            return lambda cfg: factory(tenant, agent, cfg)
        from w3sipagent.realtime import open_session

        key = self._key(tenant)
        base = realtime_base(self.settings.realtime.base_url)
        return lambda cfg: open_session(
            cfg, api_key=key, transport=tenant.realtime_transport, base_url=base
        )

    def _options(self, tenant: TenantConfig, agent_name: str, call_id: str) -> BridgeOptions:
        agent = tenant.agents[agent_name]
        rec = None
        if tenant.recording.enabled:
            rec = self.settings.records.recordings_dir / tenant.id / f"{_safe(call_id)}.wav"
        return BridgeOptions(
            greeting=agent.greeting,
            connect_timeout=self.settings.realtime.connect_timeout,
            reconnect_timeout=self.settings.realtime.reconnect_timeout,
            max_duration=tenant.max_call_duration,
            caller_silence_timeout=tenant.caller_silence_timeout,
            min_interrupt_ms=agent.turn_detection.min_interrupt_ms,
            dtmf_actions=dict(tenant.dtmf),
            transfers=dict(tenant.transfers),
            fallback_wav=tenant.fallback.wav,
            fallback_uri=tenant.fallback_uri(),
            recording_path=rec,
            announcement=tenant.recording.announcement,
            **self._bridge_extra,
        )

    async def bridge_call(
        self, call: Call, tenant: TenantConfig, agent_name: str, cdr: CallRecord
    ) -> CallRecord:
        """Bridge an answered call to the tenant's agent; store and return the CDR."""
        agent = tenant.agents[agent_name]
        live = LiveCall(call.call_id, tenant.id, cdr.caller or "", call.media.encoding)
        self.live[call.call_id] = live
        await self.sink.call_started(cdr)
        try:
            tools = ToolRegistry.for_tenant(tenant, agent.tools)
            fmt = choose_ai_format(call.media.encoding)
            session_config = agent.session_config(fmt)
            try:
                factory = self._session_factory(tenant, agent_name)
            except ValueError as e:
                log.error("call %s: %s", call.call_id, e)
                factory = _failing_factory(str(e))

            bridge = CallBridge(
                call,
                factory,
                session_config,
                tools=tools,
                options=self._options(tenant, agent_name, call.call_id),
                cdr=cdr,
            )
            live.bridge = bridge
            cdr = await bridge.run()
        except Exception:
            log.exception("call %s: bridge failed", call.call_id)
            if cdr.end_at is None:
                cdr.finish(Disposition.FAILED, hangup_by="system", reason="internal error")
            with contextlib.suppress(Exception):
                await call.hangup()
        finally:
            self.live.pop(call.call_id, None)
        if not cdr.rtp:
            cdr.rtp = {k: v for k, v in call.stats().items() if isinstance(v, int | float)}
        await self.sink.call_ended(cdr)
        self.records.append(cdr)
        if self.on_call_ended is not None:
            self.on_call_ended(cdr)
        return cdr

    async def _handle(self, call: Call) -> None:
        res = call.context
        assert isinstance(res, Resolution)
        info = call.info
        cdr = CallRecord(
            call_id=info.call_id,
            tenant=res.tenant.id,
            agent=res.agent_name,
            did=res.did,
            caller=info.from_uri,
            callee=info.to_uri,
            request_uri=info.request_uri,
            source=f"{info.source[0]}:{info.source[1]}",
        )
        await self.bridge_call(call, res.tenant, res.agent_name, cdr)

    async def dial(
        self,
        uri: str,
        tenant_id: str,
        *,
        agent: str | None = None,
        proxy: tuple[str, int] | None = None,
        timeout: float = 60.0,
    ) -> CallRecord:
        """An outbound AI call: the tenant's agent calls ``uri``; returns the CDR."""
        assert self.ua is not None
        tenant = self.registry.table.get(tenant_id)
        if tenant is None:
            raise ValueError(
                f"no tenant {tenant_id!r} (known: {', '.join(self.registry.table.tenants)})"
            )
        agent_name = agent or tenant.default_agent or next(iter(tenant.agents))
        if agent_name not in tenant.agents:
            raise ValueError(f"tenant '{tenant_id}' has no agent {agent_name!r}")
        from w3sipagent.asyncio.useragent import CallRejected, DialTimeout

        host = tenant.hosts[0] if tenant.hosts else self.ua.advertised_host
        me = f"sip:{agent_name}@{host}"
        cdr = CallRecord(
            call_id="pending",
            tenant=tenant.id,
            agent=agent_name,
            caller=me,
            callee=uri,
            request_uri=uri,
        )
        try:
            call = await self.ua.dial(
                uri,
                proxy=proxy,
                from_uri=me,
                codecs=[CODEC_SPECS[c] for c in tenant.codecs],
                timeout=timeout,
            )
        except (CallRejected, DialTimeout) as e:
            cdr.call_id = f"failed-{int(time.time() * 1000)}"
            cdr.finish(
                Disposition.REJECTED if isinstance(e, CallRejected) else Disposition.TIMEOUT,
                hangup_by="system",
                sip_code=e.status,
                reason=str(e),
            )
            await self.sink.call_started(cdr)
            await self.sink.call_ended(cdr)
            self.records.append(cdr)
            return cdr
        cdr.call_id = call.call_id
        cdr.source = f"{call.info.source[0]}:{call.info.source[1]}"
        cdr.answered()
        return await self.bridge_call(call, tenant, agent_name, cdr)


def _failing_factory(why: str) -> Callable[[AISessionConfig], AISession]:
    """A session factory that fails (no key): the bridge then runs the tenant's fallback."""
    from w3sipagent.errors import AIError

    def factory(_cfg: AISessionConfig) -> AISession:
        raise AIError(why)

    return factory


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-@" else "_" for c in name)[:120]


def _uri_parts(header: str) -> tuple[str | None, str | None]:
    from w3sipagent.sip.headers import NameAddr

    try:
        na = NameAddr.parse(header)
    except ValueError:
        return None, None
    uri = na.uri
    host = getattr(uri, "host", None)
    user = getattr(uri, "user", None)
    return (normalize_host(host) if host else None), user
