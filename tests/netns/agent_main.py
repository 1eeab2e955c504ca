"""A tiny agent for the network-namespace tests: ``serve()`` with an echo handler.

Run inside a loopback-only namespace only (it refuses otherwise)::

    ip netns exec NS .venv/bin/python -m tests.netns.agent_main --port 5090

Prints ``READY <port>`` once listening; stops on SIGTERM / SIGINT (graceful drain). On
SIGUSR1 it prints one ``STATS {json}`` line: its asyncio tasks, open descriptors, resident
memory (kB), calls and RTP ports in use (the fuzz runs compare them before and after). On
SIGUSR2 the same after ``gc.collect()`` and glibc's ``malloc_trim(0)`` (freed heap handed
back to the system), so resident memory before and after a run compares live memory.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import faulthandler
import gc
import json
import logging
import os
import signal
import socket
import sys
import tracemalloc

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.server import UserAgentConfig, serve
from w3sipagent.asyncio.useragent import UserAgent


def only_loopback() -> bool:
    """True when this process sees no network interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


async def echo(call: Call) -> None:
    """Send back what the caller says."""
    async for pcm in call.audio():
        call.send_audio(pcm)


def rss_kb() -> int:
    """This process' resident set size in kB (``VmRSS`` of /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def trim() -> None:
    """Collect garbage and give the freed heap back (glibc only; elsewhere just collect)."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        trim_fn = getattr(ctypes.CDLL(libc), "malloc_trim", None)
        if trim_fn is not None:
            trim_fn(0)


def print_stats(ua: UserAgent, trimmed: bool = False) -> None:
    """One ``STATS`` line: what the fuzz runs watch for growth (with ``--tracemalloc``, the
    biggest allocation sites go to stderr too)."""
    if trimmed:
        trim()
    if tracemalloc.is_tracing():
        top = tracemalloc.take_snapshot().statistics("lineno")[:12]
        for stat in top:
            print(f"TRACEMALLOC {stat}", file=sys.stderr, flush=True)
    stats = {
        "tasks": len(asyncio.all_tasks()),
        "fds": len(os.listdir("/proc/self/fd")),
        "rss_kb": rss_kb(),
        "calls": len(ua.calls),
        "rtp_ports": ua.ports.in_use,
    }
    if tracemalloc.is_tracing():
        stats["traced_kb"] = tracemalloc.get_traced_memory()[0] // 1024
    print("STATS " + json.dumps(stats), flush=True)


async def main(port: int, t1: float) -> None:
    config = UserAgentConfig(
        host="127.0.0.1",
        port=port,
        t1=t1,
        t2=max(t1 * 8, 0.4),
        drain_timeout=0.5,
        bye_timeout=0.5,
        rtp_port_min=21000,
        rtp_port_max=21199,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(echo, config=config) as ua:
        loop.add_signal_handler(signal.SIGUSR1, print_stats, ua)
        loop.add_signal_handler(signal.SIGUSR2, print_stats, ua, True)
        print(f"READY {ua.port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5090)
    parser.add_argument("--t1", type=float, default=0.05)
    parser.add_argument("--tracemalloc", action="store_true", help="trace allocations")
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start()
    # SIGQUIT: every thread's stack to the log, the process goes on (the harness sends it
    # when the agent does not answer for its STATS, to see where it is stuck)
    faulthandler.register(signal.SIGQUIT, all_threads=True, chain=False)
    if not only_loopback():
        sys.exit("refusing to run: this network namespace has interfaces other than lo")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(args.port, args.t1))
