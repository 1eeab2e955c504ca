"""``w3sipagent demo``: a whole phone call on this machine, offline, no API key.

It starts the local Realtime-compatible server (the Bistro Lumen scenario), a webhook tool
server (``check_reservation``), an agent for the demo tenant ``bistro`` (SQLite CDR and
recordings in ``--dir``, default ``./var/demo``) and calls it from the built-in softphone,
which speaks three lines (espeak-ng, or tones without it), waiting for the agent to finish
each answer so that the server's VAD sees real turns. The agent looks the booking up
through the tool and finally transfers the caller to the manager (REFER; the softphone
plays a PBX and reports the transfer done). Then it prints the transcript, the per-turn
latencies and where the recording and the CDR are.

``--backend live`` runs the same call on GPT-Live (the local server's ``/v1/live/sessions``,
playing the same scenario). ``--openai`` talks to the real OpenAI API instead (needs
``OPENAI_API_KEY``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from w3sipagent.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    cli_errors,
    console,
    err_console,
    fail,
    run_async,
)
from w3sipagent.records.cdr import CallRecord

TENANT = "bistro"
HOST = "bistro.example"
AGENT = "host"


async def _tool_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """check_reservation: POST JSON {name, party_size} → the booking found."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = await reader.readexactly(length) if length else b"{}"
        args = json.loads(body or b"{}")
        name = str(args.get("name", "")).strip() or "guest"
        result = {
            "found": True,
            "name": name,
            "party_size": int(args.get("party_size", 2)),
            "time": "20:00",
            "table": 12,
        }
        data = json.dumps(result).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ValueError, OSError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def tool_server() -> AsyncIterator[str]:
    """The demo's webhook tool on 127.0.0.1: yields its URL."""
    server = await asyncio.start_server(_tool_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/tools/check_reservation"
    finally:
        server.close()
        await server.wait_closed()


def demo_config(
    run_dir: Path,
    realtime_url: str,
    tool_url: str,
    *,
    codec: str,
    openai: bool = False,
    backend: str = "realtime",
    cascade_url: str | None = None,
) -> str:
    """The demo tenant's configuration file (TOML); the key is read from OPENAI_API_KEY with
    ``openai``, else a placeholder (the local server accepts any key). ``backend``: the
    agent's AI, ``realtime`` or ``live`` (GPT-Live has no turn detection settings)."""
    tenant_key = 'api_key = { env = "OPENAI_API_KEY" }\n' if openai else ""
    default_key = "" if openai else 'api_key = "sk-local-demo"\n'
    if backend == "live":
        agent_ai = 'backend = "live"\nmodel = "gpt-live-1"'
    else:
        agent_ai = (
            'turn_detection = { type = "server_vad", threshold = 0.5, silence_duration_ms = 500 }'
        )
    return f"""# Written by `w3sipagent demo`: the demo tenant. Try:
#   w3sipagent cdr list -c {run_dir / "w3sipagent.toml"}
[sip]
listen = "127.0.0.1:0"
transports = ["udp"]

[realtime]
base_url = "{realtime_url}"
connect_timeout = "10s"
{default_key}
[records]
database_url = "sqlite+aiosqlite:///demo.db"
recordings_dir = "recordings"

[metrics]
listen = "127.0.0.1:0"

[logging]
sip_trace = true
sip_trace_path = "sip-trace.jsonl"

[tenancy]
reload_interval = 0

[tenants.{TENANT}]
hosts = ["{HOST}"]
{tenant_key}codecs = ["{codec}"]
transfers = {{ manager = "sip:manager@{HOST}" }}
max_call_duration = "2m"
recording = {{ enabled = true }}

[tenants.{TENANT}.agents.{AGENT}]
voice = "marin"
instructions = "You are the phone host of Bistro Lumen. Be brief and friendly."
greeting = "Greet the caller and ask how you can help."
{agent_ai}
{_cascade_table(cascade_url) if cascade_url else ""}
[[tenants.{TENANT}.agents.{AGENT}.tools]]
name = "check_reservation"
description = "Find a table booking by the guest's name"
url = "{tool_url}"
timeout = "3s"
parameters = {{ type = "object", properties = {{ name = {{ type = "string" }}, party_size = {{ type = "integer" }} }}, required = ["name"] }}
"""


def _cascade_table(url: str) -> str:
    """issue 15: the demo agent as a cascade (speech-to-text streamed over the transcription
    session, ``gpt-realtime-whisper`` writing while the caller speaks → model → speech) at
    ``url``, with the tenant's knowledge base."""
    return f"""knowledge = true

[tenants.{TENANT}.agents.{AGENT}.cascade]
stt = {{ base_url = "{url}", model = "gpt-realtime-whisper" }}
stt_mode = "stream"
llm = {{ base_url = "{url}", model = "gpt-4.1-mini" }}
tts = {{ base_url = "{url}", model = "gpt-4o-mini-tts" }}

[tenants.{TENANT}.knowledge]
paths = ["knowledge"]
base_url = "{url}"
embedding_model = "text-embedding-3-small"
top_k = 2
"""


async def run_demo(
    run_dir: Path,
    *,
    use_openai: bool = False,
    codec: str = "PCMU",
    tts: str = "auto",
    max_duration: float = 50.0,
    progress: Any = None,
    backend: str = "realtime",
    web_console: bool = False,
) -> tuple[CallRecord | None, Any, Path]:
    """Run the demo call; returns (CDR, softphone summary, config path)."""
    from w3sipagent.agent.resources import ResourceWatch
    from w3sipagent.agent.service import AgentService
    from w3sipagent.cli.call import place_call
    from w3sipagent.config import load_settings
    from w3sipagent.demo_assets import (
        CALLER_LINES,
        CASCADE_BARGE_IN_TURN,
        CASCADE_CALLER_LINES,
        KNOWLEDGE_FILES,
        caller_utterances,
        scenario_path,
        write_wav,
    )
    from w3sipagent.records.store import CdrStore

    say = progress or (lambda _m: None)
    run_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        if use_openai:
            realtime_url = "wss://api.openai.com/v1"
        elif backend == "live":
            from w3sipagent.localai.live import LiveServer

            live = LiveServer(
                "127.0.0.1",
                0,
                scenario=scenario_path(),
                tts_engine=tts,  # type: ignore[arg-type]
            )
            await stack.enter_async_context(live)
            realtime_url = live.base_url
            say(f"local GPT-Live server on {realtime_url}/live/sessions (scenario bistro-demo)")
        else:
            from w3sipagent.localai import RealtimeServer

            server = RealtimeServer(
                "127.0.0.1",
                0,
                scenario=scenario_path(),
                tts_engine=tts,  # type: ignore[arg-type]
            )
            await stack.enter_async_context(server)
            realtime_url = f"ws://127.0.0.1:{server.port}/v1"
            say(f"local Realtime server on {server.ws_url.split('?')[0]} (scenario bistro-demo)")
        cascade_url = None
        if backend == "cascade":
            from w3sipagent.localai.cascade import CascadeServer

            cascade = CascadeServer(scenario=scenario_path("cascade"), tts_engine=tts)  # type: ignore[arg-type]
            await stack.enter_async_context(cascade)
            cascade_url = cascade.base_url
            say(f"local cascade server on {cascade_url} (scenario bistro-cascade-demo)")
            for name, text in KNOWLEDGE_FILES.items():
                (run_dir / "knowledge").mkdir(exist_ok=True)
                (run_dir / "knowledge" / name).write_text(text)
            say(f"knowledge base: {len(KNOWLEDGE_FILES)} files in {run_dir / 'knowledge'}")
        tool_url = await stack.enter_async_context(tool_server())
        cfg_path = run_dir / "w3sipagent.toml"
        cfg_path.write_text(
            demo_config(
                run_dir,
                realtime_url,
                tool_url,
                codec=codec,
                openai=use_openai,
                backend=backend,
                cascade_url=cascade_url,
            )
        )
        settings = load_settings(cfg_path, environ={}, discover=False)
        store = await stack.enter_async_context(CdrStore.from_settings(settings.records))
        service = AgentService(settings, store=store, retention_interval=None)
        await service.start()
        stack.push_async_callback(service.close, timeout=3.0)
        say(f"agent for tenant '{TENANT}' on udp 127.0.0.1:{service.port}")
        if web_console:
            await start_console(stack, settings, service, say)
        watch = ResourceWatch(service)
        watch.baseline()
        lines = CASCADE_CALLER_LINES if backend == "cascade" else CALLER_LINES
        interrupt = {CASCADE_BARGE_IN_TURN: 2.5} if backend == "cascade" else None
        utterances = await caller_utterances(8000, engine=tts, lines=lines)
        write_wav(run_dir / "caller.wav", b"".join(u + bytes(16000) for u in utterances))
        say(
            f"caller will say {len(lines)} lines ("
            + ("espeak-ng" if tts != "tone" else "tones")
            + ")"
        )
        summary = await place_call(
            f"sip:{AGENT}@{HOST}",
            proxy=("127.0.0.1", service.port),
            codec=codec,
            turns=utterances,
            turn_gap=0.9,
            turn_timeout=15.0,
            interrupt=interrupt,
            accept_refer=True,
            record=run_dir / "caller-heard.wav",
            duration=max_duration,
            rtp_ports=(40000, 40999),
            from_uri="sip:+15550001234@caller.example",
            progress=say,
        )
        deadline = time.monotonic() + 10.0
        while not service.finished and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cdr = service.finished[0] if service.finished else None
        if web_console and sys.stdin.isatty():
            say("the console stays open: press Enter to stop it")
            await asyncio.to_thread(sys.stdin.readline)
    from rich.markup import escape

    # everything above is closed: what the agent still holds is a leak
    say(escape(f"resources at shutdown: {watch.report().summary()}"))
    return cdr, summary, cfg_path


async def start_console(
    stack: contextlib.AsyncExitStack, settings: Any, service: Any, say: Any
) -> str:
    """The API and web console of ``service`` on 127.0.0.1 (a free port), with a one-off
    admin token; printed with ``say``; closed with ``stack``. Returns the console's URL."""
    import secrets

    from pydantic import SecretStr

    from w3sipagent.agent.reload import TenantRegistry
    from w3sipagent.cli.controlplane import ControlPlane

    token = secrets.token_urlsafe(24)
    settings.api.listen = settings.api.listen or "127.0.0.1:0"
    settings.api.admin_token = SecretStr(token)
    plane = await ControlPlane.start(settings, TenantRegistry(settings, lambda: settings), service)
    stack.push_async_callback(plane.close)
    assert plane.api is not None
    url = f"{plane.api.url}/console/"
    say(f"web console: {url} (log in with the one-off admin token {token})")
    return url


def print_report(cdr: CallRecord | None, summary: Any, cfg_path: Path) -> None:
    """Transcript, latencies, tools, transfer, and where the files are."""
    if cdr is None:
        err_console.print("[red]no CDR was written[/]")
        return
    console.print()
    console.print("[bold]Conversation[/]")
    lines: list[tuple[float, str, str]] = []
    for e in cdr.transcript:
        who = "[cyan]caller[/]" if e.speaker == "caller" else "[green]agent [/]"
        lines.append((e.at, who, e.text))
    for tc in cdr.tool_calls:
        res = tc.error or json.dumps(tc.result)
        lines.append(
            (tc.at, "[magenta]tool  [/]", f"{tc.name}({json.dumps(tc.arguments)}) → {res}")
        )
    for at, who, text in sorted(lines, key=lambda x: x[0]):
        console.print(f"  {at:6.1f}s  {who}  ", end="")
        console.print(text, markup=False, soft_wrap=True)
    console.print()
    console.print("[bold]Per-turn latency[/] (caller stops speaking → first agent audio)")
    t = Table(show_header=True, box=None, padding=(0, 2))
    t.add_column("turn", justify="right")
    t.add_column("latency", justify="right")
    for i, ms in enumerate(cdr.turn_latencies_ms, 1):
        t.add_row(str(i), f"{ms:.0f} ms")
    console.print(t)
    stages = cdr.turn_stages_ms()
    if stages:  # issue 15: the cascade's stages, ms from the caller's speech end
        console.print()
        console.print("[bold]Per-stage latency[/] (ms from the caller's speech end)")
        st = Table(show_header=True, box=None, padding=(0, 2))
        names = list(stages[0])
        st.add_column("turn", justify="right")
        for n in names[1:]:
            st.add_column(n, justify="right")
        for i, row in enumerate(stages, 1):
            st.add_row(str(i), *(f"{row.get(n, float('nan')):.0f}" for n in names[1:]))
        console.print(st)
    for cut in (ev for ev in cdr.events if ev.get("kind") == "barge_in"):
        console.print(
            f"barge-in: the caller heard {cut.get('heard_ms')} ms of {cut.get('item_id')}"
        )
    for kept in (ev for ev in cdr.events if ev.get("kind") == "truncated"):
        print_cut(kept)
    console.print()
    transfer = (
        f"{cdr.transfer.destination} ({cdr.transfer.uri}): {cdr.transfer.outcome}"
        if cdr.transfer
        else "none"
    )
    rows = [
        ("call", f"{cdr.call_id}, {cdr.codec} ↔ {cdr.ai_format}, {cdr.disposition.value}"),
        (
            "set-up / first audio",
            f"{summary.setup_ms or 0:.0f} ms / "
            + ("-" if summary.first_audio_ms is None else f"{summary.first_audio_ms:.0f} ms"),
        ),
        (
            "RTP",
            f"sent {summary.packets_sent}, received {summary.packets_received}, "
            f"lost {summary.lost}, jitter {summary.jitter_ms:.1f} ms",
        ),
        ("transfer", transfer),
        ("recording (stereo)", cdr.recording_path or "-"),
        ("caller heard", str(summary.recording) if summary.recording else "-"),
        ("SIP trace", str(cfg_path.parent / "sip-trace.jsonl")),
        (
            "CDR",
            f"{cfg_path.parent / 'demo.db'}  →  w3sipagent cdr show {cdr.call_id} -c {cfg_path}",
        ),
    ]
    for k, v in rows:
        console.print(f"[bold]{k:>22}[/]  ", end="")
        console.print(v, markup=False, soft_wrap=True)


def print_cut(ev: dict[str, Any]) -> None:
    """A barge-in's cut: the sentences with where their audio ended, the one being played
    when the caller spoke, and what the conversation history kept."""
    heard = float(ev.get("heard_ms") or 0)
    console.print(
        f"  cut at {heard:.0f} ms of {ev.get('item_id')}'s audio; its sentences as played:"
    )
    start = 0.0
    for end, text in ev.get("spans") or []:
        mark = "heard" if end <= heard else ("cut  " if start < heard else "     ")
        console.print(f"    {mark} {start:6.0f}-{end:6.0f} ms  ", end="")
        console.print(text, markup=False, soft_wrap=True)
        start = end
    console.print("  history keeps: ", end="")
    console.print(repr(ev.get("kept", "")), markup=False, soft_wrap=True)


@cli_errors
def demo(
    run_dir: Path = typer.Option(
        Path("var/demo"), "--dir", help="Where the demo's config, CDR database and recordings go."
    ),
    openai: bool = typer.Option(
        False, "--openai", help="Use the real OpenAI API (needs OPENAI_API_KEY)."
    ),
    backend: str = typer.Option(
        "realtime",
        "--backend",
        help="The agent's AI: realtime (OpenAI Realtime), live (GPT-Live) or cascade "
        "(speech-to-text → model → speech; offline only).",
    ),
    codec: str = typer.Option("PCMU", "--codec", help="PCMU, PCMA, G722 or opus."),
    tts: str = typer.Option("auto", "--tts", help="Caller and agent speech: auto, espeak, tone."),
    max_duration: float = typer.Option(
        50.0, "--max-duration", min=5, help="Hang up after this many seconds at the latest."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the agent's log lines."),
    web_console: bool = typer.Option(
        False, "--console", help="Serve the web console during the call and print its URL."
    ),
) -> None:
    """Run a complete phone call offline: local AI server, agent, softphone.

    No network and no API key are needed. Prints the transcript, the per-turn latency, the
    recording and the CDR. Exit 0 when the call went through with a transcript.
    """
    from w3sipagent.logs import setup_logging

    if codec not in ("PCMU", "PCMA", "G722", "opus"):
        fail(f"--codec must be PCMU, PCMA, G722 or opus (got {codec!r})", code=EXIT_USAGE)
    if backend not in ("realtime", "live", "cascade"):
        fail(f"--backend must be realtime, live or cascade (got {backend!r})", code=EXIT_USAGE)
    if backend == "cascade" and openai:
        fail("--backend cascade runs offline only (no --openai)", code=EXIT_USAGE)
    if tts not in ("auto", "espeak", "tone"):
        fail(f"--tts must be auto, espeak or tone (got {tts!r})", code=EXIT_USAGE)
    if openai and not os.environ.get("OPENAI_API_KEY", "").strip():
        fail(
            "--openai needs OPENAI_API_KEY",
            code=EXIT_USAGE,
            hint="export OPENAI_API_KEY=sk-... or run without --openai (offline)",
        )
    setup_logging("INFO" if verbose else "ERROR", False)
    started = time.monotonic()

    def say(msg: str) -> None:
        err_console.print(f"[dim]{time.monotonic() - started:5.1f}s[/] {msg}", soft_wrap=True)

    cdr, summary, cfg = run_async(
        run_demo(
            run_dir,
            use_openai=openai,
            codec=codec,
            tts=tts,
            max_duration=max_duration,
            progress=say,
            backend=backend,
            web_console=web_console,
        )
    )
    print_report(cdr, summary, cfg)
    console.print(f"\ndone in {time.monotonic() - started:.1f} s")
    if cdr is None or not summary.answered or not cdr.transcript:
        raise typer.Exit(EXIT_FAILED)
