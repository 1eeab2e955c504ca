"""The per-call SIP trace an administrator switches on: real calls through the agent, one
JSON-lines file per call, Authorization and other secrets masked, switchable at run time."""

from __future__ import annotations

import json
from pathlib import Path

from w3sipagent.agent.service import AgentService
from w3sipagent.cli.call import place_call
from w3sipagent.config import load_settings
from w3sipagent.localai import RealtimeServer

DIGEST = (
    'Digest username="alice", realm="acme.example", nonce="n0nce", uri="sip:support@acme.example", '
    'response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b", qop=auth, nc=00000001'
)


def settings_for(tmp_path: Path, rt_port: int, trace: bool):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "w3sipagent.toml"
    cfg.write_text(f"""
[sip]
listen = "127.0.0.1:0"
transports = ["udp"]
[rtp]
port_min = 45400
port_max = 45499
[realtime]
base_url = "ws://127.0.0.1:{rt_port}/v1"
api_key = "sk-local-test"
[records]
database_url = "sqlite+aiosqlite:///cdr.db"
[logging]
sip_trace = {"true" if trace else "false"}
sip_trace_path = "{tmp_path / "traces"}"
[tenancy]
reload_interval = 0
[tenants.acme]
hosts = ["acme.example"]
codecs = ["PCMU"]
[tenants.acme.agents.support]
greeting = "Hi."
""")
    return load_settings(cfg, environ={}, discover=False)


async def call(runner: AgentService) -> str:
    s = await place_call(
        "sip:support@acme.example",
        proxy=("127.0.0.1", runner.port),
        duration=0.8,
        rtp_ports=(45500, 45599),
        headers=(("Authorization", DIGEST), ("X-Api-Key", "sk-caller-secret-123")),
    )
    assert s.answered
    return s.call_id


async def test_per_call_trace_is_redacted_and_switchable(tmp_path: Path) -> None:
    async with RealtimeServer(port=0, tts_engine="tone") as rt:
        runner = AgentService(settings_for(tmp_path, rt.port, trace=True), retention_interval=None)
        await runner.start()
        try:
            first = await call(runner)
            assert runner.set_trace(False) is None  # the administrator switches it off
            second = await call(runner)
            where = runner.set_trace(True)  # and on again
            third = await call(runner)
        finally:
            await runner.close(timeout=2.0)
    traces = tmp_path / "traces"
    assert where == traces
    files = {p.stem for p in traces.glob("*.jsonl")}
    assert first in files and third in files and second not in files
    lines = [json.loads(x) for x in (traces / f"{first}.jsonl").read_text().splitlines()]
    assert {ln["call_id"] for ln in lines} == {first}
    flow = [(ln["dir"], ln.get("method") or str(ln.get("status"))) for ln in lines]
    assert ("in", "INVITE") in flow and ("out", "200") in flow and ("in", "ACK") in flow
    assert ("in", "BYE") in flow
    invite = next(
        ln["message"] for ln in lines if ln.get("method") == "INVITE" and ln["dir"] == "in"
    )
    assert "Authorization: Digest" in invite and 'username="alice"' in invite
    text = (traces / f"{first}.jsonl").read_text()
    for secret in ("6629fae49393a05397450978507c4ef1", "0a4f113b", "sk-caller-secret-123"):
        assert secret not in text
