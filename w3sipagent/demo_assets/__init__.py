"""What the offline demo needs: the caller's lines, their audio, the scenario.

The caller's speech is generated at run time (nothing large is committed): espeak-ng through
the local Realtime server's :class:`~w3sipagent.localai.Synthesizer`, or
speech-shaped tone bursts when espeak-ng is missing. The local server has no speech
recognizer: it reports the scenario's ``caller`` text of each turn as the transcription, so
the lines below and the scenario's turns are the same sentences.
"""

from __future__ import annotations

import wave
from importlib import resources
from pathlib import Path

CALLER_LINES: tuple[str, ...] = (
    "Hi, I'd like to know your opening hours tonight.",
    "I think I already have a booking for two under Martin.",
    "Can I talk to the manager, please?",
)
"""What the demo caller says, one line per turn."""

CALLER_VOICE = "cedar"


def scenario_path() -> Path:
    """The demo scenario (TOML) for the local Realtime server."""
    return Path(str(resources.files(__name__).joinpath("bistro.toml")))


async def caller_utterances(rate: int = 8000, *, engine: str = "auto") -> list[bytes]:
    """Each caller line as PCM16 mono at ``rate`` (espeak-ng, else tones)."""
    from w3sipagent.localai import Synthesizer
    from w3sipagent.localai.audio import PCM_RATE

    synth = Synthesizer(engine)  # type: ignore[arg-type]
    out = []
    for line in CALLER_LINES:
        pcm = await synth.synthesize(line, CALLER_VOICE)
        if rate != PCM_RATE:
            from w3sipagent.codecs.resample import Resampler

            pcm = Resampler(PCM_RATE, rate).process(pcm)
        out.append(pcm)
    return out


def uses_espeak(engine: str = "auto") -> bool:
    """True when the caller's lines will be spoken by espeak-ng (not tones)."""
    from w3sipagent.localai import Synthesizer

    return Synthesizer(engine).uses_espeak  # type: ignore[arg-type]


def write_wav(path: Path, pcm: bytes, rate: int = 8000) -> Path:
    """Write PCM16 mono as a WAV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


__all__ = ["CALLER_LINES", "caller_utterances", "scenario_path", "uses_espeak", "write_wav"]
