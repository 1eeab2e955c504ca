"""SIPp load test of a deployment: N calls with real speech RTP, measured from the outside.

SIPp (Debian ``sip-tester``, SIPp 3.6) places the calls: INVITE with a PCMU offer, ACK,
the caller's speech replayed from a pcap (``play_pcap_audio``: the demo caller's lines,
each followed by a pause for the agent's answer), BYE after ``--duration`` seconds. The
same scenario runs against anything that answers SIP: ``w3sipagent serve`` with the local
Realtime server (``--local`` starts both here), or FreeSWITCH generating a tone.

Reported:

- calls ok / failed (SIPp's own count, and ours from the scenario's log lines),
- set-up time INVITE -> 200 OK, p50 / p99 (SIPp's clock),
- CPU per call of the agent's processes (``--pid`` / ``--pid-file``, children included),
  over the steady part of the run (all calls up, none ended yet), in % of one core,
- the outbound RTP seen by the caller: a packet sniffer on ``--iface`` (kernel
  timestamps) histograms the gap between consecutive packets of each call's stream,
  p50 / p99 / max, and the streams and packets seen,
- CDR rows written for the run's Call-IDs (``--agent-config``: the agent's TOML, whose
  ``[records]`` database is read),
- with ``--soak``: memory, file descriptors, threads, UDP sockets (RTP ports) of the agent's
  processes, and the event loop's task count from its metrics (``--metrics-url``), before
  the run and after the calls have ended, plus samples every ``--sample-every`` seconds.

The packet sniffer needs root (or CAP_NET_RAW); without it the gap figures are omitted.

Examples::

    # w3sipagent + the local Realtime server, started here:
    .venv/bin/python benchmarks/sipp_load.py --local --calls 100 --rate 20 --duration 45
    # an existing deployment (agent pid for the CPU figure, its config for the CDR rows):
    .venv/bin/python benchmarks/sipp_load.py --target 10.0.0.5:5060 --uri sip:a@support.example \\
        --calls 200 --rate 20 --duration 45 --pid 1234 --agent-config /etc/w3sipagent.toml
    # FreeSWITCH playing a tone (the loopback config's 9197), same scenario:
    .venv/bin/python benchmarks/sipp_load.py --target 127.0.0.1:5080 --uri sip:9197@127.0.0.1 \\
        --calls 100 --rate 20 --duration 45 --pid-file /opt/freeswitch/run/freeswitch.pid
    # soak: 200 calls up at any time for 30 minutes
    .venv/bin/python benchmarks/sipp_load.py --local --soak --calls 200 --rate 20 \\
        --duration 45 --soak-minutes 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from rtp_capture import gap_percentiles, speech_frames, write_pcap  # noqa: E402
from sipp_procs import LocalDeployment, ProcTree, count_cdrs  # noqa: E402

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="w3sipagent load">
  <nop><action><gettimeofday assign_to="s0,u0"/></action></nop>
  <send retrans="500"><![CDATA[
INVITE {uri} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:load@[local_ip]:[local_port]>;tag=[pid]L[call_number]
To: <{uri}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:load@[local_ip]:[local_port]>
Max-Forwards: 70
Subject: load
Content-Type: application/sdp
Content-Length: [len]

v=0
o=load 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true">
    <action>
      <gettimeofday assign_to="s1,u1"/>
      <log message="SETUP [call_id] [$s0] [$u0] [$s1] [$u1]"/>
    </action>
  </recv>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:load@[local_ip]:[local_port]>;tag=[pid]L[call_number]
To: <{uri}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
[routes]
Contact: <sip:load@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{duration_ms}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:load@[local_ip]:[local_port]>;tag=[pid]L[call_number]
To: <{uri}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
[routes]
Contact: <sip:load@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true">
    <action><log message="END [call_id]"/></action>
  </recv>
  <ResponseTimeRepartition value="10, 20, 50, 100, 200, 500, 1000"/>
</scenario>
"""


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of ``values``."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def free_media_port() -> int:
    """An even UDP port with the next three free (SIPp binds audio and video pairs)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1] & ~1
        ok = True
        for p in range(port, port + 4):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("0.0.0.0", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise SystemExit("no free media port for SIPp")


def parse_log(path: Path) -> dict[str, Any]:
    """Set-up times and the Call-IDs of calls that got a 200 and ended with our BYE."""
    setups: list[float] = []
    answered: list[str] = []
    ended: list[str] = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[0] == "SETUP":
                s0, u0, s1, u1 = (float(x) for x in parts[2:6])
                setups.append((s1 - s0) * 1000 + (u1 - u0) / 1000)
                answered.append(parts[1])
            elif len(parts) >= 2 and parts[0] == "END":
                ended.append(parts[1])
    return {"setup_ms": setups, "answered": answered, "ended": ended}


def parse_stats(path: Path) -> dict[str, int]:
    """SIPp's cumulative counters from the last line of its ``-trace_stat`` file."""
    if not path.exists():
        return {}
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if len(lines) < 2:
        return {}
    head, last = lines[0].split(";"), lines[-1].split(";")
    out: dict[str, int] = {}
    for key in ("TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)"):
        if key in head:
            try:
                out[key] = int(last[head.index(key)])
            except (ValueError, IndexError):
                pass
    return out


def start_sniffer(
    iface: str, port: int, seconds: float, src: tuple[int, int] | None
) -> subprocess.Popen[str] | None:
    if os.geteuid() != 0:
        print("sipp_load: not root, outbound RTP gaps not measured", file=sys.stderr)
        return None
    extra = [str(src[0]), str(src[1])] if src else []
    script = str(HERE / "rtp_capture.py")
    proc = subprocess.Popen(
        [sys.executable, script, "--sniff", iface, str(port), str(seconds), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        return None
    return proc


def stop_sniffer(proc: subprocess.Popen[str] | None) -> dict[str, Any] | None:
    if proc is None:
        return None
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    lines = out.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    sipp = shutil.which(args.sipp)
    if sipp is None:
        raise SystemExit(f"sipp_load: {args.sipp} not found (Debian: apt-get install sip-tester)")
    work = Path(tempfile.mkdtemp(prefix="w3sip-sipp-"))
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    deployment: LocalDeployment | None = None
    pids = list(args.pid)
    for pf in args.pid_file:
        pids.append(int(Path(pf).read_text().split()[0]))
    target, uri, agent_config, metrics_url = (
        args.target,
        args.uri,
        args.agent_config,
        args.metrics_url,
    )
    if args.local:
        profile = Path(args.profile).resolve() if args.profile else None
        deployment = LocalDeployment(
            work,
            args.calls,
            args.port_base,
            args.tts,
            profile,
            args.append_ms,
            workers=args.workers or ("1" if profile is not None else None),
        )
        deployment.start()
        target, uri = deployment.sip_target, deployment.uri
        agent_config, metrics_url = str(deployment.config), deployment.metrics_url
        pids += deployment.pids
    if not target or not uri:
        raise SystemExit("sipp_load: --target and --uri (or --local) are needed")
    tree = ProcTree(pids)
    try:
        frames = speech_frames(args.duration + 2, engine=args.tts)
        pcap = write_pcap(work / "speech.pcap", frames)
        scen = work / "load.xml"
        scen.write_text(SCENARIO.format(uri=uri, pcap=pcap, duration_ms=int(args.duration * 1000)))
        media_port = free_media_port()
        total = args.calls
        if args.soak:
            total = max(args.calls, int(args.calls * args.soak_minutes * 60 / args.duration))
        ramp = args.calls / args.rate
        run_s = (total - args.calls) / args.rate + ramp + args.duration
        before = tree.sample(metrics_url)
        src = None
        if args.agent_rtp_ports:
            lo, _, hi = args.agent_rtp_ports.partition("-")
            src = (int(lo), int(hi or lo))
        elif deployment is not None:
            src = deployment.rtp_ports
        sniffer = start_sniffer(args.iface, media_port, run_s + 120, src)
        cmd = [
            sipp,
            target,
            "-sf", str(scen),
            "-i", args.local_ip,
            "-p", str(free_media_port() + 1),
            "-mi", args.local_ip,
            "-mp", str(media_port),
            "-r", str(args.rate),
            "-l", str(args.calls),
            "-m", str(total),
            "-recv_timeout", "40s",
            "-max_socket", str(args.calls * 2 + 100),
            "-nostdin",
            "-trace_stat", "-stf", str(work / "stat.csv"), "-fd", "1",
            "-trace_logs", "-log_file", str(work / "calls.log"),
            "-trace_err", "-error_file", str(work / "errors.log"),
        ]  # fmt: skip
        t0 = time.monotonic()
        sipp_err = (work / "sipp.stderr").open("wb")  # a file: a full pipe would block SIPp
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sipp_err
        )
        # steady window: every call of the first wave up, none of them ended yet
        w0, w1 = t0 + ramp + 2.0, t0 + args.duration - 1.0
        steady: dict[str, Any] = {}
        samples: list[dict[str, Any]] = []
        cpu_a = cpu_b = None
        next_sample = t0 + args.sample_every
        while proc.poll() is None:
            now = time.monotonic()
            if cpu_a is None and now >= w0 and w1 - w0 >= 3.0:
                cpu_a = (now, tree.cpu_seconds(), tree.sipp_cpu(proc.pid))
            if cpu_a is not None and cpu_b is None and now >= w1:
                cpu_b = (now, tree.cpu_seconds(), tree.sipp_cpu(proc.pid))
            if args.soak and now >= next_sample:
                samples.append({"t_s": round(now - t0), **tree.sample(metrics_url)})
                next_sample += args.sample_every
            time.sleep(0.2)
        wall = time.monotonic() - t0
        sipp_err.close()
        stderr = (work / "sipp.stderr").read_text(errors="replace")
        time.sleep(args.settle)
        after = tree.sample(metrics_url)
        capture = stop_sniffer(sniffer)
        if cpu_a and cpu_b:
            span = cpu_b[0] - cpu_a[0]
            agent_core = (cpu_b[1] - cpu_a[1]) / span
            steady = {
                "window_s": round(span, 1),
                "agent_cpu_core_pct": round(100 * agent_core, 1),
                "agent_cpu_per_call_pct": round(100 * agent_core / args.calls, 3),
                "sipp_cpu_core_pct": round(100 * (cpu_b[2] - cpu_a[2]) / span, 1),
                "by_process": tree.last_by_name(),
            }
            # per call of each program (serve's workers summed): the agent and the local
            # Realtime server are separate figures of the targets
            per_kind: dict[str, float] = {}
            for label, core_pct in steady["by_process"].items():
                kind = label.split("[", 1)[0].replace("_worker", "serve")
                per_kind[kind] = per_kind.get(kind, 0.0) + core_pct
            steady["per_call_pct_by_program"] = {
                k: round(v / args.calls, 3) for k, v in per_kind.items()
            }
        log = parse_log(work / "calls.log")
        stats = parse_stats(work / "stat.csv")
        cdr_rows = None
        if agent_config:
            cdr_rows = count_cdrs(agent_config, set(log["answered"]), args.settle)
        report: dict[str, Any] = {
            "target": target,
            "uri": uri,
            "calls": total,
            "concurrent": args.calls,
            "rate_cps": args.rate,
            "duration_s": args.duration,
            "load_average_at_start": loadavg,
            "wall_s": round(wall, 1),
            "sipp_exit": proc.returncode,
            "sipp_successful": stats.get("SuccessfulCall(C)"),
            "sipp_failed": stats.get("FailedCall(C)"),
            "retransmissions": stats.get("Retransmissions(C)"),
            "answered": len(log["answered"]),
            "ended_by_our_bye": len(log["ended"]),
            "setup_ms_p50": _r(pct(log["setup_ms"], 0.5)),
            "setup_ms_p99": _r(pct(log["setup_ms"], 0.99)),
            "steady": steady,
            "cdr_rows": cdr_rows,
            "work_dir": str(work),
        }
        if capture:
            p50, p99, p999, pmax = gap_percentiles(
                capture["gap_hist_100us"], (0.5, 0.99, 0.999, 1.0)
            )
            report["rtp_to_caller"] = {
                "streams": capture["streams"],
                "packets": capture["packets"],
                "seq_jumps": capture["seq_jumps"],
                "foreign_packets": capture["foreign"],
                "packets_per_stream_min_max": [
                    min(capture["packets_per_stream"], default=0),
                    max(capture["packets_per_stream"], default=0),
                ],
                "gap_ms_p50": p50,
                "gap_ms_p99": p99,
                "gap_ms_p999": p999,
                "gap_ms_max": pmax,
                "sniffer_cpu_s": capture["cpu_s"],
            }
        if args.soak:
            report["soak"] = {"before": before, "after": after, "samples": samples}
        if proc.returncode not in (0, 1):
            report["sipp_stderr"] = stderr[-2000:]
        return report
    finally:
        if deployment is not None:
            deployment.stop()


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--target", help="host:port the INVITEs go to")
    ap.add_argument("--uri", help="Request-URI, e.g. sip:a@support.example")
    ap.add_argument("--local", action="store_true", help="start serve + realtime-server here")
    ap.add_argument("--calls", type=int, default=100, help="calls up at once")
    ap.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    ap.add_argument("--duration", type=float, default=45.0, help="seconds each call lasts")
    ap.add_argument("--pid", type=int, action="append", default=[], help="agent process")
    ap.add_argument("--pid-file", action="append", default=[], help="file holding a pid")
    ap.add_argument("--agent-config", help="the agent's TOML, for the CDR count")
    ap.add_argument("--metrics-url", help="the agent's metrics base URL (tasks, loop lag)")
    ap.add_argument("--iface", default="lo", help="interface the caller receives RTP on")
    ap.add_argument(
        "--agent-rtp-ports", help="LO-HI: count only RTP from these source ports (default: all)"
    )
    ap.add_argument("--local-ip", default="127.0.0.1", help="SIPp's SIP and media address")
    ap.add_argument("--sipp", default="sipp")
    ap.add_argument("--soak", action="store_true", help="keep --calls up for --soak-minutes")
    ap.add_argument("--soak-minutes", type=float, default=30.0)
    ap.add_argument("--sample-every", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the last call")
    ap.add_argument("--port-base", type=int, default=23000, help="--local: agent RTP ports")
    ap.add_argument("--append-ms", type=int, default=0, help="--local: realtime.append_ms")
    ap.add_argument("--tts", default="auto", help="caller speech: auto, espeak or tones")
    ap.add_argument("--json", help="also write the report to this file")
    ap.add_argument("--profile", help="--local: cProfile both processes into this directory")
    ap.add_argument(
        "--workers",
        help="--local: serve --workers (default: serve's own; 1 with --profile, so the "
        "profile holds the calls)",
    )
    args = ap.parse_args(argv)
    if args.calls < 1 or args.rate <= 0 or args.duration <= 0:
        ap.error("--calls, --rate and --duration must be positive")
    report = run(args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    ok = report["answered"] == report["calls"] and not report["sipp_failed"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
