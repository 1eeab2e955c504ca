"""What a local Realtime session is given and what its parts see of it.

:class:`Transport` (where server events go) and :class:`AudioPlayer` (the WebRTC
output track) are given by the endpoints; :class:`ServerOptions` by the server.
:class:`SessionHost` is the narrow face of the session that its parts, the input
buffer (:mod:`.input`) and the response runner (:mod:`.responses`), work through.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from w3sipagent.localai.realtime.conversation import Conversation
from w3sipagent.localai.recorder import SessionRecording
from w3sipagent.localai.scenario import Scenario
from w3sipagent.localai.tts import Synthesizer

if TYPE_CHECKING:
    import asyncio

    from w3sipagent.localai.realtime.responses import Plan, Response, TurnPlanner


class Transport(Protocol):
    """Where a session sends its server events."""

    kind: str

    async def send_json(self, event: dict[str, Any]) -> None:
        """Send one server event."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close cleanly with a WebSocket close code (or end the call)."""
        ...

    def abort(self) -> None:
        """Drop the connection without any closing handshake."""
        ...


class AudioPlayer(Protocol):
    """The WebRTC output: plays response audio at real time and reports playout."""

    def enqueue(self, response_id: str, item_id: str, pcm24k: bytes) -> None:
        """Queue 24 kHz PCM of an item for playout."""
        ...

    def end_response(self, response_id: str) -> None:
        """No more audio will come for ``response_id``."""
        ...

    def clear(self) -> dict[str, int]:
        """Drop queued audio; returns milliseconds played per item of the cleared response."""
        ...

    @property
    def playing_response(self) -> str | None:
        """The response whose audio is queued or playing, if any."""
        ...


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Timing and behaviour knobs of the local server (all have defaults).

    ``realtime_pacing`` sends response audio at 1x real time; otherwise at
    ``burst_speed`` x real time, or as fast as possible when that is None
    (the service sends audio faster than real time; clients must queue it).
    ``vad_keep_ms``: with turn detection on, input audio older than this (plus the
    prefix padding) is dropped from the buffer while the caller is silent, so a long
    silence does not grow it. ``rate_limits_delay_s``: ``rate_limits.updated`` follows
    ``response.done`` after this long.
    """

    realtime_pacing: bool = False
    burst_speed: float | None = None
    chunk_ms: int = 100
    first_audio_delay_s: float = 0.0
    transcription_delay_s: float = 0.0
    session_duration_s: float = 3600.0
    vad_min_speech_ms: int = 30
    token_limit: int = 40000
    vad_keep_ms: int = 2000
    rate_limits_delay_s: float = 0.04
    """``rate_limits.updated`` comes this long after ``response.done``."""


class SessionEnded(Exception):
    """Raised inside the session when an injection closed the transport."""


class SessionHost(Protocol):
    """The session as its input buffer and response runner see it."""

    id: str
    config: dict[str, Any]
    options: ServerOptions
    scenario: Scenario
    recording: SessionRecording
    conversation: Conversation
    tts: Synthesizer
    player: AudioPlayer | None
    planner: TurnPlanner
    active: Response | None
    assistant_audio_sent: bool

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a server event (an ``event_id`` is added)."""
        ...

    def new_id(self, prefix: str) -> str:
        """A fresh ``<prefix>_...`` identifier."""
        ...

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the session cancels when it ends."""
        ...

    async def inject(self, at: str, turn: int | None, resp: Response | None = None) -> None:
        """Fire the scenario's injections for ``at`` (and ``turn``)."""
        ...

    async def start_response(self, params: dict[str, Any], plan: Plan | None = None) -> None:
        """Start a response (``plan`` None: the scenario decides what it says)."""
        ...

    def cancel(self, resp: Response, reason: str) -> None:
        """Cancel ``resp`` for ``reason`` (``turn_detected``, ``client_cancelled``)."""
        ...

    async def clear_playout(self, always: bool = False) -> None:
        """WebRTC: drop queued output audio, emit ``output_audio_buffer.cleared``, truncate."""
        ...

    def response_finished(self, resp: Response) -> None:
        """``resp`` is over (just before its ``response.done``)."""
        ...
