"""The agent with a real softphone (baresip 1.0) on 127.0.0.1.

- baresip calls the agent with each codec, plays a spoken WAV and records what it hears;
  the agent's echo handler (the Call PCM API) must send the speech back: the RMS of
  baresip's ``-dec.wav`` is within 10 dB of what it sent, and its envelope correlates with
  the sent one. DTMF typed on baresip (RFC 4733) arrives as ``DtmfReceived`` events.
- the agent calls baresip (auto-answer) with ``UserAgent.dial`` and hears its speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.interop.conftest import (
    Baresip,
    BaresipFactory,
    best_correlation,
    envelope,
    free_port,
    read_wav,
    resample_to,
    rms_db,
    rtp_block,
)
from tests.wait import wait_until
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import CallEnded, DtmfReceived
from w3sipagent.asyncio.useragent import UserAgent, UserAgentConfig

CODECS = {
    "PCMU": ("PCMU/8000/1", "PCMU"),
    "PCMA": ("PCMA/8000/1", "PCMA"),
    "G722": ("G722/16000/1", "G722"),
    "opus": ("opus/48000/2", "opus"),
}


def agent_config(**overrides: object) -> UserAgentConfig:
    lo, hi = rtp_block(40)
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "rtp_port_min": lo,
        "rtp_port_max": hi,
        "t1": 0.1,
        "drain_timeout": 0.5,
        "bye_timeout": 0.5,
        "dial_timeout": 8.0,
    }
    values.update(overrides)
    return UserAgentConfig(**values)  # type: ignore[arg-type]


class EchoAgent:
    """An agent whose handler echoes PCM and records DTMF and the codec of each call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.dtmf: list[DtmfReceived] = []
        self.ended: list[CallEnded] = []
        self.encodings: list[str] = []
        self.frames_in = 0

    async def handler(self, call: Call) -> None:
        self.calls.append(call)
        self.encodings.append(call.media.encoding)

        async def events() -> None:
            async for ev in call.events():
                if isinstance(ev, DtmfReceived):
                    self.dtmf.append(ev)
                elif isinstance(ev, CallEnded):
                    self.ended.append(ev)

        watcher = asyncio.ensure_future(events())
        try:
            async for pcm in call.audio():
                self.frames_in += 1
                call.send_audio(pcm)
        finally:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(watcher), 1.0)
            watcher.cancel()


def recordings_closed(phone: Baresip) -> bool:
    """Both WAV files of the call exist with their final header (sndfile writes it on close)."""
    enc, dec = phone.recordings()
    if enc is None or dec is None:
        return False
    for path in (enc, dec):
        try:
            with wave.open(str(path), "rb") as w:
                size = w.getnframes() * w.getnchannels() * w.getsampwidth()
        except (EOFError, wave.Error):
            return False
        if size == 0 or size > path.stat().st_size:
            return False
    return True


def speech_window(samples: np.ndarray, rate: int) -> np.ndarray:
    """The part of a recording where the sentence is (0.3 s .. 3.3 s of the WAV)."""
    return samples[int(0.3 * rate) : int(3.3 * rate)]


@pytest.mark.parametrize("codec", list(CODECS))
async def test_baresip_calls_agent_echo_and_dtmf(
    codec: str, baresip: BaresipFactory, interop_log: list[str]
) -> None:
    spec, encoding = CODECS[codec]
    agent = EchoAgent()
    ua = UserAgent(agent_config(), handler=agent.handler)
    await ua.start()
    try:
        phone = await baresip("baresip-caller", codecs=spec)
        await phone.ctrl.command("dial", f"sip:support@127.0.0.1:{ua.port}")
        await phone.ctrl.wait_event("CALL_ESTABLISHED", 5)
        # 2 s of speech heard (20 ms frames), the digits, then speech until 4.2 s and the
        # silence after the sentence: what the analysis below looks at
        await wait_until(lambda: agent.frames_in >= 100, 10, "2 s of audio at the agent")
        await phone.ctrl.command("sndcode", "12#")
        await wait_until(lambda: len(agent.dtmf) >= 3, 10, "three DTMF digits")
        await wait_until(lambda: agent.frames_in >= 210, 10, "4.2 s of audio at the agent")
        await phone.ctrl.command("hangup")
        await phone.ctrl.wait_event("CALL_CLOSED", 5)
        await wait_until(lambda: recordings_closed(phone), 5, "baresip's WAV files closed")
    finally:
        await ua.close(timeout=1)
    assert agent.encodings == [encoding]
    assert agent.ended and agent.ended[-1].reason == "remote_bye"
    digits = "".join(d.digit for d in agent.dtmf)
    interop_log.append(f"{codec}: DTMF {digits!r} via {[d.via for d in agent.dtmf]}")
    assert digits == "12#"

    enc, dec = phone.recordings()
    assert enc is not None and dec is not None, f"no recordings in {phone.rec_dir}"
    sent, rate_s = read_wav(enc)
    heard, rate_h = read_wav(dec)
    sent_db = rms_db(speech_window(sent, rate_s))
    # the echo comes back a little later: look at a window shifted by up to 0.5 s
    heard_db = rms_db(heard[int(0.3 * rate_h) : int(3.8 * rate_h)])
    silence_db = rms_db(heard[int(4.6 * rate_h) : int(5.0 * rate_h)])  # after the sentence
    env_s = envelope(resample_to(sent, rate_s, 8000), 8000)
    env_h = envelope(resample_to(heard, rate_h, 8000), 8000)
    corr, lag = best_correlation(env_s[:220], env_h[:250], 25)
    interop_log.append(
        f"{codec}: sent {sent_db:.1f} dBFS, heard {heard_db:.1f} dBFS, "
        f"corr {corr:.2f} at lag {lag * 20} ms, tail {silence_db:.1f} dBFS, rates {rate_s}/{rate_h}"
    )
    assert sent_db > -40, "baresip sent no speech (check the WAV)"
    assert abs(heard_db - sent_db) <= 10.0, "the echo does not carry the caller's energy"
    assert corr >= 0.5, "the echo does not follow the speech envelope"
    assert heard_db - silence_db >= 10.0 or silence_db < -50


async def test_agent_dials_baresip_and_hears_it(
    baresip: BaresipFactory, interop_log: list[str]
) -> None:
    answerer = await baresip("baresip-answer")
    ua = UserAgent(agent_config())
    await ua.start()
    try:
        call = await ua.dial(answerer.uri, timeout=5)
        assert call.media.encoding in ("PCMU", "PCMA", "G722", "opus")
        chunks: list[bytes] = []

        async def listen() -> None:
            async for pcm in call.audio(sample_rate=8000):
                chunks.append(pcm)

        task = asyncio.ensure_future(listen())
        heard_s = lambda: sum(map(len, chunks)) / (2 * 8000)  # noqa: E731
        await wait_until(lambda: heard_s() >= 3.0, 10, "3 s of audio from baresip")
        await call.hangup()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 2)
        end = await asyncio.wait_for(call.wait_ended(), 2)
    finally:
        await ua.close(timeout=1)
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64)
    level = rms_db(pcm[int(0.3 * 8000) : int(2.8 * 8000)])
    interop_log.append(
        f"agent heard {pcm.size / 8000:.2f} s from baresip ({call.media.encoding}) at {level:.1f} dBFS"
    )
    assert end.reason == "local_hangup"
    assert pcm.size >= 2.0 * 8000
    assert level > -40, "no speech heard from baresip"
    await answerer.ctrl.wait_event("CALL_CLOSED", 3)


def test_recordings_helpers(tmp_path: Path) -> None:
    """The analysis helpers themselves: a delayed copy correlates, noise does not."""
    rng = np.random.default_rng(1)
    t = np.arange(8000 * 3) / 8000
    speechy = np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0) * 8000
    delayed = np.concatenate([np.zeros(800), speechy])[: speechy.size]
    c, lag = best_correlation(envelope(speechy, 8000), envelope(delayed, 8000), 20)
    assert c > 0.9 and lag == 5
    noise = rng.normal(0, 3000, speechy.size)
    c2, _ = best_correlation(envelope(speechy, 8000), envelope(noise, 8000), 20)
    assert c2 < 0.3
    assert rms_db(np.zeros(10)) < -100
