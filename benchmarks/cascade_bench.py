"""Cascade benchmark: the time our pipeline adds to a turn, against the local server.

Run::

    .venv/bin/python benchmarks/cascade_bench.py [--turns 50]

Prints a table, then one JSON object (``--json PATH`` also writes it).

One :class:`~w3sipagent.cascade.CascadeSession` (PCMU) talks to the local cascade server
(no pacing, tone speech) on loopback; each turn feeds 300 ms of speech-like audio and
800 ms of silence at once, waits for the answer's audio, and reads:

- **added** (``CascadeSession.added_ms``): our own time in the turn: end of turn →
  transcription request sent, transcript → model request sent, first sentence → speech
  request sent, first speech byte → first audio delta out (resampled and G.711-encoded).
  The services' own processing (and the loopback HTTP) is excluded: the issue's target
  for it is p99 ≤ 5 ms.
- **stages**: the per-stage times from the end of turn (what the CDR holds, ms).
- **vad**: the listener's cost per 20 ms frame (µs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.ai.session import AISessionConfig, AudioDelta, ResponseDone, TurnStages
from w3sipagent.cascade import CascadeSession, CascadeSettings, ListenSettings, StageEndpoint
from w3sipagent.cascade.vad import Listener
from w3sipagent.codecs.g711 import ulaw_encode
from w3sipagent.localai import Scenario
from w3sipagent.localai.cascade import CascadeServer

KEY = "sk-bench-cascade-0001"


def voice(ms: int, rate: int = 8000) -> bytes:
    """Speech-like PCM (a harmonic buzz, wandering pitch, 4 Hz syllables)."""
    t = np.arange(rate * ms // 1000) / rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 3 * t)) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return bytes((x * env * 0.16 * 32767).astype("<i2").tobytes())


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


async def run_turns(turns: int) -> dict[str, Any]:
    lines = "\n".join(
        f'[[turns]]\ncaller = "Question {i}."\nsay = "Answer {i}. Thank you for asking."'
        for i in range(turns)
    )
    scenario = Scenario.loads(f'name = "bench"\n[greeting]\nsay = "Hi."\n{lines}\n')
    async with CascadeServer(scenario=scenario, api_keys=[KEY], tts_engine="tone") as srv:
        ep = StageEndpoint(srv.base_url, "whisper-1", KEY)
        settings = CascadeSettings(stt=ep, llm=ep, tts=ep, listen=ListenSettings())
        session = CascadeSession(AISessionConfig(), settings)
        await session.start()
        events = session.events()
        stages: list[dict[str, float]] = []
        frames = ulaw_encode(voice(300) + bytes(800 * 16))
        for _ in range(turns):
            for i in range(0, len(frames), 160):
                session.send_audio(frames[i : i + 160])
            got_audio = False
            while True:
                ev = await asyncio.wait_for(anext(events), 10)
                if isinstance(ev, TurnStages):
                    stages.append(ev.times)
                elif isinstance(ev, AudioDelta):
                    got_audio = True
                elif isinstance(ev, ResponseDone):
                    break
            assert got_audio, "no answer audio"
        await session.close()
        added = list(session.added_ms)
    rel = [
        {
            k: round((v - s["end_of_turn"]) * 1000, 3)
            for k, v in s.items()
            if k != "caller_speech_end"
        }
        for s in stages
    ]
    names = [k for k in rel[0] if k != "end_of_turn"] if rel else []
    return {
        "turns": len(added),
        "added_ms": {
            "p50": round(statistics.median(added), 3),
            "p99": round(pct(added, 99), 3),
            "max": round(max(added), 3),
        },
        "stages_ms_p50": {n: round(statistics.median(r[n] for r in rel), 3) for n in names},
    }


def vad_cost(frames: int) -> dict[str, float]:
    lst = Listener(ListenSettings())
    audio = voice(frames * 20)
    times: list[float] = []
    for i in range(0, len(audio) - 319, 320):
        t0 = time.perf_counter()
        lst.feed(audio[i : i + 320])
        times.append((time.perf_counter() - t0) * 1e6)
    return {"p50_us": round(statistics.median(times), 2), "p99_us": round(pct(times, 99), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = asyncio.run(run_turns(args.turns))
    result["vad"] = vad_cost(args.frames)
    a = result["added_ms"]
    print(
        f"turns {result['turns']}: our added time p50 {a['p50']} ms, p99 {a['p99']} ms, max {a['max']} ms"
    )
    for name, ms in result["stages_ms_p50"].items():
        print(f"  {name:>18}  p50 {ms:8.3f} ms after the end of turn")
    v = result["vad"]
    print(f"VAD per 20 ms frame: p50 {v['p50_us']} µs, p99 {v['p99_us']} µs")
    text = json.dumps(result)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
