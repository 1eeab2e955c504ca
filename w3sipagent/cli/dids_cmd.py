"""``w3sipagent dids list | set | delete``: numbers in the control-plane database."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from w3sipagent.cli.common import EXIT_USAGE, ConfigOption, cli_errors, console, fail
from w3sipagent.cli.tenants_cmd import DatabaseOption, with_repo
from w3sipagent.control.errors import NotFound
from w3sipagent.control.repo import ControlRepo
from w3sipagent.control.schemas import DidIn, parse_did
from w3sipagent.tenants.routing import TargetType

app = typer.Typer(help="DIDs (numbers) in the control-plane database.", no_args_is_help=True)


@app.command("list")
@cli_errors
def list_dids(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's numbers."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
    config: Path | None = ConfigOption,
    database: str | None = DatabaseOption,
) -> None:
    """Every number with its tenant, store and target."""

    async def work(repo: ControlRepo) -> list[dict[str, object]]:
        ids = [tenant] if tenant else [t.id for t in await repo.list_tenants()]
        out: list[dict[str, object]] = []
        for tid in ids:
            out.extend(d.model_dump(mode="json") for d in await repo.list_items("dids", tid))
        return out

    rows = with_repo(config, database, work)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r))
        return
    table = Table("number", "tenant", "store", "target")
    for r in rows:
        target = f"{r['target_type']} {r['target_ref'] or ''}".strip()
        table.add_row(str(r["number"]), str(r["tenant_id"]), str(r["store_id"] or ""), target)
    console.print(table)


@app.command("set")
@cli_errors
def set_did(
    tenant: str = typer.Argument(..., help="The tenant id."),
    number: str = typer.Argument(..., help="The number, E.164 (+CC...)."),
    agent: str | None = typer.Option(None, "--agent", help="Route to this agent."),
    destination: str | None = typer.Option(None, "--destination", help="Transfer here."),
    reject: bool = typer.Option(False, "--reject", help="Refuse calls (603)."),
    store: str | None = typer.Option(None, "--store", help="The number's store."),
    config: Path | None = ConfigOption,
    database: str | None = DatabaseOption,
) -> None:
    """Create or re-point a number (default target: the tenant's default agent)."""
    if sum((agent is not None, destination is not None, reject)) > 1:
        fail("give one of --agent, --destination, --reject", code=EXIT_USAGE)
    try:
        e164 = parse_did(number)
    except ValueError as e:
        fail(str(e), code=EXIT_USAGE)
    kind: TargetType = "destination" if destination else "reject" if reject else "ai_agent"
    body = DidIn(number=e164, store_id=store, target_type=kind, target_ref=destination or agent)

    async def work(repo: ControlRepo) -> str:
        try:
            await repo.get_item("dids", tenant, e164)
        except NotFound:
            await repo.create_item("dids", tenant, body, actor="cli")
            return "created"
        await repo.replace_item("dids", tenant, e164, body, actor="cli")
        return "updated"

    typer.echo(f"{e164}: {with_repo(config, database, work)}")


@app.command("delete")
@cli_errors
def delete_did(
    tenant: str = typer.Argument(..., help="The tenant id."),
    number: str = typer.Argument(..., help="The number."),
    config: Path | None = ConfigOption,
    database: str | None = DatabaseOption,
) -> None:
    """Remove a number (its calls then get FreeSWITCH's own dialplan)."""
    try:
        e164 = parse_did(number)
    except ValueError as e:
        fail(str(e), code=EXIT_USAGE)

    async def work(repo: ControlRepo) -> None:
        await repo.delete_item("dids", tenant, e164, actor="cli")

    with_repo(config, database, work)
    typer.echo(f"{e164}: deleted")
