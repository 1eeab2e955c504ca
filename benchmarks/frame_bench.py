"""Per-frame costs of the local Realtime server's append path and of a CDR write.

Microbenchmarks, best of ``--repeat`` runs, in one process (no sockets):

- ``append``: one ``input_audio_buffer.append`` of 20 ms PCMU speech as the agent writes it,
  through ``ServerSession.handle_text`` (server VAD on, answers off), µs per append;
- ``append_json``: the same event in another spacing, which goes through ``json.loads``;
- ``vad_codes`` / ``vad_pcm``: the VAD of one 20 ms append measured on the G.711 codes, and
  decoded to PCM first (the path before);
- ``cdr_write``: one CDR row written (``in_progress`` then final) to SQLite through
  ``CdrStore``, µs of this process's CPU per row write.

Example::

    .venv/bin/python benchmarks/frame_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from rtp_capture import speech_frames  # noqa: E402

from w3sipagent.ai.session import AudioFormat  # noqa: E402
from w3sipagent.localai.audio import g711_squares, to_pcm16  # noqa: E402
from w3sipagent.localai.realtime.ports import ServerOptions  # noqa: E402
from w3sipagent.localai.realtime.session import ServerSession  # noqa: E402
from w3sipagent.localai.scenario import load_scenario  # noqa: E402
from w3sipagent.localai.tts import Synthesizer  # noqa: E402
from w3sipagent.localai.vad import EnergyVad  # noqa: E402
from w3sipagent.realtime.events import InputAudioBufferAppend  # noqa: E402
from w3sipagent.records.cdr import CallRecord  # noqa: E402
from w3sipagent.records.store import CdrStore  # noqa: E402


class _NullTransport:
    kind = "websocket"

    async def send_json(self, event: dict[str, Any]) -> None:
        json.dumps(event, separators=(",", ":"))

    async def close(self, code: int, reason: str) -> None:
        return None

    def abort(self) -> None:
        return None


async def _append(texts: list[str], repeat: int) -> float:
    session = ServerSession(
        _NullTransport(),
        scenario=load_scenario(),
        synthesizer=Synthesizer("tone"),
        options=ServerOptions(),
    )
    update = {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "turn_detection": {"type": "server_vad", "create_response": False},
                },
                "output": {"format": {"type": "audio/pcmu"}},
            },
        },
    }
    await session.handle_text(json.dumps(update))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for text in texts:
            await session.handle_text(text)
        best = min(best, (time.perf_counter() - t0) / len(texts))
    session.closed("bench over")
    return best * 1e6


def _vad(frames: list[bytes], repeat: int, codes: bool) -> float:
    squares = g711_squares(AudioFormat.PCMU)

    def run() -> None:
        vad = EnergyVad()
        for f in frames:
            if codes:
                vad.feed(f, 8000, squares)
            else:
                vad.feed(to_pcm16(f, AudioFormat.PCMU), 8000)

    return min(timeit.repeat(run, number=1, repeat=repeat)) / len(frames) * 1e6


async def _cdr(rows: int, repeat: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = CdrStore(f"sqlite+aiosqlite:///{d}/bench.db")
        await store.open()
        best = float("inf")
        for rep in range(repeat):
            cdrs = [CallRecord(call_id=f"c{rep}-{i}", tenant="t") for i in range(rows)]
            t0 = time.process_time()
            for c in cdrs:
                await store.call_started(c)
            await store.flush()
            for c in cdrs:
                await store.call_ended(c)
            await store.flush()
            best = min(best, (time.process_time() - t0) / (2 * rows))
        await store.close()
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="speech appended per run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cdr-rows", type=int, default=200)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    frames = speech_frames(args.seconds, pause=4.0, engine="tone")
    # as the agent writes them (its event ids)
    fast = [
        InputAudioBufferAppend(audio=f, event_id=f"w3s_{i}").to_json() for i, f in enumerate(frames)
    ]
    slow = [json.dumps(json.loads(t), indent=1) for t in fast]
    out = {
        "append_us": round(asyncio.run(_append(fast, args.repeat)), 2),
        "append_json_us": round(asyncio.run(_append(slow, args.repeat)), 2),
        "vad_codes_us": round(_vad(frames, args.repeat, codes=True), 2),
        "vad_pcm_us": round(_vad(frames, args.repeat, codes=False), 2),
        "cdr_write_us": round(asyncio.run(_cdr(args.cdr_rows, min(args.repeat, 3))), 1),
        "frames": len(frames),
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
