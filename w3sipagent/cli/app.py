"""The ``w3sipagent`` command (typer + rich): ``main()`` is the console-script entry point.

Commands: serve, run, call, dial, demo, realtime-server, doctor, and the groups cdr, config,
freeswitch, tenants, dids and api-token. Exit codes: 0 done, 1 the operation failed, 2 bad command line or
configuration, 3 a needed service or address was unavailable, 130 interrupted.
"""

from __future__ import annotations

import typer

from w3sipagent import __version__
from w3sipagent.cli import cdr, config_cmd, doctor, freeswitch, realtime_server

app = typer.Typer(
    name="w3sipagent",
    help="AI voice agents on real phone calls: SIP + RTP + the OpenAI Realtime API, many tenants.\n\n"
    "Start with `w3sipagent demo` (offline, no API key).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"w3sipagent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """AI voice agents on real phone calls."""


def _register() -> None:
    from w3sipagent.cli import (
        call,
        demo,
        dial,
        dids_cmd,
        knowledge,
        serve,
        tenants_cmd,
        workers,
        xmlcurl,
    )

    app.command("serve")(serve.serve)
    app.command("run")(serve.run)
    app.command("_worker", hidden=True)(workers.worker_command)
    app.command("call")(call.call)
    app.command("dial")(dial.dial)
    app.command("demo")(demo.demo)
    app.command("realtime-server")(realtime_server.realtime_server)
    app.command("doctor")(doctor.doctor)
    app.add_typer(cdr.app, name="cdr")
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(freeswitch.app, name="freeswitch")
    app.add_typer(knowledge.app, name="knowledge")
    freeswitch.app.command("xml-curl")(xmlcurl.xml_curl)
    app.add_typer(tenants_cmd.app, name="tenants")
    app.add_typer(tenants_cmd.token_app, name="api-token")
    app.add_typer(dids_cmd.app, name="dids")


_register()


def main() -> None:
    """Entry point of the ``w3sipagent`` console script."""
    app(prog_name="w3sipagent")


if __name__ == "__main__":  # pragma: no cover
    main()
