"""The agent part of a tenant: back end, prompt, voice, turn detection, transcription, tools.

``[tenants.NAME.agents.AGENT]`` validated into :class:`AgentConfig`, which gives the AI
session configuration of a call (:meth:`AgentConfig.session_config`). ``backend`` picks
the AI: ``realtime`` (OpenAI Realtime, the default) or ``live`` (GPT-Live); a setting the
chosen back end does not have (``turn_detection`` on a live agent, ``delegation`` on a
realtime one) is an error naming its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from w3sipagent.ai.session import (
    AISessionConfig,
    AudioFormat,
    HistoryItem,
    StoredPrompt,
    ToolSpec,
    TurnDetection,
)
from w3sipagent.tenants.cascade import CascadeConfig
from w3sipagent.tenants.fields import (
    LIVE_MODELS,
    LIVE_VOICES,
    VOICES,
    Duration,
    StrictModel,
    check_env_name,
    check_http_url,
    check_target_uri,
)

__all__ = [
    "AGENT_POLICIES",
    "BUILTIN_TOOLS",
    "LIVE_PLAYOUT_LEAD_MS",
    "AgentConfig",
    "AgentPolicy",
    "CustomVoice",
    "DelegationConfig",
    "HistoryMessage",
    "StoredPromptConfig",
    "TracingConfig",
    "TranscriptionConfig",
    "TurnDetectionConfig",
    "WebhookToolConfig",
]


class TurnDetectionConfig(StrictModel):
    """Turn detection: ``server_vad`` (silence based), ``semantic_vad`` or ``none`` (manual)."""

    type: Literal["server_vad", "semantic_vad", "none"] = "server_vad"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=5000)
    silence_duration_ms: int = Field(default=500, ge=0, le=10000)
    idle_timeout_ms: int | None = Field(default=None, ge=5000, le=30000)
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    min_interrupt_ms: int = Field(default=0, ge=0, le=2000)
    """Guard against false interruptions: the caller must speak this long before the agent
    is cut (0 = off; when on, the bridge decides barge-in itself)."""

    def to_session(self) -> TurnDetection | None:
        """The :class:`TurnDetection` for the AI session (None for ``none``)."""
        if self.type == "none":
            return None
        return TurnDetection(
            type=self.type,
            threshold=self.threshold,
            prefix_padding_ms=self.prefix_padding_ms,
            silence_duration_ms=self.silence_duration_ms,
            create_response=self.create_response,
            interrupt_response=self.interrupt_response and self.min_interrupt_ms == 0,
            idle_timeout_ms=self.idle_timeout_ms if self.type == "server_vad" else None,
            eagerness=self.eagerness,
        )


class TranscriptionConfig(StrictModel):
    """Input (caller) transcription: on by default, needed for the caller side of CDRs."""

    enabled: bool = True
    model: str = "gpt-4o-mini-transcribe"
    language: str | None = None
    prompt: str | None = Field(default=None, max_length=4000)
    """Guides the transcription: keywords (whisper-1) or free text (gpt-4o-*-transcribe)."""


class WebhookToolConfig(StrictModel):
    """A tool the model may call, run as an HTTP POST of its JSON arguments to ``url``.

    The auth header value is read from the environment variable ``auth_env`` at call
    time (``auth_prefix`` + value, e.g. ``Bearer …``) and never logged.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    url: str
    timeout: Duration = 5.0
    auth_header: str = "Authorization"
    auth_env: str | None = None
    auth_prefix: str = "Bearer "

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_http_url(v)

    @field_validator("auth_env")
    @classmethod
    def _auth_env(cls, v: str | None) -> str | None:
        return None if v is None else check_env_name(v)

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object":
            raise ValueError('must be a JSON schema with type = "object"')
        props = v.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError("properties must be a table of JSON schemas")
        return v

    def spec(self) -> ToolSpec:
        """The tool as the AI session sees it."""
        return ToolSpec(self.name, self.description, dict(self.parameters))


BUILTIN_TOOLS = frozenset({"transfer_call", "end_call", "send_dtmf", "search_knowledge"})


class StoredPromptConfig(StrictModel):
    """A prompt stored in the OpenAI project (``pmpt_...``), applied by the service."""

    id: str = Field(pattern=r"^pmpt_[A-Za-z0-9_-]{1,128}$")
    version: str | None = Field(default=None, min_length=1, max_length=64)
    variables: dict[str, str] = Field(default_factory=dict)

    def to_session(self) -> StoredPrompt:
        return StoredPrompt(self.id, self.version, dict(self.variables))


class TracingConfig(StrictModel):
    """Service-side traces of the sessions (immutable once a session has them)."""

    workflow_name: str | None = Field(default=None, max_length=200)
    group_id: str | None = Field(default=None, max_length=200)
    metadata: dict[str, str] = Field(default_factory=dict)

    def to_session(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.workflow_name is not None:
            out["workflow_name"] = self.workflow_name
        if self.group_id is not None:
            out["group_id"] = self.group_id
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


INCLUDE_FIELDS = Literal["item.input_audio_transcription.logprobs"]

LIVE_PLAYOUT_LEAD_MS = 300
"""How far the bridge may queue a live agent's real-time audio ahead of the caller."""


class CustomVoice(StrictModel):
    """A custom voice of the account: ``voice = { id = "voice_…" }`` (GPT-Live)."""

    id: str = Field(pattern=r"^voice_[A-Za-z0-9_-]{1,128}$")


def _voice_kind(v: Any) -> str:
    return "Custom" if isinstance(v, dict | CustomVoice) else "Name"


AgentVoice = Annotated[
    Annotated[str, Tag("Name")] | Annotated[CustomVoice, Tag("Custom")],
    Discriminator(_voice_kind),
]
"""A voice name (checked against the back end's list) or a custom voice ``{ id = "voice_…" }``;
the tags keep a bad ``{ id }`` reported as ``voice.id`` alone."""


class DelegationConfig(StrictModel):
    """GPT-Live: the Responses model that runs the tools and the reasoning behind the voice."""

    model: str = "gpt-5-mini"
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None


class HistoryMessage(StrictModel):
    """One message of the conversation a call starts with."""

    role: Literal["user", "assistant", "system"]
    text: str = Field(min_length=1, max_length=4000)


def _one_of(values: tuple[str, ...]) -> PydanticCustomError:
    """The error pydantic gives for a Literal (so it reads the same for every back end)."""
    quoted = [f"'{v}'" for v in values]
    expected = ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
    return PydanticCustomError(
        "literal_error", "Input should be {expected}", {"expected": expected}
    )


_REALTIME_ONLY = (
    "turn_detection",
    "transcription",
    "noise_reduction",
    "speed",
    "language",
    "stored_prompt",
    "tracing",
    "include",
)


AgentPolicy = Literal["always_answer", "handover_when_not_understood", "internal_fallback"]
AGENT_POLICIES: tuple[str, ...] = (
    "always_answer",
    "handover_when_not_understood",
    "internal_fallback",
)


class AgentConfig(StrictModel):
    """One agent of a tenant: back end, model, voice, prompt, greeting, turn detection, tools."""

    backend: Literal["realtime", "live", "cascade"] = "realtime"
    """The AI: ``realtime`` (OpenAI Realtime), ``live`` (GPT-Live) or ``cascade``
    (speech-to-text → model → text-to-speech)."""
    model: str = "gpt-realtime"
    """``gpt-realtime…`` for realtime; ``gpt-live-1`` (default) or ``gpt-live-1.1`` for live."""
    voice: AgentVoice = "marin"
    """A voice of the back end's list, or a custom voice ``{ id = "voice_…" }``."""
    instructions: str = ""
    instructions_file: Path | None = None
    language: str | None = None
    greeting: str | None = None
    """Instructions for the first response; the agent speaks first when set."""
    turn_detection: TurnDetectionConfig = Field(default_factory=TurnDetectionConfig)
    transcription: TranscriptionConfig = Field(default_factory=TranscriptionConfig)
    noise_reduction: Literal["near_field", "far_field"] | None = None
    speed: float | None = Field(default=None, ge=0.25, le=1.5)
    max_output_tokens: int | None = Field(default=None, ge=1, le=4096)
    tools: list[WebhookToolConfig] = Field(default_factory=list)
    stored_prompt: StoredPromptConfig | None = None
    """A stored prompt (``pmpt_...``, version, variables) under ``instructions``."""
    tracing: Literal["auto"] | TracingConfig | None = None
    include: list[INCLUDE_FIELDS] = Field(default_factory=list)
    knowledge: bool = False
    """Offer the built-in ``search_knowledge`` tool (the tenant needs a ``[knowledge]`` table)."""
    cascade: CascadeConfig | None = None
    """``backend = "cascade"``: speech-to-text → model → text-to-speech, each stage with its
    own endpoint (docs/backends-cascade.md). A ``[cascade]`` table alone selects the cascade."""
    history: list[HistoryMessage] = Field(default_factory=list, max_length=128)
    """Messages the conversation starts with (context the caller does not hear)."""
    delegation: DelegationConfig | None = None
    """GPT-Live only: the model behind the voice that runs tools (and its effort, tier)."""
    policy: AgentPolicy = "always_answer"
    """What the agent does beyond the conversation (docs/control-plane.md, "Agent policy"):
    ``always_answer`` (the AI answers; when it cannot, the tenant's fallback as configured),
    ``handover_when_not_understood`` (also: after ``handover_after`` caller turns in a row
    that were not understood, the caller is transferred to ``handover_to``) or
    ``internal_fallback`` (when the AI cannot take the call, the fallback stays with the
    agent: its WAV, then hang-up; never a transfer out)."""
    handover_to: str | None = None
    """Where ``handover_when_not_understood`` sends the caller: a transfer destination's
    name or a ``sip:``/``tel:`` URI (default: the tenant's ``fallback.transfer``)."""
    handover_after: int = Field(default=2, ge=1, le=10)
    """How many caller turns in a row not understood (the transcription failed or came back
    empty) trigger the handover."""

    def check_policy(self, name: str, transfers: Mapping[str, str], fallback: str | None) -> None:
        """The policy's target exists: ``handover_to`` is one of the tenant's ``transfers``
        or a URI; ``handover_when_not_understood`` has it (or the tenant's fallback
        transfer). ValueError naming the key otherwise."""
        to = self.handover_to
        if to is not None and to not in transfers:
            try:
                check_target_uri(to)
            except ValueError:
                raise ValueError(
                    f"agents.{name}.handover_to: {to!r} is neither a transfer destination nor a URI"
                ) from None
        if self.policy == "handover_when_not_understood" and self.backend == "live":
            # GPT-Live keeps the caller's transcription to itself: it never reports a turn it
            # did not understand, so the handover could never fire
            raise ValueError(
                f"agents.{name}.policy: handover_when_not_understood is not available with "
                'backend = "live" (GPT-Live reports no failed or empty caller transcripts)'
            )
        if self.policy == "handover_when_not_understood" and to is None and not fallback:
            raise ValueError(
                f"agents.{name}.policy: handover_when_not_understood needs handover_to "
                "(or the tenant's fallback.transfer)"
            )

    @field_validator("model")
    @classmethod
    def _model(cls, v: str, info: ValidationInfo) -> str:
        live = info.data.get("backend") == "live"
        if live and v not in LIVE_MODELS:
            raise _one_of(LIVE_MODELS)
        if not live and v in LIVE_MODELS:
            raise ValueError(f'{v} is a GPT-Live model: set backend = "live"')
        return v

    @field_validator("voice", mode="before")
    @classmethod
    def _voice(cls, v: object, info: ValidationInfo) -> object:
        live = info.data.get("backend") == "live"
        if isinstance(v, dict | CustomVoice):
            return v
        voices = LIVE_VOICES if live else VOICES
        if v not in voices:
            raise _one_of(voices)
        return v

    @field_validator(*_REALTIME_ONLY)
    @classmethod
    def _realtime_only(cls, v: object, info: ValidationInfo) -> object:
        # a stored agent is dumped whole, so only a value other than the default counts
        field = cls.model_fields[info.field_name or ""]
        if info.data.get("backend") == "live" and v != field.get_default(call_default_factory=True):
            raise ValueError(
                "not a setting of a live agent (GPT-Live decides turns, transcription and "
                "pace by itself): remove it"
            )
        return v

    @field_validator("delegation")
    @classmethod
    def _live_only(cls, v: DelegationConfig | None, info: ValidationInfo) -> object:
        if v is not None and info.data.get("backend", "realtime") != "live":
            raise ValueError('only a live agent delegates its tools: set backend = "live"')
        return v

    @model_validator(mode="before")
    @classmethod
    def _cascade_table_selects_the_cascade(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("cascade") is not None and "backend" not in data:
            return {**data, "backend": "cascade"}
        return data

    @model_validator(mode="after")
    def _backend_defaults(self) -> AgentConfig:
        if self.backend == "live" and "model" not in self.model_fields_set:
            self.model = LIVE_MODELS[0]
        if self.backend == "cascade" and self.cascade is None:
            self.cascade = CascadeConfig()
        if self.backend != "cascade" and self.cascade is not None:
            raise ValueError(
                f'cascade: a {self.backend} agent has no cascade: set backend = "cascade"'
            )
        return self

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, v: list[WebhookToolConfig]) -> list[WebhookToolConfig]:
        seen: set[str] = set()
        for t in v:
            if t.name in BUILTIN_TOOLS:
                raise ValueError(f"tool name {t.name!r} is reserved for a built-in tool")
            if t.name in seen:
                raise ValueError(f"tool {t.name!r} is defined twice")
            seen.add(t.name)
        return v

    def prompt(self) -> str:
        """The instructions: ``instructions`` followed by the file's text when set."""
        text = self.instructions
        if self.instructions_file is not None:
            extra = self.instructions_file.read_text(encoding="utf-8")
            text = f"{text}\n\n{extra}" if text else extra
        return text

    def session_config(
        self,
        audio_format: AudioFormat,
        *,
        extra_tools: tuple[ToolSpec, ...] = (),
        instructions: str | None = None,
    ) -> AISessionConfig:
        """The AI session configuration for one call of this agent."""
        voice = self.voice.id if isinstance(self.voice, CustomVoice) else self.voice
        history = tuple(HistoryItem(m.role, m.text) for m in self.history)
        tools = extra_tools + tuple(t.spec() for t in self.tools)
        prompt = self.prompt() if instructions is None else instructions
        if self.backend == "live":
            d = self.delegation or DelegationConfig()
            return AISessionConfig(
                instructions=prompt,
                model=self.model,
                voice=voice,
                input_format=audio_format,
                output_format=audio_format,
                turn_detection=None,
                transcription_model=None,
                tools=tools,
                max_output_tokens=self.max_output_tokens,
                history=history,
                backend="live",
                tool_model=d.model,
                tool_reasoning_effort=d.reasoning_effort,
                tool_service_tier=d.service_tier,
                playout_lead_ms=LIVE_PLAYOUT_LEAD_MS,
            )
        lang = self.transcription.language or self.language
        return AISessionConfig(
            instructions=prompt,
            model=self.model,
            voice=voice,
            input_format=audio_format,
            output_format=audio_format,
            turn_detection=self.turn_detection.to_session(),
            transcription_model=self.transcription.model if self.transcription.enabled else None,
            transcription_language=lang,
            noise_reduction=self.noise_reduction,
            tools=tools,
            max_output_tokens=self.max_output_tokens,
            speed=self.speed,
            transcription_prompt=self.transcription.prompt,
            prompt=self.stored_prompt.to_session() if self.stored_prompt else None,
            tracing=self.tracing.to_session()
            if isinstance(self.tracing, TracingConfig)
            else self.tracing,
            include=tuple(self.include),
            history=history,
        )
