"""`w3sipagent serve` and `dial` in subprocesses: calls through the local Realtime server,
metrics and health, SIGHUP reload, SIGTERM drain; all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import numpy as np

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


async def wait_ready(port: int, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        try:
            if (await http_get(port, "/readyz"))[0] == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("agent never became ready")


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
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
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
            await asyncio.sleep(0.5)
            status, body = await http_get(mport, "/metrics")
            assert status == 200
            assert 'w3sipagent_calls_total{disposition="caller_hangup",tenant="acme"} 1.0' in body
            assert 'w3sipagent_rejected_calls_total{code="404"} 1.0' in body
            assert 'w3sipagent_active_calls{tenant="acme"} 0.0' in body
            # SIGHUP: a new tenant appears without a restart
            cfg.write_text(
                cfg.read_text() + '\n[tenants.globex]\nhosts = ["globex.example"]\n'
                '[tenants.globex.agents.main]\ngreeting = "Hi."\n'
            )
            proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(1.0)
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
            await asyncio.sleep(0.7)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert (await http_get(mport, "/readyz"))[0] == 503
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
        err = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    assert rc == 0, err
    lines = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    assert any("draining" in ln["msg"] for ln in lines)
    assert any("config reloaded" in ln["msg"] for ln in lines)
    assert "sk-local-test" not in err


async def test_dial_outbound(tmp_path: Path) -> None:
    heard: list[bytes] = []

    async def callee(call: Call) -> None:
        async def stop() -> None:
            await asyncio.sleep(2.0)
            await call.hangup()

        task = asyncio.create_task(stop())
        async for pcm in call.audio(sample_rate=8000):
            heard.append(pcm)
        task.cancel()

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
