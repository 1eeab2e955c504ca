"""baresip (a real softphone) calls a ``cascade`` agent, with PCMU and with Opus.

baresip plays a spoken sentence (espeak-ng) and records what it hears. The agent (our
VAD → transcription → model → speech, against the local cascade server) greets, hears the
sentence, answers it and ends the call with its end_call tool once the answer is played.
Both ways of transcribing: per utterance (``/v1/audio/transcriptions``) and streamed over
the Realtime transcription session (``stt_mode = "stream"``: G.711 for PCMU, 24 kHz PCM
for Opus). Checked: the answer is in baresip's recording (its energy, after the caller's sentence),
the transcript, and the CDR's per-stage latencies of the turn.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.asyncio.helpers import fast_config
from tests.interop.conftest import BaresipFactory, read_wav, rms_db
from tests.wait import wait_until
from w3sipagent.agent.service import AgentService
from w3sipagent.config import Settings
from w3sipagent.localai import Scenario
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable
from w3sipagent.tenants.cascade import CascadeConfig, CascadeStageConfig

KEY = "sk-interop-cascade-0003"
ANSWER = "Of course, your table for two tonight is booked. Goodbye!"
SCRIPT = Scenario.loads(
    f"""
name = "cascade-baresip"
[greeting]
say = "Hello."
[[turns]]
caller = "Hello, I would like to book a table for two tonight."
say = "{ANSWER}"
call = {{ name = "end_call", arguments = {{ reason = "booked" }} }}
"""
)
STAGES = [
    "caller_speech_end",
    "end_of_turn",
    "transcript_final",
    "model_first_token",
    "first_sentence",
    "tts_first_byte",
    "first_rtp",
]
CODECS = {"PCMU": ("PCMU/8000/1", "PCMU"), "opus": ("opus/48000/2", "opus")}
CASES = [("PCMU", "utterance"), ("opus", "utterance"), ("PCMU", "stream"), ("opus", "stream"),
         ("PCMU", "live")]  # fmt: skip
"""``live``: streamed with ``gpt-realtime-whisper``, which writes while the caller speaks."""


@pytest.fixture
async def cascade_agent(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[CascadeServer, AgentService, Any]]:
    stt_mode = request.node.callspec.params["case"][1]
    async with CascadeServer(scenario=SCRIPT, api_keys=[KEY], tts_engine="tone") as srv:

        def stage(model: str) -> CascadeStageConfig:
            return CascadeStageConfig(base_url=srv.base_url, model=model)

        stt = {"stream": "gpt-4o-mini-transcribe", "live": "gpt-realtime-whisper"}.get(
            stt_mode, "whisper-1"
        )
        cascade = CascadeConfig(
            stt=stage(stt),
            stt_mode="utterance" if stt_mode == "utterance" else "stream",
            llm=stage("gpt-4.1-mini"),
            tts=stage("gpt-4o-mini-tts"),
        )
        agent = AgentConfig(instructions="You take bookings.", greeting="Greet.", cascade=cascade)
        tenant = TenantConfig(
            id="bistro",
            hosts=["127.0.0.1"],
            api_key=SecretRef(env="BISTRO_KEY"),
            codecs=["PCMU", "opus"],
            agents={"desk": agent},
        )
        store = CdrStore(f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}", retry_delay=0.01)
        await store.open()
        svc = AgentService(
            Settings(),
            tenants=TenantTable({"bistro": tenant}),
            store=store,
            ua_config=fast_config(),
            environ={"BISTRO_KEY": KEY},
        )
        await svc.start()
        try:
            yield srv, svc, store
        finally:
            await svc.close(timeout=0)
            await store.close()


@pytest.mark.parametrize("case", CASES, ids=[f"{c}-{m}" for c, m in CASES])
async def test_baresip_calls_a_cascade_agent_and_hears_it(
    case: tuple[str, str],
    baresip: BaresipFactory,
    cascade_agent: tuple[CascadeServer, AgentService, Any],
    interop_log: list[str],
) -> None:
    srv, svc, store = cascade_agent
    codec, stt_mode = case
    spec, encoding = CODECS[codec]
    phone = await baresip("baresip-caller", codecs=spec)
    await phone.ctrl.command("dial", f"sip:desk@127.0.0.1:{svc.port}")
    await phone.ctrl.wait_event("CALL_ESTABLISHED", 10)
    # the agent answers the sentence and hangs up itself once its answer is played
    await phone.ctrl.wait_event("CALL_CLOSED", 30)
    await wait_until(lambda: svc.finished, 10, "the call's CDR")
    await store.flush()
    cdr = await store.get_cdr(svc.finished[0].call_id)
    assert cdr is not None and cdr.codec == encoding
    said = [(e.speaker, e.text) for e in cdr.transcript]
    assert ("caller", "Hello, I would like to book a table for two tonight.") in said
    assert ("agent", ANSWER) in said
    assert any(e["kind"] == "end_call" for e in cdr.events)
    # the per-stage latencies of the turn, in order
    (st,) = cdr.turn_stages_ms()
    assert list(st) == STAGES
    assert all(st[a] <= st[b] for a, b in itertools.pairwise(STAGES))
    assert 400 <= st["end_of_turn"] <= 800
    # baresip heard the answer: loud after its own sentence (0.3 s .. ~3.4 s of the WAV)
    enc, dec = phone.recordings()
    assert enc is not None and dec is not None, f"no recordings in {phone.rec_dir}"
    await wait_until(lambda: dec.stat().st_size > 44, 5, "baresip's recording written")
    heard, rate = read_wav(dec)
    answer = heard[int(4.0 * rate) :]
    frames = answer[: len(answer) // (rate // 50) * (rate // 50)].reshape(-1, rate // 50)
    loud_s = sum(rms_db(f) > -35 for f in frames) * 0.02
    level = rms_db(answer)
    interop_log.append(
        f"cascade {codec} ({stt_mode}): heard {heard.size / rate:.1f} s, after the sentence {loud_s:.2f} s "
        f"loud at {level:.1f} dBFS; stages {st}"
    )
    assert loud_s >= 1.0, "the caller did not hear the agent's answer"
    paths = [r.path for r in srv.requests]
    if stt_mode == "live":  # words written from baresip's audio before the turn was committed
        (sock,) = srv.transcription_sockets
        out = [e["type"] for e in sock.events_out]
        first_delta = out.index("conversation.item.input_audio_transcription.delta")
        assert first_delta < out.index("input_audio_buffer.committed")
    if stt_mode != "utterance":  # the transcription session got the call's audio as it came
        assert "/v1/audio/transcriptions" not in paths
        (sock,) = srv.transcription_sockets
        fmt = sock.events_in[0]["session"]["audio"]["input"]["format"]
        assert fmt == ({"type": "audio/pcmu"} if codec == "PCMU" else
                       {"type": "audio/pcm", "rate": 24000})  # fmt: skip
        kinds = [e["type"] for e in sock.events_in]
        assert kinds.count("input_audio_buffer.commit") >= 1
        assert kinds.index("input_audio_buffer.append") < kinds.index("input_audio_buffer.commit")
    else:
        assert paths.count("/v1/audio/transcriptions") >= 1
