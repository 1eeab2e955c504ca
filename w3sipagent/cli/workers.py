"""``serve --workers N``: the supervisor process and the hidden ``_worker`` command.

The supervisor (:func:`run_pool`) binds ``sip.listen`` (UDP and TCP), starts N workers
(``python -m w3sipagent _worker``, each told its index and link descriptor in
``W3SIPAGENT_WORKER``), serves the merged ``/metrics``, ``/healthz`` and ``/readyz`` on
``metrics.listen``, forwards SIGTERM / SIGINT (drain), SIGHUP (reload) and SIGUSR1 (SIP
trace) to every worker and writes the CDRs of a dead worker's calls. Each worker is
:func:`~w3sipagent.cli.serve.run_agent` with its user agent's SIP going through the link,
its share of the RTP port range, no metrics listener of its own and (but worker 0) no API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from w3sipagent.cli.common import EXIT_USAGE, cli_errors, fail, load, run_async
from w3sipagent.config import OFF, Settings, parse_hostport

if TYPE_CHECKING:
    from w3sipagent.agent.poolmetrics import PoolMetricsServer
    from w3sipagent.agent.workerlink import WorkerLink
    from w3sipagent.asyncio.uaconfig import UserAgentConfig
    from w3sipagent.asyncio.useragent import UserAgent
    from w3sipagent.tenants.resolver import TenantTable

log = logging.getLogger("w3sipagent.serve")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's
    cpuset), else the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_count(settings: Settings, flag: str | None) -> int:
    """How many workers ``serve`` runs: ``--workers`` (a number or ``auto``), else
    ``server.workers``; 0 / auto is one per usable CPU core, but one process when TLS is on
    (a single process serves TLS) or the HTTP API is (its console's live view shows the calls
    of its own process: give ``--workers N`` explicitly to spread calls anyway)."""
    value: int = settings.server.workers
    if flag is not None:
        text = flag.strip().lower()
        if text == "auto":
            value = 0
        elif text.isdigit() and int(text) <= 256:
            value = int(text)
        else:
            fail(f"--workers: {flag!r} is not a number of processes or 'auto'", code=EXIT_USAGE)
    auto = value == 0
    n = usable_cores() if auto else value
    if n > 1 and "tls" in settings.sip.transports:
        if not auto:
            fail(
                "sip.transports has tls: TLS is served by a single process",
                code=EXIT_USAGE,
                hint="set --workers 1 (or server.workers = 1), or put TLS in front (Kamailio)",
            )
        log.info("sip.transports has tls: one process (workers need udp/tcp)")
        n = 1
    if n > 1 and auto and settings.api.listen is not None:
        # the API and its console run in worker 0 and see that process's live calls only
        log.info("api.listen is set: one process, so the console sees every live call")
        n = 1
    return n


async def run_pool(
    settings: Settings,
    flags: dict[str, Any],
    count: int,
    *,
    stop: asyncio.Event | None = None,
) -> int:
    """The supervisor: run ``count`` workers until SIGTERM / SIGINT (or ``stop``), then drain
    them all. Returns the number of workers that died and were started again."""
    from w3sipagent.agent.pool import WorkerPool
    from w3sipagent.agent.poolmetrics import PoolMetricsServer
    from w3sipagent.asyncio.transport import TransportConfig
    from w3sipagent.metrics import HealthState
    from w3sipagent.records.store import CdrStore

    sip = settings.sip
    host, port = sip.listen_address
    store = CdrStore.from_settings(settings.records)
    config = settings.config_file
    pool = WorkerPool(
        count,
        [sys.executable, "-m", "w3sipagent", "_worker"],
        worker_env={"config": str(config) if config else None, "flags": flags, "count": count},
        max_calls=sip.max_calls,
        store=store,
        restart_delay=settings.server.worker_restart_delay,
        start_timeout=settings.server.worker_start_timeout,
        linger=64 * sip.t1,
    )
    health = HealthState()
    server: PoolMetricsServer | None = None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handlers = {
        signal.SIGTERM: stop.set,
        signal.SIGINT: stop.set,
        signal.SIGHUP: pool.reload,
        signal.SIGUSR1: lambda: pool.signal_all(signal.SIGUSR1),
    }
    for sig, handler in handlers.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
    try:
        await store.open()
        listen = TransportConfig(
            host=host,
            port=port,
            udp="udp" in sip.transports,
            tcp="tcp" in sip.transports,
            tcp_idle_timeout=sip.tcp_idle_timeout,
            tcp_message_timeout=sip.tcp_message_timeout,
            tcp_max_connections=sip.tcp_max_connections,
            tcp_max_per_source=sip.tcp_max_per_source,
        )
        try:
            address = await pool.start(listen)
        except RuntimeError as exc:  # the workers did not come up (their logs say why)
            fail(str(exc), hint="see the workers' log lines above; try --workers 1")
        if settings.metrics.listen is not None:
            mhost, mport = parse_hostport(settings.metrics.listen)
            server = PoolMetricsServer(
                pool, health, mhost, mport, token=settings.metrics.bearer_token()
            )
            await server.start()
            log.info("metrics of all workers on %s/metrics", server.url)
        health.set_started()
        log.info(
            "agent listening on %s:%d (%s), %d worker processes",
            address[0],
            address[1],
            ",".join(t for t in sip.transports if t != "tls"),
            count,
        )
        await stop.wait()
        log.info("draining %d worker(s), up to %.0f s", count, sip.drain_timeout)
        health.set_draining()
        await pool.drain(timeout=sip.drain_timeout + 15.0)
    finally:
        for sig in handlers:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await pool.close()
        if server is not None:
            await server.close()
        await store.close()
    restarts = sum(w.restarts for w in pool.workers)
    log.info("stopped: %d worker restart(s), %d failed CDR(s)", restarts, pool.failed_cdrs)
    return restarts


# ---------------------------------------------------------------------------- the worker


def worker_ua_config(settings: Settings, link: WorkerLink) -> UserAgentConfig:
    """A worker's user agent: the public address in Via / Contact, its own RTP ports, a
    throw-away local SIP socket (its messages go through the link)."""
    from w3sipagent.agent.mappers import ua_config_from_settings
    from w3sipagent.agent.pool import rtp_slice

    base = ua_config_from_settings(settings)
    lo, hi = rtp_slice(settings.rtp.port_min, settings.rtp.port_max, link.index, link.count)
    return ua_config_from_settings(
        settings,
        port=0,
        transports=("udp",),
        advertised_port=base.advertised_port or link.public[1],
        rtp_port_min=lo,
        rtp_port_max=hi,
    )


class RegistrationContacts:
    """REGISTER mode in workers other than 0: worker 0 registers the tenants' registrations
    (one REGISTER each, Contact the public address), but the registrar's INVITEs may reach
    any worker, so every worker knows the Contact users (``reg-TENANT-NAME``) and which
    registration each stands for, as the tenant table changes."""

    def __init__(self, ua: UserAgent) -> None:
        self.ua = ua
        self.users: set[str] = set()

    def apply(self, table: TenantTable) -> None:
        from w3sipagent.agent.registrations import registration_contact_user

        wanted = {
            registration_contact_user(tenant.id, rid.partition("/")[2]): rid
            for rid, tenant, _ in table.registrations()
        }
        for user in self.users - set(wanted):
            self.ua.remove_local_contact(user)
        for user, rid in wanted.items():
            self.ua.add_local_contact(user, rid)
        self.users = set(wanted)


@cli_errors
def worker_command() -> None:
    """Internal: one worker process of ``serve --workers`` (started by the supervisor)."""
    from w3sipagent.agent.workerlink import WORKER_ENV
    from w3sipagent.cli.serve import _setup_logs, run_agent

    raw = os.environ.get(WORKER_ENV)
    if not raw:
        fail(f"{WORKER_ENV} is not set: this command is started by `serve --workers`")
    spec = json.loads(raw)
    index = int(spec["index"])
    flags: dict[str, Any] = dict(spec.get("flags") or {})
    flags["metrics.listen"] = OFF  # the supervisor serves every worker's metrics
    flags["server.workers"] = 1
    if index > 0:
        flags["api.listen"] = OFF  # the API runs in worker 0
    config = Path(spec["config"]) if spec.get("config") else None
    settings = load(config, flags)
    _setup_logs(settings, False)

    async def main() -> int:
        from w3sipagent.agent.workerlink import WorkerLink

        link = await WorkerLink.from_fd(index, int(spec["fd"]))
        link.count = int(spec["count"])
        link.public = (str(spec["public"][0]), int(spec["public"][1]))
        return await run_agent(settings, flags, config, live=False, link=link)

    run_async(main())
