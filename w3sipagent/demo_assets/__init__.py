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

CASCADE_CALLER_LINES: tuple[str, ...] = (
    *CALLER_LINES[:2],
    "Where can I park my car near the restaurant?",
    "What desserts do you have tonight?",
    "Sorry, can I talk to the manager, please?",
)
"""The caller of ``demo --backend cascade``: a knowledge question and a barge-in (the fifth
line is said over the agent's answer to the fourth) before asking for the manager."""

CASCADE_BARGE_IN_TURN = 4
"""The 0-based turn the cascade demo's caller says over the agent."""

KNOWLEDGE_FILES: dict[str, str] = {
    "parking.md": "# Parking\n\nCar parking near the restaurant: park for free in the courtyard "
    "behind the building, entrance on Rue Verte. Bicycles go in the rack by the door.\n",
    "menu.md": "# Menu\n\nStarters change every week. Our wine list has forty wines from the "
    "Loire valley.\n",
    "events.md": "# Private events\n\nThe back room seats twenty guests for birthdays and "
    "company dinners; book a week ahead.\n",
}
"""The demo tenant's knowledge base (written to the demo folder's ``knowledge/``)."""

CALLER_VOICE = "cedar"


def scenario_path(backend: str = "realtime") -> Path:
    """The demo scenario (TOML) for the local servers (``cascade``: with the knowledge
    question and the barge-in)."""
    name = "bistro-cascade.toml" if backend == "cascade" else "bistro.toml"
    return Path(str(resources.files(__name__).joinpath(name)))


async def caller_utterances(
    rate: int = 8000, *, engine: str = "auto", lines: tuple[str, ...] = CALLER_LINES
) -> list[bytes]:
    """Each caller line as PCM16 mono at ``rate`` (espeak-ng, else tones)."""
    from w3sipagent.localai import Synthesizer
    from w3sipagent.localai.audio import PCM_RATE

    synth = Synthesizer(engine)  # type: ignore[arg-type]
    out = []
    for line in lines:
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


__all__ = [
    "CALLER_LINES",
    "CASCADE_BARGE_IN_TURN",
    "CASCADE_CALLER_LINES",
    "KNOWLEDGE_FILES",
    "caller_utterances",
    "scenario_path",
    "uses_espeak",
    "write_wav",
]
