"""What one call's bridge is given: its options, the AI format, the session configuration.

:class:`BridgeOptions` holds every behaviour and timer of a bridge (each with a default);
:func:`choose_ai_format` picks the AI audio format that avoids transcoding for the call's
codec; :func:`bridge_session_config` derives the AI session configuration the bridge asks
for; :class:`EarlySession` is a session started before the call was answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.ai.session import AISession, AISessionConfig, AudioFormat
from w3sipagent.asyncio.call_api import CallLike, MediaFormat, TransferOutcome
from w3sipagent.codecs import get_codec
from w3sipagent.codecs.base import Codec

__all__ = [
    "BridgeOptions",
    "EarlySession",
    "SessionFactory",
    "bridge_session_config",
    "choose_ai_format",
    "codec_of",
]

SessionFactory = Callable[[AISessionConfig], AISession]
"""Builds a (not yet started) AI session for this call's configuration."""


def choose_ai_format(encoding: str) -> AudioFormat:
    """The AI format that avoids transcoding: PCMU→audio/pcmu, PCMA→audio/pcma, else 24 kHz PCM."""
    enc = encoding.upper()
    if enc == "PCMU":
        return AudioFormat.PCMU
    if enc == "PCMA":
        return AudioFormat.PCMA
    return AudioFormat.PCM24K


def codec_of(media: MediaFormat) -> Codec:
    """The codec object of a negotiated media format (raises CodecError)."""
    return get_codec(
        media.encoding, media.clock_rate, media.channels, media.fmtp, frame_ms=media.ptime_ms
    )


@dataclass(frozen=True, slots=True)
class EarlySession:
    """An AI session started before the call was answered, and its start task."""

    session: AISession
    start: asyncio.Task[None]


def bridge_session_config(
    base: AISessionConfig,
    ai_format: AudioFormat,
    tools: ToolRegistry | None = None,
    min_interrupt_ms: int = 0,
) -> AISessionConfig:
    """The session configuration the bridge uses: the call's audio format both ways, the
    call's tool specs, and the back end's own barge-in off when the bridge guards it."""
    if min_interrupt_ms > 0:
        base = base.without_self_interrupt()  # the bridge decides barge-in itself
    return replace(
        base,
        input_format=ai_format,
        output_format=ai_format,
        tools=tools.specs() if tools is not None and tools.tools else base.tools,
    )


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    """Behaviour of one call's bridge; every timer has a default (seconds unless noted)."""

    greeting: str | None = None
    """Instructions of the first response: the agent speaks first when set."""
    connect_timeout: float = 10.0
    reconnect_timeout: float = 3.0
    reconnect_attempts: int = 1
    resume_instructions: str | None = (
        "The line dropped for a moment. Continue briefly where the conversation stopped."
    )
    """Said after a reconnection that interrupted the agent or a pending turn."""
    max_duration: float | None = 3600.0
    caller_silence_timeout: float | None = 60.0
    min_interrupt_ms: int = 0
    """Guard against false interruptions (0 = off: the back end's own barge-in decides)."""
    barge_in: bool = True
    """The caller's speech cuts the agent; False: every answer is heard to its end, whatever
    the caller says over it (a library option; ``interrupt_response = false`` in an agent's
    configuration only means the service does not cancel by itself: the bridge still cuts)."""
    dtmf_collect_timeout: float = 1.0
    """Digits pressed within this time of each other reach the model as one message."""
    dtmf_actions: Mapping[str, str] = field(default_factory=dict)
    """Digit → ``transfer:NAME`` / ``hangup`` / ``message:TEXT``."""
    transfers: Mapping[str, str] = field(default_factory=dict)
    """Named destinations (for DTMF actions; the tools hold their own copy)."""
    transfer_timeout: float = 30.0
    transferer: Callable[[CallLike, str, float], Awaitable[TransferOutcome]] | None = None
    """How a transfer is carried out: None is the call's REFER (``call.transfer``); the
    tenants with ``transfer_method = "esl"`` get FreeSWITCH's event socket."""
    quiet_timeout: float = 30.0
    """At most this long to wait for the agent's current words before end_call / transfer."""
    end_call_tail: float = 0.3
    """Pause after the last frame played before the BYE."""
    end_call_quiet: float = 1.0
    """With a back end that owns the turns (no "done" event, the goodbye may still be on
    its way): end_call waits until the agent's output was quiet this long."""
    fallback_wav: Path | None = None
    fallback_uri: str | None = None
    """Where the fallback transfers the caller (None: WAV, then hang-up; the agent policy
    ``internal_fallback`` sets None)."""
    handover_uri: str | None = None
    """The agent policy ``handover_when_not_understood``: where the caller goes after
    ``handover_after`` caller turns in a row that were not understood (None: never)."""
    handover_after: int = 2
    recording_path: Path | None = None
    announcement: Path | None = None
    """Played before the recording starts."""
    ai_enabled: bool = True
    """False: the caller gets the fallback at once (usage cap)."""
    ai_disabled_reason: str = "usage cap reached"
    housekeeping_interval: float = 0.25
    max_held_audio_ms: int = 10_000
    hangup_timeout: float = 5.0
    close_timeout: float = 3.0
    history_items: int = 20
