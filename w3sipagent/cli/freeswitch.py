"""``w3sipagent freeswitch dialplan``: FreeSWITCH dialplan XML generated from the tenants.

The generator, its two modes (direct with ``fs_path``, ``--mode register`` with ``user/``)
and the caller-UUID header every extension sets are described in
:mod:`w3sipagent.freeswitch.dialplan`; this module is the command around it (the agent's
address, the output file, and the tenants it skipped, named on standard error).
"""

from __future__ import annotations

from pathlib import Path

import typer

from w3sipagent.cli.common import EXIT_USAGE, ConfigOption, cli_errors, err_console, fail, load
from w3sipagent.config import Settings, parse_hostport
from w3sipagent.freeswitch.dialplan import Mode, generate_dialplan

app = typer.Typer(help="FreeSWITCH configuration generated from the tenants.", no_args_is_help=True)


def agent_address(settings: Settings, override: str | None = None) -> str:
    """Where FreeSWITCH reaches the agent: ``override``, ``sip.advertised`` or ``sip.listen``.

    A wildcard listen address (0.0.0.0 / ::) cannot be dialled: the caller must say which.
    """
    if override:
        host, port = parse_hostport(override, default_port=5060)
    elif settings.sip.advertised:
        host, port = parse_hostport(
            settings.sip.advertised, default_port=settings.sip.listen_address[1]
        )
    else:
        host, port = settings.sip.listen_address
        if host in ("0.0.0.0", "::", ""):
            fail(
                f"sip.listen is {settings.sip.listen}: FreeSWITCH needs the agent's real address",
                code=EXIT_USAGE,
                hint="pass --agent HOST:PORT (or set sip.advertised)",
            )
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


@app.command("dialplan")
@cli_errors
def dialplan(
    config: Path | None = ConfigOption,
    agent: str | None = typer.Option(
        None,
        "--agent",
        help="The agent's SIP address as FreeSWITCH reaches it, HOST:PORT "
        "(default: sip.advertised, else sip.listen).",
    ),
    profile: str = typer.Option("external", "--profile", help="The Sofia profile to bridge on."),
    mode: Mode = typer.Option(Mode.direct, "--mode", help="direct (fs_path) or register (user/)."),
    fallback: str | None = typer.Option(
        None,
        "--fallback",
        help="Transfer here when the agent does not answer, e.g. '1000 XML default'.",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the XML here (default: standard output)."
    ),
) -> None:
    """Generate the FreeSWITCH dialplan that bridges each tenant's DIDs to the agent.

    Put the result in conf/dialplan/public/ (both modes: trunk calls enter there) and run
    `reloadxml`. See docs/freeswitch.md.
    """
    settings = load(config)
    if not settings.tenants:
        fail("no tenants in the configuration", code=EXIT_USAGE, hint="add [tenants.NAME] tables")
    address = agent_address(settings, agent) if mode is Mode.direct else ""
    skipped: list[tuple[str, str]] = []
    xml = generate_dialplan(
        settings, address, profile=profile, mode=mode, fallback=fallback, skipped=skipped
    )
    for who, why in skipped:
        err_console.print(f"skipped: tenant {who} {why}")
    if "<extension" not in xml:
        err_console.print(
            "no extension generated: "
            + (
                "REGISTER mode needs tenants with both dids and registrations"
                if mode is Mode.register
                else "no tenant has dids"
            )
        )
    if output is None:
        typer.echo(xml, nl=False)
    else:
        output.write_text(xml, encoding="utf-8")
        err_console.print(f"wrote {output}")
