"""The cascaded :class:`~w3sipagent.ai.session.AISession`: listen, transcribe, think, speak.

Caller audio goes through :class:`~w3sipagent.cascade.vad.Listener` inline (microseconds a
frame). A turn that ends is transcribed, added to the conversation and answered: the
model's text streams into sentences, each sentence is synthesised as soon as it is
complete and its audio sent in the call's format. Every sentence spoken is kept as a
:class:`~w3sipagent.cascade.text.Segment`, so :meth:`truncate` cuts the assistant's message
in the conversation at the words the caller actually heard. Tool calls become
:class:`~w3sipagent.ai.session.ToolCall` events; their outputs go back into the
conversation. A stage failure ends the session with an error, as a lost Realtime
connection does, so the bridge's reconnection and fallback apply. The session is one file
(about 620 lines) because a turn's stages hand off to each other through its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from w3sipagent.ai import session as ai
from w3sipagent.cascade.answer import Answer, Cut
from w3sipagent.cascade.config import CascadeSettings
from w3sipagent.cascade.eot import EarlyCheck, HeldTurn, TurnCheck
from w3sipagent.cascade.stages import (
    TTS_RATE,
    FunctionCall,
    Message,
    Model,
    ModelDone,
    SpeechToText,
    StageError,
    TextDelta,
    TextToSpeech,
)
from w3sipagent.cascade.stt_stream import Pending, StreamFeed, open_feed
from w3sipagent.cascade.text import Segment, SentenceSplitter, heard_text
from w3sipagent.cascade.vad import Listener
from w3sipagent.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from w3sipagent.codecs.resample import Resampler

log = logging.getLogger(__name__)

_NOTHING = object()


class CascadeSession:
    """An :class:`~w3sipagent.ai.session.AISession` over three HTTP stages (module doc)."""

    def __init__(
        self,
        config: ai.AISessionConfig,
        settings: CascadeSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self.settings = settings
        self._clock = clock
        rate = 16000 if config.input_format is ai.AudioFormat.PCM24K else 8000
        self._listener = Listener(settings.listen, rate)
        self._in_resampler = Resampler(24000, 16000) if rate == 16000 else None
        self._events: asyncio.Queue[ai.AIEvent] = asyncio.Queue()
        self._items: list[Message] = [
            {"role": h.role, "content": h.text} for h in config.history if h.text
        ]
        self._answers: dict[str, Answer] = {}
        self._ids = itertools.count(1)
        self._response: asyncio.Task[None] | None = None
        self._response_id: str | None = None
        self._answer: Answer | None = None
        self._pending: object = _NOTHING
        self._turns: list[asyncio.Task[None]] = []
        self._turn_lock = asyncio.Lock()
        self._stage_times: dict[str, float] | None = None
        self._filler: asyncio.TimerHandle | None = None
        self._open_calls: set[str] = set()
        self._stt: SpeechToText | None = None
        self._feed: StreamFeed | None = None  # stt_mode "stream"
        self._check: TurnCheck | None = None  # the semantic end-of-turn check (eot.py)
        self._hold = HeldTurn()  # caller text of turns judged unfinished, not answered yet
        self._llm: Model | None = None
        self._tts: TextToSpeech | None = None
        self._caller_turns = 0
        self._playing_until = 0.0  # clock time the agent audio sent so far ends for the caller
        self._started = False
        self._closed = False
        self.added_ms: list[float] = []
        """Per answered turn, the time our pipeline added (ms): end of turn → transcription
        sent, transcript → model request sent, first sentence → speech request sent, first
        speech byte → first audio delta out. The services' own time is not in it."""
        self.cuts: list[Cut] = []
        """Every barge-in cut, in order (what the caller heard of which item)."""

    # ------------------------------------------------------------ AISession

    @property
    def config(self) -> ai.AISessionConfig:
        return self._config

    @property
    def truncates_itself(self) -> bool:
        return False

    @property
    def caller_speaking(self) -> bool:
        """The listener is inside a caller turn (speech started, end not decided yet)."""
        return self._listener.speaking

    @property
    def conversation(self) -> list[Message]:
        """The conversation as the model will next see it (a copy)."""
        return [dict(it) for it in self._items]

    async def start(self) -> None:
        if self._started:
            return
        s = self.settings
        self._stt = SpeechToText(s.stt)
        self._llm = Model(s.llm, s.api)
        self._tts = TextToSpeech(s.tts)
        try:
            if s.probe:
                await self._llm.probe()
            if s.stt_mode == "stream":
                self._feed = await self._open_stream()
            if s.turn_check is not None:
                self._check = TurnCheck(s.turn_check, s.api)
        except StageError:
            for stage in (self._stt, self._llm, self._tts):
                await stage.aclose()
            raise
        self._started = True
        self._emit(ai.SessionReady())

    def send_audio(self, audio: bytes) -> None:
        if self._closed or not self._started:
            return
        fmt = self._config.input_format
        if fmt is ai.AudioFormat.PCMU:
            pcm = ulaw_decode(audio)
        elif fmt is ai.AudioFormat.PCMA:
            pcm = alaw_decode(audio)
        else:
            assert self._in_resampler is not None
            pcm = self._in_resampler.process(audio[: len(audio) - len(audio) % 2])
        speaking = self._clock() < self._playing_until
        feed = self._feed
        for ev in self._listener.feed(pcm, agent_speaking=speaking):
            if ev.kind == "start":
                self._caller_started(ev.at_ms)
                if feed is not None:  # a streaming model's words come while the caller speaks
                    feed.begin(self._caller_delta(self._caller_item))
            else:
                now = self._clock()
                speech_end = now - (ev.at_ms - ev.speech_end_ms) / 1000.0
                item = self._caller_item
                self._emit(ai.SpeechStopped(ev.at_ms, item))
                times = {"caller_speech_end": speech_end, "end_of_turn": now}
                committed, early = None, None
                if feed is not None:  # the audio went out while the caller spoke
                    feed.audio(ev.tail)
                    early = self._early_check(feed.live_text)
                    committed = feed.commit(self._caller_delta(item))
                    committed.add_done_callback(self._commit_sent(times))
                task = asyncio.get_running_loop().create_task(
                    self._turn(item, ev.audio, times, committed, early), name="cascade-turn"
                )
                self._turns.append(task)
                task.add_done_callback(self._turns.remove)
        if feed is not None and self._listener.speaking:
            feed.audio(self._listener.take_new())

    async def events(self) -> AsyncIterator[ai.AIEvent]:
        while True:
            ev = await self._events.get()
            yield ev
            if isinstance(ev, ai.Closed):
                return

    async def create_response(self, instructions: str | None = None) -> None:
        if self._closed:
            return
        if self._response is not None:
            self._pending = instructions
            return
        self._start_response(instructions)

    async def add_message(self, text: str, role: Literal["user", "system"] = "system") -> None:
        self._items.append({"role": role, "content": text})

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        self._playing_until = 0.0  # the bridge stopped playing
        answer = self._answers.get(item_id)
        if answer is None:
            return
        text = heard_text(answer.spoken_segments(), audio_end_ms)
        answer.truncated = True
        self._set_message(answer, text)
        self.cuts.append(Cut(item_id, audio_end_ms, text, answer.text))
        spans, end = [], 0.0
        for seg in answer.spoken_segments():
            end += seg.audio_ms
            spans.append((end, seg.text))
        self._emit(ai.ItemTruncated(item_id, audio_end_ms, text, answer.text, tuple(spans)))
        log.info("cascade: cut %s at %d ms: %r", item_id, audio_end_ms, text)

    async def cancel_response(self) -> None:
        task = self._response
        if task is None:
            return
        self._pending = _NOTHING
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def send_tool_result(self, call_id: str, output: str, *, respond: bool = True) -> None:
        self._items.append({"type": "function_call_output", "call_id": call_id, "output": output})
        self._open_calls.discard(call_id)
        if not self._open_calls and self._filler is not None:
            self._filler.cancel()
            self._filler = None
        if respond:
            await self.create_response()

    async def close(self) -> None:
        if self._closed:
            return
        await self._shutdown("closed", error=False)

    # ------------------------------------------------------------ turns

    @property
    def _caller_item(self) -> str:
        return f"caller_{self._caller_turns}"

    def _caller_started(self, at_ms: int) -> None:
        self._caller_turns += 1
        self._pending = _NOTHING  # the caller's own turn replaces a queued response
        self._hold.pause()  # a held (unfinished) turn waits for this one to join it
        self._emit(ai.SpeechStarted(at_ms, self._caller_item))
        if self._config.interrupts_itself and self._response is not None:
            task = self._response
            task.cancel()

    def _caller_delta(self, item_id: str) -> Callable[[str], None]:
        def emit(delta: str) -> None:
            self._emit(ai.CallerTranscript(item_id, delta, False))

        return emit

    async def _open_stream(self) -> StreamFeed:
        """The Realtime transcription session of ``stt_mode = "stream"`` (stt_stream.py)."""
        s, cfg = self.settings, self._config
        return await open_feed(
            s.stt,
            cfg.input_format.value,
            language=s.language or cfg.transcription_language,
            prompt=s.transcription_prompt or cfg.transcription_prompt,
            on_error=self._stream_failed,
            delay=s.transcription_delay,
        )

    def _commit_sent(self, times: dict[str, float]) -> Callable[[object], None]:
        """Stamps when the feed's task sent the turn's commit (our share ends there)."""

        def sent(_: object) -> None:
            times.setdefault("_stt_sent", self._clock())

        return sent

    def _early_check(self, said: str) -> EarlyCheck | None:
        """The end-of-turn check on the words so far (a streaming model wrote them), unless
        an earlier turn is still in progress or held: its context would be incomplete."""
        if self._check is None or not said or self._hold.waiting or self._turn_lock.locked():
            return None
        return EarlyCheck(self._check, self._items, said)

    def _stream_failed(self, exc: StageError) -> None:
        task = asyncio.get_running_loop().create_task(self._fail(exc), name="cascade-stt-failed")
        self._turns.append(task)
        task.add_done_callback(self._turns.remove)

    async def _turn(
        self,
        item_id: str,
        audio: bytes,
        times: dict[str, float],
        committed: asyncio.Future[Pending | None] | None = None,
        early: EarlyCheck | None = None,
    ) -> None:
        try:
            await self._turn_locked(item_id, audio, times, committed, early)
        finally:
            if early is not None:
                early.cancel()

    async def _turn_locked(
        self,
        item_id: str,
        audio: bytes,
        times: dict[str, float],
        committed: asyncio.Future[Pending | None] | None,
        early: EarlyCheck | None,
    ) -> None:
        async with self._turn_lock:
            assert self._stt is not None
            s = self.settings
            lang = s.language or self._config.transcription_language
            prompt = s.transcription_prompt or self._config.transcription_prompt
            try:
                if committed is not None and self._feed is not None:
                    text = await self._feed.transcript(committed)
                else:
                    times["_stt_sent"] = self._clock()
                    text = await self._stt.transcribe(
                        audio,
                        self._listener.rate,
                        language=lang,
                        prompt=prompt,
                        on_delta=self._caller_delta(item_id),
                    )
            except StageError as exc:
                await self._fail(exc)
                return
            times["transcript_final"] = self._clock()
            if text:
                self._emit(ai.CallerTranscript(item_id, text, True))
            joined = self._hold.waiting
            if joined:  # the caller went on after a turn judged unfinished: answer both
                text = f"{self._hold.take()} {text}".strip()
            if not text:  # not understood: no answer (the agent policy handover_… counts it)
                self._emit(ai.CallerTranscript(item_id, "", True))
                return
            check = self._check
            judged = None if check is None or joined else (early or check).finished
            if judged is not None and not await judged(self._items, text):
                wait = self.settings.listen.turn_check_wait_ms / 1000.0
                self._hold.hold(text, wait, lambda held: self._release(held, times))
                return
            times["_eot_checked"] = self._clock()
            await self._answer_turn(text, times)

    async def _answer_turn(self, text: str, times: dict[str, float]) -> None:
        self._items.append({"role": "user", "content": text})
        self._stage_times = times
        td = self._config.turn_detection
        if td is None or td.create_response:
            await self.create_response()

    def _release(self, text: str, times: dict[str, float]) -> None:
        """The caller did not go on after a turn judged unfinished: answer it as it is."""
        if not self._closed:
            times["_eot_checked"] = self._clock()
            task = asyncio.get_running_loop().create_task(self._answer_turn(text, times))
            self._turns.append(task)
            task.add_done_callback(self._turns.remove)

    # ------------------------------------------------------------ responses

    def _start_response(self, instructions: str | None, say: str | None = None) -> None:
        rid = f"resp_{next(self._ids)}"
        self._response_id = rid
        times, self._stage_times = self._stage_times, None  # this response answers the turn
        task = asyncio.get_running_loop().create_task(
            self._respond(rid, instructions, say, times), name="cascade-response"
        )
        self._response = task

        def ended(t: asyncio.Task[None]) -> None:
            if self._response is t:  # cancelled before it ran
                self._response = None
                self._answer = None

        task.add_done_callback(ended)

    async def _respond(
        self,
        rid: str,
        instructions: str | None,
        say: str | None,
        times: dict[str, float] | None,
    ) -> None:
        assert self._llm is not None
        self._emit(ai.ResponseStarted(rid))
        answer = Answer(f"item_{next(self._ids)}", {"role": "assistant", "content": ""})
        self._answer = answer
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.get_running_loop().create_task(self._speak(rid, answer, queue, times))
        calls: list[FunctionCall] = []
        usage: ai.Usage | None = None
        status, reason = "completed", None
        try:
            if say is not None:
                answer.text = say
                await queue.put(say)
            else:
                usage = await self._think(answer, instructions, queue, calls, times)
            await queue.put(None)
            await speaker
        except asyncio.CancelledError:
            status = "cancelled"
        except StageError as exc:
            speaker.cancel()
            self._finish_answer(answer, cancelled=True)
            self._emit(ai.ResponseDone(rid, "failed", reason=str(exc)))
            self._response = None
            await self._fail(exc)
            return
        finally:
            if not speaker.done():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError, StageError):
                    await speaker
        self._finish_answer(answer, cancelled=status == "cancelled")
        if answer.segments:
            self._emit(ai.AudioDone(rid, answer.item_id))
        said = str(answer.message["content"]) if answer.truncated else answer.text
        if said:  # cut before the answer was complete: the words heard
            self._emit(ai.AgentTranscript(rid, answer.item_id, said, True))
        if status == "completed":
            for c in calls:
                self._items.append(
                    {
                        "type": "function_call",
                        "call_id": c.call_id,
                        "name": c.name,
                        "arguments": c.arguments,
                    }
                )
                self._open_calls.add(c.call_id)
                self._emit(ai.ToolCall(c.call_id, c.name, c.arguments, rid))
            if calls and times is not None and "_out" not in times and self._stage_times is None:
                self._stage_times = times  # no audio yet: the answer after the tool carries on
            if calls and self.settings.filler:
                self._arm_filler()
        self._emit(ai.ResponseDone(rid, status, usage=usage, reason=reason))
        self._response = None
        self._answer = None
        pending, self._pending = self._pending, _NOTHING
        if pending is not _NOTHING and not self._closed:
            self._start_response(pending if isinstance(pending, str) else None)

    async def _think(
        self,
        answer: Answer,
        instructions: str | None,
        queue: asyncio.Queue[str | None],
        calls: list[FunctionCall],
        times: dict[str, float] | None,
    ) -> ai.Usage | None:
        assert self._llm is not None
        cfg = self._config
        prompt = cfg.instructions
        if instructions:
            prompt = f"{prompt}\n\n{instructions}" if prompt else instructions
        splitter = SentenceSplitter()
        usage: ai.Usage | None = None
        rid = self._response_id or ""
        if times is not None:
            times.setdefault("_llm_sent", self._clock())
        async for ev in self._llm.stream(
            prompt,
            list(self._items),
            cfg.tools,
            tool_choice=cfg.tool_choice,
            max_output_tokens=cfg.max_output_tokens,
        ):
            if isinstance(ev, TextDelta):
                if times is not None:
                    times.setdefault("model_first_token", self._clock())
                if not answer.text:
                    self._items.append(answer.message)
                    self._answers[answer.item_id] = answer
                answer.text += ev.text
                self._emit(ai.AgentTranscript(rid, answer.item_id, ev.text, False))
                for sentence in splitter.feed(ev.text):
                    if times is not None:
                        times.setdefault("first_sentence", self._clock())
                    await queue.put(sentence)
                    if queue.qsize() == 1:
                        await asyncio.sleep(0)  # let the speaker send it before reading on
            elif isinstance(ev, FunctionCall):
                calls.append(ev)
            elif isinstance(ev, ModelDone):
                usage = ev.usage
        rest = splitter.flush()
        if rest is not None:
            if times is not None:
                times.setdefault("first_sentence", self._clock())
            await queue.put(rest)
        return usage

    async def _speak(
        self,
        rid: str,
        answer: Answer,
        queue: asyncio.Queue[str | None],
        times: dict[str, float] | None,
    ) -> None:
        """Synthesise the sentences in order; each becomes a segment of the answer."""
        assert self._tts is not None
        out = self._config.output_format
        while (sentence := await queue.get()) is not None:
            resampler = None if out is ai.AudioFormat.PCM24K else Resampler(TTS_RATE, 8000)
            seg_bytes = 0
            odd = b""
            answer.speaking, answer.speaking_ms = sentence, 0.0
            if times is not None:
                times.setdefault("_tts_sent", self._clock())
            try:
                stream = self._tts.speak(
                    sentence, self.settings.voice, self.settings.tts_instructions
                )
                async for chunk in stream:
                    if times is not None:
                        times.setdefault("tts_first_byte", self._clock())
                    data = odd + chunk
                    odd = data[len(data) - len(data) % 2 :]
                    pcm = data[: len(data) - len(odd)]
                    audio = self._encode(pcm, resampler)
                    if audio:
                        seg_bytes += len(audio)
                        answer.speaking_ms = seg_bytes / out.bytes_per_ms
                        self._audio(rid, answer, audio, times)
                if resampler is not None:
                    tail = self._encode(b"", resampler, flush=True)
                    if tail:
                        seg_bytes += len(tail)
                        self._audio(rid, answer, tail, times)
            finally:
                answer.speaking = None
                answer.segments.append(Segment(sentence, seg_bytes / out.bytes_per_ms))

    def _encode(self, pcm: bytes, resampler: Resampler | None, *, flush: bool = False) -> bytes:
        if resampler is None:
            return pcm
        pcm8k = resampler.flush() if flush else resampler.process(pcm)
        if self._config.output_format is ai.AudioFormat.PCMA:
            return alaw_encode(pcm8k)
        return ulaw_encode(pcm8k)

    def _audio(
        self, rid: str, answer: Answer, audio: bytes, times: dict[str, float] | None
    ) -> None:
        now = self._clock()
        # the caller hears it in real time from now on: barge-in needs longer speech until then
        self._playing_until = max(self._playing_until, now) + (
            self._config.output_format.duration_ms(len(audio)) / 1000.0
        )
        if times is not None and "_out" not in times:
            times["_out"] = now
            times.setdefault("tts_first_byte", now)
            self._emit(ai.TurnStages(rid, {k: v for k, v in times.items() if k[0] != "_"}))
            self.added_ms.append(_added_ms(times, now))
        self._emit(ai.AudioDelta(rid, answer.item_id, audio))

    def _finish_answer(self, answer: Answer, cancelled: bool) -> None:
        """The message kept in history: the cut text once truncated; the sentences spoken
        when the response was cancelled; else the whole answer."""
        if answer.truncated:
            return
        spoken = " ".join(seg.text for seg in answer.segments)
        self._set_message(answer, spoken if cancelled else answer.text)

    def _set_message(self, answer: Answer, text: str) -> None:
        answer.message["content"] = text
        if not text and answer.message in self._items:
            self._items.remove(answer.message)

    def _arm_filler(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
        delay = self.settings.filler_after_ms / 1000.0
        self._filler = asyncio.get_running_loop().call_later(delay, self._filler_due)

    def _filler_due(self) -> None:
        self._filler = None
        if self._open_calls and self._response is None and not self._closed:
            self._start_response(None, say=self.settings.filler)

    # ------------------------------------------------------------ plumbing

    def _emit(self, ev: ai.AIEvent) -> None:
        self._events.put_nowait(ev)

    async def _fail(self, exc: StageError) -> None:
        log.warning("cascade stage failed: %s", exc)
        self._emit(ai.AIErrorEvent(exc.code or exc.stage, str(exc), fatal=True))
        await self._shutdown(f"{exc.stage} failed: {exc}", error=True)

    async def _shutdown(self, reason: str, *, error: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if self._filler is not None:
            self._filler.cancel()
        current = asyncio.current_task()
        tasks = [t for t in (self._response, *self._turns) if t is not None and t is not current]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._hold.pause()
        for stage in (self._stt, self._llm, self._tts, self._feed, self._check):
            if stage is not None:
                await stage.aclose()
        self._emit(ai.Closed(reason, error=error))


def _added_ms(times: dict[str, float], out: float) -> float:
    """Our share of a turn (see :attr:`CascadeSession.added_ms`), from its stage times."""
    spans = (
        ("end_of_turn", "_stt_sent"),
        ("_eot_checked" if "_eot_checked" in times else "transcript_final", "_llm_sent"),
        ("first_sentence", "_tts_sent"),
    )
    total = sum(max(0.0, times[b] - times[a]) for a, b in spans if a in times and b in times)
    if "tts_first_byte" in times:
        total += max(0.0, out - times["tts_first_byte"])
    return round(total * 1000.0, 3)
