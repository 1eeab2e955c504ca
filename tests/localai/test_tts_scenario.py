"""Speech synthesis (espeak-ng and tones) and the scenario file format."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.wait import wait_until
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


async def test_one_synthesis_for_sessions_asking_at_once(tmp_path: Path) -> None:
    """100 calls arriving together all want the greeting: espeak-ng runs once for it."""
    wav = tmp_path / "line.wav"
    wav.write_bytes(wav_bytes(tone_speech("hello there"), 24000))
    runs = tmp_path / "runs"
    fake = tmp_path / "espeak-ng"
    fake.write_text(f"#!/bin/sh\necho run >> {runs}\nsleep 0.3\ncat {wav}\n")
    fake.chmod(0o755)
    tts = Synthesizer("espeak", espeak_path=str(fake))
    out = await asyncio.gather(*(tts.synthesize("Hello there.") for _ in range(20)))
    other = await tts.synthesize("Another line.")
    assert all(pcm is out[0] for pcm in out) and out[0] == tone_speech("hello there")
    assert tts.last_engine == "espeak-ng" and other == out[0]  # the fake says the same
    assert runs.read_text().splitlines() == ["run", "run"]  # one per distinct line


async def test_a_cancelled_synthesis_lets_the_next_caller_synthesize(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    wav = tmp_path / "line.wav"
    wav.write_bytes(wav_bytes(tone_speech("hi"), 24000))
    fake = tmp_path / "espeak-ng"
    fake.write_text(f"#!/bin/sh\necho run >> {runs}\nsleep 0.3\ncat {wav}\n")
    fake.chmod(0o755)
    tts = Synthesizer("espeak", espeak_path=str(fake))
    first = asyncio.create_task(tts.synthesize("Hi."))
    second = asyncio.create_task(tts.synthesize("Hi."))
    await wait_until(lambda: runs.exists())
    first.cancel()  # the one running espeak-ng goes away: the waiting one takes over
    assert await second == tone_speech("hi")
    assert len(runs.read_text().splitlines()) == 2
