"""Running a call's bridge and finishing its records: store, metrics, webhook, live table.

:class:`CallRunner` is the user agent's call handler (after the ACK) and the outbound
dialer: each call gets a :class:`~w3sipagent.agent.bridge.CallBridge` with its tenant's
session recipe (:meth:`TenantAdmission.session_parts`); when the bridge ends the CDR is
queued to the records sink (off the media path), counted in the metrics, kept in
:attr:`CallRunner.finished` and, when the tenant has one, posted to its webhook in the
background. :meth:`CallRunner.live_calls` is what ``serve``'s live table shows.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from w3sipagent.agent.admission import Admitted, ServiceStats, TenantAdmission
from w3sipagent.agent.bridge import CallBridge
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import CallRejected, DialTimeout, UserAgent
from w3sipagent.metrics import Metrics
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.store import CdrStore, RecordsSink
from w3sipagent.records.webhook import CdrWebhookPoster
from w3sipagent.tenants.resolver import Resolution

__all__ = ["FINISHED_KEPT", "CallRunner", "LiveCall"]

log = logging.getLogger("w3sipagent.agent.service")

FINISHED_KEPT = 100
"""How many CDRs of ended calls :attr:`CallRunner.finished` keeps (most recent last)."""


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
    stages_ms: dict[str, float] = field(default_factory=dict)
    """Median per stage over the call's turns, ms from the caller's speech end (cascade)."""


class CallRunner:
    """One bridge per call, and each call's CDR finished when it ends.

    ``webhooks()``: the CDR webhook poster (None: no webhooks posted).
    """

    def __init__(
        self,
        admission: TenantAdmission,
        *,
        stats: ServiceStats,
        webhooks: Callable[[], CdrWebhookPoster | None],
        store: CdrStore | RecordsSink | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.admission = admission
        self.stats = stats
        self.store = store
        self.metrics = metrics
        self._webhooks = webhooks
        self.bridges: dict[str, CallBridge] = {}
        """Live bridges by Call-ID."""
        self.finished: list[CallRecord] = []
        """CDRs of the calls that ended (most recent last, bounded)."""

    async def handle(self, call: Call) -> None:
        """The user agent's handler of an admitted, answered call."""
        ctx = call.context
        if not isinstance(ctx, Admitted):
            log.error("call %s without admission context", call.call_id)
            await call.hangup("error", by="system")
            return
        ctx.cdr.answered(call.answered_at)  # the 200 OK, not the ACK that started the handler
        await self.bridge(call, ctx)

    async def bridge(self, call: Call, ctx: Admitted) -> None:
        """Run the call's bridge to the end; store, count and post its CDR."""
        cdr = ctx.cdr
        config, tools, options, factory = self.admission.session_parts(ctx, call.media.encoding)
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
            webhooks = self._webhooks()
            if hook is not None and webhooks is not None:
                webhooks.submit(cdr, hook)

    async def dial(
        self,
        ua: UserAgent,
        uri: str,
        tenant_id: str,
        *,
        agent: str | None = None,
        proxy: tuple[str, int] | None = None,
        timeout: float = 60.0,
    ) -> CallRecord:
        """An outbound AI call from ``ua`` (see :meth:`AgentService.dial`)."""
        table = self.admission.tables()
        tenant = table.get(tenant_id)
        if tenant is None:
            known = ", ".join(table.tenants) or "none"
            raise ValueError(f"no tenant {tenant_id!r} (known: {known})")
        agent_name = agent or tenant.default_agent or next(iter(tenant.agents))
        if agent_name not in tenant.agents:
            raise ValueError(f"tenant '{tenant_id}' has no agent {agent_name!r}")
        host = tenant.hosts[0] if tenant.hosts else ua.advertised_host
        me = f"sip:{agent_name}@{host}"
        cdr = CallRecord(
            call_id="pending", tenant=tenant.id, agent=agent_name, caller=me, callee=uri,
            request_uri=uri,
        )  # fmt: skip
        resolution = Resolution(tenant, agent_name, tenant.agents[agent_name], "outbound")
        codecs = self.admission.codecs_for(resolution)
        ctx = Admitted(resolution, table, cdr, codecs)
        await self.admission.read_api_key(ctx)
        try:
            call = await ua.dial(
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
        await self.bridge(call, ctx)
        return cdr

    def _remember(self, cdr: CallRecord) -> None:
        self.finished.append(cdr)
        del self.finished[:-FINISHED_KEPT]

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
                    stages_ms=stage_medians(cdr.turn_stages_ms()),
                )
            )
        out.sort(key=lambda c: -c.duration_s)
        return out


def stage_medians(turns: list[dict[str, float]]) -> dict[str, float]:
    """The median of each stage over ``turns`` (issue 15: the cascade's stages)."""
    names = [n for n in (turns[0] if turns else {}) if n != "caller_speech_end"]
    return {
        n: round(statistics.median(t[n] for t in turns if n in t), 3)
        for n in names
        if any(n in t for t in turns)
    }
