"""The local Realtime server's per-append shortcuts give what the general path gives.

An append written as the agent writes it is read without ``json.loads``; G.711 input is
measured by the VAD without decoding it; a response's audio conversion is cached. Each
must send the same events (same order, same bodies) and record the same as before.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from typing import Any

import pytest

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.audio import (
    alaw_encode,
    codes_energy,
    converted_output,
    frames_energy,
    from_pcm24k,
    g711_squares,
    silence,
    to_pcm16,
    tone,
    ulaw_encode,
)
from w3sipagent.localai.realtime.ports import ServerOptions
from w3sipagent.localai.realtime.session import APPEND_TEXT, ServerSession
from w3sipagent.localai.tts import Synthesizer
from w3sipagent.localai.vad import EnergyVad
from w3sipagent.realtime.events import InputAudioBufferAppend

from .conftest import SCENARIO


class _CountingIds:
    """Deterministic ids, so two sessions' events can be compared whole."""

    def __init__(self) -> None:
        self.n = 0

    def token(self, nbytes: int = 8) -> str:
        self.n += 1
        return f"{self.n:0{2 * nbytes}d}"

    def randbits(self, k: int) -> int:
        self.n += 1
        return self.n % (1 << k)


class _Collect:
    kind = "websocket"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, event: dict[str, Any]) -> None:
        self.sent.append(json.loads(json.dumps(event)))

    async def close(self, code: int, reason: str) -> None:
        return None

    def abort(self) -> None:
        return None


def _speech_frames() -> list[bytes]:
    """PCMU 20 ms frames: silence, a loud line, silence, a quieter line, silence."""
    pcm = (
        silence(400, 8000)
        + tone(300, 900, 8000, dbfs=-18)
        + silence(900, 8000)
        + tone(520, 600, 8000, dbfs=-35)
        + silence(1200, 8000)
    )
    coded = ulaw_encode(pcm)
    return [coded[i : i + 160] for i in range(0, len(coded), 160)]


def _noise(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        scale = 10 ** ((i // 80) % 5)  # each 10 ms frame at another level
        out.append(struct.pack("<h", max(-32768, min(32767, int(rng.gauss(0, scale))))))
    return b"".join(out)


async def _run(texts: list[str]) -> tuple[list[dict[str, Any]], list[Any], bytes]:
    transport = _Collect()
    session = ServerSession(
        transport,
        scenario=SCENARIO,
        synthesizer=Synthesizer("tone"),
        options=ServerOptions(rate_limits_delay_s=0.0),
        ids=_CountingIds(),
    )
    await session.start()
    update = {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                },
                "output": {"format": {"type": "audio/pcmu"}},
            },
        },
    }
    await session.handle_text(json.dumps(update))
    for text in texts:
        await session.handle_text(text)
        for _ in range(3):
            await asyncio.sleep(0)
    for _ in range(200):  # let the responses finish (no pacing: a few loop turns)
        if session.active is None:
            break
        await asyncio.sleep(0.005)
    assert session.active is None
    rec = session.recording
    session.closed("test over")
    return transport.sent, [(e.type, e.event) for e in rec.events], bytes(rec.audio)


async def test_append_fast_path_sends_and_records_what_json_loads_does() -> None:
    frames = _speech_frames()
    fast = [
        InputAudioBufferAppend(audio=f, event_id=f"w3s_{i}").to_json() for i, f in enumerate(frames)
    ]
    fast[5] = InputAudioBufferAppend(audio=frames[5]).to_json()  # no event_id
    fast.append('{"type":"input_audio_buffer.append","event_id":"w3s_bad","audio":"abc"}')
    # the same events through json.loads: another spacing does not match the fast form
    slow = [json.dumps(json.loads(t), indent=1) for t in fast]
    assert all(APPEND_TEXT.fullmatch(t) for t in fast)
    assert not any(APPEND_TEXT.fullmatch(t) for t in slow)
    sent_fast, rec_fast, audio_fast = await _run(fast)
    sent_slow, rec_slow, audio_slow = await _run(slow)
    assert sent_fast == sent_slow
    assert rec_fast == rec_slow
    assert audio_fast == audio_slow == b"".join(frames)
    types = [e["type"] for e in sent_fast]
    # the caller's two lines were heard and answered, and the bad append was refused
    assert types.count("input_audio_buffer.speech_started") == 2
    assert types.count("response.done") >= 2
    assert "response.output_audio.delta" in types
    err = [e for e in sent_fast if e["type"] == "error"]
    assert len(err) == 1 and err[0]["error"]["event_id"] == "w3s_bad"
    assert rec_fast[1 + 5][1] == {
        "type": "input_audio_buffer.append",
        "audio": "<216 base64 chars>",
    }


@pytest.mark.parametrize("fmt", [AudioFormat.PCMU, AudioFormat.PCMA])
def test_codes_energy_is_the_decoded_energy(fmt: AudioFormat) -> None:
    encode = ulaw_encode if fmt is AudioFormat.PCMU else alaw_encode
    codes = encode(_noise(80 * 30, 3))
    squares = g711_squares(fmt)
    assert squares is not None
    assert (
        codes_energy(codes, squares, 80).tolist()
        == frames_energy(to_pcm16(codes, fmt), 80).tolist()
    )
    assert g711_squares(AudioFormat.PCM24K) is None


@pytest.mark.parametrize("fmt", [AudioFormat.PCMU, AudioFormat.PCMA])
@pytest.mark.parametrize("chunk", [160, 480, 97])
def test_vad_on_codes_gives_the_events_of_the_decoded_audio(fmt: AudioFormat, chunk: int) -> None:
    encode = ulaw_encode if fmt is AudioFormat.PCMU else alaw_encode
    pcm = (
        silence(300, 8000)
        + tone(440, 700, 8000, dbfs=-20)
        + _noise(8000, 5)
        + silence(900, 8000)
        + tone(200, 40, 8000, dbfs=-10)  # a click: too short to be speech
        + silence(600, 8000)
    )
    codes = encode(pcm)
    squares = g711_squares(fmt)
    on_pcm, on_codes = EnergyVad(silence_duration_ms=500), EnergyVad(silence_duration_ms=500)
    ev_pcm, ev_codes = [], []
    for i in range(0, len(codes), chunk):
        ev_pcm.extend(on_pcm.feed(to_pcm16(codes[i : i + chunk], fmt), 8000))
        ev_codes.extend(on_codes.feed(codes[i : i + chunk], 8000, squares))
        assert on_pcm.position_ms == on_codes.position_ms
        assert on_pcm.speaking == on_codes.speaking
    assert ev_pcm == ev_codes
    assert len(ev_codes) >= 2


def test_converted_output_is_from_pcm24k() -> None:
    pcm = tone(330, 500) + _noise(2400, 9)
    for fmt in AudioFormat:
        assert converted_output(pcm, fmt) == from_pcm24k(pcm, fmt)
        assert converted_output(pcm, fmt) is converted_output(pcm, fmt)
