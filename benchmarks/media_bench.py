"""Media engine benchmark: N concurrent echo calls in one process over loopback UDP.

Each call is a real :class:`~w3sipagent.asyncio.media.RtpEndpoint` (own UDP
socket pair from the port range) driven by the one shared
:class:`~w3sipagent.asyncio.pacer.Pacer`. A separate *peer* process plays the
far ends: it sends every call 50 RTP packets a second (phases spread over the
20 ms period) from one socket and drains what the calls send back. The calls
echo what they receive through the real receive path (parse, source policy,
RFC 3550 statistics, jitter buffer) and send it back through the pacer.

Variants:

- ``passthrough``: G.711 payload bytes untouched (the PCMU <-> Realtime
  ``audio/pcmu`` path);
- ``transcode``: PCMU decode, resample 8 -> 24 kHz (what Realtime ``audio/pcm``
  takes), resample 24 -> 8 kHz, encode, per frame in each direction's worth;
- ``opus``: Opus 48 kHz RTP, libopus decode at 24 kHz and encode back.

Each measured point runs in a fresh process. Reported per point: CPU of the
calls' process per call (% of one core), outbound send lateness against each
call's own deadline (p50 / p99 / max), memory per call (tracemalloc during
set-up + 1 s warm-up, and the RSS delta), packets received and sent. The
highest N whose p99 lateness is <= 2 ms is printed per loop.

``--workers W`` runs each point as W such processes at once, N/W calls each (own pacer, own
peer process, own ports): what ``serve --workers W`` does with the media of its calls. The
points are merged: CPU summed, lateness percentiles from the summed histograms, packets
summed. The summary gives the highest N per worker count, and with ``--compare`` (e.g.
``--workers 1,2``) the ratio of the highest N of the largest count to that of one worker.

Usage::

    .venv/bin/python benchmarks/media_bench.py --calls 100,300,500 --seconds 10 --loop both
    .venv/bin/python benchmarks/media_bench.py --variant transcode --calls 50,100,200
    .venv/bin/python benchmarks/media_bench.py --quick 2 --calls 40 --seconds 2
    .venv/bin/python benchmarks/media_bench.py --loop asyncio --workers 1,2 --calls 100,200,300

``--quick`` is the regression check CI runs (tests/benchmarks/test_media_regression.py):
the engine's CPU per packet divided by that of a bare asyncio echo loop over the same
peer, measured back to back in one process, so the ratio does not depend on how fast or
how busy the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.asyncio.media import MediaConfig, RtpEndpoint
from w3sipagent.asyncio.pacer import LatenessStats, Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.ids import SecureIdSource
from w3sipagent.rtp.jitter import Frame

HOST = "127.0.0.1"
PERIOD = 0.020
TARGET_P99_MS = 2.0
VARIANTS = ("passthrough", "transcode", "opus")
GC_FREEZE = False


def _runqueue_wait() -> float:
    """Seconds this thread has waited for a CPU (host contention), from /proc schedstat."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


# --------------------------------------------------------------------- peer
def _peer_payloads(variant: str) -> list[bytes]:
    if variant != "opus":
        # a PCMU-coded 400 Hz tone, 50 distinct frames
        import math

        from w3sipagent.codecs import ulaw_encode

        pcm = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 400 * n / 8000)))
            for n in range(8000)
        )
        coded = ulaw_encode(pcm)
        return [coded[i * 160 : (i + 1) * 160] for i in range(50)]
    import math

    from w3sipagent.codecs import get_codec

    enc = get_codec("opus", 48000, 2).encoder()
    pcm48 = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 400 * n / 48000))) for n in range(48000)
    )
    return [bytes(enc.encode(pcm48[i * 1920 : (i + 1) * 1920])) for i in range(50)]


def run_peer(variant: str, seconds: float) -> None:
    """The far ends: read call ports from stdin, print our port, send and drain."""
    ports = json.loads(sys.stdin.readline())
    payloads = _peer_payloads(variant)
    pt, step = (111, 960) if variant == "opus" else (0, 160)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    sys.stdin.readline()  # "go"
    n = len(ports)
    header = struct.Struct("!BBHII")
    seqs = [0] * n
    sent = received = 0
    start = time.monotonic()
    slots = 20  # 1 ms slots
    by_slot = [[i for i in range(n) if i * slots // n == s] for s in range(slots)]
    k = 0
    end = start + seconds
    while True:
        due = start + k * PERIOD / slots
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        if due > end:
            break
        frame = k // slots
        for i in by_slot[k % slots]:
            seq = seqs[i]
            seqs[i] = seq + 1
            pkt = header.pack(0x80, pt, seq & 0xFFFF, (frame * step) & 0xFFFFFFFF, 0x1000 + i)
            try:
                sock.sendto(pkt + payloads[frame % 50], (HOST, ports[i]))
                sent += 1
            except BlockingIOError:
                pass
        while True:
            try:
                sock.recv(2048)
                received += 1
            except BlockingIOError:
                break
        k += 1
    cpu = time.process_time() / max(1e-9, time.monotonic() - start)
    print(
        json.dumps({"sent": sent, "received": received, "cpu_core_pct": round(100 * cpu, 1)}),
        flush=True,
    )


# --------------------------------------------------------------------- calls
class EchoCall:
    """One call: frames in -> (optional codec work) -> queue -> the pacer's source."""

    __slots__ = ("dec", "down", "enc", "endpoint", "out", "up", "variant")

    def __init__(self, endpoint: RtpEndpoint, variant: str) -> None:
        self.endpoint = endpoint
        self.variant = variant
        self.out: collections.deque[bytes] = collections.deque(maxlen=10)
        self.dec: Any = None
        self.enc: Any = None
        self.up: Any = None
        self.down: Any = None
        if variant == "transcode":
            from w3sipagent.codecs import get_codec
            from w3sipagent.codecs.resample import Resampler

            codec = get_codec("pcmu", 8000)
            self.dec, self.enc = codec.decoder(), codec.encoder()
            self.up, self.down = Resampler(8000, 24000), Resampler(24000, 8000)
        elif variant == "opus":
            from w3sipagent.codecs import get_codec

            codec = get_codec("opus", 48000, 2).with_pcm_rate(24000)  # type: ignore[attr-defined]
            self.dec, self.enc = codec.decoder(), codec.encoder()
        endpoint.on_frame = self.on_frame
        endpoint.set_source(self.next_frame)

    def on_frame(self, frame: Frame) -> None:
        payload = frame.payload
        if payload is None:
            return
        if self.variant == "transcode":
            pcm24 = self.up.process(self.dec.decode(payload))  # what the AI would get
            payload = self.enc.encode(self.down.process(pcm24))  # what the AI sends back
        elif self.variant == "opus":
            payload = bytes(self.enc.encode(self.dec.decode(payload)))
        self.out.append(payload)

    def next_frame(self) -> bytes | None:
        out = self.out
        return out.popleft() if out else None


def _warm_codecs(variant: str) -> None:
    """Import the codec modules and run one frame through a throwaway codec pair, so
    the process-wide costs (libopus / numpy load, first allocations: about 16 MB for
    libopus) are not counted as memory per call."""
    if variant == "passthrough":
        return
    from w3sipagent.codecs import get_codec
    from w3sipagent.codecs.resample import Resampler

    if variant == "opus":
        codec = get_codec("opus", 48000, 2).with_pcm_rate(24000)  # type: ignore[attr-defined]
        codec.decoder().decode(codec.encoder().encode(b"\x00\x00" * 480))
    else:
        pcmu = get_codec("pcmu", 8000)
        pcm = pcmu.decoder().decode(b"\xff" * 160)
        pcmu.encoder().encode(Resampler(24000, 8000).process(Resampler(8000, 24000).process(pcm)))


async def _run_point(
    n: int, seconds: float, variant: str, warmup: float, port_base: int = 30000
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pacer = Pacer(period=PERIOD, slots=10)
    ports = RtpPortRange(port_base, port_base + 4 * n + 200)
    ids = SecureIdSource()
    pt, clock, silence = (111, 48000, None) if variant == "opus" else (0, 8000, b"\xff" * 160)
    config = MediaConfig(inactivity_timeout=3600.0)
    _warm_codecs(variant)  # one-time library load and first-use costs are not per call
    rss0 = _rss_kb()
    tracemalloc.start()
    mem0 = tracemalloc.get_traced_memory()[0]
    calls: list[EchoCall] = []
    for _ in range(n):
        ep = await RtpEndpoint.open(
            ports,
            HOST,
            pacer,
            ids,
            payload_type=pt,
            clock_rate=clock,
            telephone_event_pt=101,
            config=config,
        )
        ep.silence_payload = silence
        calls.append(EchoCall(ep, variant))
    peer = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--peer",
            variant,
            str(seconds + warmup + 1),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert peer.stdin is not None and peer.stdout is not None
    peer.stdin.write(json.dumps([c.endpoint.local_port for c in calls]) + "\n")
    peer.stdin.flush()
    peer_port = json.loads(await loop.run_in_executor(None, peer.stdout.readline))["port"]
    for c in calls:
        c.endpoint.set_remote((HOST, peer_port))
    peer.stdin.write("go\n")
    peer.stdin.flush()
    await asyncio.sleep(warmup)
    mem1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss1 = _rss_kb()
    # measure
    gc_pauses: list[float] = []
    gc_t = [0.0]

    def _gc_cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_t[0] = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - gc_t[0])

    if GC_FREEZE:
        gc.freeze()
    gc.callbacks.append(_gc_cb)
    pacer.lateness.reset()
    skipped0 = pacer.skipped_periods
    rx0 = sum(c.endpoint.stats.packets_received for c in calls)
    tx0 = sum(c.endpoint.session.packets_sent for c in calls)
    cpu0, wall0, wait0 = time.process_time(), time.monotonic(), _runqueue_wait()
    await asyncio.sleep(seconds)
    cpu1, wall1, wait1 = time.process_time(), time.monotonic(), _runqueue_wait()
    gc.callbacks.remove(_gc_cb)
    lat = pacer.lateness.as_dict()
    bins = {i: c for i, c in enumerate(pacer.lateness.bins) if c}
    lat_total, lat_max = pacer.lateness.total, pacer.lateness.max
    snaps = [c.endpoint.snapshot() for c in calls]
    rx = sum(s.packets_received for s in snaps) - rx0
    tx = sum(c.endpoint.session.packets_sent for c in calls) - tx0
    for c in calls:
        c.endpoint.close()
    pacer.close()
    peer_out = json.loads(await loop.run_in_executor(None, peer.stdout.readline))
    peer.wait()
    wall = wall1 - wall0
    cpu = (cpu1 - cpu0) / wall
    return {
        "variant": variant,
        "calls": n,
        "seconds": round(wall, 2),
        "cpu_core_pct": round(100 * cpu, 1),
        "cpu_per_call_pct": round(100 * cpu / n, 3),
        "runqueue_wait_pct": round(100 * (wait1 - wait0) / wall, 1),
        "lateness_p50_ms": round(lat["p50_ms"], 3),
        "lateness_p99_ms": round(lat["p99_ms"], 3),
        "lateness_max_ms": round(lat["max_ms"], 3),
        "sends_measured": int(lat["count"]),
        "skipped_periods": pacer.skipped_periods - skipped0,
        "gc_collections": len(gc_pauses),
        "gc_max_pause_ms": round(max(gc_pauses, default=0.0) * 1000, 2),
        "mem_per_call_kb": round((mem1 - mem0) / 1024 / n, 1),
        "rss_per_call_kb": round((rss1 - rss0) / n, 1),
        "rx_pps": round(rx / wall),
        "tx_pps": round(tx / wall),
        "expected_pps": 50 * n,
        "lost": sum(s.lost for s in snaps),
        "late": sum(s.late for s in snaps),
        "malformed": sum(s.malformed for s in snaps),
        "peer": peer_out,
        "ok": lat["p99_ms"] <= TARGET_P99_MS,
        "lateness_hist": {"bins": bins, "total": lat_total, "max": lat_max},
    }


class _Echo(asyncio.DatagramProtocol):
    """The reference: a bare asyncio socket that sends each datagram straight back."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: tuple[str, int] | None = None
        self.rx = self.tx = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.rx += 1
        if self.transport is not None and self.peer is not None:
            self.transport.sendto(data, self.peer)
            self.tx += 1


async def _run_reference(n: int, seconds: float, warmup: float) -> dict[str, Any]:
    """The same peer and packet rate as a passthrough point, through a minimal echo loop."""
    loop = asyncio.get_running_loop()
    protos: list[_Echo] = []
    for _ in range(n):
        _, proto = await loop.create_datagram_endpoint(_Echo, local_addr=(HOST, 0))
        protos.append(proto)
    ports = [p.transport.get_extra_info("sockname")[1] for p in protos if p.transport]
    peer = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--peer", "passthrough",
         str(seconds + warmup + 1)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert peer.stdin is not None and peer.stdout is not None
    peer.stdin.write(json.dumps(ports) + "\n")
    peer.stdin.flush()
    peer_port = json.loads(await loop.run_in_executor(None, peer.stdout.readline))["port"]
    for p in protos:
        p.peer = (HOST, peer_port)
    peer.stdin.write("go\n")
    peer.stdin.flush()
    await asyncio.sleep(warmup)
    pk0 = sum(p.rx + p.tx for p in protos)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.monotonic()
    packets = sum(p.rx + p.tx for p in protos) - pk0
    for p in protos:
        if p.transport is not None:
            p.transport.close()
    await loop.run_in_executor(None, peer.stdout.readline)
    peer.wait()
    return {"cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "packets": packets}


async def _run_quick(n: int, seconds: float, rounds: int) -> dict[str, Any]:
    """Reference and engine back to back, ``rounds`` times; the cheapest of each."""
    ref: list[float] = []
    eng: list[float] = []
    for _ in range(rounds):
        r = await _run_reference(n, seconds, 0.5)
        ref.append(1e6 * r["cpu_s"] / max(1, r["packets"]))
        e = await _run_point(n, seconds, "passthrough", 0.5)
        packets = (e["rx_pps"] + e["tx_pps"]) * e["seconds"]
        eng.append(1e6 * e["cpu_core_pct"] / 100 * e["seconds"] / max(1.0, packets))
    return {
        "calls": n,
        "seconds": seconds,
        "rounds": rounds,
        "reference_us_per_packet": [round(x, 2) for x in ref],
        "engine_us_per_packet": [round(x, 2) for x in eng],
        "ratio": round(min(eng) / min(ref), 2),
        "host_load": round(os.getloadavg()[0], 2),
    }


def merge_points(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One point from W worker processes' points measured at the same time."""
    stats = LatenessStats()
    for p in parts:
        h = p["lateness_hist"]
        for i, c in h["bins"].items():
            stats.bins[int(i)] += c
            stats.count += c
        stats.total += h["total"]
        stats.max = max(stats.max, h["max"])
    lat = stats.as_dict()
    n = sum(p["calls"] for p in parts)
    cpu = sum(p["cpu_core_pct"] for p in parts)
    out: dict[str, Any] = {
        "variant": parts[0]["variant"],
        "calls": n,
        "workers": len(parts),
        "seconds": max(p["seconds"] for p in parts),
        "cpu_core_pct": round(cpu, 1),
        "cpu_per_call_pct": round(cpu / n, 3),
        "runqueue_wait_pct": round(max(p["runqueue_wait_pct"] for p in parts), 1),
        "lateness_p50_ms": round(lat["p50_ms"], 3),
        "lateness_p99_ms": round(lat["p99_ms"], 3),
        "lateness_max_ms": round(lat["max_ms"], 3),
        "sends_measured": int(lat["count"]),
        "mem_per_call_kb": round(sum(p["mem_per_call_kb"] * p["calls"] for p in parts) / n, 1),
        "rss_per_call_kb": round(sum(p["rss_per_call_kb"] * p["calls"] for p in parts) / n, 1),
        "per_worker_p99_ms": [p["lateness_p99_ms"] for p in parts],
        "ok": lat["p99_ms"] <= TARGET_P99_MS,
    }
    for key in ("rx_pps", "tx_pps", "expected_pps", "lost", "late", "malformed"):
        out[key] = sum(p[key] for p in parts)
    return out


def _new_loop(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_point(
    n: int, seconds: float, variant: str, loop_kind: str, warmup: float, port_base: int = 30000
) -> dict[str, Any]:
    """One measured point in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 100
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    with asyncio.Runner(loop_factory=_new_loop(loop_kind)) as runner:
        result = runner.run(_run_point(n, seconds, variant, warmup, port_base))
    result["loop"] = loop_kind
    return result


def _loops(arg: str) -> list[str]:
    if arg != "both":
        return [arg]
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["uvloop", "asyncio"]


def _point_cmd(args: argparse.Namespace, loop_kind: str, n: int, port_base: int) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--point",
        "--calls",
        str(n),
        "--seconds",
        str(args.seconds),
        "--warmup",
        str(args.warmup),
        "--variant",
        args.variant,
        "--loop",
        loop_kind,
        "--nice",
        str(args.nice),
        "--port-base",
        str(port_base),
    ]


def _measure(
    args: argparse.Namespace, loop_kind: str, n: int, workers: int
) -> dict[str, Any] | None:
    """One point: ``workers`` processes of ``n / workers`` calls each, at the same time."""
    shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    procs = []
    base = 30000
    for share in shares:
        procs.append(
            subprocess.Popen(
                _point_cmd(args, loop_kind, share, base),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        base += 4 * share + 400
    parts = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            print(err, file=sys.stderr)
            return None
        parts.append(json.loads(out.strip().splitlines()[-1]))
    if workers == 1:
        parts[0]["workers"] = 1
        return parts[0]
    return merge_points(parts)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--peer":
        run_peer(argv[1], float(argv[2]))
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", default="100,200,300,400,500", help="comma-separated N values")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per point")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--variant", choices=VARIANTS, default="passthrough")
    ap.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the calls' process (negative needs privileges; shows host contention)",
    )
    ap.add_argument(
        "--workers",
        default="1",
        help="comma-separated worker process counts: each point as W processes of N/W calls",
    )
    ap.add_argument("--port-base", type=int, default=30000, help=argparse.SUPPRESS)
    ap.add_argument("--point", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--quick",
        type=int,
        metavar="ROUNDS",
        help="regression check: CPU per packet of the engine (passthrough, first --calls "
        "value) against a bare asyncio echo loop in the same process, ROUNDS times each",
    )
    args = ap.parse_args(argv)
    ns = [int(x) for x in args.calls.split(",") if x]
    if args.quick:
        with asyncio.Runner(loop_factory=_new_loop("asyncio")) as runner:
            quick = runner.run(_run_quick(ns[0], args.seconds, args.quick))
        print(json.dumps(quick))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(quick, f, indent=1)
        return 0
    if args.point:
        if args.nice:
            os.nice(args.nice)
        point = run_point(ns[0], args.seconds, args.variant, args.loop, args.warmup, args.port_base)
        print(json.dumps(point))
        return 0
    results: list[dict[str, Any]] = []
    worker_counts = [int(x) for x in str(args.workers).split(",") if x]
    cols = (
        "loop",
        "workers",
        "calls",
        "cpu_core_pct",
        "runqueue_wait_pct",
        "cpu_per_call_pct",
        "lateness_p50_ms",
        "lateness_p99_ms",
        "lateness_max_ms",
        "mem_per_call_kb",
        "rss_per_call_kb",
        "rx_pps",
        "tx_pps",
        "lost",
    )
    print(
        f"variant {args.variant}, {args.seconds:g} s per point, nice {args.nice}, "
        f"host load {os.getloadavg()[0]:.2f}"
    )
    print(" ".join(f"{c:>{len(c)}}" for c in cols))
    for loop_kind in _loops(args.loop):
        for w in worker_counts:
            for n in ns:
                r = _measure(args, loop_kind, n, w)
                if r is None:
                    continue
                r["loop"] = loop_kind
                r["load_1min"] = round(os.getloadavg()[0], 2)
                results.append(r)
                print(" ".join(f"{r[c]!s:>{len(c)}}" for c in cols), flush=True)
    summary: dict[str, Any] = {
        "variant": args.variant,
        "target_p99_ms": TARGET_P99_MS,
        "points": results,
    }
    for loop_kind in _loops(args.loop):
        best: dict[int, int | None] = {}
        for w in worker_counts:
            ok = [
                r["calls"]
                for r in results
                if r["loop"] == loop_kind and r["workers"] == w and r["ok"]
            ]
            best[w] = max(ok) if ok else None
            key = f"max_calls_p99_le_2ms_{loop_kind}" + ("" if w == 1 else f"_{w}_workers")
            summary[key] = best[w]
            print(
                f"{loop_kind}, {w} worker(s): highest N with p99 lateness <= {TARGET_P99_MS} ms: "
                f"{best[w] if best[w] is not None else 'none'}"
            )
        top = max(worker_counts)
        if 1 in best and top > 1 and best[1] and best[top]:
            ratio = best[top] / best[1]
            summary[f"scaling_{top}_workers_{loop_kind}"] = round(ratio, 2)
            print(f"{loop_kind}: {top} workers carry {ratio:.2f}x the calls of one")
    for r in results:
        r.pop("lateness_hist", None)
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
