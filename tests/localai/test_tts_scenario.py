"""Speech synthesis (espeak-ng and tones) and the scenario file format."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from w3sipagent.errors import ConfigError
from w3sipagent.localai import Scenario, Synthesizer, bundled_scenarios, load_scenario
from w3sipagent.localai.audio import parse_wav, rms_dbfs, wav_bytes
from w3sipagent.localai.tts import tone_speech

HAVE_ESPEAK = shutil.which("espeak-ng") is not None


@pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed")
async def test_espeak_path_and_cache() -> None:
    tts = Synthesizer("espeak")
    pcm = await tts.synthesize("Hello, thank you for calling.")
    assert tts.last_engine == "espeak-ng"
    secs = len(pcm) / 48000
    assert 1.0 < secs < 4.0
    assert rms_dbfs(pcm) > -35.0
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    # speech, not a tone: energy spread over many frequency bins
    spec = np.abs(np.fft.rfft(x[:24000]))
    assert (spec > spec.max() * 0.1).sum() > 50
    again = await tts.synthesize("Hello, thank you for calling.")
    assert again is pcm
    other = await tts.synthesize("Hello, thank you for calling.", voice="cedar")
    assert other != pcm


async def test_tone_fallback_when_espeak_missing(tmp_path: Path) -> None:
    tts = Synthesizer("espeak", espeak_path=str(tmp_path / "no-such-espeak"))
    pcm = await tts.synthesize("two words")
    assert tts.last_engine == "tone" and pcm == tone_speech("two words")
    assert await Synthesizer("tone").synthesize("") == b""


def test_tone_speech_shape() -> None:
    pcm = tone_speech("one two three.")
    ms = len(pcm) / 48
    assert 400 < ms < 1200
    assert rms_dbfs(pcm) > -30.0
    assert len(tone_speech("one two three.", speed=1.5)) < len(pcm)


def test_wav_round_trip() -> None:
    pcm = tone_speech("hi")
    assert parse_wav(wav_bytes(pcm, 24000)) == (pcm, 24000, 1)
    with pytest.raises(ValueError, match="RIFF"):
        parse_wav(b"nope")


def test_bundled_demo() -> None:
    assert "demo" in bundled_scenarios()
    s = load_scenario()
    assert s.greeting and s.idle and len(s.turns) >= 3
    calls = [t.call for t in s.turns if t.call is not None]
    assert {c.name for c in calls} == {"check_reservation", "transfer_call"}
    assert all(c.after for c in calls)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus = 1", "unknown key 'bogus'"),
        ("[[turns]]\ncaller = 'x'", "needs 'say', 'call' or both"),
        ("[[turns]]\ncall = { name = 'f', arguments = '{bad' }", "not valid JSON"),
        ("[[inject]]\nat = 'later'", "at must be one of"),
        ("[[inject]]\naction = 'explode'", "action must be one of"),
        ("[[inject]]\nclose_code = 999", "not a valid WebSocket close code"),
        ("greeting = [1]", "greeting must be"),
        ("name = ", "invalid TOML"),
        ("idle = 3", "idle must be a string"),
        ("[[turns]]\nsay = 'a'\n[[turns]]\ncall = { arguments = {} }", "turns[1].call: name"),
        ("[[inject]]\nturn = 1\n[[inject]]\nturn = -1", "inject[1]: turn must be >= 0"),
    ],
)
def test_scenario_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=r"scn\.toml") as exc:
        Scenario.loads(text, "scn.toml")
    assert needle in str(exc.value)


def test_scenario_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Scenario.load(tmp_path / "x.toml")
    with pytest.raises(ConfigError, match="not a bundled scenario"):
        load_scenario("no-such-name")
