"""``w3sipagent tenants list | show | import | export`` and ``w3sipagent api-token create``:
the control-plane database from the command line (``records.database_url``)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.table import Table

from w3sipagent.cli.common import (
    EXIT_USAGE,
    ConfigOption,
    cli_errors,
    console,
    err_console,
    fail,
    load,
    run_async,
)
from w3sipagent.config import load_settings
from w3sipagent.control.errors import ControlError
from w3sipagent.control.repo import ControlRepo

app = typer.Typer(help="Tenants in the control-plane database.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for the control-plane HTTP API.", no_args_is_help=True)

T = TypeVar("T")

DatabaseOption = typer.Option(
    None, "--database", help="Database URL (default: records.database_url of the config)."
)


def with_repo(
    config: Path | None, database: str | None, work: Callable[[ControlRepo], Awaitable[T]]
) -> T:
    settings = load(config, {"records.database_url": database} if database else None)

    async def go() -> T:
        repo = await ControlRepo.open(settings.records.url())
        try:
            return await work(repo)
        except ControlError as e:
            fail(str(e))
        finally:
            await repo.close()

    return run_async(go())


@app.command("list")
@cli_errors
def list_tenants(
    config: Path | None = ConfigOption,
    database: str | None = DatabaseOption,
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """The database's tenants: hosts, agents, DIDs, stores."""

    async def work(repo: ControlRepo) -> None:
        tenants = await repo.list_tenants()
        snap = await repo.snapshot()
        rows = []
        for t in tenants:
            cfg = snap.tenants.get(t.id)
            dids = sorted(n for n, r in snap.routes.items() if r.tenant_id == t.id)
            stores = await repo.list_items("stores", t.id)
            rows.append(
                {
                    "id": t.id,
                    "name": t.name,
                    "hosts": t.hosts,
                    "agents": sorted(cfg.agents) if cfg else [],
                    "dids": dids,
                    "stores": [s.id for s in stores],  # type: ignore[attr-defined]
                    "served": cfg is not None,
                }
            )
        if as_json:
            for r in rows:
                typer.echo(json.dumps(r))
            return
        table = Table("tenant", "hosts", "agents", "DIDs", "stores", "served")
        for r in rows:
            table.add_row(
                str(r["id"]),
                ", ".join(r["hosts"]),  # type: ignore[arg-type]
                ", ".join(r["agents"]),  # type: ignore[arg-type]
                ", ".join(r["dids"]),  # type: ignore[arg-type]
                ", ".join(r["stores"]),  # type: ignore[arg-type]
                "yes" if r["served"] else "no (no agent)",
            )
        console.print(table)

    with_repo(config, database, work)


@app.command("show")
@cli_errors
def show(
    tenant: str = typer.Argument(..., help="The tenant id."),
    config: Path | None = ConfigOption,
    database: str | None = DatabaseOption,
) -> None:
    """One tenant with its stores, agents, DIDs, trunks and destinations, as JSON."""

    async def work(repo: ControlRepo) -> None:
        out = (await repo.get_tenant(tenant)).model_dump(mode="json")
        for kind in ("stores", "agents", "dids", "trunks", "destinations"):
            items = await repo.list_items(kind, tenant)
            out[kind] = [i.model_dump(mode="json", exclude={"tenant_id"}) for i in items]
        typer.echo(json.dumps(out, indent=2))

    with_repo(config, database, work)


@app.command("import")
@cli_errors
def import_file(
    file: Path = typer.Argument(..., help="A w3sipagent TOML file (its includes are read too)."),
    config: Path | None = ConfigOption,
    database: str | None = DatabaseOption,
    replace: bool = typer.Option(False, "--replace", help="Replace tenants already there."),
) -> None:
    """Copy the file's tenants into the database (validated as `serve` would)."""
    from w3sipagent.control.transfer import import_tenants

    if not file.exists():
        fail(f"{file}: file not found", code=EXIT_USAGE)
    tenants = load_settings(file, discover=False).tenants
    if not tenants:
        fail(f"{file}: no [tenants.NAME] tables", code=EXIT_USAGE)

    async def work(repo: ControlRepo) -> list[str]:
        return await import_tenants(
            repo, tenants.values(), actor=f"cli import {file.name}", replace=replace
        )

    done = with_repo(config, database, work)
    err_console.print(f"imported {len(done)} tenant(s): {', '.join(done)}")


@app.command("export")
@cli_errors
def export(
    config: Path | None = ConfigOption,
    database: str | None = DatabaseOption,
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write here (default: stdout)."
    ),
) -> None:
    """Write the database's tenants as [tenants.ID] TOML tables."""
    from w3sipagent.control.transfer import export_toml

    text = with_repo(config, database, lambda repo: export_toml(repo, tenant))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}")


@token_app.command("create")
@cli_errors
def create_token(
    tenant: str | None = typer.Option(None, "--tenant", help="The tenant the token acts for."),
    admin: bool = typer.Option(False, "--admin", help="An admin token (every tenant, routing)."),
    name: str = typer.Option("", "--name", help="A label for the audit trail."),
    config: Path | None = ConfigOption,
    database: str | None = DatabaseOption,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from w3sipagent.control.tokens import create_token as make

    if (tenant is None) == (not admin):
        fail("give --tenant T or --admin", code=EXIT_USAGE)

    async def work(repo: ControlRepo) -> str:
        try:
            return await make(repo.engine, tenant, name)
        except LookupError as e:
            fail(str(e), code=EXIT_USAGE, hint="w3sipagent tenants list")

    typer.echo(with_repo(config, database, work))
