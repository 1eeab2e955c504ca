"""Energy-based voice activity detection for the local Realtime server (pure).

The real service runs a neural VAD; this one compares the RMS level of 10 ms
frames with a threshold. It reproduces the *timing contract* of GA
``server_vad``:

- ``speech_started.audio_start_ms`` is the onset of the first loud frame minus
  ``prefix_padding_ms`` (never below the start of the session's audio), counted
  from the start of all audio appended in the session;
- ``speech_stopped.audio_end_ms`` is the end of the last loud frame plus
  ``silence_duration_ms``: the point where the silence became long enough.

``threshold`` (0.0-1.0, default 0.5) maps linearly onto a level in dBFS:
``level = -70 + 60 * threshold`` (0.5 -> -40 dBFS, 0.9 -> -16 dBFS). A loud
run must last ``min_speech_ms`` before it counts as speech, so clicks do not
trigger barge-in. Positions are exact to one frame (10 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from w3sipagent.localai.audio import codes_energy, dbfs_energy, frames_energy


def threshold_to_dbfs(threshold: float) -> float:
    """The RMS level (dBFS) a frame needs to count as voiced for ``threshold``."""
    return -70.0 + 60.0 * threshold


@dataclass(frozen=True, slots=True)
class VadSpeechStarted:
    """Speech began; ``onset_ms`` is the first loud frame, ``audio_start_ms`` includes padding."""

    audio_start_ms: int
    onset_ms: int


@dataclass(frozen=True, slots=True)
class VadSpeechStopped:
    """Speech ended; ``audio_end_ms`` includes the silence duration."""

    audio_end_ms: int


VadEvent = VadSpeechStarted | VadSpeechStopped


class EnergyVad:
    """Frame-energy VAD over 16-bit PCM at any rate that is a multiple of 100 Hz.

    ``start_ms`` is the session audio position of the first sample fed, so a
    detector created after a ``session.update`` keeps counting from the start
    of the session's audio.
    """

    FRAME_MS = 10

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        min_speech_ms: int = 30,
        start_ms: int = 0,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0.0-1.0, got {threshold}")
        if prefix_padding_ms < 0 or silence_duration_ms < 0 or min_speech_ms < 0:
            raise ValueError("VAD durations must not be negative")
        self.level_dbfs = threshold_to_dbfs(threshold)
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.min_speech_ms = max(min_speech_ms, self.FRAME_MS)
        self._pos_ms = start_ms
        self._pending = b""
        self._pending_kind = (0, 0)  # (rate, bytes per sample) of _pending
        self._speaking = False
        self._run_start: int | None = None
        self._last_voiced_end = 0
        self._energy_for = (0, 0.0)  # (frame samples, level) of _min_energy
        self._min_energy = 0.0

    @property
    def position_ms(self) -> int:
        """Session audio position (ms) up to which audio has been analysed."""
        return self._pos_ms

    @property
    def speaking(self) -> bool:
        """True between a start and a stop."""
        return self._speaking

    def reset(self) -> None:
        """Forget any speech in progress (``input_audio_buffer.clear``); keep the position."""
        self._speaking = False
        self._run_start = None

    def feed(
        self, pcm: bytes, rate: int, squares: npt.NDArray[np.int64] | None = None
    ) -> list[VadEvent]:
        """Analyse more audio (16-bit mono PCM at ``rate``) and return the events it caused.

        With ``squares`` (:func:`~w3sipagent.localai.audio.g711_squares`) ``pcm`` holds
        G.711 codes, one byte a sample, measured without decoding them (same energies,
        same events)."""
        if rate % 100:
            raise ValueError(f"sample rate must be a multiple of 100 Hz, got {rate}")
        width = 2 if squares is None else 1
        if (rate, width) != self._pending_kind:
            self._pending = b""
            self._pending_kind = (rate, width)
        frame_bytes = width * rate * self.FRAME_MS // 1000
        data = self._pending + pcm if self._pending else pcm
        n = len(data) // frame_bytes
        self._pending = data[n * frame_bytes :]
        if not n:
            return []
        # every whole frame's energy in one numpy pass (one append holds 2 frames or more),
        # compared with the threshold level as an energy (no log per frame)
        samples = frame_bytes // width
        if self._energy_for != (samples, self.level_dbfs):
            self._energy_for = (samples, self.level_dbfs)
            self._min_energy = dbfs_energy(self.level_dbfs, samples)
        whole = data[: n * frame_bytes]
        if squares is None:
            energy = frames_energy(whole, samples)
        else:
            energy = codes_energy(whole, squares, samples)
        voiced_frames = (energy >= self._min_energy).tolist()
        if not self._speaking and self._run_start is None and not any(voiced_frames):
            self._pos_ms += n * self.FRAME_MS  # silence between turns: nothing can happen
            return []
        events: list[VadEvent] = []
        for voiced in voiced_frames:
            events.extend(self._frame(voiced))
        return events

    def _frame(self, voiced: bool) -> list[VadEvent]:
        start = self._pos_ms
        end = start + self.FRAME_MS
        self._pos_ms = end
        if not self._speaking:
            if not voiced:
                self._run_start = None
                return []
            if self._run_start is None:
                self._run_start = start
            if end - self._run_start < self.min_speech_ms:
                return []
            self._speaking = True
            self._last_voiced_end = end
            onset = self._run_start
            self._run_start = None
            return [VadSpeechStarted(max(0, onset - self.prefix_padding_ms), onset)]
        if voiced:
            self._last_voiced_end = end
            return []
        if end - self._last_voiced_end >= self.silence_duration_ms:
            self._speaking = False
            return [VadSpeechStopped(self._last_voiced_end + self.silence_duration_ms)]
        return []
