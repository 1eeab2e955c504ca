"""What the SIPp load test reads around the calls: the agent's processes (CPU, memory,
descriptors, UDP sockets, from /proc), its metrics, its CDR rows, and a local deployment
(``w3sipagent serve`` + the local Realtime server) when ``--local`` asks for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(name, parent pid, CPU seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw.rsplit(")", 1)[1].split()
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _label(pid: int, name: str) -> str:
    """``serve`` / ``realtime-server`` for w3sipagent processes, else the process name."""
    with contextlib.suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"w3sipagent" in argv:
            return argv[argv.index(b"w3sipagent") + 1].decode(errors="replace")
    return name


def _udp_inodes() -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 9:
                    inodes.add(parts[9])
    return inodes


def metrics_value(url: str | None, name: str, how: str = "sum") -> float | None:
    """The value of sample ``name`` on ``url``/metrics, if any: with ``serve --workers N``
    each worker's sample has a ``worker`` label, so the samples are summed (``how="sum"``)
    or their largest taken (``how="max"``)."""
    if not url:
        return None
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = [
        float(line.rsplit(None, 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    ]
    if not values:
        return None
    return max(values) if how == "max" else sum(values)


class ProcTree:
    """The given processes and their descendants, found again at every reading."""

    def __init__(self, pids: list[int]) -> None:
        self.roots = pids
        self._last: list[dict[int, tuple[str, float, float]]] = []

    def members(self) -> list[int]:
        if not self.roots:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _stat(int(entry))
                if st:
                    children.setdefault(st[1], []).append(int(entry))
        out, todo = [], list(self.roots)
        while todo:
            pid = todo.pop()
            if pid not in out and Path(f"/proc/{pid}").exists():
                out.append(pid)
                todo.extend(children.get(pid, []))
        return out

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) of the tree now; remembered for :meth:`last_by_name`."""
        now = time.monotonic()
        snap: dict[int, tuple[str, float, float]] = {}
        for pid in self.members():
            st = _stat(pid)
            if st:
                snap[pid] = (st[0], st[2], now)
        self._last = [*self._last[-1:], snap]
        return sum(v[1] for v in snap.values())

    @staticmethod
    def sipp_cpu(pid: int) -> float:
        st = _stat(pid)
        return st[2] if st else 0.0

    def last_by_name(self) -> dict[str, float]:
        """% of a core per process name between the last two :meth:`cpu_seconds` readings."""
        if len(self._last) < 2:
            return {}
        a, b = self._last
        out: dict[str, float] = {}
        for pid, (name, cpu, t) in b.items():
            if pid in a:
                span = t - a[pid][2]
                key = f"{_label(pid, name)}[{pid}]"
                out[key] = round(100 * (cpu - a[pid][1]) / span, 1) if span > 0 else 0.0
        return out

    def sample(self, metrics_url: str | None) -> dict[str, Any]:
        """Memory, descriptors, threads, UDP sockets of the tree; tasks, loop lag and what
        the agent holds beyond its idle baseline from the metrics when given."""
        rss = fds = threads = udp = 0
        inodes = _udp_inodes()
        for pid in self.members():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads += int(line.split()[1])
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    fds += 1
                    with contextlib.suppress(OSError):
                        link = os.readlink(f"/proc/{pid}/fd/{fd}")
                        if link.startswith("socket:[") and link[8:-1] in inodes:
                            udp += 1
        return {
            "rss_mb": round(rss / 1024, 1),
            "fds": fds,
            "threads": threads,
            "udp_sockets": udp,
            "tasks": metrics_value(metrics_url, "w3sipagent_event_loop_tasks"),
            "loop_lag_max_s": metrics_value(
                metrics_url, "w3sipagent_event_loop_lag_max_seconds", "max"
            ),
            # the agent's own leak report (docs/operations.md): 0 once no call is up
            "open_resources": metrics_value(metrics_url, "w3sipagent_open_resources"),
            "ai_sessions_open": metrics_value(metrics_url, "w3sipagent_ai_sessions_open"),
        }


def count_cdrs(config: str, call_ids: set[str], wait: float) -> dict[str, int]:
    """How many of ``call_ids`` have a CDR in the agent's records database (rows are
    written in batches: wait up to ``wait`` seconds for the last ones)."""
    sys.path.insert(0, str(ROOT))
    from w3sipagent.config import load_settings
    from w3sipagent.records.store import CdrStore

    settings = load_settings(Path(config), environ=dict(os.environ), discover=False)

    async def count() -> dict[str, int]:
        deadline = time.monotonic() + wait
        while True:
            async with CdrStore.from_settings(settings.records) as store:
                rows = await store.list_cdrs(limit=1_000_000)
            mine = [r for r in rows if r.call_id in call_ids]
            if len(mine) >= len(call_ids) or time.monotonic() >= deadline:
                by: dict[str, int] = {
                    "rows": len(mine),
                    # the caller's speech reached the AI and its answer went out as RTP
                    "calls_with_agent_turns": sum(1 for r in mine if r.turn_latencies_ms),
                    "agent_turns": sum(len(r.turn_latencies_ms) for r in mine),
                }
                for r in mine:
                    key = f"disposition_{r.disposition}"
                    by[key] = by.get(key, 0) + 1
                return by
            await asyncio.sleep(1.0)

    return asyncio.run(count())


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalDeployment:
    """``w3sipagent realtime-server`` + ``w3sipagent serve`` on 127.0.0.1, one tenant."""

    def __init__(
        self,
        work: Path,
        calls: int,
        port_base: int,
        tts: str,
        profile: Path | None = None,
        append_ms: int = 0,
        workers: str | None = None,
    ) -> None:
        self.work = work
        self.workers = workers
        self.profile = profile
        self.sip_port = _free_port(socket.SOCK_DGRAM)
        self.metrics_port = _free_port(socket.SOCK_STREAM)
        self.rt_port = _free_port(socket.SOCK_STREAM)
        self.config = work / "w3sipagent.toml"
        self.config.write_text(f"""
[sip]
listen = "127.0.0.1:{self.sip_port}"
transports = ["udp"]
max_calls = {calls + 20}
drain_timeout = "30s"
[rtp]
port_min = {port_base}
port_max = {port_base + 4 * calls + 200}
[realtime]
base_url = "ws://127.0.0.1:{self.rt_port}/v1"
api_key = "sk-load"
connect_timeout = "20s"
append_ms = {append_ms}
[records]
database_url = "sqlite+aiosqlite:///{work}/cdr.db"
[metrics]
listen = "127.0.0.1:{self.metrics_port}"
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
turn_detection = {{ type = "server_vad", silence_duration_ms = 500 }}
transcription = {{ enabled = false }}
""")
        self.tts = tts
        self.rtp_ports = (port_base, port_base + 4 * calls + 200)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def sip_target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    @property
    def uri(self) -> str:
        return "sip:a@load.example"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
        env["PYTHONPATH"] = str(ROOT)

        def exe(name: str) -> list[str]:
            if self.profile is None:
                return [sys.executable, "-m", "w3sipagent"]
            out = str(self.profile / f"{name}.prof")
            return [sys.executable, "-m", "cProfile", "-o", out, "-m", "w3sipagent"]

        rt_cmd = ["realtime-server", "--port", str(self.rt_port), "--realtime-pacing"]
        agent_log = (self.work / "agent.log").open("wb")
        rt_log = (self.work / "realtime.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [*exe("realtime-server"), *rt_cmd, "--tts", self.tts],
                stdout=rt_log,
                stderr=rt_log,
                env=env,
            )
        )
        self.procs.append(
            subprocess.Popen(
                [
                    *exe("serve"),
                    "serve",
                    "-c",
                    str(self.config),
                    "--no-live",
                    *(["--workers", self.workers] if self.workers else []),
                ],
                stdout=agent_log,
                stderr=agent_log,
                env=env,
            )
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.metrics_url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"sipp_load: the local agent did not become ready (see {self.work})")

    def stop(self) -> None:
        for p, sig in zip(reversed(self.procs), (signal.SIGTERM, signal.SIGINT), strict=False):
            if p.poll() is None:
                p.send_signal(sig)
        for p in self.procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
