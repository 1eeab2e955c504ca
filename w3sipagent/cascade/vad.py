"""Voice activity on the caller's audio: speech start, end of turn, barge-in threshold.

The frame classifier is the WebRTC VAD (``webrtcvad-wheels``: a small C extension, 8 kHz
native, microseconds a frame; docs/backends-cascade.md says why). :class:`Listener` adds
the turn logic on top: the caller speaks once ``min_speech_ms`` of consecutive voiced
audio is heard (``barge_in_ms`` while the agent speaks), and the turn ends after
``silence_ms`` without voice, so short pauses do not end it. Positions are ms of caller
audio since the session began, exact to one 20 ms frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from w3sipagent.cascade.config import ListenSettings
from w3sipagent.errors import AIError

FRAME_MS = 20
RATES = (8000, 16000, 32000, 48000)


@dataclass(frozen=True, slots=True)
class ListenEvent:
    """``start``: the caller began speaking at ``at_ms`` (onset of the voiced run).
    ``end``: the turn ended (silence long enough) at ``at_ms``; ``speech_end_ms`` is the
    end of the last voiced frame and ``audio`` the utterance (16-bit PCM, padding first);
    ``tail`` the part of it not yet handed out by :meth:`Listener.take_new`."""

    kind: Literal["start", "end"]
    at_ms: int
    speech_end_ms: int = 0
    audio: bytes = b""
    tail: bytes = b""


class Listener:
    """Feeds 16-bit mono PCM at ``rate`` through the VAD and the turn logic."""

    def __init__(self, settings: ListenSettings, rate: int = 8000) -> None:
        if rate not in RATES:
            raise ValueError(f"VAD rate {rate} not one of {RATES}")
        self.settings = settings
        self.rate = rate
        try:
            import webrtcvad
        except ImportError:  # an optional extra: w3sipagent[cascade]
            raise AIError(
                "the cascade backend needs the WebRTC VAD: pip install 'w3sipagent[cascade]'"
            ) from None
        self._vad = webrtcvad.Vad(settings.aggressiveness)
        self._frame_bytes = rate * FRAME_MS // 1000 * 2
        self._rest = b""
        self._pos_ms = 0
        self._pre: deque[bytes] = deque(maxlen=max(1, settings.padding_ms // FRAME_MS))
        self._run: list[bytes] = []
        self._speaking = False
        self._utterance: list[bytes] = []
        self._taken = 0
        self._silence_ms = 0
        self._last_voice_ms = 0

    @property
    def speaking(self) -> bool:
        """The caller is in a turn (speech started, end not decided yet)."""
        return self._speaking

    @property
    def position_ms(self) -> int:
        """Caller audio classified so far, in ms."""
        return self._pos_ms

    def take_new(self) -> bytes:
        """The audio of the turn in progress not handed out yet (padding first), for a
        transcription that streams while the caller speaks; b"" outside a turn."""
        if not self._speaking:
            return b""
        new = b"".join(self._utterance[self._taken :])
        self._taken = len(self._utterance)
        return new

    def feed(self, pcm: bytes, *, agent_speaking: bool = False) -> list[ListenEvent]:
        """Classify ``pcm``; returns the events it completes, in order."""
        data = self._rest + pcm
        n = len(data) - len(data) % self._frame_bytes
        self._rest = data[n:]
        out: list[ListenEvent] = []
        for i in range(0, n, self._frame_bytes):
            ev = self._frame(data[i : i + self._frame_bytes], agent_speaking)
            if ev is not None:
                out.append(ev)
        return out

    def _frame(self, frame: bytes, agent_speaking: bool) -> ListenEvent | None:
        voiced = self._vad.is_speech(frame, self.rate)
        self._pos_ms += FRAME_MS
        s = self.settings
        if not self._speaking:
            if not voiced:
                self._pre.extend(self._run)
                self._run.clear()
                self._pre.append(frame)
                return None
            self._run.append(frame)
            need = s.barge_in_ms if agent_speaking else s.min_speech_ms
            if len(self._run) * FRAME_MS < max(FRAME_MS, need):
                return None
            onset = self._pos_ms - len(self._run) * FRAME_MS
            self._speaking = True
            self._utterance = [*self._pre, *self._run]
            self._taken = 0
            self._pre.clear()
            self._run.clear()
            self._silence_ms = 0
            self._last_voice_ms = self._pos_ms
            return ListenEvent("start", onset)
        self._utterance.append(frame)
        if voiced:
            self._silence_ms = 0
            self._last_voice_ms = self._pos_ms
        else:
            self._silence_ms += FRAME_MS
        long = len(self._utterance) * FRAME_MS >= s.max_utterance_ms
        if self._silence_ms < s.silence_ms and not long:
            return None
        self._speaking = False
        audio = b"".join(self._utterance)
        tail = b"".join(self._utterance[self._taken :])
        self._utterance = []
        self._taken = 0
        return ListenEvent("end", self._pos_ms, self._last_voice_ms, audio, tail)
