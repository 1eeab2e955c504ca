"""Running a call's bridge and finishing its records: store, metrics, webhook, live table.

:class:`CallRunner` is the user agent's call handler (after the ACK) and the outbound
dialer: each call gets a :class:`~w3sipagent.agent.bridge.CallBridge` with its tenant's
session recipe (:meth:`TenantAdmission.session_parts`); when the bridge ends the CDR is
queued to the records sink (off the media path), counted in the metrics, kept in
:attr:`CallRunner.finished` and, when the tenant has one, posted to its webhook in the
background. :meth:`CallRunner.live_calls` is what ``serve``'s live table shows.

Every admitted call ends in exactly one CDR, whatever the path: the bridge's (the handler
ran), or :meth:`CallRunner.unhandled` for an admitted INVITE whose handler never ran
(refused after the admission, cancelled, never ACKed, ended before its ACK, shut down),
which also closes the AI session started early and gives back the tenant's slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from w3sipagent.agent.admission import Admitted, ServiceStats, TenantAdmission
from w3sipagent.agent.bridge import CallBridge
from w3sipagent.agent.lifecycle import fallback_outcome, outcome_of_unhandled
from w3sipagent.agent.supervisor import close_early
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import CallEnded
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
        self._closing: set[asyncio.Task[None]] = set()  # unhandled calls being finished

    @property
    def finishing(self) -> int:
        """Ended calls whose CDR or AI session is still being finished."""
        return len(self._closing)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait (up to ``timeout``) for the ended calls being finished."""
        await asyncio.sleep(0)  # the user agent's end callbacks of its last calls
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # again while finishing one started another (a CDR task spawned by a callback)
        while self._closing and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._closing), timeout=left)

    def unhandled(self, context: object, call: Call | None, end: CallEnded) -> None:
        """The user agent's ``unhandled`` hook: an admitted INVITE whose handler never ran
        gets its CDR (and its early AI session closed, its tenant slot back)."""
        if not isinstance(context, Admitted) or context.done:
            return
        task = asyncio.get_running_loop().create_task(
            self._finish_unhandled(context, call, end), name="cdr-unhandled"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _finish_unhandled(self, ctx: Admitted, call: Call | None, end: CallEnded) -> None:
        cdr = ctx.cdr
        outcome = outcome_of_unhandled(end)
        if call is not None and call.answered_at is not None:
            cdr.answered(call.answered_at)
        cdr.finish(
            outcome.disposition,
            hangup_by=outcome.by,
            reason=outcome.reason,
            sip_code=outcome.sip_code,
        )
        if call is not None:
            cdr.rtp = {k: v for k, v in call.stats().items() if isinstance(v, int | float)}
        log.info("call %s ended before its bridge: %s", cdr.call_id, outcome.reason)
        early, ctx.early = ctx.early, None
        try:
            if early is not None:
                await close_early(early, self.admission.bridge_defaults.close_timeout)
        finally:
            await self._record(ctx, started=False)

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
        """Run the call's bridge to the end; store, count and post its CDR (exactly once,
        also when the bridge cannot be built or the task is cancelled)."""
        cdr = ctx.cdr
        bridge: CallBridge | None = None
        started = False
        try:
            config, tools, options, factory = self.admission.session_parts(ctx, call.media.encoding)
            bridge = CallBridge(
                call, factory, config, tools=tools, options=options, cdr=cdr, early=ctx.early
            )
            ctx.early = None
            self.bridges[call.call_id] = bridge
            self.stats.bridged += 1
            if self.metrics is not None:
                self.metrics.call_started(cdr.tenant)
            started = True
            if self.store is not None:
                await self.store.call_started(cdr)
            await bridge.run()
        except BaseException as exc:
            if cdr.end_at is None:  # the bridge did not conclude: failed or cancelled
                shutdown = isinstance(exc, asyncio.CancelledError)
                cdr.finish(
                    Disposition.SHUTDOWN if shutdown else Disposition.FAILED,
                    hangup_by="system",
                    reason="shutdown" if shutdown else f"internal error: {type(exc).__name__}",
                )
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("call %s: bridge failed", call.call_id)
            raise
        finally:
            self.bridges.pop(call.call_id, None)
            early, ctx.early = ctx.early, None
            if early is not None:  # the bridge was never built
                self._spawn_close(close_early(early, self.admission.bridge_defaults.close_timeout))
            if not cdr.rtp:
                cdr.rtp = {k: v for k, v in call.stats().items() if isinstance(v, int | float)}
            cdr.disposition = fallback_outcome(cdr.disposition, cdr.events)
            self._finish(ctx, started=started)
            await self._store_ended(cdr)

    async def _record(self, ctx: Admitted, *, started: bool) -> None:
        """Count, remember, store and post a CDR of a call that never had a bridge."""
        self._finish(ctx, started=started)
        await self._store_both(ctx.cdr)

    def _finish(self, ctx: Admitted, *, started: bool) -> None:
        """The synchronous part of a call's end: once per admitted call, the tenant slot
        back, the metrics, the finished list, the webhook."""
        if ctx.done:
            return
        ctx.done = True
        self.admission.release(ctx)
        cdr = ctx.cdr
        self.stats.cdrs += 1
        if self.metrics is not None:
            if not started:
                self.metrics.call_started(cdr.tenant)
            self.metrics.call_ended(cdr)
        self._remember(cdr)
        hook = ctx.resolution.tenant.cdr_webhook
        webhooks = self._webhooks()
        if hook is not None and webhooks is not None:
            webhooks.submit(cdr, hook)

    async def _store_both(self, cdr: CallRecord) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.call_started(cdr)
            await self._store_ended(cdr)

    async def _store_ended(self, cdr: CallRecord) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.call_ended(cdr)

    def _spawn_close(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Finish something of an ended call in the background (awaited by :meth:`aclose`)."""

        async def run() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.get_running_loop().create_task(run(), name="call-finish")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

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
        self.stats.dialed += 1
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
            await self._record(ctx, started=False)
            return cdr
        except BaseException as exc:  # a dial that failed otherwise still has its CDR
            cdr.call_id = f"outbound-{int(time.time() * 1000)}"
            shutdown = isinstance(exc, asyncio.CancelledError)
            cdr.finish(
                Disposition.SHUTDOWN if shutdown else Disposition.FAILED,
                hangup_by="system",
                reason="shutdown" if shutdown else str(exc)[:200] or type(exc).__name__,
            )
            self._finish(ctx, started=False)
            if self.store is not None:
                self._spawn_close(self._store_both(cdr))
            raise
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
