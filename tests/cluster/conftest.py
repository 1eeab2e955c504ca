"""A small cluster on one machine: agent "machines" in network namespaces behind a real
Kamailio dispatcher, sharing one real PostgreSQL.

The namespaces (``i17l-<hex>-a``, ``-b``, ``-c``) each have ``lo`` and one veth whose other
end is on a bridge in the root namespace (``i17lbr<hex>``, 10.217.N.1/24, N free on this
machine). On the bridge address, in the root namespace: Kamailio (the recipe of
tests/peers/kamailio with the agents in its dispatcher set), PostgreSQL (trusting the
bridge's network only), the local Realtime server and the test's caller. Each agent is a
``w3sipagent serve`` process started with ``ip netns exec`` on its own address (SIP 5090,
metrics 9464, RTP 21000-21199: nothing else lives in its namespace). Everything is deleted
afterwards; tests skip with the reason when namespaces, bridges, Kamailio or PostgreSQL
are not available.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.agentleaks import assert_agent_released, assert_released_at_shutdown
from tests.cli.test_serve import LogLines
from tests.interop.conftest import PEERS
from tests.ports import free_port
from tests.postgres import PostgresCluster, find_bindir
from w3sipagent.localai import RealtimeServer

ROOT = Path(__file__).resolve().parents[2]
NODES = ("a", "b", "c")


def _ip(*args: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


def _must(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, f"{r.args}: {r.stderr.strip()}"


def _free_subnet() -> str:
    """``10.217.N`` with no address or route of this machine in 10.217.N.0/24."""
    taken = _ip("-o", "-4", "addr").stdout + _ip("-4", "route").stdout
    for _ in range(100):
        prefix = f"10.217.{secrets.randbelow(250) + 1}"
        if f"{prefix}." not in taken:
            return prefix
    raise RuntimeError("no free 10.217.N.0/24")


@dataclass
class Lan:
    """The bridge and the agents' namespaces."""

    token: str
    prefix: str
    bridge: str
    namespaces: dict[str, str] = field(default_factory=dict)

    @property
    def hub(self) -> str:
        """The root namespace's address on the bridge (Kamailio, PostgreSQL, the caller)."""
        return f"{self.prefix}.1"

    @property
    def network(self) -> str:
        return f"{self.prefix}.0/24"

    def ip(self, node: str) -> str:
        """The address of agent ``node`` (a, b, c)."""
        return f"{self.prefix}.{NODES.index(node) + 2}"


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    """A bridge with three agent namespaces on it (see the module docstring)."""
    if shutil.which("ip") is None:
        pytest.skip("cluster: the ip command (iproute2) is not installed")
    token = secrets.token_hex(3)
    net = Lan(token, _free_subnet(), f"i17lbr{token}")
    made = _ip("link", "add", net.bridge, "type", "bridge")
    if made.returncode != 0:
        pytest.skip(f"cluster: cannot create a bridge here: {made.stderr.strip()}")
    try:
        _must(_ip("addr", "add", f"{net.hub}/24", "dev", net.bridge))
        _must(_ip("link", "set", net.bridge, "up"))
        for node in NODES:
            ns = f"i17l-{token}-{node}"
            outer, inner = f"i17l{token}{node}", f"i17l{token}{node}p"
            made = _ip("netns", "add", ns)
            if made.returncode != 0:
                pytest.skip(f"cluster: 'ip netns add' is not permitted: {made.stderr.strip()}")
            net.namespaces[node] = ns
            _must(_ip("link", "add", outer, "type", "veth", "peer", "name", inner))
            _must(_ip("link", "set", inner, "netns", ns))
            _must(_ip("link", "set", outer, "master", net.bridge))
            _must(_ip("link", "set", outer, "up"))
            _must(_ip("link", "set", "lo", "up", ns=ns))
            _must(_ip("addr", "add", f"{net.ip(node)}/24", "dev", inner, ns=ns))
            _must(_ip("link", "set", inner, "up", ns=ns))
        yield net
    finally:
        for ns in net.namespaces.values():
            _ip("netns", "del", ns)  # its veth goes with it
        _ip("link", "del", net.bridge)


@pytest.fixture(scope="module")
def cluster_pg(lan: Lan) -> Iterator[PostgresCluster]:
    """A PostgreSQL server on 127.0.0.1 and the bridge, trusting the bridge's network."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)")
    pg = PostgresCluster(bindir, listen=f"127.0.0.1,{lan.hub}", trust=(lan.network,))
    try:
        pg.start()
    except BaseException:
        pg.stop()
        raise
    yield pg
    pg.stop()


@pytest.fixture
def db_url(cluster_pg: PostgresCluster, lan: Lan) -> str:
    """A fresh database, addressed over the bridge (as the agents reach it)."""
    return cluster_pg.create_database().replace("@127.0.0.1:", f"@{lan.hub}:")


@pytest.fixture
async def realtime(lan: Lan) -> AsyncIterator[RealtimeServer]:
    """The local Realtime server on the bridge address (tone voice: cheap)."""
    async with RealtimeServer(host=lan.hub, port=0, tts_engine="tone") as rt:
        yield rt


# ----------------------------------------------------------------- kamailio


@dataclass
class Dispatcher:
    """A running Kamailio whose dispatcher set 1 holds the agents."""

    lan: Lan
    port: int
    rundir: Path
    proc: asyncio.subprocess.Process

    @property
    def address(self) -> tuple[str, int]:
        return (self.lan.hub, self.port)

    def kamcmd(self, *args: str) -> str:
        out = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.rundir / 'kam' / 'kamailio_ctl'}", *args],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return out.stdout + out.stderr

    def write_agents(self, *nodes: str) -> None:
        """Write the dispatcher list: agents ``nodes``."""
        lines = [f"1 sip:{self.lan.ip(n)}:5090 0 0" for n in nodes]
        (self.rundir / "dispatcher.list").write_text("\n".join(lines) + "\n")

    async def set_agents(self, *nodes: str) -> None:
        """Write the dispatcher list and make Kamailio reload it (it refuses a reload within
        ``reload_delta``, 5 s, of the previous one: asked again until it takes it)."""
        self.write_agents(*nodes)
        loop = asyncio.get_running_loop()
        end = loop.time() + 15
        while "ongoing reload" in (out := self.kamcmd("dispatcher.reload")).lower():
            assert loop.time() < end, out
            await asyncio.sleep(0.5)
        assert "error" not in out.lower(), out

    def flags(self, node: str) -> str | None:
        """The dispatcher FLAGS of an agent: AP active, IP inactive (probing)..."""
        out = self.kamcmd("dispatcher.list")
        ip = self.lan.ip(node).replace(".", r"\.")
        m = re.search(rf"URI: sip:{ip}:5090\s+FLAGS: (\w+)", out)
        return m.group(1) if m else None

    def log(self) -> str:
        path = self.rundir / "kamailio.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
async def dispatcher(
    lan: Lan, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Dispatcher]]]:
    """``await dispatcher("a", "b")``: Kamailio on the bridge with those agents."""
    if shutil.which("kamailio") is None or shutil.which("kamcmd") is None:
        pytest.skip("cluster: kamailio / kamcmd not installed (apt-get install kamailio)")
    started: list[Dispatcher] = []

    async def start(*nodes: str) -> Dispatcher:
        d = tmp_path / "kamailio"
        (d / "kam").mkdir(parents=True)
        port = free_port()
        cfg = (PEERS / "kamailio" / "kamailio.cfg").read_text().replace("@WORKDIR@", str(d))
        cfg = cfg.replace("127.0.0.1:25060", f"{lan.hub}:{port}")
        cfg = cfg.replace('"ds_ping_interval", 2', '"ds_ping_interval", 1')
        # the tenants' domains go to the dispatcher set too (Request-URI kept: the tenant)
        cfg = cfg.replace(
            'if ($rU == "agents") {',
            'if ($rU == "agents" || $rd == "acme.example" || $rd == "globex.example") {',
        )
        assert "acme.example" in cfg
        # failover to the next agent (a draining agent's 503) needs the dispatcher's flag 2
        cfg = cfg.replace(
            'modparam("dispatcher", "list_file"',
            'modparam("dispatcher", "flags", 2)\nmodparam("dispatcher", "list_file"',
        )
        (d / "kamailio.cfg").write_text(cfg)
        lines = [f"1 sip:{lan.ip(n)}:5090 0 0" for n in nodes]
        (d / "dispatcher.list").write_text("\n".join(lines) + "\n")  # read at start
        log = open(d / "kamailio.log", "wb")  # noqa: SIM115 - owned by the process
        proc = await asyncio.create_subprocess_exec(
            "kamailio", "-f", str(d / "kamailio.cfg"), "-DD", "-E", "-Y", str(d / "kam"),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        kam = Dispatcher(lan, port, d, proc)
        started.append(kam)
        await _wait_options(lan.hub, port, proc, kam)
        return kam

    yield start
    for kam in started:
        await stop_process(kam.proc, group=True)


async def _wait_options(
    host: str, port: int, proc: asyncio.subprocess.Process, kam: Dispatcher
) -> None:
    """Until Kamailio answers an OPTIONS (UDP)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.setblocking(False)
        me = sock.getsockname()[1]
        n = 0
        while True:
            n += 1
            msg = (
                f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {host}:{me};branch=z9hG4bKprobe{n};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag=p\r\n"
                f"To: <sip:{host}:{port}>\r\nCall-ID: probe-{me}\r\nCSeq: {n} OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(msg.encode(), (host, port))
            with contextlib.suppress(TimeoutError):
                if (await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.2)).startswith(
                    b"SIP/2.0"
                ):
                    return
            if proc.returncode is not None or loop.time() > end:
                raise RuntimeError(f"kamailio did not start: {kam.log()[-3000:]}")


async def stop_process(
    proc: asyncio.subprocess.Process, *, group: bool = False, grace: float = 5.0
) -> None:
    """SIGTERM (its process group with ``group``), then SIGKILL after ``grace``; reaped."""
    kill = (lambda s: os.killpg(proc.pid, s)) if group else proc.send_signal
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            kill(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                kill(signal.SIGKILL)
            await proc.wait()
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


# ----------------------------------------------------------------- agents


@dataclass
class AgentProc:
    """One ``w3sipagent serve`` in its namespace."""

    node: str
    address: str
    proc: asyncio.subprocess.Process
    logs: LogLines
    config: Path

    @property
    def sip(self) -> tuple[str, int]:
        return (self.address, 5090)

    async def metric(self, name: str) -> float:
        """The value of one metric line (``name`` with its labels); 0 when absent."""
        _, body = await http_get_at(self.address, 9464, "/metrics")
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def ready(self) -> int | None:
        try:
            return (await http_get_at(self.address, 9464, "/readyz"))[0]
        except OSError:
            return None


async def http_get_at(host: str, port: int, path: str) -> tuple[int, str]:
    """``tests.cli.test_serve.http_get`` for another address than 127.0.0.1."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


AGENT_TOML = """
[sip]
listen = "{ip}:5090"
transports = ["udp"]
allowed_sources = ["{network}"]
drain_timeout = "{drain}s"
t1 = "0.2s"
[rtp]
port_min = 21000
port_max = 21199
[realtime]
base_url = "ws://{hub}:{rt_port}/v1"
api_key = "sk-local-test"
[records]
database_url = "{db_url}"
[metrics]
listen = "{ip}:9464"
[logging]
json = true
[tenancy]
reload_interval = 0
[cluster]
node_id = "agent-{node}"
lease = "{lease}s"
heartbeat = "{heartbeat}s"
acquire_timeout = "10s"
usage_refresh = "1s"
[tenants.acme]
hosts = ["acme.example"]
codecs = ["PCMU"]
max_concurrent_calls = {limit}
[tenants.acme.agents.support]
greeting = "Greet the caller."
[tenants.globex]
hosts = ["globex.example"]
codecs = ["PCMU"]
usage_caps = {{ minutes_per_day = 0.05 }}
[tenants.globex.agents.main]
greeting = "Hello."
"""


@pytest.fixture
async def agents(
    lan: Lan, db_url: str, realtime: RealtimeServer, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[AgentProc]]]:
    """``await agents("a", limit=10, lease=30, heartbeat=10, drain=30)``: a ready agent."""
    started: list[AgentProc] = []

    async def start(
        node: str, *, limit: int = 10, lease: float = 30, heartbeat: float = 10, drain: float = 30
    ) -> AgentProc:
        d = tmp_path / f"agent-{node}-{len(started)}"
        d.mkdir()
        cfg = d / "w3sipagent.toml"
        cfg.write_text(
            AGENT_TOML.format(
                ip=lan.ip(node), network=lan.network, hub=lan.hub, rt_port=realtime.port,
                db_url=db_url, node=f"{node}{len(started)}", lease=lease, heartbeat=heartbeat,
                limit=limit, drain=drain,
            )
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
        env["PYTHONPATH"] = str(ROOT)
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", lan.namespaces[node],
            sys.executable, "-m", "w3sipagent", "serve", "-c", str(cfg), "--no-live",
            "--workers", "1",  # one process per agent machine: SIGKILL kills the machine's agent
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=d,
        )  # fmt: skip
        assert proc.stderr is not None
        agent = AgentProc(node, lan.ip(node), proc, LogLines(proc.stderr), cfg)
        started.append(agent)
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while await agent.ready() != 200:
            if proc.returncode is not None or loop.time() > end:
                raise RuntimeError(f"agent {node} did not start: {''.join(agent.logs.raw)[-3000:]}")
            await asyncio.sleep(0.1)
        return agent

    yield start
    # the release property: every agent still running holds nothing once the test's calls
    # are over (the CDR rows of the shared database are the tests' to count), and every
    # agent that stopped by itself or on SIGTERM said so as it stopped (a SIGKILLed one
    # cannot)
    try:
        for agent in started:
            if agent.proc.returncode is None:
                await assert_agent_released(9464, host=agent.address, min_calls=0)
    finally:
        for agent in started:
            await stop_process(agent.proc)
            await agent.logs.task
    for agent in started:
        if agent.proc.returncode == 0:
            assert_released_at_shutdown("".join(agent.logs.raw))
