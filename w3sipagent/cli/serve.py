"""``w3sipagent serve`` (all tenants) and ``w3sipagent run TENANT`` (one tenant, its own port).

On a terminal a live table of the active calls; otherwise JSON log lines. SIGTERM / SIGINT
drain (new INVITEs get 503, /readyz turns 503, active calls get ``sip.drain_timeout``
seconds), SIGHUP or a change of the config file reloads the tenants, SIGUSR1 switches the
SIP message trace on and off.

REGISTER mode needs no flag: the tenants' ``registrations`` are registered at start-up,
re-applied on reload (changed ones re-registered, unchanged ones left alone) and
unregistered when draining; the live table's caption shows their state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from w3sipagent.cli.common import (
    EXIT_USAGE,
    ConfigOption,
    cli_errors,
    err_console,
    fail,
    hostport_flag,
    is_terminal,
    load,
    port_range_flag,
    run_async,
)
from w3sipagent.config import OFF, Settings, load_settings, parse_hostport

if TYPE_CHECKING:
    from w3sipagent.agent.resources import ResourceWatch
    from w3sipagent.agent.service import AgentService
    from w3sipagent.agent.workerlink import WorkerLink
    from w3sipagent.tenants.resolver import TenantTable

log = logging.getLogger("w3sipagent.serve")

SipOption = typer.Option(None, "--sip", help="SIP listen address HOST:PORT (sip.listen).")
RtpOption = typer.Option(None, "--rtp-ports", help="RTP port range MIN-MAX (rtp.port_min/max).")
RealtimeOption = typer.Option(
    None, "--realtime-url", help="Realtime base URL, e.g. ws://127.0.0.1:8765/v1 (local server)."
)
MetricsOption = typer.Option(
    None, "--metrics", help="Metrics/health address HOST:PORT, or 'off' (metrics.listen)."
)
DrainOption = typer.Option(None, "--drain-timeout", help="Seconds active calls get on SIGTERM.")
ApiOption = typer.Option(
    None, "--api", help="Control-plane HTTP API address HOST:PORT, or 'off' (api.listen)."
)
WorkersOption = typer.Option(
    None,
    "--workers",
    help="Worker processes behind the one SIP address: N, or 'auto' (one per core; "
    "server.workers, default auto). 1: a single process.",
)
LiveOption = typer.Option(
    None, "--live/--no-live", help="Live table of calls (default: on a terminal)."
)


def overrides(
    sip: str | None,
    rtp_ports: str | None,
    realtime_url: str | None,
    metrics: str | None,
    drain_timeout: float | None,
) -> dict[str, Any]:
    """The command-line flags as settings overrides."""
    out: dict[str, Any] = {"sip.listen": hostport_flag(sip, "--sip"), **port_range_flag(rtp_ports)}
    out["realtime.base_url"] = realtime_url
    out["sip.drain_timeout"] = drain_timeout
    if metrics is not None:
        # "off" goes through as is: the flag layer drops None (an unset flag)
        off = metrics.strip().lower() == OFF
        out["metrics.listen"] = OFF if off else hostport_flag(metrics, "--metrics")
    return out


async def run_agent(
    settings: Settings,
    flags: dict[str, Any],
    config: Path | None,
    *,
    only_tenant: str | None = None,
    live: bool = False,
    stop: asyncio.Event | None = None,
    link: WorkerLink | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``), then drain. Returns the number of calls handled.

    The composition of a deployment: the CDR store, the reloadable tenant table, the metrics
    and health server, and :class:`~w3sipagent.agent.service.AgentService` answering calls.
    ``link``: this process is a worker of ``serve --workers`` (SIP through the supervisor,
    its share of the RTP ports, the limits shared with the other workers; it stops when the
    supervisor is gone).
    """
    from w3sipagent.agent.reload import TenantRegistry
    from w3sipagent.agent.resources import ResourceCollector, ResourceWatch
    from w3sipagent.agent.service import AgentService
    from w3sipagent.metrics import HealthState, Metrics, MetricsServer
    from w3sipagent.records.store import CdrStore

    metrics = Metrics()
    health = HealthState(metrics)
    lag_monitor = None
    if settings.metrics.loop_lag_interval > 0:
        from w3sipagent.asyncio.looplag import LoopLagMonitor

        lag_monitor = LoopLagMonitor(
            interval=settings.metrics.loop_lag_interval,
            stall_threshold=settings.metrics.loop_stall_threshold,
        )
        lag_monitor.start()
        metrics.watch_loop(lag_monitor)
    path = settings.config_file
    registry = TenantRegistry(settings, lambda: load_settings(path, flags, discover=False))
    store = CdrStore.from_settings(settings.records)
    ua_config = None
    if link is not None:
        from w3sipagent.cli.workers import worker_ua_config

        ua_config = worker_ua_config(settings, link)
    service = AgentService(
        settings,
        tenants=lambda: registry.table,
        store=store,
        metrics=metrics,
        only_tenant=only_tenant,
        # one retention sweep per machine (worker 0's)
        retention_interval=None
        if link is not None and link.index > 0
        else settings.records.retention_interval,
        ua_config=ua_config,
        sender=link.send_sip if link is not None else None,
        register=link is None or link.index == 0,  # one REGISTER per tenant registration
    )
    if link is not None:
        service.admission.shared = link
    server: MetricsServer | None = None
    if settings.metrics.listen is not None:
        mhost, mport = parse_hostport(settings.metrics.listen)
        token = settings.metrics.bearer_token()
        server = MetricsServer(metrics, health, mhost, mport, token=token)
        await server.start()
        log.info("metrics on %s/metrics, health on /healthz and /readyz", server.url)
    watch = ResourceWatch(service, own_connections=lambda: server.connections if server else 0)
    metrics.registry.register(ResourceCollector(watch))
    watching = False
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def hup() -> None:
        task = loop.create_task(registry.areload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    def usr1() -> None:
        where = service.set_trace(service.trace is None)
        log.warning("SIP trace %s", f"on → {where}" if where else "off")

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, hup)
        loop.add_signal_handler(signal.SIGUSR1, usr1)
    from w3sipagent.cli.controlplane import ControlPlane

    plane: ControlPlane | None = None
    worker_tasks: tuple[asyncio.Task[None], ...] = ()
    try:
        await store.open()
        plane = await ControlPlane.start(settings, registry, service)
        await service.start()
        registry.add_listener(lambda table: _sync_later(service, table))
        registry.start()
        # Everything built so far (modules, settings, the service) lives as long as the
        # process: out of the collector's generations, a full collection no longer walks
        # it while calls run (measured: gen-2 pauses of 80-150 ms at 200 calls).
        gc.freeze()
        health.set_started()
        assert service.ua is not None
        if link is not None:
            ua = service.ua
            link.feed = lambda data, addr, transport: ua.transports.received(data, addr, transport)
            link.render_metrics = metrics.render
            worker_tasks = (
                loop.create_task(link.run(), name="worker-link"),
                loop.create_task(_stop_when(link.closed, stop), name="worker-orphan"),
            )
            if link.index > 0:  # worker 0 registers; every worker knows the contacts
                from w3sipagent.cli.workers import RegistrationContacts

                contacts = RegistrationContacts(ua)
                contacts.apply(registry.table)
                registry.add_listener(contacts.apply)
            link.ready()
        if link is not None:
            log.info("worker %d taking calls behind %s:%d", link.index, *link.public)
        else:
            log.info(
                "agent listening on %s:%d (%s) for %s",
                service.ua.config.host,
                service.port,
                ",".join(service.ua.config.transports),
                only_tenant or ", ".join(registry.table.tenants) or "no tenants",
            )
        watch.baseline()  # ready, no call yet: what it holds now is not judged
        watching = True
        if live:
            from rich.live import Live

            from w3sipagent.cli.live import calls_table

            with Live(
                calls_table(service, health), refresh_per_second=2, console=err_console
            ) as view:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
                    view.update(calls_table(service, health))
        else:
            await stop.wait()
        n = len(service.bridges)
        log.info("draining: %d active call(s), up to %.0f s", n, settings.sip.drain_timeout)
        health.set_draining()
        service.drain()
        await service.close()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await registry.stop()
        if service.ua is not None and not service.ua.closed:
            await service.close(timeout=0)
        if plane is not None:
            await plane.close()
        await store.close()
        if server is not None:
            await server.close()
        if lag_monitor is not None:
            lag_monitor.stop()
        for task in worker_tasks:
            task.cancel()
        if link is not None:
            link.close()
    if watching:
        report_resources(watch)
    log.info("stopped after %d call(s)", service.stats.bridged)
    return service.stats.bridged


def report_resources(watch: ResourceWatch) -> None:
    """The shutdown summary: what the stopped agent still holds (a warning when something
    was not released; see :mod:`w3sipagent.agent.resources`)."""
    report = watch.report()
    fields = {"resources": json.dumps(report.as_dict(), sort_keys=True)}
    level = logging.WARNING if report.leaks() else logging.INFO
    log.log(level, "resources at shutdown: %s", report.summary(), extra=fields)


async def _stop_when(event: asyncio.Event, stop: asyncio.Event) -> None:
    """A worker whose supervisor is gone drains and stops."""
    await event.wait()
    stop.set()


def _sync_later(service: AgentService, table: TenantTable) -> None:
    """A reload listener: apply the new tenants' registrations (REGISTER mode) in the background."""
    service.tenants_changed(table)


def _setup_logs(settings: Settings, live: bool) -> None:
    from w3sipagent.logs import setup_logging

    json_logs = settings.logging.json_logs
    if live:
        json_logs = False
    setup_logging(settings.logging.level if not live else "WARNING", json_logs)


@cli_errors
def serve(
    config: Path | None = ConfigOption,
    sip: str | None = SipOption,
    rtp_ports: str | None = RtpOption,
    realtime_url: str | None = RealtimeOption,
    metrics: str | None = MetricsOption,
    drain_timeout: float | None = DrainOption,
    live: bool | None = LiveOption,
    api: str | None = ApiOption,
    workers: str | None = WorkersOption,
) -> None:
    """Answer calls for every tenant of the configuration, on every core.

    ``--workers N`` (default ``server.workers``: auto, one per core) worker processes answer
    behind the one SIP address; ``--workers 1`` runs a single process.

    SIGTERM drains (new calls get 503, active calls finish up to sip.drain_timeout);
    SIGHUP or a change of the config file reloads the tenants; SIGUSR1 switches the SIP
    message trace (logging.sip_trace_path) on or off.

    REGISTER mode needs no flag: each tenant's registrations are registered at start,
    re-applied on reload and unregistered when draining (the live table shows them).
    """
    flags = overrides(sip, rtp_ports, realtime_url, metrics, drain_timeout)
    if api is not None:
        flags["api.listen"] = OFF if api.strip().lower() == OFF else hostport_flag(api, "--api")
    settings = load(config, flags)
    if not settings.tenants and settings.control.source == "file":
        fail(
            "no tenants configured",
            code=EXIT_USAGE,
            hint="add [tenants.NAME] tables (see examples/w3sipagent.toml), or set "
            'control.source = "database" (docs/control-plane.md)',
        )
    from w3sipagent.cli.workers import run_pool, worker_count

    count = worker_count(settings, workers)
    show = is_terminal() if live is None else live
    if count > 1:
        if show and live:
            err_console.print("--live shows one process's calls: not with --workers > 1")
        if settings.api.listen is not None:
            err_console.print(
                f"api.listen with {count} workers: the API and console run in worker 0; "
                "their live calls are worker 0's (records and routing cover every worker)"
            )
        _setup_logs(settings, False)
        run_async(run_pool(settings, flags, count))
        return
    _setup_logs(settings, show)
    run_async(run_agent(settings, flags, config, live=show))


@cli_errors
def run(
    tenant: str = typer.Argument(..., help="The tenant id ([tenants.ID] in the config)."),
    config: Path | None = ConfigOption,
    sip: str | None = SipOption,
    rtp_ports: str | None = RtpOption,
    realtime_url: str | None = RealtimeOption,
    metrics: str | None = MetricsOption,
    drain_timeout: float | None = DrainOption,
    live: bool | None = LiveOption,
) -> None:
    """Run one tenant's agent on its own SIP port (other tenants' calls get 404).

    REGISTER mode: only this tenant's registrations are registered (from this port's
    Contact) and unregistered when it drains. Signals as for serve.
    """
    flags = overrides(sip, rtp_ports, realtime_url, metrics, drain_timeout)
    settings = load(config, flags)
    if tenant not in settings.tenants and settings.control.source == "file":
        fail(
            f"no tenant {tenant!r} in the configuration",
            code=EXIT_USAGE,
            hint=f"known: {', '.join(settings.tenants) or 'none'}",
        )
    show = is_terminal() if live is None else live
    _setup_logs(settings, show)
    run_async(run_agent(settings, flags, config, only_tenant=tenant, live=show))
