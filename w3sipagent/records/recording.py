"""Stereo WAV recording of a call: caller on the left channel, agent on the right.

The bridge hands 16-bit mono PCM of each side (decode G.711 first) with, optionally, the
time of the audio in seconds since the recording started: a gap is filled with silence, so
both channels stay aligned on the call's timeline. Interleaving is cheap numpy work on the
event loop; opening, writing and closing the file happen in a dedicated writer thread, so
a slow disk never stalls the media path. If one side stops being fed, it is padded with
silence once it lags more than ``max_lag`` seconds (memory stays bounded).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import wave
from pathlib import Path

import numpy as np

from w3sipagent.errors import W3SipError

log = logging.getLogger("w3sipagent.records.recording")


class RecordingError(W3SipError, ValueError):
    """Bad audio handed to the recorder (odd byte count, wrong use after close)."""


class _Channel:
    __slots__ = ("pending", "pos")

    def __init__(self) -> None:
        self.pending = bytearray()
        self.pos = 0
        """Samples of this channel accepted so far (silence padding included)."""


class StereoRecorder:
    """Writes a 2-channel 16-bit WAV (left = caller, right = agent) from a writer thread."""

    def __init__(self, path: Path, *, sample_rate: int = 8000, max_lag: float = 2.0) -> None:
        if sample_rate <= 0:
            raise RecordingError(f"sample rate must be positive (got {sample_rate})")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.max_lag = max_lag
        self._left = _Channel()
        self._right = _Channel()
        self._frames_out = 0
        self._closed = False
        self._q: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.error: str | None = None
        """Why writing failed (the file could not be created or written), else None."""
        self._thread = threading.Thread(
            target=self._run, name=f"recorder-{self.path.name}", daemon=True
        )
        self._thread.start()

    @property
    def held_bytes(self) -> int:
        """Audio held in memory for the side that runs ahead, waiting for the other (bytes);
        bounded by ``max_lag``."""
        return max(len(self._left.pending), len(self._right.pending))

    # -------------------------------------------------------------- feeding

    def add_caller(self, pcm: bytes, at: float | None = None) -> None:
        """Caller audio (PCM16 mono at ``sample_rate``), at ``at`` seconds if given."""
        self._add(self._left, pcm, at)

    def add_agent(self, pcm: bytes, at: float | None = None) -> None:
        """Agent audio (PCM16 mono at ``sample_rate``), at ``at`` seconds if given."""
        self._add(self._right, pcm, at)

    def _add(self, ch: _Channel, pcm: bytes, at: float | None) -> None:
        if self._closed:
            raise RecordingError("recorder is closed")
        if len(pcm) % 2:
            raise RecordingError(f"PCM16 needs an even number of bytes (got {len(pcm)})")
        if at is not None:
            gap = round(at * self.sample_rate) - ch.pos
            if gap > 0:
                ch.pending += bytes(2 * gap)
                ch.pos += gap
        ch.pending += pcm
        ch.pos += len(pcm) // 2
        self._pump()

    def _pump(self, final: bool = False) -> None:
        left, right = self._left, self._right
        lag = int(self.max_lag * self.sample_rate) * 2
        for a, b in ((left, right), (right, left)):
            if final or len(a.pending) - len(b.pending) > lag:
                short = len(a.pending) - len(b.pending)
                if short > 0:
                    b.pending += bytes(short)
                    b.pos += short // 2
        n = min(len(left.pending), len(right.pending)) // 2
        if n == 0:
            return
        out = np.empty(2 * n, dtype="<i2")
        out[0::2] = np.frombuffer(bytes(left.pending[: 2 * n]), dtype="<i2")
        out[1::2] = np.frombuffer(bytes(right.pending[: 2 * n]), dtype="<i2")
        del left.pending[: 2 * n]
        del right.pending[: 2 * n]
        self._frames_out += n
        self._q.put(out.tobytes())

    @property
    def duration(self) -> float:
        """Seconds handed to the writer so far."""
        return self._frames_out / self.sample_rate

    # -------------------------------------------------------------- writer thread

    def _run(self) -> None:
        wav: wave.Wave_write | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed at the end of _run
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(self.sample_rate)
        except OSError as e:
            self.error = f"cannot create {self.path}: {e.strerror or e}"
            log.error("recording: %s", self.error)
            wav = None
        while True:
            chunk = self._q.get()
            if chunk is None:
                break
            if wav is not None:
                try:
                    wav.writeframesraw(chunk)
                except OSError as e:
                    self.error = f"cannot write {self.path}: {e.strerror or e}"
                    log.error("recording: %s", self.error)
                    wav = None
        if wav is not None:
            try:
                wav.close()
            except OSError as e:
                self.error = f"cannot close {self.path}: {e.strerror or e}"

    # -------------------------------------------------------------- closing

    def close_nowait(self) -> None:
        """Pad the shorter side, hand the rest to the writer and tell it to finish."""
        if self._closed:
            return
        self._pump(final=True)
        self._closed = True
        self._q.put(None)

    async def close(self) -> Path | None:
        """Finish the file; returns its path, or None when it could not be written."""
        self.close_nowait()
        await asyncio.to_thread(self._thread.join)
        return None if self.error else self.path
