"""The input audio buffer of a local transcription session (sans-IO): server VAD turns,
manual commits, and the words a streaming model writes while the audio still arrives.

:meth:`InputBuffer.append`, :meth:`~InputBuffer.commit` and :meth:`~InputBuffer.clear`
return what the server sends, in order: event dicts (without ``event_id``) and
:class:`Job` (a committed item to transcribe, done by the socket).

- ``turn_detection`` ``server_vad`` (the default): the energy VAD of
  :mod:`w3sipagent.localai.vad` (``threshold`` 0.5 = -40 dBFS, 10 ms frames) gives
  ``input_audio_buffer.speech_started {audio_start_ms, item_id}`` (the onset minus
  ``prefix_padding_ms``, counted from the first audio of the session),
  ``speech_stopped {audio_end_ms, item_id}`` (the last voiced frame's end plus
  ``silence_duration_ms``), then ``committed {previous_item_id, item_id}`` for the audio
  from ``audio_start_ms`` to ``audio_end_ms`` and its transcription. A manual commit during
  speech commits the whole buffer as the started item (no ``speech_stopped``).
- ``turn_detection`` null: the client commits; nothing is detected.
- A streaming model (``gpt-realtime-whisper``, ``gpt-live-transcribe``): from the first
  voiced frame after a commit the item exists (its id is the one the commit will report)
  and its scripted words come out as ``conversation.item.input_audio_transcription.delta``
  while the audio arrives: one word per ``word_ms`` of voiced audio, each sent once the
  audio is ``DELAY_LAG_MS[delay]`` past it. The commit sends the words still unsent, then
  ``.completed``. Other models transcribe only the committed item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.audio import dbfs_energy, frames_energy, to_pcm16
from w3sipagent.localai.cascade.transcription_config import (
    DELAY_LAG_MS,
    ModelTraits,
    model_traits,
)
from w3sipagent.localai.realtime.errors import RealtimeProtocolError
from w3sipagent.localai.vad import EnergyVad, VadSpeechStarted, VadSpeechStopped

__all__ = ["MIN_COMMIT_MS", "InputBuffer", "Job"]

MIN_COMMIT_MS = 100
_FRAME_MS = 10
_LIVE_LEVEL_DBFS = -40.0  # a streaming model "hears" a word in frames at least this loud


@dataclass(frozen=True, slots=True)
class Job:
    """A committed item to transcribe: its scripted text, how many of its words already
    went out as deltas, its audio length and the model's traits."""

    item_id: str
    text: str
    sent_words: int
    ms: float
    traits: ModelTraits


Out = dict[str, Any] | Job


class _Live:
    """The item a streaming model is writing (audio not committed yet)."""

    def __init__(self, item_id: str, text: str) -> None:
        self.item_id = item_id
        self.text = text
        self.words = [w for w in text.split(" ") if w]
        self.sent = 0
        self.heard_ms = 0.0
        self.voiced_ms = 0.0
        self.ends: list[float] = []  # where (heard_ms) each word's audio ended


class InputBuffer:
    """The caller audio of one transcription session (module doc).

    ``new_id()``: a fresh item id; ``transcript()``: the next scripted caller line (counted).
    """

    def __init__(
        self,
        config: dict[str, Any],
        new_id: Callable[[], str],
        transcript: Callable[[], str],
        *,
        word_ms: int = 200,
        min_speech_ms: int = 30,
    ) -> None:
        self._new_id = new_id
        self._transcript = transcript
        self.word_ms = word_ms
        self.min_speech_ms = min_speech_ms
        self.config = config
        """The session's ``audio.input`` object (replaced by :meth:`configure`)."""
        self.input_ms = 0.0
        """Milliseconds of audio appended in the session (the VAD's clock)."""
        self._buf = bytearray()
        self._buf_start_ms = 0.0
        self._vad = self._make_vad()
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._last_item: str | None = None
        self._live: _Live | None = None
        self._odd = b""  # a part frame of PCM not analysed yet (streaming models)

    @property
    def _format(self) -> AudioFormat:
        return AudioFormat(self.config["format"]["type"])

    def _make_vad(self) -> EnergyVad | None:
        td = self.config["turn_detection"]
        if td is None:
            return None
        return EnergyVad(
            threshold=td["threshold"],
            prefix_padding_ms=td["prefix_padding_ms"],
            silence_duration_ms=td["silence_duration_ms"],
            min_speech_ms=self.min_speech_ms,
            start_ms=int(self.input_ms),
        )

    def configure(self, config: dict[str, Any]) -> None:
        """The session's ``audio.input`` after a ``session.update``."""
        old, self.config = self.config, config
        if old["format"] != config["format"]:
            self._buf.clear()
            self._buf_start_ms = self.input_ms
            self._odd = b""
        if old["turn_detection"] != config["turn_detection"] or old["format"] != config["format"]:
            self._vad = self._make_vad()
            self._speech_item = None
        if old["transcription"] != config["transcription"]:
            self._live = None

    # ------------------------------------------------------------ client events

    def append(self, raw: bytes) -> list[Out]:
        fmt = self._format
        self._buf += raw
        self.input_ms += len(raw) / fmt.bytes_per_ms
        pcm = to_pcm16(raw, fmt)
        out: list[Out] = []
        traits = model_traits(self.config["transcription"])
        if traits is not None and traits.live:
            out += self._hear(pcm, fmt.sample_rate)
        if self._vad is not None:
            for vev in self._vad.feed(pcm, fmt.sample_rate):
                if isinstance(vev, VadSpeechStarted):
                    self._speech_item = self._new_id()
                    self._speech_start_ms = vev.audio_start_ms
                    out.append({"type": "input_audio_buffer.speech_started",
                                "audio_start_ms": vev.audio_start_ms,
                                "item_id": self._speech_item})  # fmt: skip
                elif isinstance(vev, VadSpeechStopped):
                    out += self._speech_stopped(vev.audio_end_ms)
            if self._speech_item is None:
                self._trim()
        return out

    def commit(self) -> list[Out]:
        """``input_audio_buffer.commit`` (raises ``input_audio_buffer_commit_empty``)."""
        ms = len(self._buf) / self._format.bytes_per_ms
        if ms < MIN_COMMIT_MS:
            raise RealtimeProtocolError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        live = self._live
        item_id = self._speech_item or (live.item_id if live is not None else self._new_id())
        self._speech_item = None
        if self._vad is not None:
            self._vad.reset()
        self._buf.clear()
        self._buf_start_ms = self.input_ms
        return self._committed(item_id, ms)

    def clear(self) -> list[Out]:
        self._buf.clear()
        self._buf_start_ms = self.input_ms
        self._speech_item = None
        self._live = None
        if self._vad is not None:
            self._vad.reset()
        return [{"type": "input_audio_buffer.cleared"}]

    # ------------------------------------------------------------ internals

    def _speech_stopped(self, audio_end_ms: int) -> list[Out]:
        item_id = self._speech_item or self._new_id()
        self._speech_item = None
        bpm = self._format.bytes_per_ms
        start = max(0, int((self._speech_start_ms - self._buf_start_ms) * bpm))
        end = max(start, int((audio_end_ms - self._buf_start_ms) * bpm))
        del self._buf[:end]
        self._buf_start_ms = float(audio_end_ms)
        stopped: Out = {"type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": audio_end_ms, "item_id": item_id}  # fmt: skip
        return [stopped, *self._committed(item_id, (end - start) / bpm)]

    def _committed(self, item_id: str, ms: float) -> list[Out]:
        prev, self._last_item = self._last_item, item_id
        out: list[Out] = [
            {"type": "input_audio_buffer.committed", "previous_item_id": prev,
             "item_id": item_id}
        ]  # fmt: skip
        traits = model_traits(self.config["transcription"])
        live, self._live = self._live, None
        if traits is not None:
            if live is not None and live.item_id == item_id:
                out.append(Job(item_id, live.text, live.sent, ms, traits))
            else:
                out.append(Job(item_id, self._transcript(), 0, ms, traits))
        return out

    def _trim(self) -> None:
        """Without speech under way, keep only what a coming onset's padding can reach."""
        td = self.config["turn_detection"] or {}
        keep_ms = int(td.get("prefix_padding_ms", 300)) + 1000
        bpm = self._format.bytes_per_ms
        excess = len(self._buf) - keep_ms * bpm
        if excess > 500 * bpm:  # in steps, not per frame
            drop = excess - excess % bpm
            del self._buf[:drop]
            self._buf_start_ms += drop / bpm

    def _hear(self, pcm: bytes, rate: int) -> list[Out]:
        """A streaming model: start the item at the first voiced frame, write its words."""
        samples = rate * _FRAME_MS // 1000
        data = self._odd + pcm
        n = len(data) // (2 * samples)
        self._odd = data[n * 2 * samples :]
        if not n:
            return []
        loud = dbfs_energy(_LIVE_LEVEL_DBFS, samples)
        tr = self.config["transcription"]
        lag = DELAY_LAG_MS[tr.get("delay") or "low"]
        out: list[Out] = []
        for energy in frames_energy(data[: n * 2 * samples], samples).tolist():
            voiced = energy >= loud
            live = self._live
            if live is None:
                if not voiced:
                    continue
                live = self._live = _Live(self._speech_item or self._new_id(), self._transcript())
            live.heard_ms += _FRAME_MS
            if voiced:
                live.voiced_ms += _FRAME_MS
                while len(live.ends) < len(live.words) and live.voiced_ms >= self.word_ms * (
                    len(live.ends) + 1
                ):
                    live.ends.append(live.heard_ms)
            while live.sent < len(live.ends) and live.heard_ms >= live.ends[live.sent] + lag:
                out.append(delta(live.item_id, live.words, live.sent))
                live.sent += 1
        return out


def delta(item_id: str, words: list[str], i: int) -> dict[str, Any]:
    """The delta event of word ``i`` (a space before every word but the first)."""
    return {
        "type": "conversation.item.input_audio_transcription.delta",
        "item_id": item_id,
        "content_index": 0,
        "delta": words[i] if i == 0 else " " + words[i],
    }
