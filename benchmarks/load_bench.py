"""End-to-end load: N concurrent G.711 calls through ``w3sipagent serve`` to the local
Realtime server, real RTP at real time, each caller playing a spoken WAV.

Processes on this machine: the local Realtime server (``w3sipagent realtime-server``,
real-time pacing), the agent (``w3sipagent serve``) and the load generator: N softphones
split over ``--workers`` processes (each an event loop of its own). Calls are placed over
``--ramp`` seconds, each lasts ``--duration`` seconds (the caller speaks after the
greeting, then stays on the line). Reported:

- calls completed / failed, SIP set-up time p50 / p99 (INVITE → 200 OK),
- bridge-added latency p99: end of caller speech → first agent RTP, minus the local
  server's own VAD silence window (``silence_duration_ms``), from the CDRs,
- inbound RTP loss at the callers and at the agent (from the CDRs),
- CPU seconds and peak RSS of the agent and the Realtime server, per call,
- CDR rows written == calls placed,
- what the callers sent against what real time asks for (a stalled load process shows
  here, not as loss: its pacer skips periods without using sequence numbers), the
  kernel's UDP receive-buffer drops during the run (machine-wide, /proc/net/snmp) and the
  load average at the start.

RTP ports: the agent uses ``--port-base`` .. +4N+100, the callers the next range; both
stay below the ephemeral ports (32768+) and away from the media benchmark's 30000+.

    .venv/bin/python benchmarks/load_bench.py --calls 50 --duration 20
    .venv/bin/python benchmarks/load_bench.py --calls 200 --duration 30 --ramp 15 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from w3sipagent.cli.call import CallSummary, place_call  # noqa: E402

SILENCE_MS = 500


def free_port(kind: int) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, peak RSS bytes) of a process from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return cpu, hwm


def rss_now(pid: int) -> int:
    """Current RSS bytes of a process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, round(q / 100 * (len(v) - 1)))]


async def wait_http(port: int, path: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = await r.read()
            w.close()
            if b" 200 " in data.split(b"\r\n", 1)[0]:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing answered on :{port}{path}")


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def caller_ports(args: argparse.Namespace, worker: int) -> tuple[int, int]:
    """The RTP port range of one load worker (after the agent's range)."""
    per = 4 * (args.calls // max(1, args.workers) + 1) + 100
    first = args.port_base + 4 * args.calls + 200 + worker * per
    return first, first + per - 1


async def place_share(args: argparse.Namespace, worker: int, speech: bytes) -> list[Any]:
    """This worker's calls (every ``workers``-th, on the shared ramp schedule)."""
    start = time.monotonic()
    ports = caller_ports(args, worker)

    async def one(i: int) -> CallSummary:
        await asyncio.sleep(max(0.0, start + args.ramp * i / max(1, args.calls) - time.monotonic()))
        return await place_call(
            "sip:a@load.example",
            proxy=("127.0.0.1", args.sip_port),
            turns=[speech],
            turn_gap=0.6,
            turn_timeout=10.0,
            duration=args.duration,
            answer_timeout=30.0,
            rtp_ports=ports,
        )

    mine = range(worker, args.calls, max(1, args.workers))
    return await asyncio.gather(*(one(i) for i in mine), return_exceptions=True)


def summary_dict(r: Any) -> dict[str, Any]:
    if isinstance(r, BaseException):
        return {"error": repr(r)[:200]}
    return {
        "answered": r.answered,
        "heard_speech_s": r.heard_speech_s,
        "setup_ms": r.setup_ms,
        "lost": r.lost,
        "packets_received": r.packets_received,
        "packets_sent": r.packets_sent,
        "duration_s": r.duration_s,
        "jitter_ms": r.jitter_ms,
    }


async def run_worker(args: argparse.Namespace) -> None:
    """``--worker-index W``: place this worker's share and print the summaries as JSON."""
    from w3sipagent.demo_assets import caller_utterances

    speech = (await caller_utterances(8000, engine=args.tts))[0]
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    results = await place_share(args, args.worker_index, speech)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "calls": [summary_dict(r) for r in results],
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
        )
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from w3sipagent.config import load_settings
    from w3sipagent.records.store import CdrStore

    work = Path(tempfile.mkdtemp(prefix="w3sip-load-"))
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    sip_port = args.sip_port = free_port(socket.SOCK_DGRAM)
    mport = free_port(socket.SOCK_STREAM)
    rt_port = free_port(socket.SOCK_STREAM)
    cfg = work / "w3sipagent.toml"
    cfg.write_text(f"""
[sip]
listen = "127.0.0.1:{sip_port}"
transports = ["udp"]
max_calls = {args.calls + 10}
drain_timeout = "30s"
[rtp]
port_min = {args.port_base}
port_max = {args.port_base + 4 * args.calls + 100}
talkspurt_kick = {"false" if args.no_kick else "true"}
[realtime]
base_url = "ws://127.0.0.1:{rt_port}/v1"
api_key = "sk-load"
connect_timeout = "20s"
[records]
database_url = "sqlite+aiosqlite:///cdr.db"
[metrics]
listen = "127.0.0.1:{mport}"
[logging]
level = "WARNING"
json = true
[tenancy]
reload_interval = 0
[tenants.load]
hosts = ["load.example"]
codecs = ["PCMU"]
[tenants.load.agents.a]
greeting = "Greet the caller."
turn_detection = {{ type = "server_vad", silence_duration_ms = {SILENCE_MS} }}
transcription = {{ enabled = false }}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
    agent_log = (work / "agent.log").open("wb")  # closed with the process' exit
    exe = [sys.executable, "-m", "w3sipagent"]
    rt = await asyncio.create_subprocess_exec(
        *exe,
        "realtime-server",
        "--port",
        str(rt_port),
        "--realtime-pacing",
        "--tts",
        args.tts,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    agent = await asyncio.create_subprocess_exec(
        *exe,
        "serve",
        "-c",
        str(cfg),
        "--no-live",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=agent_log,
        env=env,
    )
    try:
        await wait_http(mport, "/readyz")
        cpu0 = {p.pid: proc_stat(p.pid)[0] for p in (rt, agent)}
        idle_rss = rss_now(agent.pid)
        drops0 = udp_rcvbuf_errors()
        start_at = time.time() + 3.0  # the workers synthesize the speech first
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker-index",
                str(w),
                "--start-at",
                repr(start_at),
                "--sip-port",
                str(sip_port),
                "--calls",
                str(args.calls),
                "--workers",
                str(args.workers),
                "--duration",
                str(args.duration),
                "--ramp",
                str(args.ramp),
                "--tts",
                args.tts,
                "--port-base",
                str(args.port_base),
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
            for w in range(args.workers)
        ]
        outs = await asyncio.gather(*(w.communicate() for w in workers))
        start = start_at
        results: list[Any] = []
        load_cpu = 0.0
        for out, _ in outs:
            data = json.loads(out.decode().strip().splitlines()[-1])
            results.extend(data["calls"])
            load_cpu += data["cpu_s"]
        wall = time.time() - start
        await asyncio.sleep(1.0)
        usage = {p.pid: proc_stat(p.pid) for p in (rt, agent)}
        drops = udp_rcvbuf_errors() - drops0
        agent.send_signal(signal.SIGTERM)
        await asyncio.wait_for(agent.wait(), 60)
        settings = load_settings(cfg, environ={}, discover=False)
        async with CdrStore.from_settings(settings.records) as store:
            cdrs = await store.list_cdrs(limit=100_000)
    finally:
        for p in (agent, rt):
            if p.returncode is None:
                p.send_signal(signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(p.wait(), 10)
                if p.returncode is None:
                    p.kill()
    ok = [r for r in results if r.get("answered") and r["heard_speech_s"] > 0.5]
    failed = args.calls - len(ok)
    errors = [r["error"] for r in results if "error" in r][:5]
    setup = [r["setup_ms"] for r in ok if r["setup_ms"] is not None]
    caller_lost = sum(r["lost"] for r in ok)
    caller_rx = sum(r["packets_received"] for r in ok)
    caller_sent = sum(r["packets_sent"] for r in ok)
    caller_due = sum(r["duration_s"] * 50 for r in ok)  # 20 ms PCMU frames
    agent_lost = sum(int(c.rtp.get("lost", 0) or 0) for c in cdrs)
    agent_rx = sum(int(c.rtp.get("packets_received", 0) or 0) for c in cdrs)
    # CDR turn latency: the server's speech_stopped reaching the bridge -> first agent RTP
    # frame sent. The local server answers at once (no model time), so this is the bridge's
    # added latency plus the server's event/audio path.
    turn = [ms for c in cdrs for ms in c.turn_latencies_ms]
    # the agent's own share of the set-up: INVITE received -> 200 OK sent (CDR times)
    agent_setup = [
        (c.answer_at - c.invite_at).total_seconds() * 1000
        for c in cdrs
        if c.answer_at is not None and c.invite_at is not None
    ]
    agent_cpu = usage[agent.pid][0] - cpu0[agent.pid]
    rt_cpu = usage[rt.pid][0] - cpu0[rt.pid]
    n = max(1, args.calls)
    return {
        "calls": args.calls,
        "duration_s": args.duration,
        "completed": len(ok),
        "failed": failed,
        "errors": errors,
        "wall_s": round(wall, 1),
        "setup_ms_p50": pct(setup, 50),
        "setup_ms_p99": pct(setup, 99),
        "agent_setup_ms_p50": pct(agent_setup, 50),
        "agent_setup_ms_p99": pct(agent_setup, 99),
        "bridge_latency_ms_p50": pct(turn, 50),
        "bridge_latency_ms_p99": pct(turn, 99),
        "turns_measured": len(turn),
        "caller_loss_pct": round(100 * caller_lost / max(1, caller_lost + caller_rx), 3),
        "agent_calls_with_loss": sum(1 for c in cdrs if int(c.rtp.get("lost", 0) or 0) > 0),
        "agent_loss_pct": round(100 * agent_lost / max(1, agent_lost + agent_rx), 3),
        "caller_sent_pct_of_real_time": round(100 * caller_sent / max(1.0, caller_due), 2),
        "udp_rcvbuf_drops_machine": drops,
        "caller_jitter_ms_mean": round(statistics.mean([r["jitter_ms"] for r in ok]), 2)
        if ok
        else None,
        "agent_cpu_s": round(agent_cpu, 1),
        "agent_cpu_pct_of_one_core": round(100 * agent_cpu / wall, 1),
        "agent_cpu_ms_per_call_s": round(1000 * agent_cpu / (n * args.duration), 2),
        "agent_rss_mb": round(usage[agent.pid][1] / 2**20, 1),
        "agent_rss_idle_mb": round(idle_rss / 2**20, 1),
        "agent_rss_kb_per_call": round((usage[agent.pid][1] - idle_rss) / 1024 / n, 1),
        "realtime_server_cpu_s": round(rt_cpu, 1),
        "realtime_server_rss_mb": round(usage[rt.pid][1] / 2**20, 1),
        "load_processes": args.workers,
        "load_process_cpu_s": round(load_cpu, 1),
        "load_average_at_start": loadavg,
        "cdr_rows": len(cdrs),
        "cdr_rows_equal_calls": len(cdrs) == args.calls,
        "workdir": str(work),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=50, help="concurrent calls")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds each call lasts")
    ap.add_argument("--ramp", type=float, default=10.0, help="seconds over which calls start")
    ap.add_argument("--tts", default="auto", choices=["auto", "espeak", "tone"])
    ap.add_argument("--workers", type=int, default=2, help="load generator processes")
    ap.add_argument("--port-base", type=int, default=12000, help="first RTP port (agent)")
    ap.add_argument("--no-kick", action="store_true", help="agent with rtp.talkspurt_kick = false")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--sip-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_index is not None:
        asyncio.run(run_worker(args))
        return
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>28}: {v}")


if __name__ == "__main__":
    main()
