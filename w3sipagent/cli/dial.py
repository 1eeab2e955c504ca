"""``w3sipagent dial URI --tenant T``: an outbound AI call (reminders, call-backs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from w3sipagent.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigOption,
    cli_errors,
    err_console,
    fail,
    hostport_flag,
    load,
    port_range_flag,
    run_async,
)
from w3sipagent.config import parse_hostport
from w3sipagent.records.cdr import CallRecord, Disposition


@cli_errors
def dial(
    uri: str = typer.Argument(..., help="Who to call, e.g. sip:+15551234567@pbx.example."),
    tenant: str = typer.Option(..., "--tenant", "-t", help="The tenant whose agent calls."),
    agent: str | None = typer.Option(None, "--agent", help="The agent (default: the tenant's)."),
    proxy: str | None = typer.Option(
        None, "--proxy", help="Send the INVITE to HOST:PORT (FreeSWITCH) keeping the URI."
    ),
    config: Path | None = ConfigOption,
    sip: str | None = typer.Option(None, "--sip", help="Local SIP address HOST:PORT."),
    rtp_ports: str | None = typer.Option(None, "--rtp-ports", help="RTP port range MIN-MAX."),
    realtime_url: str | None = typer.Option(None, "--realtime-url", help="Realtime base URL."),
    answer_timeout: float = typer.Option(60.0, "--answer-timeout", min=1, help="Ring this long."),
) -> None:
    """Place an outbound AI call: the tenant's agent talks to whoever answers.

    The CDR is written like for inbound calls. Exit 0 when the call was answered.
    """
    from w3sipagent.agent.service import AgentService
    from w3sipagent.cli.cdr import render_cdr
    from w3sipagent.logs import setup_logging
    from w3sipagent.records.store import CdrStore

    hostport_flag(proxy, "--proxy")
    flags: dict[str, Any] = {
        "sip.listen": hostport_flag(sip, "--sip"),
        **port_range_flag(rtp_ports),
        "realtime.base_url": realtime_url,
        "metrics.listen": None,
    }
    settings = load(config, flags)
    if sip is None:  # the configured address on any free port (a running serve keeps its own)
        host = settings.sip.listen_address[0]
        flags["sip.listen"] = f"[{host}]:0" if ":" in host else f"{host}:0"
        settings = load(config, flags)
    if tenant not in settings.tenants:
        fail(
            f"no tenant {tenant!r}",
            code=EXIT_USAGE,
            hint=f"known: {', '.join(settings.tenants) or 'none'}",
        )
    target = parse_hostport(proxy, default_port=5060) if proxy else None
    setup_logging("WARNING", False)

    async def main() -> CallRecord:
        async with CdrStore.from_settings(settings.records) as store:
            service = AgentService(settings, store=store, retention_interval=None)
            await service.start()
            try:
                err_console.print(f"{tenant}: calling {uri} ...")
                return await service.dial(
                    uri, tenant, agent=agent, proxy=target, timeout=answer_timeout
                )
            finally:
                await service.close(timeout=2.0)

    cdr = run_async(main())
    render_cdr(cdr)
    if cdr.answer_at is None or cdr.disposition in (Disposition.REJECTED, Disposition.TIMEOUT):
        raise typer.Exit(EXIT_FAILED)
