"""The resolved settings of one cascaded session (keys already read; no tenant types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class StageEndpoint:
    """One stage's OpenAI-compatible endpoint: ``base_url`` (``…/v1``), model and key."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout: float = 15.0
    """Seconds a request may take to answer (and between two chunks of a stream)."""


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """Voice activity, end of turn and barge-in on the caller's audio.

    ``aggressiveness``: the WebRTC VAD mode 0-3 (3 rejects the most non-speech).
    ``min_speech_ms``: voiced audio needed before the caller counts as speaking;
    ``barge_in_ms``: the same while the agent speaks (longer: a cough does not cut it).
    ``silence_ms``: unvoiced audio after speech that ends the turn (short pauses pass).
    ``padding_ms``: audio kept before the speech onset and sent to transcription.
    """

    aggressiveness: int = 2
    min_speech_ms: int = 60
    barge_in_ms: int = 200
    silence_ms: int = 500
    padding_ms: int = 300
    max_utterance_ms: int = 30_000
    turn_check_wait_ms: int = 1200
    """With the semantic end-of-turn check: how long a turn judged unfinished waits for the
    caller to go on before it is answered as it is."""


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """The three stages, how to listen, and what to say while a tool runs."""

    stt: StageEndpoint
    llm: StageEndpoint
    tts: StageEndpoint
    listen: ListenSettings = field(default_factory=ListenSettings)
    api: Literal["responses", "chat"] = "responses"
    """``chat``: Chat Completions for servers without the Responses API."""
    stt_mode: Literal["utterance", "stream"] = "utterance"
    """``utterance``: ``POST /audio/transcriptions`` when the turn ends; ``stream``: the
    Realtime transcription session, audio sent while the caller speaks."""
    voice: str = "marin"
    tts_instructions: str | None = None
    language: str | None = None
    transcription_prompt: str | None = None
    transcription_delay: str | None = None
    """``stt_mode = "stream"`` with a streaming model: the session's ``delay`` (``minimal``
    … ``xhigh``: how long the model listens before it writes; None: the service's default)."""
    filler: str | None = None
    """Said when a tool has not answered after ``filler_after_ms`` (None: nothing)."""
    filler_after_ms: int = 1200
    turn_check: StageEndpoint | None = None
    """The semantic end-of-turn check's model (None: off, the silence alone ends a turn)."""
    probe: bool = True
    """Check the model endpoint and key (``GET /models``) when the session starts, so an
    unreachable service or a refused key fails the start (and the bridge falls back)."""
