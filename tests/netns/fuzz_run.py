"""One fuzz run from outside: the agent and the driver in a loopback-only namespace, the
agent's tasks, descriptors and memory watched before, during and after.

Used by ``tests/netns/test_fuzz_netns.py`` (a short run) and ``benchmarks/fuzz_bench.py``
(the long mode). The agent is ``tests.netns.agent_main`` (``serve()`` with an echo
handler: every call admitted, its audio sent back), which prints a ``STATS`` line on
SIGUSR1. "After" is taken once the agent is quiet again (no call, as many tasks and
descriptors as before, or ``settle`` seconds), so the transactions and calls the fuzz
left behind have had their timers run out.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
AGENT_PORT = 5090


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@contextmanager
def namespace(prefix: str) -> Iterator[str]:
    """A fresh namespace with only ``lo`` (up), deleted afterwards; RuntimeError when
    namespaces cannot be made here."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    made = ip("netns", "add", name)
    if made.returncode != 0:
        raise RuntimeError(f"'ip netns add' is not permitted here: {made.stderr.strip()}")
    try:
        up = ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        if up.returncode != 0:
            raise RuntimeError(up.stderr)
        yield name
    finally:
        ip("netns", "del", name)


class Agent:
    """The agent process in the namespace, with its STATS lines read by a thread."""

    def __init__(self, netns: str, log_path: Path, t1: float, nice: int = 0) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cmd = ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.netns.agent_main",
               "--port", str(AGENT_PORT), "--t1", str(t1)]  # fmt: skip
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.log
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().decode()
        if not ready.startswith("READY"):
            self.stop()
            raise RuntimeError(f"the agent did not start: {log_path.read_text()[-2000:]}")
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            self.lines.put(line.decode(errors="replace"))

    def stats(self, timeout: float = 30.0, trimmed: bool = False) -> dict[str, int]:
        """Ask the agent for its STATS line (SIGUSR1; SIGUSR2: after collecting garbage and
        trimming the heap)."""
        while not self.lines.empty():
            self.lines.get_nowait()
        self.proc.send_signal(signal.SIGUSR2 if trimmed else signal.SIGUSR1)
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line.startswith("STATS "):
                stats: dict[str, int] = json.loads(line[6:])
                return stats
        if self.alive():  # where is it stuck? (faulthandler in agent_main writes the stacks)
            self.proc.send_signal(signal.SIGQUIT)
        raise RuntimeError(f"the agent did not report its STATS in {timeout:.0f} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return self.proc.returncode


def settle(agent: Agent, before: dict[str, int], limit: float) -> dict[str, int]:
    """The agent's STATS once it is back to ``before`` (tasks, descriptors, no call), or
    the last STATS after ``limit`` seconds."""
    end = time.monotonic() + limit
    while True:
        now = agent.stats()
        quiet = now["calls"] == 0 and now["rtp_ports"] == 0
        if quiet and now["tasks"] <= before["tasks"] and now["fds"] <= before["fds"]:
            return agent.stats(trimmed=True)
        if time.monotonic() > end:
            return agent.stats(trimmed=True)
        time.sleep(1.0)


def run(
    netns: str,
    driver_args: list[str],
    *,
    t1: float = 0.05,
    nice: int = 0,
    sample_every: float = 10.0,
    settle_limit: float = 60.0,
    timeout: float = 600.0,
    on_line: Callable[[str], None] | None = None,
    warmup: list[str] | None = None,
) -> dict[str, Any]:
    """Start the agent, take its STATS, run the driver (``driver_args``: see
    :mod:`tests.netns.fuzz_driver`), sample STATS while it runs, settle, take STATS again.
    The report: the driver's JSON plus ``agent`` (before / peak / after, alive, exit code,
    traceback seen, log tail). ``warmup``: driver arguments of a short run first, after
    which "before" is taken (the first call loads the codecs and fills the caches: memory
    that is not growth); ``cold`` is the STATS at start."""
    log_path = Path(f"/tmp/{netns}-fuzz-agent.log")
    agent = Agent(netns, log_path, t1, nice)
    report: dict[str, Any] = {}
    try:
        cold = agent.stats(trimmed=True)
        warmup_peak: dict[str, int] = {}
        if warmup:
            warm = _drive(netns, warmup, nice, timeout, None, agent, sample_every)
            warmup_peak = warm["peak"]
            before = settle(agent, cold, settle_limit)
        else:
            before = cold
        t0 = time.monotonic()
        report = _drive(netns, driver_args, nice, timeout, on_line, agent, sample_every)
        elapsed = time.monotonic() - t0
        alive = agent.alive()
        after = settle(agent, before, settle_limit) if alive else {}
        report["elapsed"] = elapsed
        report["agent"] = {
            "alive": alive,
            "cold": cold,
            "before": before,
            "warmup_peak": warmup_peak,
            "peak": report.pop("peak"),
            "after": after,
            "samples": report.pop("samples"),
        }
    finally:
        code = agent.stop()
        log = log_path.read_text(errors="replace")
        if report.get("agent", {}).get("alive") and "Traceback" not in log:
            log_path.unlink(missing_ok=True)  # kept when the run went wrong, to read it
        else:
            print(f"the agent's log is kept: {log_path}", file=sys.stderr)
        report.setdefault("agent", {})
        report["agent"].update(
            exit_code=code,
            traceback="Traceback" in log,
            log_lines=len(log.splitlines()),
            log_tail=log[-3000:],
        )
    return report


def _drive(
    netns: str,
    driver_args: list[str],
    nice: int,
    timeout: float,
    on_line: Callable[[str], None] | None,
    agent: Agent | None = None,
    sample_every: float = 10.0,
) -> dict[str, Any]:
    """Run the driver to its end; its JSON report, plus the agent's STATS sampled every
    ``sample_every`` seconds meanwhile (``samples``) and their maxima (``peak``)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.netns.fuzz_driver",
           "--agent-port", str(AGENT_PORT), *driver_args]  # fmt: skip
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    t0 = time.monotonic()
    driver = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    err_lines: list[str] = []

    def pump() -> None:
        assert driver.stderr is not None
        for line in driver.stderr:
            err_lines.append(line)
            if on_line is not None:
                on_line(line.rstrip())

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    peak: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    while driver.poll() is None:
        if time.monotonic() - t0 > timeout:
            driver.kill()
            raise RuntimeError(f"the fuzz driver ran past {timeout} s")
        try:
            driver.wait(sample_every)
        except subprocess.TimeoutExpired:
            if agent is not None and agent.alive():
                s = agent.stats()
                samples.append({"t": round(time.monotonic() - t0, 1), **s})
                peak = {k: max(peak.get(k, 0), s[k]) for k in s}
    assert driver.stdout is not None
    out = driver.stdout.read()
    pumper.join(5)
    if driver.returncode != 0:
        raise RuntimeError(f"the fuzz driver failed: {''.join(err_lines)[-3000:]}")
    report: dict[str, Any] = json.loads(out)
    report["peak"], report["samples"] = peak, samples
    return report
