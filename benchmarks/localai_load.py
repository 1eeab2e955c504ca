"""CPU per session of the local Realtime server, with speech both ways (no SIP, no agent).

Starts ``w3sipagent realtime-server --realtime-pacing`` (as ``sipp_load.py --local`` does)
and opens ``--sessions`` WebSocket sessions from this process. Each session configures
PCMU in and out with ``server_vad`` (500 ms silence, as the load test's agent does) and
appends the caller's speech (the demo caller's lines, each followed by a pause for the
answer) as 20 ms ``input_audio_buffer.append`` frames (``--append-ms`` for larger ones), in
real time, all sessions on one 20 ms tick. The server's VAD ends each line, answers with
paced audio deltas: speech both ways, as in a call. Reported: the server's CPU over the
steady part (all sessions up), in % of one core per session, the appends sent and the
audio deltas and responses received. The client's own CPU is reported apart.

Example::

    .venv/bin/python benchmarks/localai_load.py --sessions 100 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import websockets  # noqa: E402
from rtp_capture import speech_frames  # noqa: E402

TICK = 0.020


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Counts:
    """What the sessions sent and received."""

    def __init__(self) -> None:
        self.appends = 0
        self.deltas = 0
        self.responses = 0
        self.errors: list[str] = []
        self.closed = 0


async def _session(
    url: str,
    frames: list[bytes],
    offset: int,
    frame_ms: int,
    tick: asyncio.Event,
    stop: asyncio.Event,
    counts: Counts,
    quiet: bool,
) -> None:
    async with websockets.connect(
        url, additional_headers={"Authorization": "Bearer sk-load"}, compression=None
    ) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "audio": {
                            "input": {
                                "format": {"type": "audio/pcmu"},
                                "turn_detection": None
                                if quiet
                                else {"type": "server_vad", "silence_duration_ms": 500},
                            },
                            "output": {"format": {"type": "audio/pcmu"}},
                        },
                    },
                }
            )
        )

        async def reader() -> None:
            async for msg in ws:
                t = json.loads(msg).get("type")
                if t == "response.output_audio.delta":
                    counts.deltas += 1
                elif t == "response.done":
                    counts.responses += 1
                elif t == "error":
                    counts.errors.append(str(msg)[:200])

        rt = asyncio.create_task(reader())
        per = frame_ms // 20
        i = offset
        k = 0
        try:
            while not stop.is_set():
                await tick.wait()
                k += 1
                if k % per:
                    continue
                audio = b"".join(frames[(i + j) % len(frames)] for j in range(per))
                i += per
                await ws.send(
                    '{"type":"input_audio_buffer.append","audio":"'
                    + base64.b64encode(audio).decode("ascii")
                    + '"}'
                )
                counts.appends += 1
        finally:
            rt.cancel()
            counts.closed += 1


async def _ticker(tick: asyncio.Event, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    n = 0
    while not stop.is_set():
        n += 1
        await asyncio.sleep(max(0.0, t0 + n * TICK - loop.time()))
        tick.set()
        tick.clear()


async def _run(args: argparse.Namespace, pid: int, url: str, frames: list[bytes]) -> dict[str, Any]:
    counts = Counts()
    tick, stop = asyncio.Event(), asyncio.Event()
    ticker = asyncio.create_task(_ticker(tick, stop))
    tasks = []
    for n in range(args.sessions):
        off = (n * 397) % len(frames)
        tasks.append(
            asyncio.create_task(
                _session(url, frames, off, args.append_ms, tick, stop, counts, args.no_answers)
            )
        )
        await asyncio.sleep(1.0 / args.rate)
    await asyncio.sleep(2.0)  # all up, the first answers under way
    c0, t0, me0 = _cpu_s(pid), time.monotonic(), time.process_time()
    a0, d0 = counts.appends, counts.deltas
    await asyncio.sleep(args.seconds)
    c1, t1, me1 = _cpu_s(pid), time.monotonic(), time.process_time()
    a1, d1 = counts.appends, counts.deltas
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    ticker.cancel()
    core = 100.0 * (c1 - c0) / (t1 - t0)
    return {
        "sessions": args.sessions,
        "append_ms": args.append_ms,
        "server_loop": args.loop or "default",
        "window_s": round(t1 - t0, 1),
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "server_cpu_core_pct": round(core, 1),
        "server_cpu_per_session_pct": round(core / args.sessions, 3),
        "client_cpu_core_pct": round(100.0 * (me1 - me0) / (t1 - t0), 1),
        "appends_per_s": round((a1 - a0) / (t1 - t0), 1),
        "audio_deltas_per_s": round((d1 - d0) / (t1 - t0), 1),
        "responses": counts.responses,
        "errors": counts.errors[:5],
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0, help="steady window measured")
    ap.add_argument("--rate", type=float, default=20.0, help="new sessions per second")
    ap.add_argument("--append-ms", type=int, default=20, choices=(20, 40, 60, 80, 100))
    ap.add_argument("--tts", default="auto", help="caller speech: auto, espeak or tones")
    ap.add_argument(
        "--no-answers",
        action="store_true",
        help="turn detection off: the server only takes the appends (their cost alone)",
    )
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), help="the server's event loop")
    ap.add_argument("--profile", help="cProfile the server into this file")
    ap.add_argument("--json", help="also write the report to this file")
    args = ap.parse_args(argv)
    frames = speech_frames(60.0, pause=4.0, engine=args.tts)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
    env["PYTHONPATH"] = str(ROOT)
    if args.loop:
        env["W3SIPAGENT_EVENT_LOOP"] = args.loop
    prof = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    fd, log_name = tempfile.mkstemp(prefix="localai-load-", suffix=".log")
    server = subprocess.Popen(
        [
            *(sys.executable, *prof, "-m", "w3sipagent", "realtime-server", "--port", str(port)),
            *("--realtime-pacing", "--tts", args.tts),
        ],
        stdout=fd,
        stderr=fd,
        env=env,
    )
    os.close(fd)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"localai_load: the server exited (see {log_name})") from None
                time.sleep(0.2)
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
        report = asyncio.run(_run(args, server.pid, url, frames))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
