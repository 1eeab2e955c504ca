"""What a local GPT-Live session is given: its options, where its events go, the WebRTC
output track (the endpoints provide them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LiveServerOptions", "LiveTransport", "Player"]


@dataclass(frozen=True, slots=True)
class LiveServerOptions:
    """Timing of the local GPT-Live server: output chunk size, session length, how often
    usage is reported, and the caller-turn VAD."""

    chunk_ms: int = 40
    session_duration_s: float = 3600.0
    usage_interval_s: float = 15.0
    vad_threshold: float = 0.5
    vad_silence_ms: int = 500
    vad_min_speech_ms: int = 60


class LiveTransport:
    """Where a session's events go: ``send`` (one JSON event), ``close``, ``abort``."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
        abort: Callable[[], None],
    ) -> None:
        self.send = send
        self.close = close
        self.abort = abort


class Player(Protocol):
    """A WebRTC output track: plays queued 24 kHz PCM at real time."""

    def enqueue(self, response_id: str, item_id: str, pcm24k: bytes) -> None:
        """Queue speech."""
        ...

    def clear(self) -> dict[str, int]:
        """Drop what is queued."""
        ...
