"""Every metric the operations guide lists is updated by real calls: SIP calls through the
agent service to the local Realtime server (with an injected error and a dropped socket),
then GET /metrics over HTTP; /readyz turns 503 while draining."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.agent.helpers import wait_until
from w3sipagent.agent.service import AgentService
from w3sipagent.cli.call import place_call
from w3sipagent.config import load_settings
from w3sipagent.demo_assets import caller_utterances
from w3sipagent.localai import Injection, RealtimeServer, Scenario, Turn
from w3sipagent.metrics import HealthState, Metrics, MetricsServer

SCRIPT = Scenario(
    name="metrics",
    greeting="Hello, thank you for calling the metrics line, how can I help you today?",
    turns=(Turn(say="Sure, I can help with that."), Turn(say="Anything else?")),
    inject=(
        # the answer to the caller's turn fails once (a non-fatal error event) ...
        Injection(at="response.created", action="error", turn=1, code="rate_limit_exceeded"),
        # ... and the socket drops after it: the bridge reconnects
        Injection(at="response.done", action="close", turn=1, close_code=1011),
    ),
)


async def get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def sample(body: str, name: str, **labels: str) -> float:
    """The value of ``name{labels}`` in the Prometheus text (0 when absent)."""
    for line in body.splitlines():
        m = re.match(r"^([a-zA-Z0-9_:]+)(?:\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


async def test_metrics_after_real_calls(tmp_path: Path) -> None:
    speech = (await caller_utterances(8000, engine="tone"))[0]
    async with RealtimeServer(port=0, scenario=SCRIPT, tts_engine="tone") as rt:
        cfg = tmp_path / "w3sipagent.toml"
        cfg.write_text(f"""
[sip]
listen = "127.0.0.1:0"
transports = ["udp"]
[rtp]
port_min = 45600
port_max = 45699
[realtime]
base_url = "ws://127.0.0.1:{rt.port}/v1"
api_key = "sk-local-test"
reconnect_timeout = "3s"
[records]
database_url = "sqlite+aiosqlite:///{tmp_path / "cdr.db"}"
[tenancy]
reload_interval = 0
[tenants.acme]
hosts = ["acme.example"]
codecs = ["PCMU"]
[tenants.acme.agents.support]
greeting = "Greet the caller."
turn_detection = {{ type = "server_vad", silence_duration_ms = 300 }}
""")
        settings = load_settings(cfg, environ={}, discover=False)
        metrics = Metrics()
        health = HealthState(metrics)
        server = MetricsServer(metrics, health, "127.0.0.1", 0)
        await server.start()
        service = AgentService(settings, metrics=metrics, retention_interval=None)
        await service.start()
        health.set_started()
        mport = int(server.url.rsplit(":", 1)[1])
        try:
            assert (await get(mport, "/readyz"))[0] == 200
            proxy = ("127.0.0.1", service.port)
            # 1: a turn after the greeting (turn latency), its answer fails, the socket drops;
            # the caller stays on until the session is back (however long a busy machine takes)
            reconnected = asyncio.Event()

            def back() -> bool:  # the live CDR of call 1 says the session was re-opened
                return any(
                    e.get("kind") == "ai_reconnected"
                    for b in service.bridges.values()
                    for e in b.cdr.events
                )

            async def watch_reconnect() -> None:
                await wait_until(back, timeout=30, what="the AI session re-opened")
                reconnected.set()

            watcher = asyncio.create_task(watch_reconnect())
            talk = await place_call(
                "sip:support@acme.example",
                proxy=proxy,
                turns=[speech],
                turn_gap=0.4,
                turn_timeout=8.0,
                duration=30.0,
                hang_up_on=reconnected,
                rtp_ports=(45700, 45799),
            )
            watcher.cancel()
            assert talk.end_reason == "asked to hang up", talk.end_reason
            # 2: the caller talks over the greeting (barge-in)
            barge = await place_call(
                "sip:support@acme.example",
                proxy=proxy,
                play=speech,
                duration=3.0,
                rtp_ports=(45700, 45799),
            )
            # 3: an unknown tenant, refused before any call exists
            unknown = await place_call(
                "sip:x@nobody.example", proxy=proxy, duration=1.0, rtp_ports=(45700, 45799)
            )
            assert talk.answered and barge.answered and unknown.status == 404
            await wait_until(lambda: len(service.finished) == 2, timeout=5, what="both CDRs")
            status, body = await get(mport, "/metrics")
            assert status == 200
            t = {"tenant": "acme"}
            assert sample(body, "w3sipagent_calls_total", disposition="caller_hangup", **t) == 2
            assert sample(body, "w3sipagent_active_calls", **t) == 0
            assert sample(body, "w3sipagent_rejected_calls_total", code="404") == 1
            assert sample(body, "w3sipagent_setup_seconds_count", **t) == 2
            assert 0 < sample(body, "w3sipagent_setup_seconds_sum", **t) < 2
            assert sample(body, "w3sipagent_turn_latency_seconds_count", **t) >= 1
            assert sample(body, "w3sipagent_barge_ins_total", **t) >= 1
            assert sample(body, "w3sipagent_rtp_jitter_seconds_count", **t) == 2
            # each session's answer to turn 1 fails: the re-opened session's may too
            assert (
                sample(body, "w3sipagent_realtime_errors_total", code="rate_limit_exceeded", **t)
                >= 1
            )
            assert sample(body, "w3sipagent_realtime_errors_total", code="connection_lost", **t)
            assert sample(body, "w3sipagent_realtime_reconnects_total", **t) >= 1
            # the CDRs say the same
            kinds = [e["kind"] for c in service.finished for e in c.events]
            assert "barge_in" in kinds and "ai_reconnected" in kinds
            # draining: not ready any more, still alive
            health.set_draining()
            service.drain()
            assert (await get(mport, "/readyz"))[0] == 503
            assert (await get(mport, "/healthz"))[0] == 200
            assert sample((await get(mport, "/metrics"))[1], "w3sipagent_draining") == 1
        finally:
            await service.close(timeout=1.0)
            await server.close()
