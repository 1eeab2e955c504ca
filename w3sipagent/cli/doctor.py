"""``w3sipagent doctor``: check that this machine can run the configured agent.

Checks, each ok / warn / fail with the fix: the configuration, the SIP listen port (UDP and
TCP free), the RTP port range (enough free ports for ``sip.max_calls``), the metrics port,
the CDR database, local tools (espeak-ng, libopus), the Realtime API (a WebSocket session
opened with the configured key: ``session.created`` expected) and FreeSWITCH (SIP OPTIONS).
Network checks only go to addresses the user configured: the Realtime URL when it is set
in the config / environment / ``--realtime-url`` (or with ``--realtime``), FreeSWITCH only
with ``--freeswitch HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import ctypes.util
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import typer
from rich.table import Table

from w3sipagent.cli.common import (
    EXIT_FAILED,
    CliError,
    ConfigOption,
    cli_errors,
    console,
    hostport_flag,
    load,
    run_async,
)
from w3sipagent.config import Settings, parse_hostport

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    """One check's result."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_free(host: str, port: int, kind: int) -> bool:
    """True when ``host:port`` can be bound for ``kind`` (SOCK_DGRAM / SOCK_STREAM)."""
    s = socket.socket(_family(host), kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def check_sip(settings: Settings) -> Check:
    host, port = settings.sip.listen_address
    busy = [
        name
        for name, kind in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM))
        if name in settings.sip.transports and port != 0 and not port_free(host, port, kind)
    ]
    if busy:
        return Check(
            "SIP listen",
            "fail",
            f"{settings.sip.listen} is in use ({', '.join(busy)})",
            "stop the process holding it (ss -lunp) or set sip.listen / --sip",
        )
    return Check(
        "SIP listen", "ok", f"{settings.sip.listen} free ({', '.join(settings.sip.transports)})"
    )


def check_rtp(settings: Settings) -> Check:
    lo, hi = settings.rtp.port_min, settings.rtp.port_max
    host = settings.sip.listen_address[0]
    free = sum(1 for p in range(lo, hi + 1, 2) if port_free(host, p, socket.SOCK_DGRAM))
    total = (hi - lo + 2) // 2
    need = settings.sip.max_calls
    detail = f"{lo}-{hi}: {free} of {total} RTP ports (even, RTCP beside) free; max_calls {need}"
    if free == 0:
        return Check("RTP ports", "fail", detail, "widen rtp.port_min/port_max or free the range")
    if free < need:
        return Check(
            "RTP ports",
            "warn",
            detail,
            f"widen the range to at least {2 * need} ports or lower sip.max_calls",
        )
    return Check("RTP ports", "ok", detail)


def check_metrics(settings: Settings) -> Check:
    if settings.metrics.listen is None:
        return Check("metrics", "skip", "metrics.listen is off")
    host, port = parse_hostport(settings.metrics.listen)
    if port and not port_free(host, port, socket.SOCK_STREAM):
        return Check("metrics", "warn", f"{settings.metrics.listen} in use", "set metrics.listen")
    return Check("metrics", "ok", f"{settings.metrics.listen} free")


def check_tools() -> list[Check]:
    out = []
    if shutil.which("espeak-ng"):
        out.append(Check("espeak-ng", "ok", shutil.which("espeak-ng") or ""))
    else:
        out.append(
            Check(
                "espeak-ng",
                "warn",
                "not found: the demo and local server use tones",
                "apt-get install espeak-ng",
            )
        )
    lib = ctypes.util.find_library("opus")
    out.append(
        Check("libopus", "ok", lib)
        if lib
        else Check(
            "libopus", "warn", "not found: Opus calls are refused", "apt-get install libopus0"
        )
    )
    return out


async def check_database(settings: Settings, timeout: float) -> Check:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from w3sipagent.records.store import make_engine

    shown = settings.records.display_url()
    url = make_url(settings.records.database_url)
    if url.get_backend_name() == "sqlite":
        db = url.database or ""
        parent = Path(db).expanduser().parent if db and db != ":memory:" else None
        if parent is not None and not Path(db).exists():
            base = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
            if not os.access(base, os.W_OK):
                return Check(
                    "CDR database",
                    "fail",
                    f"{shown}: {base} is not writable",
                    "set records.database_url to a writable place",
                )
            return Check("CDR database", "ok", f"{shown} (created on first start)")
    engine = make_engine(settings.records.url())
    try:
        async with asyncio.timeout(timeout), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return Check("CDR database", "ok", shown)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        return Check(
            "CDR database",
            "fail",
            f"{shown}: {type(e).__name__} {first}"[:200],
            "check records.database_url / database_password and that the server runs",
        )
    finally:
        await engine.dispose()


def realtime_ws_url(base_url: str, model: str) -> str:
    """``{base}/realtime?model=…`` (a base already ending in /realtime is kept)."""
    from urllib.parse import quote

    base = base_url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    if not base.endswith("/realtime"):
        base += "/realtime"
    return f"{base}?model={quote(model, safe='')}"


NO_KEY_HINT = (
    "set W3SIPAGENT_REALTIME__API_KEY (realtime.api_key) or give the tenant "
    'api_key = { env = "NAME" } / { file = "PATH" }'
)


async def check_realtime(
    url: str, key: str | None, timeout: float, missing_hint: str = NO_KEY_HINT
) -> Check:
    """Open a session and expect ``session.created``. ``missing_hint``: the fix shown when
    there is no key (naming the variable or file the configuration points to)."""
    import websockets
    from websockets.exceptions import InvalidStatus

    if not key:
        return Check("Realtime API", "fail", "no API key to try", missing_hint)
    shown = url.split("?", 1)[0]
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=timeout
            ) as ws:
                first = json.loads(await ws.recv())
    except InvalidStatus as e:
        code = e.response.status_code
        if code in (401, 403):
            return Check(
                "Realtime API",
                "fail",
                f"{shown}: the key was refused ({code})",
                "check the API key (it is never printed)",
            )
        return Check("Realtime API", "fail", f"{shown}: HTTP {code}")
    except TimeoutError:
        return Check(
            "Realtime API",
            "fail",
            f"{shown}: no answer within {timeout:g} s",
            "check the URL and the network / proxy",
        )
    except (OSError, ValueError) as e:
        return Check(
            "Realtime API",
            "fail",
            f"{shown}: {type(e).__name__}: {e}"[:200],
            "check realtime.base_url",
        )
    ms = (time.monotonic() - start) * 1000
    if first.get("type") == "error":  # the service refuses after the upgrade (then closes)
        err = first.get("error") or {}
        why = str(err.get("code") or err.get("type") or "error")
        if why == "invalid_api_key":
            return Check(
                "Realtime API",
                "fail",
                f"{shown}: the key was refused ({why})",
                "check the API key (it is never printed)",
            )
        return Check("Realtime API", "fail", f"{shown}: refused ({why})")
    if first.get("type") != "session.created":
        return Check("Realtime API", "fail", f"{shown}: first event {first.get('type')!r}")
    return Check("Realtime API", "ok", f"{shown}: session.created in {ms:.0f} ms")


async def sip_options(target: tuple[str, int], timeout: float) -> tuple[int, str, float]:
    """Send one SIP OPTIONS over UDP; (status, reason, round trip ms). TimeoutError if none."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not got.done() and data.startswith(b"SIP/2.0 "):
                got.set_result(data)

    host, port = target
    transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=(host, port))
    try:
        local_ip, local_port = transport.get_extra_info("sockname")[:2]
        hosts = f"[{host}]" if ":" in host else host
        local = f"[{local_ip}]" if ":" in local_ip else local_ip
        msg = (
            f"OPTIONS sip:{hosts}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local}:{local_port};branch=z9hG4bK{os.urandom(8).hex()};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:doctor@{local}>;tag={os.urandom(6).hex()}\r\n"
            f"To: <sip:{hosts}:{port}>\r\n"
            f"Call-ID: {os.urandom(12).hex()}@w3sipagent\r\n"
            "CSeq: 1 OPTIONS\r\nAccept: application/sdp\r\nUser-Agent: w3sipagent-doctor\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        start = time.monotonic()
        transport.sendto(msg)
        async with asyncio.timeout(timeout):
            data = await got
        first = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        return int(first[1]), first[2] if len(first) > 2 else "", (time.monotonic() - start) * 1000
    finally:
        transport.close()


async def check_freeswitch(target: str, timeout: float) -> Check:
    host, port = parse_hostport(target, default_port=5060)
    try:
        code, reason, ms = await sip_options((host, port), timeout)
    except TimeoutError:
        return Check(
            "FreeSWITCH",
            "fail",
            f"{target}: no answer to OPTIONS within {timeout:g} s",
            "check the address, the profile's port and firewalls (UDP)",
        )
    except OSError as e:
        return Check("FreeSWITCH", "fail", f"{target}: {e}")
    if code < 300 or code in (401, 403, 405, 407):
        return Check("FreeSWITCH", "ok", f"{target}: {code} {reason} in {ms:.0f} ms")
    return Check("FreeSWITCH", "warn", f"{target}: {code} {reason}")


def api_key_to_try(settings: Settings) -> tuple[str | None, str]:
    """The key the agent would use (a tenant's own reference first, then realtime.api_key)
    and, when there is none, the fix naming the variable or file that is not readable."""
    from w3sipagent.tenants.secrets import resolve_api_key

    unreadable: list[str] = []
    for tenant in settings.tenants.values():
        try:
            key = resolve_api_key(tenant, None)
        except ValueError as e:
            unreadable.append(str(e))
            continue
        if key is not None:
            return key.get_secret_value(), ""
    if settings.realtime.api_key is not None:
        return settings.realtime.api_key.get_secret_value(), ""
    if unreadable:
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        return None, f"{unreadable[0]}{more}: set it, or give realtime.api_key"
    return None, NO_KEY_HINT


_MARK = {
    "ok": "[green]ok[/]",
    "warn": "[yellow]warn[/]",
    "fail": "[red]FAIL[/]",
    "skip": "[dim]skip[/]",
}


@cli_errors
def doctor(
    config: Path | None = ConfigOption,
    realtime_url: str | None = typer.Option(
        None, "--realtime-url", help="Check this Realtime base URL (e.g. ws://127.0.0.1:8765/v1)."
    ),
    realtime: bool = typer.Option(
        False, "--realtime", help="Check the Realtime API even at its default URL (api.openai.com)."
    ),
    freeswitch: str | None = typer.Option(
        None, "--freeswitch", help="Send SIP OPTIONS to FreeSWITCH at HOST:PORT."
    ),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds per network check."),
) -> None:
    """Check ports, RTP range, database, tools, the Realtime API and FreeSWITCH.

    Exit 0 when nothing failed (warnings allowed), 1 otherwise. Only addresses you
    configured are contacted.
    """
    hostport_flag(freeswitch, "--freeswitch")
    checks: list[Check] = []
    try:
        settings = load(config, {"realtime.base_url": realtime_url})
    except CliError:
        raise
    except ValueError as e:
        checks.append(
            Check("configuration", "fail", str(e).splitlines()[0], "w3sipagent config check")
        )
        _print(checks)
        raise typer.Exit(EXIT_FAILED) from None
    files = ", ".join(str(f) for f in settings.files) or "defaults"
    checks.append(Check("configuration", "ok", f"{files}; {len(settings.tenants)} tenant(s)"))
    checks.append(check_sip(settings))
    checks.append(check_rtp(settings))
    checks.append(check_metrics(settings))
    checks.extend(check_tools())

    async def network() -> list[Check]:
        out = [await check_database(settings, timeout)]
        explicit = realtime or settings.source_of("realtime.base_url") != "default"
        if explicit:
            url = realtime_ws_url(settings.realtime.base_url, settings.realtime.model)
            key, hint = api_key_to_try(settings)
            out.append(await check_realtime(url, key, timeout, hint or NO_KEY_HINT))
        else:
            out.append(
                Check(
                    "Realtime API",
                    "skip",
                    "default URL not contacted",
                    "pass --realtime (or --realtime-url URL) to check it",
                )
            )
        if freeswitch:
            out.append(await check_freeswitch(freeswitch, timeout))
        else:
            out.append(Check("FreeSWITCH", "skip", "no --freeswitch HOST:PORT given"))
        return out

    with console.status("checking database and network ..."):
        checks.extend(run_async(network()))
    _print(checks)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(EXIT_FAILED)


def _print(checks: list[Check]) -> None:
    t = Table(title="w3sipagent doctor")
    t.add_column("check", no_wrap=True)
    t.add_column("", no_wrap=True)
    t.add_column("detail", overflow="fold")
    t.add_column("fix", overflow="fold")
    for c in checks:
        t.add_row(c.name, _MARK[c.status], c.detail, c.fix)
    console.print(t)
