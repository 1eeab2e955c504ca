"""The fuzz long mode: mutated SIP (UDP and TCP), SDP and RTP against a running agent.

    nice -n 10 .venv/bin/python benchmarks/fuzz_bench.py --sip 1000000 --rtp 100000

Needs root (it makes a loopback-only network namespace, ``ip netns``, deleted afterwards)
and the repository checkout (the agent, ``tests/netns/agent_main.py``, and the driver,
``tests/netns/fuzz_driver.py``, run in the namespace; see ``tests/netns/fuzz.py`` for the
mutations). ``--tcp-share`` of the SIP messages go over TCP, the rest over UDP. A short
warm-up run (another seed) comes first; the agent's tasks, descriptors and resident memory
(after ``gc.collect()`` and ``malloc_trim``) are taken after it ("before") and once the
agent is quiet after the run ("after"). Prints a table, or JSON with ``--json``; exits 1
when the run fails its bar: the agent died or logged a traceback, an OPTIONS went
unanswered, descriptors or tasks grew, resident memory ended more than 10 % above its start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.netns.fuzz_run import namespace, run  # noqa: E402


def verdict(report: dict[str, Any], rss_margin: float = 0.10) -> list[str]:
    """What fails the bar (empty: the run passed)."""
    a = report["agent"]
    out: list[str] = []
    if not a.get("alive") or a.get("exit_code") not in (0, None):
        out.append(f"agent died (alive={a.get('alive')}, exit code {a.get('exit_code')})")
    if a.get("traceback"):
        out.append("traceback in the agent's log")
    p = report.get("probes", {})
    if p.get("answered") != p.get("sent"):
        out.append(f"OPTIONS answered {p.get('answered')}/{p.get('sent')}")
    before, after = a.get("before", {}), a.get("after", {})
    for key in ("fds", "tasks", "calls", "rtp_ports"):
        if after.get(key, 0) > before.get(key, 0):
            out.append(f"{key} grew: {before.get(key)} -> {after.get(key)}")
    if before and after and after["rss_kb"] > before["rss_kb"] * (1 + rss_margin):
        out.append(f"RSS {before['rss_kb']} kB -> {after['rss_kb']} kB (> {rss_margin:.0%})")
    aft = report.get("after", {})
    if aft.get("options_udp") != 200 or aft.get("options_tcp") != 200:
        out.append(f"OPTIONS after the run: {aft}")
    return out


def table(report: dict[str, Any], problems: list[str]) -> str:
    a, c, p = report["agent"], report["counts"], report["probes"]
    cold, before, peak, after = a["cold"], a["before"], a["peak"], a["after"]
    rows = [
        ("SIP over UDP / TCP (messages)", f"{c.get('udp_sent', 0):,} / {c.get('tcp_sent', 0):,}"),
        ("TCP connections", f"{c.get('tcp_connections', 0):,}"),
        ("RTP fuzzed packets (calls)", f"{c.get('rtp_sent', 0):,} ({c.get('rtp_calls', 0)})"),
        ("elapsed", f"{report['elapsed']:.0f} s"),
        ("crashes / tracebacks", f"{0 if a['alive'] else 1} / {int(a['traceback'])}"),
        ("OPTIONS answered during", f"{p['answered']}/{p['sent']} (worst {p['worst_s']:.2f} s)"),
        ("OPTIONS after (UDP, TCP)", f"{report['after']['options_udp']}, {report['after']['options_tcp']}"),
        ("descriptors cold / before / peak / after", f"{cold['fds']} / {before['fds']} / {peak.get('fds')} / {after['fds']}"),
        ("tasks cold / before / peak / after", f"{cold['tasks']} / {before['tasks']} / {peak.get('tasks')} / {after['tasks']}"),
        ("RSS kB cold / before / peak / after", f"{cold['rss_kb']} / {before['rss_kb']} / {peak.get('rss_kb')} / {after['rss_kb']}"),
        ("calls warm-up peak / peak / after",
         f"{a.get('warmup_peak', {}).get('calls')} / {peak.get('calls')} / {after['calls']}"),
        ("echo after the run", f"{report['after'].get('echo_seconds')} s"),
        ("verdict", "PASS" if not problems else "FAIL: " + "; ".join(problems)),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sip", type=int, default=20000, help="SIP messages (UDP + TCP)")
    parser.add_argument("--rtp", type=int, default=5000, help="fuzzed RTP packets")
    parser.add_argument("--tcp-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument("--batch", type=int, default=50, help="messages between OPTIONS probes")
    parser.add_argument("--netns-prefix", default="w3sfuzz")
    parser.add_argument("--timeout", type=float, default=6 * 3600)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=0.0,
        help="go on with UDP messages past --sip until the run has lasted this long (3600: the "
        "issue's hour)",
    )
    parser.add_argument(
        "--warmup-sip",
        type=int,
        default=2200,
        help="SIP messages of the warm-up run (another seed) after which 'before' is taken; "
        "50000 reaches the call table's peak (every RTP port taken), so 'after' compares "
        "like with like",
    )
    args = parser.parse_args()
    tcp = int(args.sip * args.tcp_share)
    driver = ["--seed", str(args.seed), "--udp", str(args.sip - tcp), "--tcp", str(tcp),
              "--rtp", str(args.rtp), "--batch", str(args.batch),
              "--min-seconds", str(args.min_seconds)]  # fmt: skip
    wtcp = int(args.warmup_sip * args.tcp_share)
    warmup = ["--seed", str(args.seed + 1), "--udp", str(args.warmup_sip - wtcp),
              "--tcp", str(wtcp), "--rtp", "800", "--rtp-per-call", "200",
              "--batch", str(args.batch)]  # fmt: skip
    progress = (lambda line: print(line, file=sys.stderr, flush=True)) if not args.json else None
    with namespace(args.netns_prefix) as ns:
        report = run(ns, driver, timeout=args.timeout, warmup=warmup, on_line=progress)
    problems = verdict(report)
    report["benchmark"] = "fuzz"
    report["command"] = " ".join(sys.argv)
    report["verdict"] = problems
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report) if args.json else table(report, problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
