"""Speech for the local Realtime server: espeak-ng when installed, tones otherwise.

Synthesis never touches the network and downloads nothing. espeak-ng runs as a
subprocess (``espeak-ng --stdout``), off the event loop, with a timeout; its WAV
is resampled to 24 kHz 16-bit PCM in a worker thread and cached per (text, voice, speed). Without
espeak-ng (or when it fails) each word becomes a short tone burst, so the audio
still has speech-like length, energy and pauses.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import OrderedDict
from typing import Literal

import numpy as np

from w3sipagent.localai.audio import PCM_RATE, parse_wav, resample, silence, tone

log = logging.getLogger(__name__)

Engine = Literal["auto", "espeak", "tone"]

# GA voice name -> espeak-ng voice variant, so a voice change is audible.
_ESPEAK_VOICES: dict[str, str] = {
    "alloy": "en-us+m3",
    "ash": "en-us+m1",
    "ballad": "en-gb+m4",
    "coral": "en-us+f2",
    "echo": "en-us+m2",
    "sage": "en-gb+f3",
    "shimmer": "en-us+f4",
    "verse": "en-us+m5",
    "marin": "en-us+f3",
    "cedar": "en-us+m7",
}

_TONE_MS_PER_CHAR = 55
_TONE_GAP_MS = 60


class Synthesizer:
    """Text to 24 kHz 16-bit mono PCM, cached.

    ``engine``: ``auto`` (espeak-ng if found, else tones), ``espeak`` (espeak-ng,
    falling back to tones with a warning if it fails) or ``tone``.
    """

    def __init__(
        self,
        engine: Engine = "auto",
        *,
        espeak_path: str | None = None,
        timeout: float = 10.0,
        cache_size: int = 64,
        words_per_minute: int = 175,
    ) -> None:
        self.engine = engine
        self.espeak_path = espeak_path or shutil.which("espeak-ng")
        self.timeout = timeout
        self.cache_size = cache_size
        self.words_per_minute = words_per_minute
        self._cache: OrderedDict[tuple[str, str, float], bytes] = OrderedDict()
        # a line being synthesized: the sessions asking for it meanwhile wait for it (100
        # calls arriving together all want the greeting: one espeak-ng run, not 100)
        self._inflight: dict[tuple[str, str, float], asyncio.Future[None]] = {}
        self.last_engine: str = "none"

    @property
    def uses_espeak(self) -> bool:
        """True when synthesis will try espeak-ng."""
        return self.engine != "tone" and self.espeak_path is not None

    async def synthesize(self, text: str, voice: str = "marin", speed: float = 1.0) -> bytes:
        """Speech for ``text`` as 24 kHz PCM16 (empty text -> empty audio)."""
        text = text.strip()
        if not text:
            return b""
        key = (text, voice, speed)
        while True:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            busy = self._inflight.get(key)
            if busy is None:
                break
            await asyncio.wait({busy})  # not cancelled with this caller; then look again
        done = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        try:
            pcm: bytes | None = None
            if self.uses_espeak:
                pcm = await self._espeak(text, voice, speed)
            if pcm is None:
                pcm = tone_speech(text, speed)
                self.last_engine = "tone"
            else:
                self.last_engine = "espeak-ng"
            self._cache[key] = pcm
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return pcm
        finally:
            del self._inflight[key]
            done.set_result(None)

    async def _espeak(self, text: str, voice: str, speed: float) -> bytes | None:
        assert self.espeak_path is not None
        wpm = max(80, min(450, int(self.words_per_minute * speed)))
        args = [
            self.espeak_path,
            "--stdout",
            "-v",
            _ESPEAK_VOICES.get(voice, "en-us"),
            "-s",
            str(wpm),
            "--",
            text,
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("espeak-ng could not start (%s); using tones", exc)
            return None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("espeak-ng timed out after %.1f s; using tones", self.timeout)
            return None
        if proc.returncode != 0:
            log.warning("espeak-ng failed (exit %s): %s; using tones", proc.returncode, err[:200])
            return None
        try:
            # resampling seconds of speech takes tens of ms: keep it off the event loop,
            # which may also be pacing RTP (the embedded demo AI)
            return await asyncio.to_thread(_wav_to_pcm24k, out)
        except ValueError as exc:
            log.warning("espeak-ng output unusable (%s); using tones", exc)
            return None


def _wav_to_pcm24k(wav: bytes) -> bytes:
    pcm, rate, _ = parse_wav(wav)
    return resample(pcm, rate, PCM_RATE)


def tone_speech(text: str, speed: float = 1.0) -> bytes:
    """Speech-shaped tones: one burst per word (length from its letters), pauses between."""
    speed = speed if speed > 0 else 1.0
    parts: list[bytes] = []
    for i, word in enumerate(text.split()):
        ms = int(max(2, len(word)) * _TONE_MS_PER_CHAR / speed)
        freq = 180.0 + 40.0 * (i % 5) + 10.0 * (len(word) % 7)
        burst = np.frombuffer(tone(freq, ms, PCM_RATE, -18.0), dtype="<i2").astype(np.float64)
        ramp = min(len(burst) // 4, PCM_RATE // 200)
        if ramp:
            env = np.ones(len(burst))
            env[:ramp] = np.linspace(0.0, 1.0, ramp)
            env[-ramp:] = np.linspace(1.0, 0.0, ramp)
            burst *= env
        parts.append(burst.astype("<i2").tobytes())
        gap = _TONE_GAP_MS * (3 if word[-1] in ".?!" else 1)
        parts.append(silence(int(gap / speed), PCM_RATE))
    return b"".join(parts)
