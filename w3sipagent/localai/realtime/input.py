"""The input audio buffer of a local Realtime session and the caller's turns.

:class:`InputAudio` owns the buffered caller audio, its clock and the energy VAD.
With turn detection on it emits ``input_audio_buffer.speech_started`` /
``speech_stopped`` (cancelling a response the caller talks over), commits the speech
as a user item and starts the answer; ``idle_timeout_ms`` prompts a silent caller.
Without it the client commits and clears the buffer. Transcripts of committed
items come from the scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.audio import g711_squares, to_pcm16
from w3sipagent.localai.realtime.conversation import Item
from w3sipagent.localai.realtime.errors import RealtimeProtocolError
from w3sipagent.localai.realtime.ports import SessionHost
from w3sipagent.localai.recorder import CancelRecord
from w3sipagent.localai.vad import EnergyVad, VadSpeechStarted, VadSpeechStopped

MIN_COMMIT_MS = 100
_SEMANTIC_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 300}


def make_vad(td: dict[str, Any] | None, min_speech_ms: int, start_ms: int) -> EnergyVad | None:
    """The VAD for a GA ``turn_detection`` object (None: turn detection off)."""
    if td is None:
        return None
    if td["type"] == "server_vad":
        return EnergyVad(
            threshold=td["threshold"],
            prefix_padding_ms=td["prefix_padding_ms"],
            silence_duration_ms=td["silence_duration_ms"],
            min_speech_ms=min_speech_ms,
            start_ms=start_ms,
        )
    return EnergyVad(
        threshold=0.5,
        prefix_padding_ms=300,
        silence_duration_ms=_SEMANTIC_SILENCE_MS[td["eagerness"]],
        min_speech_ms=min_speech_ms,
        start_ms=start_ms,
    )


class InputAudio:
    """The caller's audio: buffer, input clock, VAD and idle timer of one session."""

    def __init__(self, host: SessionHost, fmt: AudioFormat) -> None:
        self.host = host
        self.format = fmt
        self._buf = bytearray()
        self._buf_start_ms = 0.0
        self.input_ms = 0.0
        self._vad = self._make_vad()
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._idle_from_ms: float | None = 0.0  # idle_timeout_ms counts from here (None: off)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of caller audio held in the buffer."""
        return len(self._buf)

    def _turn_detection(self) -> dict[str, Any] | None:
        td: dict[str, Any] | None = self.host.config["audio"]["input"]["turn_detection"]
        return td

    def _make_vad(self) -> EnergyVad | None:
        return make_vad(
            self._turn_detection(), self.host.options.vad_min_speech_ms, int(self.input_ms)
        )

    def _take(self) -> bytes:
        audio = bytes(self._buf)
        self._buf.clear()
        self._buf_start_ms = self.input_ms
        return audio

    # ------------------------------------------------------------ configuration

    def turn_detection_changed(self) -> None:
        """A ``session.update`` changed ``turn_detection``: a new VAD from now."""
        self._vad = self._make_vad()
        self._speech_item = None
        self._idle_from_ms = self.input_ms

    def format_changed(self, fmt: AudioFormat) -> None:
        """A ``session.update`` changed the input format: the buffer starts afresh."""
        self.format = fmt
        self._buf.clear()
        self._buf_start_ms = self.input_ms
        if self._vad is not None:
            self._vad = self._make_vad()

    def response_played(self, played_out_ms: float) -> None:
        """A response ended; its audio plays until ``played_out_ms`` on the input clock."""
        if self._speech_item is None:
            self._idle_from_ms = max(self.input_ms, played_out_ms)

    # ------------------------------------------------------------ audio in

    async def append(self, raw: bytes, fmt: AudioFormat) -> None:
        """Input audio from the client (append) or the WebRTC track, in ``fmt``."""
        self.host.recording.record_audio(raw, fmt)
        self._buf += raw
        self.input_ms += len(raw) / fmt.bytes_per_ms
        if self._vad is None:
            return
        squares = g711_squares(fmt)  # G.711 measured without decoding it
        pcm = raw if squares is not None else to_pcm16(raw, fmt)
        for vev in self._vad.feed(pcm, fmt.sample_rate, squares):
            if isinstance(vev, VadSpeechStarted):
                await self._speech_started(vev.audio_start_ms)
            elif isinstance(vev, VadSpeechStopped):
                await self._speech_stopped(vev.audio_end_ms)
        if self._speech_item is None and not self._vad.speaking:
            self._trim_silence()
            await self._check_idle()

    def _trim_silence(self) -> None:
        """Drop input audio that can no longer be part of a turn (bounded buffer)."""
        td = self._turn_detection() or {}
        keep_ms = self.host.options.vad_keep_ms + int(td.get("prefix_padding_ms", 300))
        bpm = self.format.bytes_per_ms
        excess = len(self._buf) - keep_ms * bpm
        if excess > self.host.options.vad_keep_ms * bpm // 2:  # trim in steps, not per frame
            drop = excess - excess % bpm
            del self._buf[:drop]
            self._buf_start_ms += drop / bpm

    async def _check_idle(self) -> None:
        """server_vad ``idle_timeout_ms``: the caller stayed silent after the agent spoke.

        Measured on the input audio clock from the end of the last response's audio
        (``response.done`` plus what was still to play) or the end of the last turn:
        ``input_audio_buffer.timeout_triggered``, the silent audio committed as a user
        item, and a response (the scenario's ``idle`` text), as the service does.
        """
        td = self._turn_detection()
        timeout = td.get("idle_timeout_ms") if td is not None else None
        start = self._idle_from_ms
        if timeout is None or start is None or self.host.active is not None:
            return
        if self.input_ms - start < timeout:
            return
        self._idle_from_ms = None  # re-armed when the prompt's response is done
        item_id = self.host.new_id("item")
        await self.host.emit(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": int(start),
                "audio_end_ms": int(self.input_ms),
                "item_id": item_id,
            }
        )
        await self._commit(item_id, self._take(), caller_turn=False)
        await self.host.start_response({}, self.host.planner.idle_plan())

    async def _speech_started(self, audio_start_ms: int) -> None:
        self._speech_item = self.host.new_id("item")
        self._speech_start_ms = audio_start_ms
        self._idle_from_ms = None
        await self.host.emit(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": self._speech_item,
            }
        )
        td = self._turn_detection()
        if td is not None and td["interrupt_response"]:
            active = self.host.active
            player = self.host.player
            if active is not None and not active.cancelled:
                rec = self.host.recording
                rec.cancels.append(CancelRecord(rec.now(), active.id, "turn_detected", True))
                self.host.cancel(active, "turn_detected")
            elif player is not None and player.playing_response is not None:
                await self.host.clear_playout()

    async def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._speech_item or self.host.new_id("item")
        self._speech_item = None
        await self.host.emit(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": audio_end_ms,
                "item_id": item_id,
            }
        )
        bpm = self.format.bytes_per_ms
        start = max(0, int((self._speech_start_ms - self._buf_start_ms) * bpm))
        end = max(start, int((audio_end_ms - self._buf_start_ms) * bpm))
        audio = bytes(self._buf[start:end])
        del self._buf[:end]
        self._buf_start_ms = float(audio_end_ms)
        self._idle_from_ms = float(audio_end_ms)
        await self._commit(item_id, audio)
        td = self._turn_detection()
        if td is not None and td["create_response"]:
            prev = self.host.active
            if prev is not None and prev.cancelled and prev.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(prev.task)
            if self.host.active is None:
                await self.host.start_response({})

    # ------------------------------------------------------------ client events

    async def commit(self) -> None:
        """``input_audio_buffer.commit``: the buffer becomes a user item."""
        ms = len(self._buf) / self.format.bytes_per_ms
        if ms < MIN_COMMIT_MS:
            raise RealtimeProtocolError(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        item_id = self._speech_item or self.host.new_id("item")
        self._speech_item = None
        if self._vad is not None:
            self._vad.reset()
        audio = self._take()
        self._idle_from_ms = self.input_ms
        await self._commit(item_id, audio)

    async def clear(self) -> None:
        """``input_audio_buffer.clear``."""
        self._buf.clear()
        self._buf_start_ms = self.input_ms
        self._speech_item = None
        self._idle_from_ms = self.input_ms
        if self._vad is not None:
            self._vad.reset()
        await self.host.emit({"type": "input_audio_buffer.cleared"})

    # ------------------------------------------------------------ committed turns

    async def _commit(self, item_id: str, audio: bytes, *, caller_turn: bool = True) -> None:
        """Commit input audio as a user item; ``caller_turn`` False (idle timeout) does
        not advance the scenario's turns."""
        turn = self.host.planner.new_user_turn() if caller_turn else None
        data = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        item = Item(item_id, data, bytearray(audio), self.format, turn)
        prev = self.host.conversation.add(item)
        await self.host.emit(
            {"type": "input_audio_buffer.committed", "previous_item_id": prev, "item_id": item_id}
        )
        await self.host.emit(
            {"type": "conversation.item.added", "previous_item_id": prev, "item": item.public()}
        )
        await self.host.emit(
            {"type": "conversation.item.done", "previous_item_id": prev, "item": item.public()}
        )
        if turn is not None:
            await self.host.inject("committed", turn)
        if self.host.config["audio"]["input"]["transcription"] is not None:
            delay = self.host.options.transcription_delay_s
            if delay > 0:
                self.host.spawn(self._transcribe(item, delay))
            else:
                await self._transcribe(item, 0.0)

    async def _transcribe(self, item: Item, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        entry = self.host.scenario.turn(item.turn or 0)
        text = entry.caller if entry is not None and entry.caller is not None else ""
        words = text.split(" ")
        for i, w in enumerate(words):
            if not w:
                continue
            await self.host.emit(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item.id,
                    "content_index": 0,
                    "delta": w if i == 0 else " " + w,
                }
            )
        item.data["content"][0]["transcript"] = text
        await self.host.emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item.id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "duration", "seconds": round(item.audio_ms() / 1000.0, 3)},
            }
        )
