"""``w3sipagent knowledge sync | search | status``: the tenants' knowledge bases.

``sync TENANT`` embeds the tenant's new and changed files into the records database and
forgets removed ones (unchanged files cost no embedding request); ``search TENANT QUERY``
shows what the ``search_knowledge`` tool would give an agent of that tenant.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.table import Table

from w3sipagent.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigOption,
    cli_errors,
    console,
    err_console,
    fail,
    load,
    run_async,
)
from w3sipagent.config import Settings
from w3sipagent.knowledge import KnowledgeBases, KnowledgeStore, Passage, SyncReport
from w3sipagent.tenants.models import TenantConfig

app = typer.Typer(help="Tenant knowledge bases: sync, search, status.", no_args_is_help=True)


def _tenants(settings: Settings, tenant: str | None) -> list[TenantConfig]:
    if tenant is None:
        found = [t for t in settings.tenants.values() if t.knowledge is not None]
        if not found:
            fail("no tenant has a [knowledge] table", code=EXIT_USAGE)
        return found
    t = settings.tenants.get(tenant)
    if t is None:
        fail(
            f"no tenant {tenant!r}",
            code=EXIT_USAGE,
            hint=f"tenants: {', '.join(settings.tenants) or 'none'}",
        )
    if t.knowledge is None:
        fail(
            f"tenant {tenant!r} has no knowledge base",
            code=EXIT_USAGE,
            hint=f"add [tenants.{tenant}.knowledge] with paths = [...]",
        )
    return [t]


def _bases(settings: Settings) -> KnowledgeBases:
    store = KnowledgeStore(settings.records.database_url)
    return KnowledgeBases(store, default_key=settings.realtime.api_key)


async def _sync(settings: Settings, tenants: list[TenantConfig]) -> list[SyncReport]:
    bases = _bases(settings)
    async with bases.store:
        reports = []
        for t in tenants:
            kb = bases.for_tenant(t)
            assert kb is not None
            reports.append(await kb.sync())
        return reports


@app.command("sync")
@cli_errors
def sync(
    tenant: str | None = typer.Argument(None, help="The tenant (default: every tenant with one)."),
    config: Path | None = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="The report as JSON."),
) -> None:
    """Embed new and changed files, forget removed ones."""
    settings = load(config)
    reports = run_async(_sync(settings, _tenants(settings, tenant)))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in reports], indent=2))
    for r in reports:
        if not as_json:
            console.print(
                f"{r.tenant}: {len(r.added)} added, {len(r.updated)} updated, "
                f"{len(r.unchanged)} unchanged, {len(r.removed)} removed; "
                f"{r.chunks_embedded} passages embedded"
            )
        for e in r.errors:
            err_console.print(f"{r.tenant}: {e}")
    if any(r.errors for r in reports):
        raise typer.Exit(EXIT_FAILED)


async def _search(
    settings: Settings, t: TenantConfig, query: str, top_k: int | None
) -> list[Passage]:
    bases = _bases(settings)
    async with bases.store:
        kb = bases.for_tenant(t)
        assert kb is not None
        return await kb.search(query, top_k)


@app.command("search")
@cli_errors
def search(
    tenant: str = typer.Argument(..., help="The tenant."),
    query: str = typer.Argument(..., help="What to look for."),
    config: Path | None = ConfigOption,
    top_k: int | None = typer.Option(None, "--top-k", "-k", min=1, max=50, help="Passages."),
    as_json: bool = typer.Option(False, "--json", help="The passages as JSON."),
) -> None:
    """Search a tenant's knowledge base as its agents' ``search_knowledge`` tool does."""
    settings = load(config)
    (t,) = _tenants(settings, tenant)
    hits = run_async(_search(settings, t, query, top_k))
    if as_json:
        typer.echo(json.dumps([_as_dict(h) for h in hits], indent=2))
        return
    table = Table("score", "source", "passage")
    for h in hits:
        table.add_row(f"{h.score:.3f}", f"{h.source}#{h.chunk}", h.text[:200])
    console.print(table)


def _as_dict(p: Passage) -> dict[str, object]:
    return {"text": p.text, "source": p.source, "chunk": p.chunk, "score": p.score}


async def _status(settings: Settings, tenants: list[TenantConfig]) -> list[tuple[str, int, int]]:
    store = KnowledgeStore(settings.records.database_url)
    async with store:
        return [(t.id, *await store.counts(t.id)) for t in tenants]


@app.command("status")
@cli_errors
def status(
    tenant: str | None = typer.Argument(None, help="The tenant (default: every tenant with one)."),
    config: Path | None = ConfigOption,
) -> None:
    """Files and passages stored per tenant."""
    settings = load(config)
    rows = run_async(_status(settings, _tenants(settings, tenant)))
    table = Table("tenant", "files", "passages")
    for tid, docs, chunks in rows:
        table.add_row(tid, str(docs), str(chunks))
    console.print(table)
