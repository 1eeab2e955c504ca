"""What a client sent to the local Realtime server, per session, for assertions.

Every client event is kept in order with its arrival time (seconds since the
session opened). ``input_audio_buffer.append`` events are kept without their
base64 payload; the decoded audio goes to :attr:`SessionRecording.audio`
(raw bytes in the input format) so tests can compare it byte for byte, and
:meth:`SessionRecording.write_wav` writes it as 16-bit PCM WAV.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.audio import resample, to_pcm16, wav_bytes


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One client event: arrival time (s since session start), type, body."""

    t: float
    type: str
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TruncateRecord:
    """A ``conversation.item.truncate`` the client sent and whether it was accepted."""

    t: float
    item_id: str
    content_index: int
    audio_end_ms: int
    accepted: bool
    item_audio_ms: int | None


@dataclass(frozen=True, slots=True)
class CancelRecord:
    """A ``response.cancel`` (or a VAD interrupt) and the response it hit, if any."""

    t: float
    response_id: str | None
    reason: str
    accepted: bool


@dataclass
class SessionRecording:
    """Everything one session received, plus the server events it sent (types only)."""

    session_id: str
    transport: str
    model: str
    started: float = field(default_factory=time.monotonic)
    events: list[ReceivedEvent] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    audio_chunks: list[tuple[AudioFormat, int]] = field(default_factory=list)
    truncates: list[TruncateRecord] = field(default_factory=list)
    cancels: list[CancelRecord] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    close_reason: str = ""

    def now(self) -> float:
        """Seconds since the session opened."""
        return time.monotonic() - self.started

    def record_event(self, event: dict[str, Any]) -> None:
        """Keep a client event (appends without their payload)."""
        kind = event.get("type")
        audio = event.get("audio")
        if kind == "input_audio_buffer.append" and isinstance(audio, str):
            body = {**event, "audio": f"<{len(audio)} base64 chars>"}  # one copy, not two
        else:
            body = dict(event)
        self.events.append(ReceivedEvent(time.monotonic() - self.started, str(kind), body))

    def record_append(self, event_id: str | None, audio_chars: int) -> None:
        """Keep an ``input_audio_buffer.append`` read without ``json.loads`` (the same
        body :meth:`record_event` keeps for it)."""
        body: dict[str, Any] = {"type": "input_audio_buffer.append"}
        if event_id is not None:
            body["event_id"] = event_id
        body["audio"] = f"<{audio_chars} base64 chars>"
        self.events.append(
            ReceivedEvent(time.monotonic() - self.started, "input_audio_buffer.append", body)
        )

    def record_audio(self, data: bytes, fmt: AudioFormat) -> None:
        """Keep appended (or WebRTC-received) input audio."""
        self.audio += data
        self.audio_chunks.append((fmt, len(data)))

    def record_sent(self, event: dict[str, Any]) -> None:
        """Keep a server event without audio payloads."""
        body = dict(event)
        if body.get("type") == "response.output_audio.delta":
            body["delta"] = f"<{len(body.get('delta', ''))} base64 chars>"
        self.sent.append(body)

    def types(self) -> list[str]:
        """Types of the client events, in arrival order."""
        return [e.type for e in self.events]

    def sent_types(self) -> list[str]:
        """Types of the server events sent, in order."""
        return [str(e.get("type")) for e in self.sent]

    def audio_pcm16(self, rate: int = 24000) -> bytes:
        """All input audio decoded to 16-bit PCM at ``rate``."""
        out: list[bytes] = []
        off = 0
        for fmt, n in self.audio_chunks:
            pcm = to_pcm16(bytes(self.audio[off : off + n]), fmt)
            out.append(resample(pcm, fmt.sample_rate, rate))
            off += n
        return b"".join(out)

    def write_wav(self, path: str | Path, rate: int | None = None) -> Path:
        """Write the input audio as a mono 16-bit WAV (rate: the first chunk's, or 24000)."""
        if rate is None:
            rate = self.audio_chunks[0][0].sample_rate if self.audio_chunks else 24000
        p = Path(path)
        p.write_bytes(wav_bytes(self.audio_pcm16(rate), rate))
        return p

    def write_events(self, path: str | Path) -> Path:
        """Write the received events as JSON lines."""
        p = Path(path)
        with p.open("w", encoding="utf-8") as f:
            for e in self.events:
                f.write(json.dumps({"t": round(e.t, 4), **e.event}) + "\n")
        return p
