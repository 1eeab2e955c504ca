"""``w3sipagent cdr list | show | export``: the call detail records, as a table, JSON or CSV."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from w3sipagent.cli.common import (
    EXIT_UNAVAILABLE,
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
from w3sipagent.records.cdr import CallRecord, Disposition, export_csv, export_json
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants.models import parse_duration

app = typer.Typer(help="Call detail records: list, show, export.", no_args_is_help=True)


class ListFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``2025-06-01``, an ISO time, or a duration back from now (``2h``, ``7d``)."""
    if value is None:
        return None
    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"--since: expected an ISO date/time or a duration such as 2h or 7d (got {value!r})",
            code=EXIT_USAGE,
        )
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _sqlite_missing(settings: Settings) -> Path | None:
    from sqlalchemy.engine import make_url

    url = make_url(settings.records.database_url)
    db = url.database
    if url.get_backend_name() == "sqlite" and db and db != ":memory:" and not Path(db).exists():
        return Path(db)
    return None


async def fetch(
    settings: Settings,
    *,
    call_id: str | None = None,
    tenant: str | None = None,
    since: datetime | None = None,
    disposition: str | None = None,
    limit: int = 100,
) -> list[CallRecord]:
    """CDRs from the configured store (newest first), or the one of ``call_id``."""
    missing = _sqlite_missing(settings)
    if missing is not None:
        fail(
            f"no CDR database at {missing}",
            code=EXIT_UNAVAILABLE,
            hint="run an agent first (w3sipagent demo / serve), or point records.database_url at it",
        )
    store = CdrStore.from_settings(settings.records)
    try:
        await store.open()
    except Exception as e:
        fail(
            f"cannot open the CDR database {settings.records.display_url()}: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            code=EXIT_UNAVAILABLE,
        )
    try:
        if call_id is not None:
            one = await store.get_cdr(call_id)
            return [] if one is None else [one]
        return await store.list_cdrs(
            tenant=tenant, since=since, disposition=disposition, limit=limit
        )
    finally:
        await store.close()


def _disposition(value: str | None) -> str | None:
    if value is None:
        return None
    names = [d.value for d in Disposition]
    if value not in names:
        fail(f"--disposition must be one of {', '.join(names)} (got {value!r})", code=EXIT_USAGE)
    return value


def cdr_table(cdrs: list[CallRecord]) -> Table:
    """A rich table of CDRs, one row each."""
    t = Table(title=f"{len(cdrs)} call(s), newest first")
    for col in (
        "call id",
        "start (UTC)",
        "tenant",
        "caller",
        "codec",
        "dur s",
        "disposition",
        "turns",
        "latency ms",
    ):
        t.add_column(col, overflow="fold")
    for c in cdrs:
        lat = sorted(c.turn_latencies_ms)
        t.add_row(
            c.call_id,
            c.invite_at.strftime("%Y-%m-%d %H:%M:%S"),
            c.tenant or "-",
            c.caller or "-",
            c.codec or "-",
            "-" if c.duration_s is None else f"{c.duration_s:.1f}",
            c.disposition.value,
            str(len(c.turn_latencies_ms)),
            "-" if not lat else f"{lat[len(lat) // 2]:.0f}",
        )
    return t


@app.command("list")
@cli_errors
def list_cmd(
    config: Path | None = ConfigOption,
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant."),
    since: str | None = typer.Option(
        None, "--since", help="Only calls since an ISO date/time or for a duration (2h, 7d)."
    ),
    disposition: str | None = typer.Option(
        None, "--disposition", help="completed, caller_hangup, transferred, rejected, ..."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many calls."),
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", "-f", help="Output format."),
) -> None:
    """List calls, newest first."""
    settings = load(config)
    cdrs = run_async(
        fetch(
            settings,
            tenant=tenant,
            since=parse_since(since),
            disposition=_disposition(disposition),
            limit=limit,
        )
    )
    if fmt is ListFormat.json:
        typer.echo(export_json(cdrs))
    elif fmt is ListFormat.csv:
        typer.echo(export_csv(cdrs), nl=False)
    else:
        console.print(cdr_table(cdrs))


def render_cdr(c: CallRecord) -> None:
    """Print one CDR for a person: header fields, transcript, tools, turn latencies."""
    fields = [
        ("call id", c.call_id),
        ("tenant / agent", f"{c.tenant or '-'} / {c.agent or '-'}"),
        ("caller → callee", f"{c.caller or '-'} → {c.callee or '-'}"),
        ("request URI", c.request_uri or "-"),
        ("source", c.source or "-"),
        ("codec / AI format", f"{c.codec or '-'} / {c.ai_format or '-'}"),
        (
            "invite / answer / end",
            f"{c.invite_at.isoformat()} / "
            f"{c.answer_at.isoformat() if c.answer_at else '-'} / "
            f"{c.end_at.isoformat() if c.end_at else '-'}",
        ),
        ("duration", "-" if c.duration_s is None else f"{c.duration_s:.1f} s"),
        (
            "disposition",
            f"{c.disposition.value}"
            + (f" ({c.sip_code})" if c.sip_code else "")
            + (f", {c.reason}" if c.reason else "")
            + (f", hung up by {c.hangup_by}" if c.hangup_by else ""),
        ),
        ("tokens", f"in {c.usage.input_tokens}, out {c.usage.output_tokens}"),
        ("recording", c.recording_path or "-"),
    ]
    if c.transfer is not None:
        fields.append(
            ("transfer", f"{c.transfer.destination} → {c.transfer.uri}: {c.transfer.outcome}")
        )
    if c.rtp:
        fields.append(
            (
                "RTP",
                ", ".join(
                    f"{k}={v}" for k, v in sorted(c.rtp.items()) if not isinstance(v, dict | list)
                ),
            )
        )
    for k, v in fields:
        console.print(f"[bold]{k:>22}[/]  {v}", soft_wrap=True)
    if c.turn_latencies_ms:
        console.print(
            f"[bold]{'turn latencies':>22}[/]  "
            + ", ".join(f"{x:.0f} ms" for x in c.turn_latencies_ms)
        )
    if c.transcript:
        console.print("\n[bold]transcript[/]")
        for e in c.transcript:
            who = "caller" if e.speaker == "caller" else "agent "
            console.print(f"  [{e.at:6.1f}s] {who}: {e.text}", markup=False, soft_wrap=True)
    if c.tool_calls:
        console.print("\n[bold]tool calls[/]")
        for tc in c.tool_calls:
            res = tc.error or json.dumps(tc.result)
            console.print(
                f"  [{tc.at:6.1f}s] {tc.name}({json.dumps(tc.arguments)}) → {res}",
                markup=False,
                soft_wrap=True,
            )


@app.command("show")
@cli_errors
def show(
    call_id: str = typer.Argument(..., help="The call's Call-ID (see `w3sipagent cdr list`)."),
    config: Path | None = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="The full record as JSON."),
) -> None:
    """Show one call: fields, transcript, tool calls, turn latencies."""
    settings = load(config)
    cdrs = run_async(fetch(settings, call_id=call_id))
    if not cdrs:
        fail(f"no call with id {call_id!r}", hint="list the calls with `w3sipagent cdr list`")
    if as_json:
        typer.echo(json.dumps(cdrs[0].model_dump(mode="json"), indent=2))
    else:
        render_cdr(cdrs[0])


@app.command("export")
@cli_errors
def export(
    config: Path | None = ConfigOption,
    fmt: ExportFormat = typer.Option(ExportFormat.csv, "--format", "-f", help="csv or json."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file (default: standard output)."
    ),
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant."),
    since: str | None = typer.Option(None, "--since", help="ISO date/time or duration (7d)."),
    disposition: str | None = typer.Option(None, "--disposition", help="Only this disposition."),
    limit: int = typer.Option(100_000, "--limit", "-n", min=1, help="At most this many calls."),
) -> None:
    """Export calls as CSV (one row per call, transcript in a column) or JSON (full records)."""
    settings = load(config)
    cdrs = run_async(
        fetch(
            settings,
            tenant=tenant,
            since=parse_since(since),
            disposition=_disposition(disposition),
            limit=limit,
        )
    )
    text = export_csv(cdrs) if fmt is ExportFormat.csv else export_json(cdrs) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {len(cdrs)} call(s) to {output}")
