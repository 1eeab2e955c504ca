"""Bridge benchmark: latency the bridge adds per direction, barge-in cut, per-turn breakdown.

Run::

    .venv/bin/python benchmarks/bridge_bench.py [--frames 3000] [--bargeins 40] [--turns 4]

Prints a table, then one JSON object (``--json PATH`` also writes it).

What is measured (all on one event loop, in process, nothing else running on it):

- **inbound** (caller → AI): from the call's frame sink being called with one RTP payload to
  the session's ``send_audio`` having handed it on. ``scripted``: the bridge alone (the
  session records the time on entry); ``realtime``: the bridge plus the real Realtime client
  up to ``input_audio_buffer.append`` queued for its WebSocket (JSON + base64 included),
  connected to the local Realtime server. PCMU is passthrough; G.722 and Opus decode and
  resample to 24 kHz.
- **outbound** (AI → caller): from the ``AudioDelta`` leaving the session's event stream to
  its first frame being queued for the pacer (``processing``), and to that frame being
  handed to the pacer (``to_pacer``: includes waiting for the next 20 ms tick, 0-20 ms
  uniform when deltas arrive in real time, which is the RTP clock, not bridge work).
- **outbound over RTP** (AI → caller, the issue's definition): the same deltas through the
  bridge into a real :class:`~w3sipagent.asyncio.media.RtpEndpoint` on the shared pacer, from
  the ``AudioDelta`` leaving the session to its first RTP packet handed to the socket
  (``sendto`` returned), with the talk-spurt kick (``kick``: the first frame goes out at
  once, marker bit, and the call is re-phased) over continuous silence (the default
  ``rtp.send_silence``) and over nothing (``send_silence = false``), and without the kick
  (``tick``: waits for the pacer). Responses start 210-230 ms apart (a turn is never closer:
  the caller speaks in between), time enough for a kicked stream to be pulled back.
- **barge-in**: from ``SpeechStarted`` leaving the session to the playout queue cleared
  (``processing``) and to the first tick that sent no agent audio (``to_silence``); agent
  frames sent after the event was received are counted (must be 0).
- **turns**: against the local Realtime server (energy VAD, scripted answers, tone speech):
  caller speech end (SpeechStopped at the bridge) → response created → first audio delta →
  first RTP frame sent (the call kicks the talk spurt, as a SIP call does by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.agent.bridge import BridgeOptions, CallBridge
from w3sipagent.agent.memcall import MemoryCall
from w3sipagent.agent.scripted import ScriptedBackend, ScriptedReply, ScriptedSession
from w3sipagent.ai.session import (
    AIEvent,
    AISessionConfig,
    AudioDelta,
    AudioFormat,
    SpeechStarted,
    TurnDetection,
)
from w3sipagent.asyncio.call_api import FrameSource, MediaFormat
from w3sipagent.asyncio.media import MediaConfig, RtpEndpoint
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.codecs import get_codec
from w3sipagent.codecs.g711 import ULAW_SILENCE, ulaw_encode
from w3sipagent.ids import SecureIdSource


def tone(ms: int, rate: int, amp: int = 8000, hz: float = 300.0) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def summary(xs_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(xs_ms),
        "p50_ms": round(pct(xs_ms, 50), 4),
        "p99_ms": round(pct(xs_ms, 99), 4),
        "max_ms": round(max(xs_ms), 4) if xs_ms else float("nan"),
        "mean_ms": round(statistics.fmean(xs_ms), 4) if xs_ms else float("nan"),
    }


class TimedSession(ScriptedSession):
    """A scripted session that stamps send_audio entry and each event as it is yielded."""

    def __init__(self, config: AISessionConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.audio_in: list[int] = []
        self.yielded: list[tuple[float, AIEvent]] = []
        """(time.monotonic() when yielded, event): the bridge's clock."""

    def send_audio(self, audio: bytes) -> None:
        self.audio_in.append(time.perf_counter_ns())
        super().send_audio(audio)

    async def events(self) -> AsyncIterator[AIEvent]:
        async for ev in super().events():
            self.yielded.append((time.monotonic(), ev))
            yield ev


def cfg(fmt: AudioFormat = AudioFormat.PCMU) -> AISessionConfig:
    return AISessionConfig(turn_detection=TurnDetection(), input_format=fmt, output_format=fmt)


MEDIA = {
    "PCMU": MediaFormat("PCMU", 8000),
    "G722": MediaFormat("G722", 8000, payload_type=9),
    "opus": MediaFormat("opus", 48000, channels=2, payload_type=111),
}


def caller_payloads(encoding: str, n: int) -> list[bytes]:
    m = MEDIA[encoding]
    codec = get_codec(m.encoding, m.clock_rate, m.channels)
    pcm = tone(20 * n, codec.sample_rate, 6000)
    step = codec.samples_per_frame * 2
    enc = codec.encoder()
    return [enc.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]


async def start_bridge(
    call: MemoryCall, backend: ScriptedBackend
) -> tuple[CallBridge, asyncio.Task[Any], TimedSession]:
    """A bridge running on ``call`` with its timed scripted session connected."""
    bridge = CallBridge(call, backend, cfg(), options=BridgeOptions(caller_silence_timeout=None))
    task = asyncio.create_task(bridge.run())
    while bridge.session is None:
        await asyncio.sleep(0.001)
    session = backend.sessions[0]
    assert isinstance(session, TimedSession)
    return bridge, task, session


async def bench_inbound_scripted(encoding: str, frames: int) -> list[float]:
    backend = ScriptedBackend(lambda c, n: TimedSession(c))
    call = MemoryCall(MEDIA[encoding])
    _bridge, task, session = await start_bridge(call, backend)
    payloads = caller_payloads(encoding, frames)
    starts: list[int] = []
    for i, p in enumerate(payloads):
        starts.append(time.perf_counter_ns())
        call.feed(p)
        if i % 5 == 4:
            await asyncio.sleep(0)
    out = [(b - a) / 1e6 for a, b in zip(starts, session.audio_in, strict=True)]
    call.remote_hangup()
    await task
    return out[50:]  # warm-up


async def bench_inbound_realtime(encoding: str, frames: int) -> list[float]:
    from w3sipagent.localai import RealtimeServer, Scenario
    from w3sipagent.realtime import open_session

    async with RealtimeServer(scenario=Scenario(name="bench"), tts_engine="tone") as srv:
        base = srv.http_url.replace("http", "ws")
        call = MemoryCall(MEDIA[encoding])
        cfg0 = AISessionConfig(turn_detection=None)
        bridge = CallBridge(
            call,
            lambda c: open_session(c, api_key="k", base_url=base, proxy=None),
            cfg0,
            options=BridgeOptions(caller_silence_timeout=None),
        )
        task = asyncio.create_task(bridge.run())
        while bridge.session is None:
            await asyncio.sleep(0.005)
        out: list[float] = []
        for i, p in enumerate(caller_payloads(encoding, frames)):
            t0 = time.perf_counter_ns()
            call.feed(p)  # frame sink -> bridge -> client.send_audio -> writer queue
            out.append((time.perf_counter_ns() - t0) / 1e6)
            if i % 5 == 4:
                await asyncio.sleep(0.002)
        call.remote_hangup()
        await task
    return out[50:]


async def bench_outbound(responses: int) -> dict[str, list[float]]:
    """First delta of a response (queue empty) at a random phase of the pacer's period."""
    frame = ulaw_encode(tone(20, 8000, 7000))
    backend = ScriptedBackend(lambda c, n: TimedSession(c))
    call = MemoryCall()
    bridge, task, session = await start_bridge(call, backend)
    playout = bridge.playout
    pushed: list[float] = []
    sent: list[float] = []
    real_push, real_next = playout.push, playout.next_frame

    def push(
        frames: list[bytes], item_id: str | None = None, response_id: str | None = None
    ) -> None:
        real_push(frames, item_id, response_id)
        if frames and item_id is not None:
            pushed.append(time.monotonic())

    def next_frame() -> bytes | None:
        f = real_next()
        if f is not None:
            sent.append(time.monotonic())
        return f

    playout.push = push  # type: ignore[method-assign]
    playout.next_frame = next_frame  # type: ignore[method-assign]
    rng = np.random.default_rng(3)
    for i in range(responses):
        await asyncio.sleep(0.21 + float(rng.uniform(0, 0.02)))  # between turns, any phase
        session.emit(AudioDelta(f"resp_{i}", f"item_{i}", frame))
    await asyncio.sleep(0.1)
    received = [t for t, ev in session.yielded if isinstance(ev, AudioDelta)]
    call.remote_hangup()
    await task
    n = min(len(received), len(pushed), len(sent))
    processing = [(pushed[i] - received[i]) * 1e3 for i in range(n)][10:]
    to_pacer = [(sent[i] - received[i]) * 1e3 for i in range(n)][10:]
    return {"processing": processing, "to_pacer": to_pacer}


class EndpointCall(MemoryCall):
    """A memory call whose outbound frames go out through a real RTP endpoint."""

    def __init__(self, endpoint: RtpEndpoint, kick: bool) -> None:
        super().__init__(kick=kick)
        self.endpoint = endpoint

    def set_frame_source(self, source: FrameSource | None) -> None:
        self.endpoint.set_source(source.next_frame if source is not None else None)

    def kick_audio(self) -> bool:
        return self.kick and self.endpoint.kick()


async def bench_outbound_rtp(responses: int, kick: bool, silence: str) -> list[float]:
    """First delta of a response → its first RTP packet handed to the socket (loopback)."""
    frame = ulaw_encode(tone(20, 8000, 7000))
    pacer = Pacer()
    config = MediaConfig(silence="silence" if silence == "silence" else "none", kick=kick)
    ep = await RtpEndpoint.open(
        RtpPortRange(29400, 29439), "127.0.0.1", pacer, SecureIdSource(),
        payload_type=0, clock_rate=8000, config=config,
    )  # fmt: skip
    ep.silence_payload = bytes([ULAW_SILENCE]) * 160
    sink = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    ep.set_remote(sink[0].get_extra_info("sockname"))
    sent: list[float] = []
    real_sendto = ep.sender.sendto

    def sendto(data: bytes, addr: tuple[str, int]) -> None:
        real_sendto(data, addr)
        if data[12:] == frame:  # the agent's audio, not the silence packets
            sent.append(time.monotonic())

    ep.sender.sendto = sendto  # type: ignore[method-assign]
    backend = ScriptedBackend(lambda c, n: TimedSession(c))
    call = EndpointCall(ep, kick)
    _bridge, task, session = await start_bridge(call, backend)
    rng = np.random.default_rng(5)
    firsts: list[float] = []
    for i in range(responses):
        await asyncio.sleep(0.21 + float(rng.uniform(0, 0.02)))  # between turns, any phase
        n = len(sent)
        session.emit(AudioDelta(f"resp_{i}", f"item_{i}", frame))
        while len(sent) == n:
            await asyncio.sleep(0.001)
        firsts.append(sent[n])
    received = [t for t, ev in session.yielded if isinstance(ev, AudioDelta)]
    call.remote_hangup()
    await task
    ep.close()
    sink[0].close()
    pacer.close()
    return [(f - r) * 1e3 for f, r in zip(firsts, received, strict=True)][10:]


async def bench_bargein(count: int) -> dict[str, Any]:
    replies = [ScriptedReply(ulaw_encode(tone(3000, 8000, 7000)), "x") for _ in range(count)]
    backend = ScriptedBackend(lambda c, n: TimedSession(c, replies=replies))
    call = MemoryCall()
    bridge, task, session = await start_bridge(call, backend)
    rng = np.random.default_rng(7)
    processing: list[float] = []
    to_silence: list[float] = []
    late_frames = 0
    for _ in range(count):
        await session.create_response()
        n0 = len(call.audio_frames())
        target = n0 + int(rng.integers(10, 30))
        while len(call.audio_frames()) < target:
            await asyncio.sleep(0.002)
        await asyncio.sleep(float(rng.uniform(0, 0.02)))  # any phase of the pacer
        k = len(bridge.barge_ins)
        session.speech_started()
        while len(bridge.barge_ins) == k:
            await asyncio.sleep(0)
        t_recv = next(t for t, ev in reversed(session.yielded) if isinstance(ev, SpeechStarted))
        cut = bridge.barge_ins[-1]
        processing.append((cut.cut_at - t_recv) * 1e3)
        await asyncio.sleep(0.06)
        after = [f for f in call.sent if f.at > t_recv]  # loop.time() is time.monotonic()
        late_frames += sum(1 for f in after if f.payload is not None)
        first_silent = next(f for f in after if f.payload is None)
        to_silence.append((first_silent.at - t_recv) * 1e3)
        while session.response_active is not None:
            await asyncio.sleep(0.005)
    call.remote_hangup()
    await task
    return {"processing": processing, "to_silence": to_silence, "late_agent_frames": late_frames}


async def bench_turns(turns: int, model_delay: float) -> list[dict[str, float | None]]:
    from w3sipagent.localai import RealtimeServer, Scenario, ServerOptions, Turn
    from w3sipagent.realtime import open_session

    script = Scenario(
        name="turns",
        turns=tuple(Turn(caller=f"q{i}", say="Sure, we open at nine.") for i in range(turns)),
    )
    opts = ServerOptions(first_audio_delay_s=model_delay)
    async with RealtimeServer(scenario=script, tts_engine="tone", options=opts) as srv:
        base = srv.http_url.replace("http", "ws")
        call = MemoryCall(kick=True)  # like a SIP call: rtp.talkspurt_kick is on by default
        c = AISessionConfig(
            turn_detection=TurnDetection(prefix_padding_ms=100, silence_duration_ms=300)
        )
        bridge = CallBridge(
            call,
            lambda cf: open_session(cf, api_key="k", base_url=base, proxy=None),
            c,
            options=BridgeOptions(caller_silence_timeout=None),
        )
        task = asyncio.create_task(bridge.run())
        while bridge.session is None:
            await asyncio.sleep(0.005)
        speech = ulaw_encode(tone(700, 8000, 9000))
        silence = bytes([ULAW_SILENCE]) * 160
        loop = asyncio.get_running_loop()
        for _ in range(turns):
            frames = [speech[i : i + 160] for i in range(0, len(speech), 160)] + [silence] * 150
            t0 = loop.time()
            for i, f in enumerate(frames):
                await asyncio.sleep(max(0.0, t0 + i * 0.02 - loop.time()))
                call.feed(f)
            await bridge.playout.wait_drained(5)
        call.remote_hangup()
        await task
    return [t.breakdown() for t in bridge.latency.turns]


def row(name: str, s: dict[str, float]) -> str:
    return f"| {name:<44} | {s['n']:>6} | {s['p50_ms']:>9.4f} | {s['p99_ms']:>9.4f} | {s['max_ms']:>9.4f} |"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"inbound": {}, "outbound": {}, "bargein": {}, "turns": []}
    for enc in ("PCMU", "G722", "opus"):
        res["inbound"][f"{enc} bridge"] = summary(await bench_inbound_scripted(enc, args.frames))
    res["inbound"]["PCMU bridge+client"] = summary(
        await bench_inbound_realtime("PCMU", args.frames)
    )
    out = await bench_outbound(args.responses)
    res["outbound"] = {k: summary(v) for k, v in out.items()}
    for mode, silence in (("kick", "silence"), ("kick", "none"), ("tick", "silence")):
        rtp = await bench_outbound_rtp(args.rtp_responses, kick=mode == "kick", silence=silence)
        name = f"rtp_{mode}" if silence == "silence" else f"rtp_{mode}_no_silence"
        res["outbound"][name] = summary(rtp)
    b = await bench_bargein(args.bargeins)
    res["bargein"] = {
        "processing": summary(b["processing"]),
        "to_silence": summary(b["to_silence"]),
        "late_agent_frames": b["late_agent_frames"],
    }
    if args.turns:
        res["turns"] = await bench_turns(args.turns, args.model_delay)
    return res


def print_table(res: dict[str, Any]) -> None:
    print(
        "| measurement                                  |      n |   p50 ms  |   p99 ms  |   max ms  |"
    )
    print(
        "|----------------------------------------------|-------:|----------:|----------:|----------:|"
    )
    for k, s in res["inbound"].items():
        print(row(f"inbound {k} (sink->send_audio)", s))
    print(row("outbound processing (delta -> queued)", res["outbound"]["processing"]))
    print(row("outbound first frame (delta -> pacer tick)", res["outbound"]["to_pacer"]))
    out = res["outbound"]
    print(row("outbound delta -> first RTP sendto, kick", out["rtp_kick"]))
    print(row("  the same, send_silence = false", out["rtp_kick_no_silence"]))
    print(row("outbound delta -> first RTP sendto, no kick", out["rtp_tick"]))
    print(row("barge-in processing (event -> queue cleared)", res["bargein"]["processing"]))
    print(row("barge-in to silence (event -> silent tick)", res["bargein"]["to_silence"]))
    print(f"agent frames sent after speech_started: {res['bargein']['late_agent_frames']}")
    for i, t in enumerate(res["turns"], 1):
        print(f"turn {i}: " + ", ".join(f"{k}={v}" for k, v in t.items()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--responses", type=int, default=300)
    ap.add_argument("--rtp-responses", type=int, default=150, help="per RTP mode, ~0.22 s each")
    ap.add_argument(
        "--model-delay", type=float, default=0.3, help="simulated time to first audio (s)"
    )
    ap.add_argument("--bargeins", type=int, default=40)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    result = asyncio.run(main(a))
    print_table(result)
    text = json.dumps(result, indent=2)
    print(text)
    if a.json is not None:
        a.json.write_text(text)
