"""Packet loss concealment for waveform codecs (G.711, L16, G.722 through PyAV).

:class:`Concealer` remembers the last decoded frames. For a lost frame it repeats the
last pitch period of the history (found by autocorrelation, as in G.711 Appendix I, much
simplified), keeps full level for the first lost frame, then fades linearly to silence
over ``fade_frames`` frames. When real audio resumes, the first couple of milliseconds are
cross-faded from the concealment so there is no click at the junction.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float32]


class Concealer:
    """Loss concealment state of one decoded stream (s16 mono PCM frames)."""

    def __init__(
        self,
        sample_rate: int,
        frame_samples: int,
        *,
        fade_frames: int = 4,
        min_pitch_hz: float = 66.0,
        max_pitch_hz: float = 400.0,
        crossfade_ms: float = 2.5,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.fade_frames = max(1, fade_frames)
        self._max_lag = int(sample_rate / min_pitch_hz)
        self._min_lag = max(2, int(sample_rate / max_pitch_hz))
        self._crossfade = max(1, int(sample_rate * crossfade_ms / 1000))
        self._history_len = 2 * self._max_lag + frame_samples
        self._frames: list[Int16Array] = []
        self._held = 0
        self._lost = 0
        self._cycle: FloatArray | None = None
        self._phase = 0

    @property
    def lost_in_a_row(self) -> int:
        """Frames concealed since the last real one."""
        return self._lost

    def remember(self, pcm: Int16Array) -> Int16Array:
        """Record a decoded frame; returns it, cross-faded from the concealment after a loss."""
        if self._lost and self._cycle is not None and len(pcm):
            n = min(self._crossfade, len(pcm))
            cont = self._continuation(n) * self._gain(self._lost)
            w = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
            mixed = cont * (1.0 - w) + pcm[:n].astype(np.float32) * w
            pcm = pcm.copy()
            pcm[:n] = np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
        self._lost = 0
        self._cycle = None
        self._frames.append(pcm)
        self._held += len(pcm)
        while len(self._frames) > 1 and self._held - len(self._frames[0]) >= self._history_len:
            self._held -= len(self._frames.pop(0))
        return pcm

    def conceal(self, samples: int | None = None) -> Int16Array:
        """PCM for one lost frame of ``samples`` (default: one codec frame)."""
        n = self.frame_samples if samples is None else samples
        if self._cycle is None:
            if not self._frames:
                self._lost += 1
                return np.zeros(n, dtype=np.int16)
            self._start_cycle()
        self._lost += 1
        g0, g1 = self._gain(self._lost - 1), self._gain(self._lost)
        if g0 <= 0.0:
            return np.zeros(n, dtype=np.int16)
        ramp = np.linspace(g0, g1, n, endpoint=False, dtype=np.float32)
        out = self._continuation(n, advance=True) * ramp
        pcm: Int16Array = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return pcm

    def reset(self) -> None:
        """Forget the history (new stream: SSRC change)."""
        self._frames.clear()
        self._held = 0
        self._lost = 0
        self._cycle = None

    # -- internals -------------------------------------------------------------------

    def _gain(self, k: int) -> float:
        """Gain at the end of the k-th lost frame: 1 for the first, then linear to 0."""
        if k <= 1:
            return 1.0
        return max(0.0, 1.0 - (k - 1) / self.fade_frames)

    def _start_cycle(self) -> None:
        hist = np.concatenate(self._frames).astype(np.float32)
        period = self._pitch_period(hist)
        self._cycle = hist[-period:].copy()
        self._phase = 0

    def _pitch_period(self, hist: FloatArray) -> int:
        """The pitch period in samples, or a whole frame when the history is not periodic."""
        frame = min(self.frame_samples, len(hist))
        if len(hist) < self._max_lag + self._min_lag * 2:
            return frame
        window = min(len(hist) - self._max_lag, self._max_lag)
        ref = hist[-window:]
        energy_ref = float(np.dot(ref, ref))
        if energy_ref <= 1.0:
            return frame
        # dot(ref, hist[end-window-lag : end-lag]) for every lag at once
        span = hist[-window - self._max_lag : len(hist) - self._min_lag].astype(np.float64)
        dots = np.correlate(span, ref.astype(np.float64), mode="valid")[::-1]
        csum = np.concatenate(([0.0], np.cumsum(span * span)))
        energies = (csum[window:] - csum[:-window])[::-1]
        lags = np.arange(self._min_lag, self._min_lag + len(dots))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.where(energies > 1.0, dots / np.sqrt(energy_ref * energies), 0.0)
        i = int(np.argmax(corr))
        if corr[i] < 0.3:
            return frame
        best_lag = int(lags[i])
        # repeat a whole number of periods close to 10 ms: less buzzy than one short cycle
        reps = max(1, (self.sample_rate // 100) // best_lag)
        return min(best_lag * reps, len(hist))

    def _continuation(self, n: int, *, advance: bool = False) -> FloatArray:
        cycle = self._cycle
        assert cycle is not None
        idx = (self._phase + np.arange(n)) % len(cycle)
        if advance:
            self._phase = (self._phase + n) % len(cycle)
        return cycle[idx]
