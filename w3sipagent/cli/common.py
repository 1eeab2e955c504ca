"""What every command shares: loading the settings, one-line errors, exit codes, consoles."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from w3sipagent.config import ConfigProblems, Settings, load_settings
from w3sipagent.errors import AIError, ConfigError, W3SipError

EXIT_OK = 0
EXIT_FAILED = 1
"""The operation ran and failed (a call failed, a doctor check failed)."""
EXIT_USAGE = 2
"""Bad command line or bad configuration: nothing was done."""
EXIT_UNAVAILABLE = 3
"""A needed service could not be reached (address in use, Realtime or database down)."""
EXIT_INTERRUPTED = 130


def _width(stream: object) -> int | None:
    """Let rich size tables to a terminal; use 120 columns for pipes and files."""
    return None if getattr(stream, "isatty", lambda: False)() else 120


console = Console(highlight=False, width=_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, width=_width(sys.stderr))

P = ParamSpec("P")
T = TypeVar("T")

ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    help="Config file (default: $W3SIPAGENT_CONFIG, else ./w3sipagent.toml when present).",
    show_default=False,
)


class CliError(Exception):
    """A failure to report as one line (with ``hint``, the fix, when known) and an exit code."""

    def __init__(self, message: str, *, code: int = EXIT_FAILED, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


def fail(message: str, *, code: int = EXIT_FAILED, hint: str | None = None) -> NoReturn:
    """Stop the command with a one-line error."""
    raise CliError(message, code=code, hint=hint)


def report(err: CliError) -> None:
    """Print ``error: …`` (and the fix) on stderr."""
    err_console.print(f"[bold red]error:[/] {err.message}", markup=True, soft_wrap=True)
    if err.hint:
        err_console.print(f"  fix: {err.hint}", soft_wrap=True, markup=False)


def _translate(exc: BaseException) -> CliError | None:
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ConfigProblems):
        lines = exc.problems
        msg = (
            lines[0]
            if len(lines) == 1
            else f"{len(lines)} problems in the configuration:\n  " + "\n  ".join(lines)
        )
        origins = {
            "flag"
            if p.startswith("command-line flag")
            else "env"
            if p.startswith("environment")
            else "file"
            for p in lines
        }
        what = " and ".join(
            {"file": "the file", "env": "the environment variable", "flag": "the flag"}[o]
            for o in sorted(origins)
        )
        hint = f"correct {what}" + (", then `w3sipagent config check`" if "file" in origins else "")
        return CliError(msg, code=EXIT_USAGE, hint=hint)
    if isinstance(exc, ConfigError):
        return CliError(str(exc), code=EXIT_USAGE)
    if isinstance(exc, AIError):
        return CliError(f"Realtime API: {exc}", code=EXIT_UNAVAILABLE)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return CliError(
            f"address already in use: {exc.strerror or exc}",
            code=EXIT_UNAVAILABLE,
            hint="stop the other process or pick another port (--sip HOST:PORT, --port N)",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
        return CliError(f"cannot bind: {exc.strerror or exc}", code=EXIT_UNAVAILABLE)
    if isinstance(exc, W3SipError | ValueError):
        return CliError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return None


def cli_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Decorate a command: known errors become one line and an exit code, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            err = _translate(exc)
            if err is None:
                raise
            report(err)
            raise typer.Exit(err.code) from None

    return wrapper


EVENT_LOOP_ENV = "W3SIPAGENT_EVENT_LOOP"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop.

    asyncio's own loop by default: it gave the better RTP pacing tail in the media benchmark
    (500 calls, p99 lateness 1.25-1.95 ms against 1.95-18.8 ms for uvloop; docs/performance.md).
    ``W3SIPAGENT_EVENT_LOOP=uvloop`` selects uvloop (``pip install 'w3sipagent[speed]'``).
    """
    choice = os.environ.get(EVENT_LOOP_ENV, "asyncio").strip().lower()
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            coro.close()
            fail(
                f"{EVENT_LOOP_ENV}=uvloop but uvloop is not installed",
                code=EXIT_USAGE,
                hint="pip install 'w3sipagent[speed]', or unset the variable",
            )
        return uvloop.run(coro)
    if choice != "asyncio":
        coro.close()
        fail(f"{EVENT_LOOP_ENV}={choice!r}: use asyncio or uvloop", code=EXIT_USAGE)
    return asyncio.run(coro)


def load(config: Path | None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Load the settings (file, environment, flags); a missing named file is a usage error."""
    if config is not None and not config.exists():
        fail(
            f"config file {config} not found",
            code=EXIT_USAGE,
            hint="pass an existing file with --config, or start from examples/w3sipagent.toml",
        )
    return load_settings(config, overrides)


def hostport_flag(value: str | None, flag: str) -> str | None:
    """Validate a ``HOST:PORT`` flag value (None passes)."""
    if value is None:
        return None
    from w3sipagent.config import parse_hostport

    try:
        parse_hostport(value)
    except ValueError as e:
        fail(f"{flag}: {e}", code=EXIT_USAGE)
    return value


def port_range_flag(value: str | None) -> dict[str, int]:
    """``MIN-MAX`` → {"rtp.port_min": MIN, "rtp.port_max": MAX} (empty for None)."""
    if value is None:
        return {}
    lo, sep, hi = value.partition("-")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        fail(f"--rtp-ports: expected MIN-MAX such as 20000-20999 (got {value!r})", code=EXIT_USAGE)
    low, high = int(lo), int(hi)
    if low > high:
        fail(
            f"--rtp-ports {value}: min > max ({low} > {high})",
            code=EXIT_USAGE,
            hint=f"give the lower port first: --rtp-ports {high}-{low}",
        )
    if low == high:
        fail(
            f"--rtp-ports {value}: min = max; a call needs an even/odd pair (RTP + RTCP)",
            code=EXIT_USAGE,
            hint=f"give a range such as --rtp-ports {low}-{low + 999}",
        )
    if low < 1024 or high > 65535:
        fail(
            f"--rtp-ports {value}: ports must be within 1024-65535",
            code=EXIT_USAGE,
            hint="e.g. --rtp-ports 20000-20999",
        )
    return {"rtp.port_min": low, "rtp.port_max": high}


def is_terminal() -> bool:
    """True when stdout is an interactive terminal."""
    return sys.stdout.isatty()
