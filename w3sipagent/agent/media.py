"""The bridge's audio: caller frames to the AI, agent audio to the playout queue, prompts,
and the stereo recording.

Caller frames go from the call's frame sink straight to the live session's ``send_audio``
in the same call (no task, no queue); before a session is live they are held (bounded) and
handed over in order when one goes live (:meth:`BridgeMedia.hand_over`). Agent audio is
cut into one-frame payloads at once (:meth:`BridgeMedia.agent_audio`); the playout queue
is the only buffer. A prompt (fallback WAV, recording announcement) is played through the
playout queue. The recording starts after the announcement: caller left, agent right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from w3sipagent.agent.fallback import PromptError, load_prompt_frames
from w3sipagent.agent.lifecycle import BridgeLife, LiveSlot, Outcome
from w3sipagent.agent.options import codec_of
from w3sipagent.agent.playout import PlayoutQueue
from w3sipagent.ai.session import AISession, AudioFormat
from w3sipagent.asyncio.call_api import MediaFormat
from w3sipagent.codecs.base import Codec, Decoder
from w3sipagent.codecs.convert import InboundConverter, OutboundConverter, build_converters
from w3sipagent.codecs.g711 import alaw_decode, ulaw_decode
from w3sipagent.codecs.resample import Resampler
from w3sipagent.errors import CodecError
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.recording import StereoRecorder

__all__ = ["BridgeMedia"]

log = logging.getLogger("w3sipagent.agent.bridge")


class BridgeMedia:
    """Audio of one bridged call (see the module docstring).

    ``live``: where caller audio goes; ``max_held_ms``: caller audio kept while no session
    is live (older frames are dropped).
    """

    def __init__(
        self,
        call_id: str,
        ai_format: AudioFormat,
        playout: PlayoutQueue,
        live: LiveSlot,
        life: BridgeLife,
        cdr: CallRecord,
        *,
        ptime_ms: int,
        max_held_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.call_id = call_id
        self.ai_format = ai_format
        self.playout = playout
        self.codec: Codec | None = None
        self._live = live
        self._life = life
        self._cdr = cdr
        self._clock = clock
        self._inbound: InboundConverter | None = None
        self._outbound: OutboundConverter | None = None
        self._held: deque[bytes] = deque(maxlen=max(1, max_held_ms // max(1, ptime_ms)))
        self._recorder: StereoRecorder | None = None
        self._rec_t0 = 0.0
        self._caller_pcm: Callable[[bytes], bytes] | None = None
        self._agent_pcm: Callable[[bytes], bytes] | None = None

    # ------------------------------------------------------------ codec

    def setup(self, media: MediaFormat) -> None:
        """Converters for the call's codec (raises CodecError)."""
        codec = codec_of(media)
        self._inbound, self._outbound = build_converters(codec, self.ai_format.value)
        self.codec = codec

    def change(self, media: MediaFormat) -> None:
        """The call's codec changed (re-INVITE): new converters, old frames dropped."""
        self._cdr.add_event("media_changed", codec=media.encoding)
        try:
            self.setup(media)
        except CodecError as exc:
            self._life.finish(Outcome(Disposition.FAILED, "system", f"codec: {exc}"))
            return
        self.playout.clear()  # frames of the old codec

    def is_current(self, media: MediaFormat) -> bool:
        """``media`` is the codec and frame time already in use."""
        codec = self.codec
        return codec is not None and (media.encoding.upper(), media.ptime_ms) == (
            codec.name.upper(),
            codec.frame_ms,
        )

    # ------------------------------------------------------------ caller → AI

    def caller_frame(self, payload: bytes | None, next_payload: bytes | None = None) -> None:
        """The call's frame sink: one inbound frame, straight to the AI (no task hop). A lost
        frame is concealed, from the next packet's in-band FEC when it has some (Opus)."""
        inbound = self._inbound
        assert inbound is not None
        audio = inbound.convert(payload) if payload is not None else inbound.conceal(next_payload)
        s = self._live.session
        if s is not None:
            s.send_audio(audio)
        else:
            self._held.append(audio)
        if self._recorder is not None and self._caller_pcm is not None:
            self._recorder.add_caller(self._caller_pcm(audio), self._clock() - self._rec_t0)

    def hand_over(self, session: AISession) -> None:
        """Send the held caller audio to ``session``, in order (this does not yield: no
        newer frame can overtake them before the session is made live)."""
        held = list(self._held)
        self._held.clear()
        for audio in held:
            session.send_audio(audio)

    # ------------------------------------------------------------ AI → call

    def agent_audio(self, audio: bytes) -> list[bytes]:
        """Agent audio (AI format) as call payloads of one frame each."""
        assert self._outbound is not None
        return self._outbound.push(audio)

    def agent_audio_end(self) -> list[bytes]:
        """The last, padded frame of an item's audio (if any remained)."""
        assert self._outbound is not None
        return self._outbound.flush()

    def drop_agent_audio(self) -> None:
        """Forget agent audio not yet framed (at a cut)."""
        if self._outbound is not None:
            self._outbound.clear()

    def agent_frame_sent(self, payload: bytes, now: float) -> None:
        """A frame went to the caller (recorded when recording)."""
        if self._recorder is not None and self._agent_pcm is not None:
            self._recorder.add_agent(self._agent_pcm(payload), now - self._rec_t0)

    # ------------------------------------------------------------ prompts and recording

    async def play_prompt(self, path: Path) -> bool:
        """Play a WAV through the playout queue; True once it was sent completely."""
        assert self.codec is not None
        try:
            frames = await asyncio.to_thread(load_prompt_frames, path, self.codec)
        except PromptError as exc:
            log.error("call %s: %s", self.call_id, exc)
            self._cdr.add_event("prompt_error", error=str(exc)[:200])
            return False
        self.playout.push(frames)
        seconds = len(frames) * self.playout.frame_ms / 1000.0
        return await self.playout.wait_drained(seconds + 2.0)

    async def announce_and_record(self, announcement: Path | None, path: Path | None) -> None:
        """Play ``announcement`` (if any), then record the call to ``path`` (if any)."""
        if announcement is not None:
            await self.play_prompt(announcement)
        if self._life.ended or path is None:
            return
        assert self.codec is not None
        rate = self.ai_format.sample_rate
        self._caller_pcm = _ai_to_pcm(self.ai_format)
        self._agent_pcm = _payload_to_pcm(self.codec, rate)
        self._rec_t0 = self._clock()
        self._recorder = StereoRecorder(path, sample_rate=rate)
        self._cdr.add_event("recording_started")

    @property
    def recording(self) -> bool:
        """The call is being recorded."""
        return self._recorder is not None

    async def close_recording(self) -> str | None:
        """Close the recording; the path of the file written (None: none)."""
        if self._recorder is None:
            return None
        path = await self._recorder.close()
        return None if path is None else str(path)


def _ai_to_pcm(fmt: AudioFormat) -> Callable[[bytes], bytes]:
    if fmt is AudioFormat.PCMU:
        return ulaw_decode
    if fmt is AudioFormat.PCMA:
        return alaw_decode
    return lambda b: b


def _payload_to_pcm(codec: Codec, rate: int) -> Callable[[bytes], bytes]:
    """Decoder of the call's payloads into PCM at the recording rate."""
    with_rate = getattr(codec, "with_pcm_rate", None)
    if with_rate is not None and codec.sample_rate != rate:
        with contextlib.suppress(Exception):
            codec = with_rate(rate)
    dec: Decoder = codec.decoder()
    if codec.sample_rate == rate:
        return dec.decode
    rs = Resampler(codec.sample_rate, rate)
    return lambda b: rs.process(dec.decode(b))
