"""``w3sipagent config check``: validate the configuration and show where each value came from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.table import Table

from w3sipagent.cli.common import ConfigOption, cli_errors, console, err_console, load
from w3sipagent.config import Settings
from w3sipagent.tenants.models import SecretRef

app = typer.Typer(help="Check the configuration.", no_args_is_help=True)


def secret_warnings(settings: Settings) -> list[str]:
    """Secret references that cannot be read now (calls of that tenant would fail)."""
    out: list[str] = []

    def check(ref: SecretRef | None, what: str) -> None:
        if ref is None:
            return
        if ref.env is not None and not os.environ.get(ref.env, "").strip():
            out.append(f"{what}: environment variable {ref.env} is not set")
        elif ref.file is not None and not ref.file.is_file():
            out.append(f"{what}: file {ref.file} not found")

    for tid, tenant in settings.tenants.items():
        if tenant.api_key is None and settings.realtime.api_key is None:
            out.append(
                f"tenant '{tid}': no api_key and no realtime.api_key "
                "(set W3SIPAGENT_REALTIME__API_KEY or the tenant's api_key)"
            )
        check(tenant.api_key, f"tenant '{tid}': api_key")
        for name, reg in tenant.registrations.items():
            check(reg.password, f"tenant '{tid}': registrations.{name}.password")
        for p in (tenant.fallback.wav, tenant.recording.announcement):
            if p is not None and not p.is_file():
                out.append(f"tenant '{tid}': prompt file {p} not found")
    return out


def _short(value: str, limit: int = 60) -> str:
    one = value.replace("\\n", " ")
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _short_source(source: str, files: int = 1) -> str:
    """``file`` (one config file) or ``file:NAME`` (the paths are listed above the table)."""
    if not source.startswith("file:"):
        return source
    return "file" if files == 1 else f"file:{Path(source[5:]).name}"


def _group(key: str) -> tuple[str, str]:
    """``tenants.acme.agents.support.voice`` → (``tenants.acme.agents.support``, ``voice``):
    the TOML table a key is written in, so that the key column stays narrow."""
    parts = key.split(".")
    n = 1
    if parts[0] == "tenants" and len(parts) > 2:
        n = 4 if parts[2] in ("agents", "registrations") and len(parts) > 4 else 2
    n = min(n, len(parts) - 1) or 1
    return ".".join(parts[:n]), ".".join(parts[n:])


def _json_value(shown: str) -> object:
    try:
        return json.loads(shown)
    except ValueError:
        return shown  # a masked secret


@app.command("check")
@cli_errors
def check(
    config: Path | None = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Print the settings as JSON."),
    show_all: bool = typer.Option(
        False, "--all", help="Show every setting, not only the ones that are not defaults."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Exit 1 when a warning is found (unreadable secret, missing file)."
    ),
) -> None:
    """Validate the configuration and show each value with its source.

    Sources: default, file:PATH, env:NAME or flag. Secrets are masked. Problems are printed
    one per line as FILE: tenant 'T': KEY: what is wrong. Exit 0 when valid, 2 when not.
    """
    settings = load(config)
    rows = settings.describe()
    warnings = secret_warnings(settings)
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "files": [str(f) for f in settings.files],
                    "settings": [
                        {"key": k, "value": _json_value(v), "source": s} for k, v, s in rows
                    ],
                    "tenants": sorted(settings.tenants),
                    "warnings": warnings,
                }
            )
        )
    else:
        files = ", ".join(str(f) for f in settings.files) or "none (defaults and environment)"
        console.print(f"config files: {files}")
        shown = [
            (k, v, _short_source(src, len(settings.files)))
            for k, v, src in rows
            if show_all or src != "default"
        ]
        sources = {src for _, _, src in shown}
        title = "settings" if show_all else "settings that are not defaults (--all: every one)"
        one_source = len(sources) == 1
        if one_source:
            only = next(iter(sources))
            title += ", all from " + ("the config file" if only == "file" else only)
        console.print(f"[bold]{title}[/]")
        table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False)
        table.add_column("key", no_wrap=True)
        table.add_column("value", overflow="fold", min_width=24)
        if not one_source:
            table.add_column("source", no_wrap=True, overflow="ellipsis", max_width=32)
        group = None
        for key, value, source in shown:
            head, rest = _group(key)
            if head != group:
                group = head
                table.add_row(f"[bold cyan]\\[{head}][/]")
            cells = [f"  {rest}", _short(value)]
            table.add_row(*cells, *([] if one_source else [source]))
        console.print(table)
        console.print()
        tt = Table(title="tenants")
        for col in ("tenant", "hosts", "DIDs", "agents", "codecs", "max calls"):
            tt.add_column(col, overflow="fold")
        for tid, t in settings.tenants.items():
            tt.add_row(
                tid,
                ", ".join(t.hosts) or "-",
                ", ".join(t.dids) or "-",
                ", ".join(f"{a}*" if a == t.default_agent else a for a in t.agents),
                ", ".join(t.codecs),
                str(t.max_concurrent_calls or "-"),
            )
        console.print(tt)
        for w in warnings:
            err_console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
        console.print(f"[green]configuration valid[/]: {len(settings.tenants)} tenant(s)")
    if strict and warnings:
        raise typer.Exit(1)
