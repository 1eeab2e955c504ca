"""A real SIP call through AgentService to a ``backend = "live"`` agent (GPT-Live).

The AI is the local GPT-Live server (:class:`~w3sipagent.localai.live.LiveServer`); the
caller is our user agent over UDP on 127.0.0.1, which accepts the agent's REFER. What the
caller heard is what its RTP endpoint received and decoded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import rms_pcm, tone_pcm, wait_until
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISession, AISessionConfig
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.refer import Transferer, allow_all
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.codecs.g711 import ulaw_encode
from w3sipagent.config import Settings
from w3sipagent.live import open_session
from w3sipagent.localai.live import LiveServer, LiveServerOptions
from w3sipagent.localai.scenario import FunctionCall, Scenario, Turn
from w3sipagent.records.cdr import Disposition
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable

GREETING = "Hello and thank you for calling the Acme support line, how can I help you today"
SCRIPT = Scenario(
    name="live-sip",
    greeting=GREETING,
    turns=(
        Turn(
            caller="Where is my order?",
            call=FunctionCall("check_order", '{"order_id":"4217"}', after="Your order shipped."),
        ),
        Turn(
            caller="Put me through to an operator.",
            call=FunctionCall(
                "transfer_call",
                '{"destination":"operator","reason":"caller asked"}',
                after="Transferring you now.",
            ),
        ),
    ),
)
LOUD = 1500.0


async def _tool_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    args = json.loads(await reader.readexactly(length))
    data = json.dumps({"order_id": args.get("order_id"), "status": "shipped"}).encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    writer.close()


def tenants(tool_url: str, transport: str = "websocket") -> TenantTable:
    agent = AgentConfig.model_validate(
        {
            "backend": "live",
            "instructions": "You are Acme support.",
            "greeting": "Greet the caller.",
            "tools": [
                {
                    "name": "check_order",
                    "description": "Look an order up",
                    "parameters": {
                        "type": "object",
                        "properties": {"order_id": {"type": "string"}},
                    },
                    "url": tool_url,
                }
            ],
        }
    )
    t = TenantConfig(
        id="acme",
        hosts=["acme.example"],
        api_key=SecretRef(env="ACME_KEY"),
        agents={"main": agent},
        codecs=["PCMU", "PCMA", "G722"],
        transfers={"operator": "sip:operator@pbx.example"},
        realtime_transport=transport,  # type: ignore[arg-type]  # the parametrised name
    )
    return TenantTable({"acme": t})


def live_factory(srv: LiveServer) -> Any:
    def make(tenant: str, key: str, transport: str, cfg: AISessionConfig) -> AISession:
        assert cfg.backend == "live"
        if transport == "webrtc":
            return open_session(
                cfg, api_key=key, transport="webrtc", base_url=srv.base_url, trust_env=False
            )
        return open_session(cfg, api_key=key, base_url=srv.base_url, proxy=None, session_timeout=5)

    return make


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    transport = getattr(request, "param", "websocket")
    tool = await asyncio.start_server(_tool_http, "127.0.0.1", 0)
    tool_url = f"http://127.0.0.1:{tool.sockets[0].getsockname()[1]}/orders"
    opts = LiveServerOptions(usage_interval_s=0.5, vad_silence_ms=400)
    async with LiveServer(scenario=SCRIPT, tts_engine="tone", options=opts) as srv:
        settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
        svc = AgentService(
            settings,
            tenants=tenants(tool_url, transport),
            ai_factory=live_factory(srv),
            ua_config=fast_config(),
            environ={"ACME_KEY": "sk-test-acme"},
        )
        await svc.start()
        caller = UserAgent(fast_config())
        refers: list[str] = []

        async def attempt(call: Any, refer: Any) -> tuple[int, str]:
            refers.append(refer.target)
            return 200, "OK"

        Transferer(caller, policy=allow_all, attempt=attempt).install(caller)
        await caller.start()
        try:
            yield srv, svc, caller, refers
        finally:
            await caller.close(timeout=0)
            await svc.close(timeout=0)
            tool.close()


class Ear:
    """What the caller hears: the RMS of every 20 ms frame it decodes."""

    def __init__(self, call: Call) -> None:
        self.frames: list[float] = []
        self.task = asyncio.create_task(self._run(call))

    async def _run(self, call: Call) -> None:
        async for pcm in call.audio():
            self.frames.append(rms_pcm(pcm))

    def loud(self) -> int:
        return sum(1 for r in self.frames if r > LOUD)


async def test_pcmu_passthrough_webhook_tool_transfer_transcripts_and_usage(rig: Any) -> None:
    srv, svc, caller, refers = rig
    call = await caller.dial(
        "sip:main@acme.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    ear = Ear(call)
    await wait_until(lambda: ear.loud() >= 25, timeout=10, what="greeting heard")
    rec = srv.sessions[0]
    start = rec.events[0].event
    assert start["type"] == "session.start"
    assert start["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    tools = {t["name"] for t in start["session"]["delegation"]["responses"]["tools"]}
    assert {"transfer_call", "end_call", "check_order"} <= tools
    assert rec.types().count("session.start") == 1 and "session.instructions.append" in rec.types()
    bridge = svc.bridges[call.call_id]
    await wait_until(
        lambda: not bridge.playout.busy and ear.loud() > 60, timeout=10, what="greeting over"
    )
    pcm = tone_pcm(500, 8000, 7000, 300.0)
    await call.play(pcm)
    encoded = ulaw_encode(pcm)
    await wait_until(lambda: encoded in bytes(rec.audio), timeout=5, what="speech at the server")
    await wait_until(
        lambda: any(t.name == "check_order" and t.result for t in bridge.cdr.tool_calls),
        timeout=10,
        what="webhook tool",
    )
    heard = ear.loud()
    await wait_until(lambda: ear.loud() > heard + 20, timeout=10, what="the tool answer heard")
    await wait_until(lambda: not bridge.playout.busy, timeout=10, what="answer over")
    await call.play(pcm)
    await wait_until(lambda: not svc.bridges, timeout=15, what="transferred")
    assert refers == ["sip:operator@pbx.example"]
    cdr = svc.finished[-1]
    assert cdr.disposition is Disposition.TRANSFERRED
    assert cdr.transfer is not None and cdr.transfer.outcome == "succeeded"
    assert cdr.ai_format == "audio/pcmu"
    said = [(e.speaker, e.text) for e in cdr.transcript]
    assert ("agent", GREETING) in said and ("agent", "Your order shipped.") in said
    assert ("caller", "Where is my order?") in said
    tool = next(t for t in cdr.tool_calls if t.name == "check_order")
    assert tool.arguments == {"order_id": "4217"} and tool.error is None
    assert cdr.usage.seconds > 0
    types = rec.types()
    i = types.index("response.item.create")
    assert types[i + 1] == "response.create"
    assert "input_audio_buffer.append" not in types and "conversation.item.truncate" not in types


async def test_g722_call_uses_pcm_24k(rig: Any) -> None:
    srv, svc, caller, _ = rig
    call = await caller.dial(
        "sip:main@acme.example", proxy=("127.0.0.1", svc.port), codecs=["G722/8000"]
    )
    ear = Ear(call)
    await wait_until(lambda: ear.loud() >= 25, timeout=10, what="greeting heard over G.722")
    rec = srv.sessions[0]
    assert rec.events[0].event["session"]["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}
    await call.play(tone_pcm(500, 16000, 7000, 300.0))
    await wait_until(lambda: len(rec.audio) > 48 * 2000, timeout=5, what="24 kHz audio")
    await call.hangup()
    await wait_until(lambda: not svc.bridges, timeout=5, what="bridge ended")
    cdr = svc.finished[-1]
    assert cdr.ai_format == "audio/pcm" and cdr.codec.upper() == "G722"
    assert any(e.speaker == "agent" and e.text == GREETING for e in cdr.transcript)


@pytest.mark.parametrize("rig", ["webrtc"], indirect=True)
async def test_webrtc_transport_greeting_tool_and_transfer(rig: Any) -> None:
    pytest.importorskip("aiortc")
    srv, svc, caller, refers = rig
    call = await caller.dial(
        "sip:main@acme.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    ear = Ear(call)
    await wait_until(lambda: ear.loud() >= 25, timeout=10, what="greeting heard over WebRTC")
    rec = srv.sessions[0]
    assert rec.transport == "webrtc"
    bridge = svc.bridges[call.call_id]
    await wait_until(lambda: not bridge.playout.busy and ear.loud() > 60, timeout=10, what="over")
    pcm = tone_pcm(500, 8000, 7000, 300.0)
    await call.play(pcm)
    await wait_until(
        lambda: any(t.name == "check_order" and t.result for t in bridge.cdr.tool_calls),
        timeout=10,
        what="webhook tool",
    )
    await wait_until(
        lambda: not bridge.playout.busy and bridge.cdr.transcript[-1].text == "Your order shipped.",
        timeout=10,
        what="answer",
    )
    await call.play(pcm)
    await wait_until(lambda: not svc.bridges, timeout=15, what="transferred")
    assert refers == ["sip:operator@pbx.example"]
    cdr = svc.finished[-1]
    assert cdr.disposition is Disposition.TRANSFERRED and cdr.ai_format == "audio/pcmu"
    said = [(e.speaker, e.text) for e in cdr.transcript]
    assert ("agent", GREETING) in said and ("caller", "Where is my order?") in said
    assert cdr.usage.seconds > 0
    assert "session.input_audio.append" not in rec.types()
