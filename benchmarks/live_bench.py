"""Bridge latency on the GPT-Live path: bridge + GPT-Live client against the local server.

Run::

    .venv/bin/python benchmarks/live_bench.py [--seconds 20] [--json PATH]

The call is the in-memory ``MemoryCall`` (20 ms pacer on the loop clock, talk-spurt kick on);
the AI is :class:`~w3sipagent.live.LiveClient` connected to the local GPT-Live server, which
speaks its answers at real time in 40 ms chunks. Measured, in ms:

- **inbound**: the call's frame sink called with one PCMU payload → ``session.input_audio.append``
  queued for the WebSocket (bridge + client: base64 and JSON included; PCMU passthrough);
- **outbound**: an ``AudioDelta`` leaving the client → its frames queued for the pacer
  (``processing``, bridge work), and → the first of them handed to the pacer (``to_pacer``);
- **lead**: the agent audio queued ahead of the caller after each delta (the bridge must not
  run ahead of the model's real-time output; the live configuration caps it at 300 ms).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.agent.bridge import BridgeOptions, CallBridge
from w3sipagent.agent.memcall import MemoryCall
from w3sipagent.ai import session as ai
from w3sipagent.codecs.g711 import ULAW_SILENCE, ulaw_encode
from w3sipagent.live import LiveClient
from w3sipagent.localai.live import LiveServer
from w3sipagent.localai.scenario import Scenario, Turn

SAY = "One two three four five six seven eight nine ten, and that is all I have to say now"
SCRIPT = Scenario(name="bench", greeting=SAY, turns=tuple(Turn(say=SAY) for _ in range(20)))
CFG = ai.AISessionConfig(
    instructions="Bench.",
    model="gpt-live-1",
    turn_detection=None,
    transcription_model=None,
    backend="live",
    playout_lead_ms=300,
)


class StampedClient(LiveClient):
    """Stamps each AudioDelta with the time it leaves the client."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.left: list[float] = []  # in order: the bridge handles deltas in order

    def _dispatch(self, conn: Any, events: list[ai.AIEvent]) -> None:
        now = time.perf_counter()
        self.left += [now for e in events if isinstance(e, ai.AudioDelta)]
        super()._dispatch(conn, events)


def pct(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    s = sorted(xs)
    p99 = s[min(len(s) - 1, int(0.99 * len(s)))]
    return {"n": len(s), "p50": statistics.median(s), "p99": p99, "max": s[-1]}


async def run(seconds: float) -> dict[str, Any]:
    inbound: list[float] = []
    processing: list[float] = []
    to_pacer: list[float] = []
    lead: list[float] = []
    async with LiveServer(scenario=SCRIPT, tts_engine="tone") as srv:
        clients: list[StampedClient] = []

        def factory(cfg: ai.AISessionConfig) -> ai.AISession:
            c = StampedClient(cfg, api_key="k", base_url=srv.base_url, proxy=None)
            clients.append(c)
            return c

        call = MemoryCall(silence=bytes([ULAW_SILENCE]) * 160, kick=True)
        bridge = CallBridge(call, factory, CFG, options=BridgeOptions(greeting="Greet."))
        playout = bridge.playout
        push = playout.push
        pending: list[tuple[int, float]] = []  # (index of the delta's first frame, left)
        counts = {"pushed": 0, "sent": 0, "dropped": 0}

        def stamped_push(frames: list[bytes], item_id: Any = None, response_id: Any = None) -> None:
            before = playout.frames_dropped
            push(frames, item_id, response_id)
            if item_id is None or not frames or not clients or not clients[-1].left:
                return
            left = clients[-1].left.pop(0)
            processing.append((time.perf_counter() - left) * 1000)
            pending.append((counts["pushed"], left))
            counts["pushed"] += len(frames)
            counts["dropped"] += playout.frames_dropped - before
            lead.append(playout.queued_frames * playout.frame_ms)

        playout.push = stamped_push  # type: ignore[method-assign]
        on_sent = playout.on_sent

        def sent(payload: bytes, item: Any, now: float) -> None:
            if item is not None:
                if pending and pending[0][0] <= counts["sent"] + counts["dropped"]:
                    to_pacer.append((time.perf_counter() - pending.pop(0)[1]) * 1000)
                counts["sent"] += 1
            if on_sent is not None:
                on_sent(payload, item, now)

        playout.on_sent = sent
        task = asyncio.create_task(bridge.run())
        loop = asyncio.get_running_loop()
        speech = ulaw_encode(bytes(320))
        tone = [
            ulaw_encode(
                b"".join(
                    int(8000 * ((i // 8) % 2 * 2 - 1)).to_bytes(2, "little", signed=True)
                    for i in range(160)
                )
            )
        ] * 35
        t0 = loop.time()
        n = 0
        script: list[bytes] = []
        while loop.time() - t0 < seconds:
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - loop.time()))
            if not script:
                script = tone + [speech[:160]] * 200  # 0.7 s "speech", then 4 s of silence
            frame = script.pop(0)
            t = time.perf_counter()
            call.feed(frame)
            inbound.append((time.perf_counter() - t) * 1000)
            n += 1
        call.remote_hangup()
        await asyncio.wait_for(task, 5)
    return {
        "inbound_pcmu_bridge_and_client": pct(inbound),
        "outbound_processing": pct(processing),
        "outbound_to_pacer": pct(to_pacer),
        "lead_ms_after_delta": pct(lead),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = asyncio.run(run(args.seconds))
    for name, r in result.items():
        if r.get("n"):
            print(
                f"{name:34} n={r['n']:5}  p50={r['p50']:.4f}  p99={r['p99']:.4f}  max={r['max']:.4f}"
            )
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
