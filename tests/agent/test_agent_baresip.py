"""The agent against real baresip peers on 127.0.0.1, with the local Realtime server.

- baresip calls the agent: the greeting is in baresip's recording of what it received;
- the model (the server's scenario) calls ``transfer_call``: the agent REFERs baresip
  (the caller) to a second baresip that answers, or to one that refuses (486, its
  ``call_max_calls`` is 0); the ``function_call_output`` the server recorded carries the
  real outcome from baresip's NOTIFYs.
"""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.agent import baresip_helpers as bh
from tests.agent.helpers import tone_pcm, wait_until
from tests.agent.test_agent_realtime_sip import realtime_factory
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.service import AgentService
from w3sipagent.config import Settings
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable

server_mod = pytest.importorskip("w3sipagent.localai")
RealtimeServer, Scenario, Turn = server_mod.RealtimeServer, server_mod.Scenario, server_mod.Turn
FunctionCall = server_mod.FunctionCall

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(bh.missing() is not None, reason=bh.missing() or ""),
]

GREETING = "Hello, you are talking to the Acme assistant. How can I help you today?"
SCRIPT = Scenario(
    name="baresip-transfer",
    greeting=GREETING,
    turns=(
        Turn(
            caller="Put me through to the front desk please.",
            say="Let me transfer you.",
            call=FunctionCall(
                "transfer_call",
                json.dumps({"destination": "desk", "reason": "caller asked"}),
                after="I am sorry, the desk cannot take your call right now.",
            ),
        ),
    ),
)


def caller_wav(path: Path, speak_at: float) -> Path:
    """Silence, a 0.8 s 'utterance' at ``speak_at``, then silence (baresip hangs up when
    the file ends)."""
    silence = bytes(int(8000 * speak_at) * 2)
    return bh.write_wav(path, silence + tone_pcm(800, 8000, 9000, 300.0) + bytes(8000 * 2 * 20))


def wav_rms_per_frame(path: Path) -> list[float]:
    with wave.open(str(path)) as w:
        rate, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    if ch > 1:
        x = x.reshape(-1, ch)[:, 0]
    n = rate // 50
    frames = x[: len(x) // n * n].reshape(-1, n)
    return [float(v) for v in np.sqrt((frames * frames).mean(axis=1))]


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[Any, AgentService, dict[str, str]]]:
    transfers: dict[str, str] = {}  # filled by each test before calling
    async with RealtimeServer(scenario=SCRIPT, tts_engine="tone") as srv:
        agent_cfg = AgentConfig.model_validate(
            {
                "instructions": "You are the Acme assistant.",
                "greeting": "Greet the caller.",
                "turn_detection": {"silence_duration_ms": 300, "prefix_padding_ms": 100},
            }
        )

        def table() -> TenantTable:
            t = TenantConfig(
                id="acme",
                hosts=["127.0.0.1"],
                api_key=SecretRef(env="ACME_KEY"),
                agents={"main": agent_cfg},
                codecs=["PCMU"],
                transfers=dict(transfers),
            )
            return TenantTable({"acme": t})

        settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
        svc = AgentService(
            settings,
            tenants=table,
            ai_factory=realtime_factory(srv),
            ua_config=fast_config(),
            environ={"ACME_KEY": "sk-test-acme"},
        )
        await svc.start()
        try:
            yield srv, svc, transfers
        finally:
            await svc.close(timeout=0)


async def _peer(kind: str, tmp_path: Path, **kw: Any) -> bh.Baresip:
    peer = bh.Baresip(kind, tmp_path, **kw)
    await peer.start()
    return peer


async def _refuse_calls(peer: bh.Baresip) -> None:
    """Refuse every incoming call (baresip's hangup of a ringing call: 486 Busy Here)."""
    seen = 0
    while True:
        incoming = [e for e in peer.events if e.get("type") == "CALL_INCOMING"]
        for _ in incoming[seen:]:
            peer.command("hangup")
        seen = len(incoming)
        await asyncio.sleep(0.01)


async def _call_ended(svc: AgentService, timeout: float = 15) -> CallRecord:
    await wait_until(lambda: bool(svc.finished), timeout=timeout, what="the agent's CDR")
    return svc.finished[-1]


async def test_greeting_heard_by_baresip(agent: Any, tmp_path: Path) -> None:
    srv, svc, _ = agent
    wav = caller_wav(tmp_path / "mic.wav", speak_at=30.0)  # stays quiet
    caller = await _peer("baresip-caller", tmp_path, wav=wav)
    try:
        caller.command("dial", f"sip:main@127.0.0.1:{svc.port}")
        await wait_until(lambda: caller.has("CALL_ESTABLISHED"), timeout=5, what="answered")
        await wait_until(lambda: bool(svc.finished) or len(svc.bridges) == 1, what="bridge")
        await asyncio.sleep(2.0)  # the greeting (~4 s of tone at 1 word/250 ms) is playing
        caller.command("hangup")
        cdr = await _call_ended(svc)
        await wait_until(lambda: caller.has("CALL_CLOSED"), timeout=3, what="closed")
    finally:
        await caller.stop()
    assert cdr.disposition is Disposition.CALLER_HANGUP and cdr.codec == "PCMU"
    (received,) = caller.recordings("-dec.wav")
    levels = wav_rms_per_frame(received)
    assert sum(1 for r in levels if r > 1500) >= 25  # at least 0.5 s of the agent's voice
    assert srv.sessions[0].types().count("input_audio_buffer.append") > 50


@pytest.mark.parametrize(
    ("target", "status", "code", "disposition"),
    [
        ("answers", "succeeded", 200, Disposition.TRANSFERRED),
        ("rejects", "busy", 486, Disposition.CALLER_HANGUP),
    ],
)
async def test_transfer_to_baresip_gives_the_model_the_real_outcome(
    agent: Any, tmp_path: Path, target: str, status: str, code: int, disposition: Disposition
) -> None:
    srv, svc, transfers = agent
    wav = caller_wav(tmp_path / "mic.wav", speak_at=1.0)
    mode = "auto" if target == "answers" else "manual"
    account = f"<sip:answer@127.0.0.1>;regint=0;answermode={mode};audio_codecs=PCMU/8000/1"
    desk = await _peer("baresip-answer", tmp_path, wav=wav, account=account)
    refuser = asyncio.create_task(_refuse_calls(desk)) if target == "rejects" else None
    transfers["desk"] = f"sip:answer@{desk.uri_host}"
    caller = await _peer("baresip-caller", tmp_path, wav=wav)
    try:
        caller.command("dial", f"sip:main@127.0.0.1:{svc.port}")
        await wait_until(lambda: bool(srv.sessions), timeout=5, what="AI session")
        rec = srv.sessions[0]

        def outputs() -> list[dict[str, Any]]:
            items = [
                e.event["item"]
                for e in rec.events
                if e.type == "conversation.item.create"
                and e.event.get("item", {}).get("type") == "function_call_output"
            ]
            return [json.loads(i["output"]) for i in items]

        if target == "answers":  # success ends our leg: the session is closed, no output
            cdr = await _call_ended(svc)
            await wait_until(lambda: desk.has("CALL_ESTABLISHED"), timeout=3, what="desk")
            (tool,) = cdr.tool_calls
            out = tool.result
            assert outputs() == []
        else:  # the model hears that the desk is busy, and the caller stays with us
            await wait_until(lambda: bool(outputs()), timeout=15, what="the tool output")
            (out,) = outputs()
            assert "note" in out
            await asyncio.sleep(0.5)
            assert svc.bridges  # our leg goes on
            caller.command("hangup")
            cdr = await _call_ended(svc)
        assert isinstance(out, dict)
        assert out["destination"] == "desk" and out["status"] == status
        assert out.get("sip_code") == code
    finally:
        if refuser is not None:
            refuser.cancel()
        await caller.stop()
        await desk.stop()
    assert cdr.disposition is disposition
    assert cdr.transfer is not None and cdr.transfer.destination == "desk"
    assert cdr.transfer.outcome == status
    assert [t.name for t in cdr.tool_calls] == ["transfer_call"]
