"""The small interface between the call bridge and any AI back end.

The bridge talks to the AI only through :class:`AISession` and the events
below. The OpenAI Realtime client (:mod:`w3sipagent.realtime`) is the first
implementation, the GPT-Live client (:mod:`w3sipagent.live`) the second; a cascaded speech-to-text -> chat -> text-to-speech pipeline
is meant to be another. Nothing of a back end's wire format appears here.

Audio is raw bytes in the session's negotiated :class:`AudioFormat`:
G.711 payload bytes (8 kHz, one byte a sample) for ``PCMU`` / ``PCMA``,
16-bit little-endian mono at 24 kHz for ``PCM24K``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable


class AudioFormat(enum.Enum):
    """Audio formats an AI session can take and give."""

    PCMU = "audio/pcmu"
    PCMA = "audio/pcma"
    PCM24K = "audio/pcm"

    @property
    def sample_rate(self) -> int:
        return 24000 if self is AudioFormat.PCM24K else 8000

    @property
    def bytes_per_ms(self) -> int:
        """Bytes of audio in one millisecond (8 for G.711, 48 for 24 kHz PCM16)."""
        return 48 if self is AudioFormat.PCM24K else 8

    def duration_ms(self, nbytes: int) -> int:
        return nbytes // self.bytes_per_ms


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """How the back end decides that the caller finished a turn.

    ``type`` ``server_vad`` uses threshold / prefix_padding_ms / silence_duration_ms /
    idle_timeout_ms; ``semantic_vad`` uses eagerness.
    """

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: name, description, JSON-schema parameters."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One turn of an earlier conversation, used to re-seed a new session."""

    role: Literal["user", "assistant", "system"]
    text: str


@dataclass(frozen=True, slots=True)
class StoredPrompt:
    """A prompt stored on the service: its id, optional version and variables."""

    id: str
    version: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AISessionConfig:
    """Everything a back end needs to open a session for one call."""

    instructions: str = ""
    model: str = "gpt-realtime"
    voice: str | None = None
    input_format: AudioFormat = AudioFormat.PCMU
    output_format: AudioFormat = AudioFormat.PCMU
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    transcription_language: str | None = None
    noise_reduction: Literal["near_field", "far_field"] | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"
    max_output_tokens: int | None = None
    speed: float | None = None
    history: tuple[HistoryItem, ...] = ()
    truncation: Literal["auto", "disabled"] | dict[str, Any] | None = None
    """How the back end trims a long conversation: None leaves the service default
    (``"auto"``); ``"disabled"``; or a GA truncation object such as
    ``{"type": "retention_ratio", "retention_ratio": 0.8}``."""
    transcription_prompt: str | None = None
    """Guides the caller's transcription (keywords for whisper-1, free text otherwise)."""
    prompt: StoredPrompt | None = None
    """A stored prompt (``pmpt_...``) the service applies under ``instructions``."""
    tracing: Literal["auto"] | dict[str, Any] | None = None
    """Service-side traces: ``"auto"`` or ``{workflow_name, group_id, metadata}``."""
    include: tuple[str, ...] = ()
    """Extra fields in server events, e.g. ``item.input_audio_transcription.logprobs``."""
    backend: str = "realtime"
    """Which implementation runs the session (``realtime``, ``live``): the service's AI
    factory picks by it."""
    tool_model: str | None = None
    """The model that runs the tools and the reasoning behind the voice, for back ends
    that delegate them (None: the back end's default)."""
    tool_reasoning_effort: str | None = None
    """Reasoning effort of :attr:`tool_model` (``none`` … ``xhigh``)."""
    tool_service_tier: str | None = None
    """Service tier of :attr:`tool_model` (``auto``, ``default``, ``flex``, ``priority``)."""
    playout_lead_ms: int | None = None
    """Set when the back end owns the turns: it hears the caller while it speaks, stops by
    itself (no truncate, no cancel, no caller-speech events) and sends its audio at real
    time. The bridge then plays what arrives and keeps at most this many milliseconds
    queued ahead of the caller, dropping the oldest beyond it. None: the back end sends
    faster than real time, the bridge queues all of it and cuts it at barge-in."""

    @property
    def model_owns_turns(self) -> bool:
        """The back end decides turns and barge-in alone (see :attr:`playout_lead_ms`)."""
        return self.playout_lead_ms is not None

    @property
    def interrupts_itself(self) -> bool:
        """The back end stops its own response when it hears the caller start speaking
        (turn detection with ``interrupt_response``, or a back end that owns the turns);
        otherwise the bridge cancels it."""
        if self.model_owns_turns:
            return True
        td = self.turn_detection
        return td is not None and td.interrupt_response

    @property
    def detects_turns(self) -> bool:
        """The back end reports the caller's speech (:class:`SpeechStarted` /
        :class:`SpeechStopped`), so caller silence can be told apart."""
        return self.turn_detection is not None

    def without_self_interrupt(self) -> AISessionConfig:
        """This configuration with the back end's own barge-in off (the bridge decides)."""
        td = self.turn_detection
        if td is None or not td.interrupt_response:
            return self
        return replace(self, turn_detection=replace(td, interrupt_response=False))


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class AIEvent:
    """Base class of the events an :class:`AISession` yields."""


@dataclass(frozen=True, slots=True)
class SessionReady(AIEvent):
    """The session is configured and takes audio."""


@dataclass(frozen=True, slots=True)
class SpeechStarted(AIEvent):
    """The back end heard the caller start speaking (barge-in point)."""

    audio_start_ms: int
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class SpeechStopped(AIEvent):
    """The back end decided the caller stopped speaking."""

    audio_end_ms: int
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseStarted(AIEvent):
    """The agent started a response."""

    response_id: str


@dataclass(frozen=True, slots=True)
class AudioDelta(AIEvent):
    """A chunk of agent audio, in the session's output format."""

    response_id: str
    item_id: str
    audio: bytes


@dataclass(frozen=True, slots=True)
class AudioDone(AIEvent):
    """No more audio will come for this item."""

    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class AgentTranscript(AIEvent):
    """Text of what the agent says: ``final`` False for a delta, True for the whole item."""

    response_id: str
    item_id: str
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class CallerTranscript(AIEvent):
    """Text of what the caller said (input transcription), ``final`` as above."""

    item_id: str
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class ToolCall(AIEvent):
    """The model asks to run a tool; ``arguments`` is the JSON text it produced."""

    call_id: str
    name: str
    arguments: str
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one response (or the sum of several)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    """Billed session seconds (back ends that bill by time)."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
            self.input_audio_tokens + other.input_audio_tokens,
            self.output_audio_tokens + other.output_audio_tokens,
            self.cached_tokens + other.cached_tokens,
            self.seconds + other.seconds,
        )


@dataclass(frozen=True, slots=True)
class UsageUpdated(AIEvent):
    """Usage that is not tied to a response (time-billed sessions): an increment."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class ResponseDone(AIEvent):
    """A response ended: ``status`` is completed, cancelled, failed or incomplete."""

    response_id: str
    status: str
    usage: Usage | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TurnStages(AIEvent):
    """When the stages of the caller's last turn happened, for a back end that sees them
    (the cascade): clock times (``time.monotonic`` seconds) named ``caller_speech_end``,
    ``end_of_turn``, ``transcript_final``, ``model_first_token``, ``first_sentence``,
    ``tts_first_byte``. Sent before the first audio of the answer to that turn."""

    response_id: str
    times: dict[str, float]


@dataclass(frozen=True, slots=True)
class ItemTruncated(AIEvent):
    """The back end cut an assistant item in its conversation at ``audio_end_ms`` of audio
    heard: the model now knows ``text`` of ``full_text``. ``spans``: where each spoken
    part ends (ms of audio, its text), when the back end knows (the cascade's sentences)."""

    item_id: str
    audio_end_ms: int
    text: str
    full_text: str
    spans: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AIErrorEvent(AIEvent):
    """The back end reported an error. ``fatal`` means the session is unusable."""

    code: str | None
    message: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class Closed(AIEvent):
    """The session ended. ``error`` is True when it ended by failure, not by ``close()``;
    ``retry`` False when a new session would not help (the service refused the content)."""

    reason: str
    error: bool = False
    retry: bool = True


@runtime_checkable
class AISession(Protocol):
    """One conversation with an AI back end, for one call."""

    @property
    def config(self) -> AISessionConfig: ...

    @property
    def truncates_itself(self) -> bool:
        """True when the back end tracks playout and truncates by itself (WebRTC)."""
        ...

    async def start(self) -> None:
        """Connect and configure; returns once audio can be sent. Raises AIError."""
        ...

    def send_audio(self, audio: bytes) -> None:
        """Append caller audio (input format) at once; never blocks, never batches."""
        ...

    def events(self) -> AsyncIterator[AIEvent]:
        """The events of the session, ending after :class:`Closed`."""
        ...

    async def create_response(self, instructions: str | None = None) -> None:
        """Ask the agent to speak now (greeting, after a tool result).

        Never overlaps a response: while one is active the request waits (at most one)
        and is sent when it ends; dropped if the caller starts a turn of their own.
        """
        ...

    async def add_message(self, text: str, role: Literal["user", "system"] = "system") -> None:
        """Add a text item to the conversation (e.g. "caller pressed 3")."""
        ...

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Tell the back end the caller heard only ``audio_end_ms`` of an agent item
        (nothing to do for a back end that owns the turns)."""
        ...

    async def cancel_response(self) -> None:
        """Stop the active response, if any."""
        ...

    async def send_tool_result(self, call_id: str, output: str, *, respond: bool = True) -> None:
        """Return a tool's output; with ``respond`` the agent speaks about it."""
        ...

    async def close(self) -> None:
        """End the session; idempotent."""
        ...


async def events_until_closed(queue: asyncio.Queue[AIEvent]) -> AsyncIterator[AIEvent]:
    """The events put in ``queue``, ending after :class:`Closed`: what a back end's
    :meth:`AISession.events` yields."""
    while True:
        event = await queue.get()
        yield event
        if isinstance(event, Closed):
            return
