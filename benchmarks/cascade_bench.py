"""Cascade benchmark: the time our pipeline adds to a turn, against the local server.

Run::

    .venv/bin/python benchmarks/cascade_bench.py [--turns 50] [--bargeins 20] [--calls 4 --seconds 30]
        [--stt-mode stream --stt-model gpt-realtime-whisper]

Prints a table, then one JSON object (``--json PATH`` also writes it).

One :class:`~w3sipagent.cascade.CascadeSession` (PCMU) talks to the local cascade server
(no pacing, tone speech) on loopback; each turn feeds 300 ms of speech-like audio and
800 ms of silence at once (``--stt-mode stream``: a millisecond apart, so the feed's task
appends each frame before the next, as at a phone's pace), waits for the answer's audio,
and reads:

- **added** (``CascadeSession.added_ms``): our own time in the turn: end of turn →
  transcription request sent, transcript → model request sent, first sentence → speech
  request sent, first speech byte → first audio delta out (resampled and G.711-encoded).
  The services' own processing (and the loopback HTTP) is excluded: the issue's target
  for it is p99 ≤ 5 ms.
- **stages**: the per-stage times from the end of turn (what the CDR holds, ms).
- **vad**: the listener's cost per 20 ms frame (µs).
- **barge-in** (``--bargeins``): a :class:`~w3sipagent.agent.bridge.CallBridge` on a
  memory call (PCMU, the pacer's real 20 ms ticks) drives a cascade session against the
  local server; while the agent speaks, the caller talks (speech-like audio fed at real
  time) and we measure from the caller's speech being detected (the ``send_audio`` call in
  which the listener decided the caller speaks, after ``barge_in_ms`` of voice) to the
  last agent audio frame the call sent (0 when none was sent after it). Target ≤ 20 ms.
- **cpu** (``--calls N``): N SIP calls at once, real RTP at real time, to a cascade agent
  (``AgentService`` in this process); the local cascade server and the callers (our own
  softphone, speaking a turn whenever the agent went quiet) run in two other processes,
  so the CPU time of this process over ``--seconds`` is the agent's: per call, in % of
  one core. The turns answered are counted from the CDRs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.ai.session import (
    AISessionConfig,
    AudioDelta,
    AudioFormat,
    ResponseDone,
    TurnStages,
)
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


async def run_turns(
    turns: int, stt_mode: str = "utterance", stt_model: str = "whisper-1"
) -> dict[str, Any]:
    lines = "\n".join(
        f'[[turns]]\ncaller = "Question {i}."\nsay = "Answer {i}. Thank you for asking."'
        for i in range(turns)
    )
    scenario = Scenario.loads(f'name = "bench"\n[greeting]\nsay = "Hi."\n{lines}\n')
    async with CascadeServer(scenario=scenario, api_keys=[KEY], tts_engine="tone") as srv:
        ep = StageEndpoint(srv.base_url, "whisper-1", KEY)
        settings = CascadeSettings(
            stt=StageEndpoint(srv.base_url, stt_model, KEY),
            llm=ep,
            tts=ep,
            listen=ListenSettings(),
            stt_mode="stream" if stt_mode == "stream" else "utterance",
        )
        session = CascadeSession(AISessionConfig(), settings)
        await session.start()
        events = session.events()
        stages: list[dict[str, float]] = []
        frames = ulaw_encode(voice(300) + bytes(800 * 16))
        for _ in range(turns):
            for i in range(0, len(frames), 160):
                session.send_audio(frames[i : i + 160])
                if stt_mode == "stream":  # the feed's task appends each frame as it comes,
                    await asyncio.sleep(0.001)  # as at a phone's pace (no backlog at the end)
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


LONG = (
    "Our kitchen is open from noon until ten in the evening. "
    "The menu changes with the seasons and the market. "
    "Tonight the chef recommends the trout with almonds and new potatoes. "
    "For dessert there is a lemon tart and a chocolate mousse. "
    "We also have a fine list of wines from the Loire valley."
)


class TimedCascade(CascadeSession):
    """A cascade session noting when its listener decided the caller speaks (the clock
    at the entry of that ``send_audio`` call)."""

    def __init__(self, config: AISessionConfig, settings: CascadeSettings) -> None:
        super().__init__(config, settings)
        self.detected: list[float] = []

    def send_audio(self, audio: bytes) -> None:
        t = time.monotonic()
        was = self.caller_speaking
        super().send_audio(audio)
        if not was and self.caller_speaking:
            self.detected.append(t)


async def run_bargeins(count: int) -> dict[str, Any]:
    from w3sipagent.agent.bridge import CallBridge
    from w3sipagent.agent.memcall import MemoryCall
    from w3sipagent.agent.options import BridgeOptions

    lines = "\n".join(f'[[turns]]\ncaller = "Stop {i}."\nsay = "{LONG}"' for i in range(count + 2))
    scenario = Scenario.loads(f'name = "bench-barge"\n[greeting]\nsay = "{LONG}"\n{lines}\n')
    async with CascadeServer(scenario=scenario, api_keys=[KEY], tts_engine="tone") as srv:
        ep = StageEndpoint(srv.base_url, "whisper-1", KEY)
        settings = CascadeSettings(stt=ep, llm=ep, tts=ep, listen=ListenSettings())
        sessions: list[TimedCascade] = []

        def factory(config: AISessionConfig) -> TimedCascade:
            sessions.append(TimedCascade(config, settings))
            return sessions[-1]

        cfg = AISessionConfig(input_format=AudioFormat.PCMU, output_format=AudioFormat.PCMU)
        call = MemoryCall()
        bridge = CallBridge(call, factory, cfg, options=BridgeOptions(caller_silence_timeout=None))
        task = asyncio.create_task(bridge.run())
        while bridge.session is None:
            await asyncio.sleep(0.005)
        session = sessions[0]
        await session.create_response("Greet.")
        rng = np.random.default_rng(11)
        speech = ulaw_encode(voice(500) + bytes(900 * 16))
        cuts: list[float] = []
        late = speaking = 0
        for _ in range(count):
            n0 = len(call.audio_frames())
            target = n0 + int(rng.integers(15, 60))  # 0.3-1.2 s into the answer
            deadline = time.monotonic() + 15
            while len(call.audio_frames()) < target and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            k = len(session.detected)
            for i in range(0, len(speech), 160):  # the caller talks, at real time
                call.feed(speech[i : i + 160])
                await asyncio.sleep(0.02)
            t = session.detected[k]
            window = [f for f in call.sent if t <= f.at <= t + 0.3 and f.payload is not None]
            late += len(window)
            speaking += any(t - 0.1 <= f.at < t and f.payload is not None for f in call.sent)
            cuts.append((max((f.at for f in window), default=t) - t) * 1e3)
        cleared = [
            (b.cut_at - t) * 1e3 for b, t in zip(bridge.barge_ins, session.detected, strict=False)
        ]
        call.remote_hangup()
        await task
    return {
        "count": len(cuts),
        "to_playout_cleared_ms": {
            "p50": round(statistics.median(cleared), 3),
            "p99": round(pct(cleared, 99), 3),
        },
        "cut_ms": {
            "p50": round(statistics.median(cuts), 3),
            "p99": round(pct(cuts, 99), 3),
            "max": round(max(cuts), 3),
        },
        "agent_frames_after_detection": late,
        "agent_speaking_before": speaking,
        "barge_ins_at_bridge": len(bridge.barge_ins),
    }


def _serve(conn: Any, turns: int) -> None:
    """Child process: the local cascade server until ``conn`` says stop."""

    async def run() -> None:
        lines = "\n".join(
            f'[[turns]]\ncaller = "Question {i}."\nsay = "Answer {i}. Thank you for asking."'
            for i in range(turns)
        )
        scenario = Scenario.loads(f'name = "cpu"\n[greeting]\nsay = "Hello there."\n{lines}\n')
        async with CascadeServer(scenario=scenario, tts_engine="tone") as srv:
            conn.send(srv.base_url)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    asyncio.run(run())


def _callers(conn: Any, port: int, calls: int, seconds: float) -> None:
    """Child process: ``calls`` softphones calling the agent, speaking turns."""
    from w3sipagent.cli.call import place_call

    async def one(i: int) -> int:
        s = await place_call(
            "sip:desk@127.0.0.1",
            proxy=("127.0.0.1", port),
            codec="PCMU",
            turns=[voice(900) for _ in range(int(seconds))],
            turn_gap=0.6,
            turn_timeout=10.0,
            duration=seconds,
            rtp_ports=(36000 + 40 * i, 36000 + 40 * i + 39),
        )
        return s.turns_spoken

    async def run() -> list[int]:
        return list(await asyncio.gather(*(one(i) for i in range(calls))))

    conn.send(asyncio.run(run()))


async def run_cpu(calls: int, seconds: float) -> dict[str, Any]:
    import multiprocessing as mp

    from w3sipagent.agent.service import AgentService
    from w3sipagent.asyncio.uaconfig import UserAgentConfig
    from w3sipagent.config import Settings
    from w3sipagent.records.store import CdrStore
    from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable
    from w3sipagent.tenants.cascade import CascadeConfig, CascadeStageConfig

    ctx = mp.get_context("spawn")
    srv_conn, srv_child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(srv_child, int(seconds) + 5), daemon=True)
    server.start()
    url = await asyncio.get_running_loop().run_in_executor(None, srv_conn.recv)

    def stage(model: str) -> CascadeStageConfig:
        return CascadeStageConfig(base_url=url, model=model)

    agent = AgentConfig(
        instructions="Answer.",
        greeting="Greet.",
        cascade=CascadeConfig(
            stt=stage("whisper-1"), llm=stage("gpt-4.1-mini"), tts=stage("gpt-4o-mini-tts")
        ),
    )
    tenant = TenantConfig(
        id="bench", hosts=["127.0.0.1"], api_key=SecretRef(env="BENCH_KEY"), agents={"desk": agent}
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = CdrStore(f"sqlite+aiosqlite:///{tmp}/cdr.db")
        await store.open()
        svc = AgentService(
            Settings(),
            tenants=TenantTable({"bench": tenant}),
            store=store,
            ua_config=UserAgentConfig(
                host="127.0.0.1", port=0, rtp_port_min=35000, rtp_port_max=35999
            ),
            environ={"BENCH_KEY": "sk-bench-cascade"},
        )
        await svc.start()
        load = os.getloadavg()
        call_conn, call_child = ctx.Pipe()
        callers = ctx.Process(target=_callers, args=(call_child, svc.port, calls, seconds))
        callers.start()
        deadline = time.monotonic() + 20
        while len(svc.live_calls()) < calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        up = len(svc.live_calls())
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(max(1.0, seconds - 3.0))
        cpu1, wall1 = time.process_time(), time.monotonic()
        spoken = await asyncio.get_running_loop().run_in_executor(None, call_conn.recv)
        callers.join(10)
        deadline = time.monotonic() + 10
        while len(svc.finished) < calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        answered = sum(len(c.turn_stages_ms()) for c in svc.finished)
        await svc.close(timeout=1)
        await store.close()
    srv_conn.send("stop")
    server.join(5)
    cpu_pct = 100 * (cpu1 - cpu0) / (wall1 - wall0)
    return {
        "calls": calls,
        "calls_up": up,
        "seconds": round(wall1 - wall0, 1),
        "agent_cpu_pct": round(cpu_pct, 2),
        "cpu_per_call_pct": round(cpu_pct / max(1, up), 2),
        "turns_spoken": sum(spoken),
        "turns_answered": answered,
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--bargeins", type=int, default=0, help="barge-in cuts to measure")
    ap.add_argument("--calls", type=int, default=0, help="concurrent calls for the CPU run")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the CPU run")
    ap.add_argument("--stt-mode", choices=("utterance", "stream"), default="utterance")
    ap.add_argument("--stt-model", default="whisper-1", help="e.g. gpt-realtime-whisper")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = asyncio.run(run_turns(args.turns, args.stt_mode, args.stt_model))
    result["stt"] = {"mode": args.stt_mode, "model": args.stt_model}
    result["vad"] = vad_cost(args.frames)
    if args.bargeins:
        result["bargein"] = asyncio.run(run_bargeins(args.bargeins))
        b = result["bargein"]
        print(
            f"barge-in ({b['count']}): speech detected -> last agent frame p50 "
            f"{b['cut_ms']['p50']} ms, p99 {b['cut_ms']['p99']} ms, max {b['cut_ms']['max']} ms; "
            f"agent frames after detection {b['agent_frames_after_detection']}; playout cleared "
            f"p50 {b['to_playout_cleared_ms']['p50']} ms, p99 {b['to_playout_cleared_ms']['p99']}"
            f" ms after detection; the agent was "
            f"speaking in the 100 ms before in {b['agent_speaking_before']} of {b['count']}"
        )
    if args.calls:
        result["cpu"] = asyncio.run(run_cpu(args.calls, args.seconds))
        c = result["cpu"]
        print(
            f"CPU: {c['calls_up']} cascade calls for {c['seconds']} s: agent "
            f"{c['agent_cpu_pct']} % of a core, {c['cpu_per_call_pct']} % per call; turns "
            f"answered {c['turns_answered']} (spoken {c['turns_spoken']}); "
            f"load average at start {c['loadavg_at_start']}"
        )
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
