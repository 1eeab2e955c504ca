"""``w3sipagent realtime-server``: the local Realtime-compatible server (offline AI)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from w3sipagent.cli.common import EXIT_USAGE, cli_errors, err_console, fail, run_async
from w3sipagent.logs import setup_logging


class TtsEngine(StrEnum):
    auto = "auto"
    espeak = "espeak"
    tone = "tone"


def _scenario(value: str | None) -> str | None:
    if value is None:
        return None
    from w3sipagent.localai import bundled_scenarios

    if Path(value).is_file() or value in bundled_scenarios():
        return value
    fail(
        f"--scenario: {value!r} is neither a TOML file nor a bundled scenario",
        code=EXIT_USAGE,
        hint=f"bundled: {', '.join(sorted(bundled_scenarios()))}",
    )


@cli_errors
def realtime_server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8765, "--port", "-p", min=0, max=65535, help="TCP port (0: any)."),
    scenario: str | None = typer.Option(
        None, "--scenario", "-s", help="A scenario TOML file or a bundled name (default: demo)."
    ),
    api_key: list[str] = typer.Option(
        [], "--api-key", help="Accept only this key (repeatable; default: any non-empty key)."
    ),
    realtime_pacing: bool = typer.Option(
        False, "--realtime-pacing", help="Send audio at 1x real time (default: as fast as read)."
    ),
    tts: TtsEngine = typer.Option(TtsEngine.auto, "--tts", help="espeak-ng, tones, or auto."),
    record_dir: Path | None = typer.Option(
        None, "--record-dir", help="Write each session's events (JSONL) and audio (WAV) here."
    ),
) -> None:
    """Run the local Realtime-compatible server (OpenAI GA protocol, scripted answers).

    WebSocket at ws://HOST:PORT/v1/realtime, WebRTC at POST http://HOST:PORT/v1/realtime/calls.
    Point an agent at it with --realtime-url ws://HOST:PORT/v1. Stop with Ctrl-C.
    """
    from w3sipagent.localai import RealtimeServer

    setup_logging("INFO", None)
    chosen = _scenario(scenario)

    async def main() -> None:
        server = RealtimeServer(
            host,
            port,
            scenario=chosen,
            api_keys=api_key or None,
            realtime_pacing=realtime_pacing,
            tts_engine=tts.value,
            record_dir=record_dir,
        )
        async with server:
            err_console.print(
                f"local Realtime server: {server.ws_url} (scenario {server.scenario.name}); "
                f"agents use --realtime-url ws://{server.host}:{server.port}/v1 ; Ctrl-C stops it"
            )
            await server.serve_forever()

    run_async(main())
