"""A live agent (GPT-Live) called by real baresip peers on 127.0.0.1, the local GPT-Live server
(over WebSocket, and over WebRTC for one case).

baresip dials the agent (PCMU passthrough or G.722 → PCM 24 kHz), hears the greeting (its
recording of what it received), speaks (its microphone file): the model asks for the
webhook tool, then ``transfer_call``; the agent REFERs baresip to a second baresip that
answers. The CDR has both transcripts, the tool result, the transfer and usage seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent import baresip_helpers as bh
from tests.agent.helpers import tone_pcm, wait_until
from tests.agent.test_agent_baresip import wav_rms_per_frame
from tests.asyncio.helpers import fast_config
from tests.live.test_live_sip import _tool_http, live_factory
from w3sipagent.agent.service import AgentService
from w3sipagent.config import Settings
from w3sipagent.localai.live import LiveServer, LiveServerOptions
from w3sipagent.localai.scenario import FunctionCall, Scenario, Turn
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(bh.missing() is not None, reason=bh.missing() or ""),
]

GREETING = "Hello, you are talking to the Acme assistant. How can I help you today?"
SCRIPT = Scenario(
    name="live-baresip",
    greeting=GREETING,
    turns=(
        Turn(
            caller="Where is my order?",
            call=FunctionCall("check_order", '{"order_id":"4217"}', after="It shipped today."),
        ),
        Turn(
            caller="Put me through to the front desk please.",
            call=FunctionCall(
                "transfer_call", json.dumps({"destination": "desk", "reason": "caller asked"})
            ),
        ),
    ),
)


def mic(path: Path, rate: int) -> Path:
    """Quiet while the greeting plays, then two 'utterances' with time for the answers."""
    n = rate // 1000

    def quiet(ms: int) -> bytes:
        return bytes(ms * n * 2)

    speech = tone_pcm(700, rate, 9000, 300.0)
    pcm = quiet(6000) + speech + quiet(5000) + speech + quiet(20000)
    return bh.write_wav(path, pcm, rate)


@pytest.fixture
async def agent(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[LiveServer, AgentService, dict[str, str]]]:
    transport = getattr(request, "param", "websocket")
    transfers: dict[str, str] = {}
    tool = await asyncio.start_server(_tool_http, "127.0.0.1", 0)
    tool_url = f"http://127.0.0.1:{tool.sockets[0].getsockname()[1]}/orders"
    opts = LiveServerOptions(usage_interval_s=0.5, vad_silence_ms=400)
    async with LiveServer(scenario=SCRIPT, tts_engine="tone", options=opts) as srv:
        agent_cfg = AgentConfig.model_validate(
            {
                "backend": "live",
                "instructions": "You are the Acme assistant.",
                "greeting": "Greet the caller.",
                "tools": [{"name": "check_order", "url": tool_url}],
            }
        )

        def table() -> TenantTable:
            t = TenantConfig(
                id="acme",
                hosts=["127.0.0.1"],
                api_key=SecretRef(env="ACME_KEY"),
                agents={"main": agent_cfg},
                codecs=["PCMU", "G722"],
                transfers=dict(transfers),
                realtime_transport=transport,  # type: ignore[arg-type]  # the parametrised name
            )
            return TenantTable({"acme": t})

        settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
        svc = AgentService(
            settings,
            tenants=table,
            ai_factory=live_factory(srv),
            ua_config=fast_config(),
            environ={"ACME_KEY": "sk-test-acme"},
        )
        await svc.start()
        try:
            yield srv, svc, transfers
        finally:
            await svc.close(timeout=0)
            tool.close()


async def _call_ended(svc: AgentService, timeout: float = 30) -> CallRecord:
    await wait_until(lambda: bool(svc.finished), timeout=timeout, what="the agent's CDR")
    return svc.finished[-1]


@pytest.mark.parametrize(
    ("agent", "codec", "fmt"),
    [
        ("websocket", "PCMU/8000/1", "audio/pcmu"),
        ("websocket", "G722/16000/1", "audio/pcm"),
        ("webrtc", "PCMU/8000/1", "audio/pcmu"),
    ],
    indirect=["agent"],
)
async def test_baresip_calls_a_live_agent_tool_and_transfer(
    agent: Any, tmp_path: Path, codec: str, fmt: str
) -> None:
    srv, svc, transfers = agent
    rate = 8000  # baresip's aufile source takes 8 kHz and resamples to the codec's rate
    account = f"<sip:answer@127.0.0.1>;regint=0;answermode=auto;audio_codecs={codec}"
    quiet = bh.write_wav(tmp_path / "desk.wav", bytes(rate * 2 * 30), rate)
    desk = await bh_peer("baresip-answer", tmp_path, account=account, wav=quiet)
    transfers["desk"] = f"sip:answer@{desk.uri_host}"
    caller = await bh_peer(
        "baresip-caller",
        tmp_path,
        wav=mic(tmp_path / "mic.wav", rate),
        account=f"<sip:tester@127.0.0.1>;regint=0;audio_codecs={codec}",
    )
    try:
        caller.command("dial", f"sip:main@127.0.0.1:{svc.port}")
        cdr = await _call_ended(svc)
        await wait_until(lambda: desk.has("CALL_ESTABLISHED"), timeout=5, what="desk answered")
    finally:
        await caller.stop()
        await desk.stop()
    rec = srv.sessions[0]
    if rec.transport == "websocket":
        assert rec.events[0].event["session"]["audio"]["format"]["type"] == fmt
    assert cdr.ai_format == fmt
    received = list(caller.recordings("-dec.wav"))
    assert received and sum(1 for r in wav_rms_per_frame(received[0]) if r > 1500) >= 25
    assert cdr.disposition is Disposition.TRANSFERRED
    assert cdr.transfer is not None and cdr.transfer.outcome == "succeeded"
    said = [(e.speaker, e.text) for e in cdr.transcript]
    assert ("agent", GREETING) in said and ("agent", "It shipped today.") in said
    assert ("caller", "Where is my order?") in said
    assert [t.name for t in cdr.tool_calls] == ["check_order", "transfer_call"]
    assert cdr.tool_calls[0].result == {"order_id": "4217", "status": "shipped"}
    assert cdr.usage.seconds > 0


async def bh_peer(kind: str, tmp_path: Path, **kw: Any) -> bh.Baresip:
    peer = bh.Baresip(kind, tmp_path, **kw)
    await peer.start()
    return peer
