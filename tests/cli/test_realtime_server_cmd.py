"""`w3sipagent realtime-server` in a subprocess: it serves the GA protocol until stopped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import websockets

from tests.cli.conftest import invoke


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def test_serves_session_created() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "w3sipagent",
            "realtime-server",
            "--port",
            str(port),
            "--tts",
            "tone",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "W3SIPAGENT_CONFIG": ""},
    )
    try:
        deadline = time.monotonic() + 30
        first = None
        while time.monotonic() < deadline and first is None:
            try:
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                    additional_headers={"Authorization": "Bearer sk-anything"},
                ) as ws:
                    first = json.loads(await ws.recv())
            except OSError:
                await asyncio.sleep(0.2)
        assert first is not None and first["type"] == "session.created"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert f"ws://127.0.0.1:{port}/v1/realtime" in err
    assert "Traceback" not in err


def test_unknown_scenario(runner) -> None:  # type: ignore[no-untyped-def]
    result = invoke(runner, "realtime-server", "--scenario", "nonexistent-xyz")
    assert result.exit_code == 2
    assert "bundled: demo" in result.output
