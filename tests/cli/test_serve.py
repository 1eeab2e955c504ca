"""`w3sipagent serve` and `dial` in subprocesses: calls through the local Realtime server,
metrics and health, SIGHUP reload, SIGTERM drain; all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from tests.agent.helpers import wait_until
from tests.agentleaks import assert_agent_released, assert_released_at_shutdown
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.server import UserAgentConfig, serve
from w3sipagent.cli.call import place_call
from w3sipagent.config import load_settings
from w3sipagent.localai import RealtimeServer
from w3sipagent.records.store import CdrStore


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def write_config(tmp_path: Path, sip_port: int, metrics_port: int, rt_port: int) -> Path:
    cfg = tmp_path / "w3sipagent.toml"
    cfg.write_text(f"""
[sip]
listen = "127.0.0.1:{sip_port}"
transports = ["udp"]
drain_timeout = "5s"
[rtp]
port_min = 44000
port_max = 44199
[realtime]
base_url = "ws://127.0.0.1:{rt_port}/v1"
api_key = "sk-local-test"
[records]
database_url = "sqlite+aiosqlite:///cdr.db"
[metrics]
listen = "127.0.0.1:{metrics_port}"
[logging]
json = true
[tenancy]
reload_interval = 0
[tenants.acme]
hosts = ["acme.example"]
codecs = ["PCMU"]
[tenants.acme.agents.support]
greeting = "Greet the caller."
""")
    return cfg


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def poll(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Ask ``check()`` again (every 50 ms) until it says yes: :func:`wait_until` for a
    condition only a request can see (an HTTP endpoint of the agent process)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def readyz(port: int) -> int | None:
    """The status of ``/readyz`` (None: nothing listening yet)."""
    try:
        return (await http_get(port, "/readyz"))[0]
    except OSError:
        return None


async def wait_ready(port: int, timeout: float = 30.0) -> None:
    async def ready() -> bool:
        return await readyz(port) == 200

    await poll(ready, timeout, "the agent to be ready")


async def metric_line(port: int, line: str) -> bool:
    """True when ``/metrics`` has ``line``."""
    return line in (await http_get(port, "/metrics"))[1]


class LogLines:
    """The agent's stderr read as it comes (JSON log lines parsed), so a test can wait for
    a line instead of sleeping."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.raw: list[str] = []
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.raw.append(line.decode())

    def msgs(self) -> list[str]:
        return [json.loads(ln)["msg"] for ln in self.raw if ln.startswith("{")]

    def has(self, text: str) -> bool:
        return any(text in m for m in self.msgs())

    def count(self, text: str) -> int:
        return sum(text in m for m in self.msgs())

    async def wait(self, text: str, timeout: float = 30.0, n: int = 1) -> None:
        await wait_until(lambda: self.count(text) >= n, timeout=timeout, what=repr(text))

    async def end(self) -> str:
        await self.task
        return "".join(self.raw)


async def test_serve_call_metrics_reload_drain(tmp_path: Path) -> None:
    sip_port, mport = free_port(), free_port(socket.SOCK_STREAM)
    async with RealtimeServer(port=0, tts_engine="tone") as rt:
        cfg = write_config(tmp_path, sip_port, mport, rt.port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "w3sipagent",
            "serve",
            "-c",
            str(cfg),
            "--no-live",
            "--workers",
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert proc.stderr is not None
        logs = LogLines(proc.stderr)
        try:
            await wait_ready(mport)
            s = await place_call(
                "sip:support@acme.example",
                proxy=("127.0.0.1", sip_port),
                duration=2.5,
                rtp_ports=(44200, 44299),
            )
            assert s.answered and s.codec == "PCMU"
            assert s.first_audio_ms is not None and s.heard_speech_s > 0.5  # the greeting
            unknown = await place_call(
                "sip:x@nobody.example",
                proxy=("127.0.0.1", sip_port),
                duration=1,
                rtp_ports=(44200, 44299),
            )
            assert not unknown.answered and unknown.status == 404
            ended = 'w3sipagent_calls_total{disposition="caller_hangup",tenant="acme"} 1.0'
            await poll(lambda: metric_line(mport, ended), 10, "the call counted as ended")
            status, body = await http_get(mport, "/metrics")
            assert status == 200
            assert ended in body
            assert 'w3sipagent_rejected_calls_total{code="404",reason="unknown_tenant"} 1.0' in body
            assert 'w3sipagent_active_calls{tenant="acme"} 0.0' in body
            await assert_agent_released(mport, cfg)  # the call released everything
            # SIGHUP: a new tenant appears without a restart
            cfg.write_text(
                cfg.read_text() + '\n[tenants.globex]\nhosts = ["globex.example"]\n'
                '[tenants.globex.agents.main]\ngreeting = "Hi."\n'
            )
            proc.send_signal(signal.SIGHUP)
            await logs.wait("config reloaded")
            g = await place_call(
                "sip:main@globex.example",
                proxy=("127.0.0.1", sip_port),
                duration=1,
                rtp_ports=(44200, 44299),
            )
            assert g.answered
            # SIGTERM with a call up: readiness 503, new calls 503, the active call finishes
            active = asyncio.create_task(
                place_call(
                    "sip:support@acme.example",
                    proxy=("127.0.0.1", sip_port),
                    duration=2.0,
                    rtp_ports=(44200, 44299),
                )
            )
            up = 'w3sipagent_active_calls{tenant="acme"} 1.0'
            await poll(lambda: metric_line(mport, up), 10, "the call to be up")
            proc.send_signal(signal.SIGTERM)
            await logs.wait("draining")

            async def not_ready() -> bool:
                return await readyz(mport) == 503

            await poll(not_ready, 5, "/readyz to turn 503")
            refused = await place_call(
                "sip:support@acme.example",
                proxy=("127.0.0.1", sip_port),
                duration=1,
                rtp_ports=(44200, 44299),
            )
            assert refused.status == 503
            done = await active
            assert done.answered and done.ended_by == "us"  # it was not cut by the drain
            rc = await asyncio.wait_for(proc.wait(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        err = await logs.end()
    assert rc == 0, err
    lines = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    assert any("draining" in ln["msg"] for ln in lines)
    assert any("config reloaded" in ln["msg"] for ln in lines)
    assert "sk-local-test" not in err
    assert_released_at_shutdown(err)  # the call that finished during the drain too


async def test_dial_outbound(tmp_path: Path) -> None:
    heard: list[bytes] = []

    async def callee(call: Call) -> None:
        # hang up once the greeting has been heard to its end: loud frames, then 0.4 s quiet
        loud = quiet = 0
        async for pcm in call.audio(sample_rate=8000):
            heard.append(pcm)
            rms = np.sqrt(np.mean(np.frombuffer(pcm, dtype="<i2").astype(float) ** 2))
            if rms > 100:
                loud, quiet = loud + 1, 0
            elif loud >= 25:
                quiet += 1
                if quiet >= 20:
                    await call.hangup()
                    break

    async with RealtimeServer(port=0, tts_engine="tone") as rt:
        cfg = write_config(tmp_path, 0, 0, rt.port)
        ua_cfg = UserAgentConfig(host="127.0.0.1", port=0, rtp_port_min=44300, rtp_port_max=44399)
        async with serve(callee, config=ua_cfg) as ua:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "w3sipagent",
                "dial",
                f"sip:bob@127.0.0.1:{ua.port}",
                "--tenant",
                "acme",
                "-c",
                str(cfg),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "COLUMNS": "200"},
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode() + err.decode()
    assert "acme / support" in out.decode()
    pcm = np.frombuffer(b"".join(heard), dtype="<i2").astype(float)
    assert np.sqrt(np.mean(pcm**2)) > 100  # the agent's greeting reached the callee
    # the same records as an inbound call: one CDR row in the configured store
    settings = load_settings(cfg, environ={}, discover=False)
    async with CdrStore.from_settings(settings.records) as store:
        (row,) = await store.list_cdrs()
    assert row.tenant == "acme" and row.agent == "support"
    assert row.callee == f"sip:bob@127.0.0.1:{ua.port}" and row.caller == "sip:support@acme.example"
    assert row.answer_at is not None and row.disposition.value == "caller_hangup"
    assert row.transcript and row.transcript[0].speaker == "agent"  # the greeting
    assert row.rtp.get("packets_received", 0) > 50


async def test_metrics_off_binds_nothing(tmp_path: Path) -> None:
    """``--metrics off`` really switches metrics off: with the configured metrics port held
    by someone else, two agents with ``--metrics off`` and their own ``--sip`` both run and
    answer calls (an agent binding the port would exit with "address already in use")."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    mport = int(holder.getsockname()[1])
    sip_ports = [free_port(), free_port()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
    procs: list[asyncio.subprocess.Process] = []
    logs: list[LogLines] = []
    try:
        async with RealtimeServer(port=0, tts_engine="tone") as rt:
            cfg = write_config(tmp_path, 0, mport, rt.port)
            for sip_port in sip_ports:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "w3sipagent", "serve", "-c", str(cfg), "--no-live",
                    "--workers", "1", "--metrics", "off", "--sip", f"127.0.0.1:{sip_port}",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )  # fmt: skip
                assert proc.stderr is not None
                procs.append(proc)
                logs.append(LogLines(proc.stderr))
            for proc, lines in zip(procs, logs, strict=True):
                ended = asyncio.create_task(proc.wait())
                listening = asyncio.create_task(lines.wait("agent listening on"))
                await asyncio.wait({ended, listening}, return_when=asyncio.FIRST_COMPLETED)
                ended.cancel()
                if not listening.done():
                    listening.cancel()
                    raise AssertionError("agent exited: " + await lines.end())
                await listening
            for sip_port in sip_ports:  # each agent answers on its own port
                s = await place_call(
                    "sip:support@acme.example",
                    proxy=("127.0.0.1", sip_port),
                    duration=0.5,
                    rtp_ports=(44200, 44299),
                )
                assert s.answered, s.status
            assert all(p.returncode is None for p in procs)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(p.wait(), 20) for p in procs]
            errs = [await lines.end() for lines in logs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        holder.close()
    assert codes == [0, 0], errs
    for lines, err in zip(logs, errs, strict=True):
        assert not lines.has("metrics on")
        assert_released_at_shutdown(err)  # no metrics: the shutdown line says it


async def test_serve_metrics_bearer_token_from_the_environment(tmp_path: Path) -> None:
    """``W3SIPAGENT_METRICS__TOKEN``: /metrics and the health paths answer 401 without the
    token or with a wrong one, 200 with it; the token is never logged."""
    sip_port, mport = free_port(), free_port(socket.SOCK_STREAM)
    token = "metrics-token-0123456789"
    cfg = write_config(tmp_path, sip_port, mport, 9)
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
    env["W3SIPAGENT_METRICS__TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "w3sipagent", "serve", "-c", str(cfg), "--no-live",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    logs = LogLines(proc.stderr)

    async def get(path: str, auth: str | None) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", mport)
        extra = f"Authorization: {auth}\r\n" if auth else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        data = await reader.read()
        writer.close()
        return int(data.split(b" ", 2)[1])

    try:
        await logs.wait("agent listening on")
        for path in ("/metrics", "/healthz", "/readyz"):
            assert await get(path, None) == 401
            assert await get(path, "Bearer metrics-token-wrong") == 401
            assert await get(path, f"Bearer {token}") == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = await logs.end()
    assert token not in err
