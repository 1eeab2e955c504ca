"""An agent's cascaded back end: ``[tenants.T.agents.A.cascade]`` (docs/backends-cascade.md).

Each stage (``stt``, ``llm``, ``tts``) takes its own OpenAI-compatible ``base_url``, model
and key reference, so transcription can run on a local Whisper server and the model on
OpenAI. :meth:`CascadeConfig.to_settings` resolves it for one call into the
:class:`~w3sipagent.cascade.CascadeSettings` the session runs with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator

from w3sipagent.cascade.config import CascadeSettings, ListenSettings, StageEndpoint
from w3sipagent.tenants.fields import StrictModel, check_http_url

__all__ = ["CascadeConfig", "CascadeListenConfig", "CascadeStageConfig"]


class CascadeStageConfig(StrictModel):
    """One stage: ``base_url`` (``…/v1``; None: the deployment's OpenAI URL), ``model``,
    ``api_key`` as a reference ``"env:NAME"`` / ``"file:PATH"`` (None: the tenant's key),
    ``timeout`` in seconds."""

    base_url: str | None = None
    model: str
    api_key: str | None = None
    timeout: float = Field(default=15.0, gt=0, le=120)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else check_http_url(v)

    @field_validator("api_key")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("env:", "file:")):
            raise ValueError("must be a reference 'env:NAME' or 'file:PATH', never the key")
        return v


class CascadeListenConfig(StrictModel):
    """VAD, end of turn and barge-in (see :class:`~w3sipagent.cascade.ListenSettings`)."""

    aggressiveness: int = Field(default=2, ge=0, le=3)
    min_speech_ms: int = Field(default=60, ge=20, le=2000)
    barge_in_ms: int = Field(default=200, ge=20, le=3000)
    silence_ms: int = Field(default=500, ge=100, le=5000)
    padding_ms: int = Field(default=300, ge=0, le=2000)
    turn_check_wait_ms: int = Field(default=1200, ge=0, le=10_000)


class CascadeConfig(StrictModel):
    """The cascade of one agent: three stages, listening, voice, filler."""

    stt: CascadeStageConfig = Field(default_factory=lambda: CascadeStageConfig(model="whisper-1"))
    llm: CascadeStageConfig = Field(
        default_factory=lambda: CascadeStageConfig(model="gpt-4.1-mini")
    )
    tts: CascadeStageConfig = Field(
        default_factory=lambda: CascadeStageConfig(model="gpt-4o-mini-tts")
    )
    api: Literal["responses", "chat"] = "responses"
    """``chat`` for model servers without the Responses API."""
    stt_mode: Literal["utterance", "stream"] = "utterance"
    """``utterance``: ``POST /audio/transcriptions`` per turn (any compatible server);
    ``stream``: the Realtime transcription session, the caller's audio sent while they
    speak (``gpt-realtime-whisper`` / ``gpt-live-transcribe`` write the words as they come;
    ``gpt-4o-transcribe``, ``gpt-4o-mini-transcribe``, ``gpt-transcribe`` after the turn)."""
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    """``stream`` with a streaming model: how long it listens before it writes (None: the
    service's default)."""
    listen: CascadeListenConfig = Field(default_factory=CascadeListenConfig)
    voice: str | None = None
    """The TTS voice (None: the agent's voice)."""
    tts_instructions: str | None = None
    language: str | None = None
    """The caller's language for transcription (None: the agent's)."""
    prompt: str | None = None
    """Transcription prompt (names, keywords)."""
    filler: str | None = None
    """Said while a slow tool runs (None: silence)."""
    filler_after_ms: int = Field(default=1200, ge=0, le=10_000)
    turn_check: CascadeStageConfig | None = None
    """The semantic end-of-turn check: a model asked whether the caller finished (None:
    off, the default; the silence alone ends a turn)."""

    def to_settings(
        self,
        *,
        default_base_url: str,
        default_key: str,
        voice: str,
        environ: Mapping[str, str] | None = None,
    ) -> CascadeSettings:
        """The settings of one call, keys read now (raises ConfigError naming a bad ref)."""
        from w3sipagent.tenants.models import SecretRef
        from w3sipagent.tenants.secrets import resolve_secret

        def endpoint(name: str, stage: CascadeStageConfig) -> StageEndpoint:
            key = default_key
            if stage.api_key is not None:
                ref = SecretRef.model_validate(stage.api_key)
                key = resolve_secret(
                    ref, what=f"cascade {name} api_key", environ=environ
                ).get_secret_value()
            return StageEndpoint(
                stage.base_url or default_base_url, stage.model, key, stage.timeout
            )

        ls = self.listen
        return CascadeSettings(
            stt=endpoint("stt", self.stt),
            llm=endpoint("llm", self.llm),
            tts=endpoint("tts", self.tts),
            listen=ListenSettings(
                aggressiveness=ls.aggressiveness,
                min_speech_ms=ls.min_speech_ms,
                barge_in_ms=ls.barge_in_ms,
                silence_ms=ls.silence_ms,
                padding_ms=ls.padding_ms,
                turn_check_wait_ms=ls.turn_check_wait_ms,
            ),
            api=self.api,
            stt_mode=self.stt_mode,
            voice=self.voice or voice,
            tts_instructions=self.tts_instructions,
            language=self.language,
            transcription_prompt=self.prompt,
            transcription_delay=self.delay,
            filler=self.filler,
            filler_after_ms=self.filler_after_ms,
            turn_check=(
                None if self.turn_check is None else endpoint("turn_check", self.turn_check)
            ),
        )
