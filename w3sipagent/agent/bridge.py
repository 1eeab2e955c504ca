"""The per-call bridge: one call (:class:`CallLike`) ↔ one AI conversation (:class:`AISession`).

This is the only place where telephony meets the AI, and it sees each side through its
small interface only: the call's frames, events, transfer and hangup; the session's audio,
events and a handful of requests. Nothing of SIP, RTP or the Realtime wire format is
visible here, so a scripted session (:mod:`w3sipagent.agent.scripted`) and an in-memory call
(:mod:`w3sipagent.agent.memcall`) can drive it in tests.

Audio path (no transcoding for G.711)::

    call frame sink ─ payload ─ InboundConverter (identity for PCMU↔audio/pcmu) ─ session.send_audio
    session AudioDelta ─ OutboundConverter (framing only) ─ PlayoutQueue ─ pacer tick ─ RTP

Inbound frames go from the sink straight to ``send_audio`` in the same call (no task, no
queue); before the session is ready they are held (bounded) and flushed in order. Outbound
deltas are cut into frames at once; the playout queue is the only buffer.

Barge-in (``SpeechStarted`` while the agent is audible): the playout queue is cleared, so
the next pacer tick sends silence; the item being heard is truncated at the milliseconds
actually handed to the pacer (skipped if it was heard completely or the back end truncates
by itself); the response is cancelled unless the server does it (``interrupt_response``);
late deltas of it are dropped. With ``min_interrupt_ms`` the bridge turns the server's
``interrupt_response`` off and cuts only after the caller spoke that long.

Failures: the AI session that cannot start, drops or fails fatally is replaced once (or
``reconnect_attempts`` times) within ``reconnect_timeout``, re-seeded with the transcript so
far; otherwise the tenant's fallback runs (WAV prompt, then transfer or hangup). Every end
fills the CDR (:class:`~w3sipagent.records.cdr.CallRecord`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from w3sipagent.agent.fallback import PromptError, load_prompt_frames
from w3sipagent.agent.latency import LatencyTracker
from w3sipagent.agent.playout import PlayoutItem, PlayoutQueue
from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.ai.session import (
    AgentTranscript,
    AIErrorEvent,
    AIEvent,
    AISession,
    AISessionConfig,
    AudioDelta,
    AudioDone,
    AudioFormat,
    CallerTranscript,
    Closed,
    HistoryItem,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
)
from w3sipagent.asyncio.call_api import (
    CallEnded,
    CallLike,
    DtmfReceived,
    HoldChanged,
    MediaChanged,
    MediaFormat,
    MediaTimeout,
    TransferOutcome,
)
from w3sipagent.codecs import get_codec
from w3sipagent.codecs.base import Codec, Decoder
from w3sipagent.codecs.convert import build_converters
from w3sipagent.codecs.g711 import alaw_decode, ulaw_decode
from w3sipagent.codecs.resample import Resampler
from w3sipagent.errors import CodecError
from w3sipagent.records.cdr import (
    CallRecord,
    Disposition,
    HangupSide,
    ToolCallRecord,
    TransferRecord,
)
from w3sipagent.records.recording import StereoRecorder

__all__ = [
    "BargeIn",
    "BridgeOptions",
    "CallBridge",
    "EarlySession",
    "SessionFactory",
    "bridge_session_config",
    "choose_ai_format",
    "codec_of",
]

log = logging.getLogger("w3sipagent.agent.bridge")

SessionFactory = Callable[[AISessionConfig], AISession]
"""Builds a (not yet started) AI session for this call's configuration."""

_ENDED_TRANSFER = ("succeeded", "accepted", "timed_out")

_Decision = tuple[Disposition, HangupSide | None, str, bool, int | None]
"""disposition, who hung up, reason, whether we must hang up, SIP code."""


def choose_ai_format(encoding: str) -> AudioFormat:
    """The AI format that avoids transcoding: PCMU→audio/pcmu, PCMA→audio/pcma, else 24 kHz PCM."""
    enc = encoding.upper()
    if enc == "PCMU":
        return AudioFormat.PCMU
    if enc == "PCMA":
        return AudioFormat.PCMA
    return AudioFormat.PCM24K


def codec_of(media: MediaFormat) -> Codec:
    """The codec object of a negotiated media format (raises CodecError)."""
    return get_codec(
        media.encoding, media.clock_rate, media.channels, media.fmtp, frame_ms=media.ptime_ms
    )


@dataclass(frozen=True, slots=True)
class EarlySession:
    """An AI session started before the call was answered, and its start task."""

    session: AISession
    start: asyncio.Task[None]


def bridge_session_config(
    base: AISessionConfig,
    ai_format: AudioFormat,
    tools: ToolRegistry | None = None,
    min_interrupt_ms: int = 0,
) -> AISessionConfig:
    """The session configuration the bridge uses: the call's audio format both ways, the
    call's tool specs, and ``interrupt_response`` off when the bridge guards barge-in."""
    td = base.turn_detection
    if td is not None and min_interrupt_ms > 0 and td.interrupt_response:
        td = replace(td, interrupt_response=False)  # the bridge decides barge-in itself
    return replace(
        base,
        input_format=ai_format,
        output_format=ai_format,
        turn_detection=td,
        tools=tools.specs() if tools is not None and tools.tools else base.tools,
    )


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    """Behaviour of one call's bridge; every timer has a default (seconds unless noted)."""

    greeting: str | None = None
    """Instructions of the first response: the agent speaks first when set."""
    connect_timeout: float = 10.0
    reconnect_timeout: float = 3.0
    reconnect_attempts: int = 1
    resume_instructions: str | None = (
        "The line dropped for a moment. Continue briefly where the conversation stopped."
    )
    """Said after a reconnection that interrupted the agent or a pending turn."""
    max_duration: float | None = 3600.0
    caller_silence_timeout: float | None = 60.0
    min_interrupt_ms: int = 0
    """Guard against false interruptions (0 = off: the server's interrupt_response decides)."""
    dtmf_collect_timeout: float = 1.0
    """Digits pressed within this time of each other reach the model as one message."""
    dtmf_actions: Mapping[str, str] = field(default_factory=dict)
    """Digit → ``transfer:NAME`` / ``hangup`` / ``message:TEXT``."""
    transfers: Mapping[str, str] = field(default_factory=dict)
    """Named destinations (for DTMF actions; the tools hold their own copy)."""
    transfer_timeout: float = 30.0
    quiet_timeout: float = 30.0
    """At most this long to wait for the agent's current words before end_call / transfer."""
    end_call_tail: float = 0.3
    """Pause after the last frame played before the BYE."""
    fallback_wav: Path | None = None
    fallback_uri: str | None = None
    recording_path: Path | None = None
    announcement: Path | None = None
    """Played before the recording starts."""
    ai_enabled: bool = True
    """False: the caller gets the fallback at once (usage cap)."""
    ai_disabled_reason: str = "usage cap reached"
    housekeeping_interval: float = 0.25
    max_held_audio_ms: int = 10_000
    hangup_timeout: float = 5.0
    close_timeout: float = 3.0
    history_items: int = 20


@dataclass(slots=True)
class BargeIn:
    """One cut of the agent's audio (for tests, the CDR and the benchmark)."""

    speech_at: float
    """Clock time SpeechStarted reached the bridge."""
    cut_at: float
    """Clock time the playout queue was cleared."""
    item_id: str | None
    heard_ms: int | None
    """audio_end_ms sent with the truncate (None: no truncate)."""
    dropped_frames: int
    cancelled: bool


class CallBridge:
    """Bridges one call to one AI conversation. ``await bridge.run()`` returns the CDR.

    ``session_factory`` builds the AI session from the configuration the bridge derives
    from ``session_config`` (audio formats of the call, tool specs, interrupt guard).
    ``tools`` are this call's tools; ``cdr`` the record to fill (one is created from the
    call's info when None). ``clock`` is monotonic seconds. ``early``: a session already
    starting since admission (in parallel with answering); used when its audio format is
    the one the negotiated codec needs, else closed.
    """

    def __init__(
        self,
        call: CallLike,
        session_factory: SessionFactory,
        session_config: AISessionConfig,
        *,
        tools: ToolRegistry | None = None,
        options: BridgeOptions | None = None,
        cdr: CallRecord | None = None,
        clock: Callable[[], float] = time.monotonic,
        early: EarlySession | None = None,
    ) -> None:
        self.call = call
        self.options = opts = options or BridgeOptions()
        self.tools = tools or ToolRegistry()
        self._factory = session_factory
        self._clock = clock
        info = call.info
        self.cdr = cdr or CallRecord(
            call_id=info.call_id,
            caller=info.from_uri,
            callee=info.to_uri,
            request_uri=info.request_uri,
            source=f"{info.source[0]}:{info.source[1]}",
        )
        self.ai_format = choose_ai_format(call.media.encoding)
        self.session_config = bridge_session_config(
            session_config, self.ai_format, self.tools, opts.min_interrupt_ms
        )
        td = self.session_config.turn_detection
        self._server_cancels = td is not None and td.interrupt_response
        self._early = early
        self.codec: Codec | None = None
        self.playout = PlayoutQueue(call.media.ptime_ms, clock=clock, on_sent=self._on_frame_sent)
        kick = getattr(call, "kick_audio", None)  # optional in CallLike: talk-spurt kick
        if callable(kick):
            self.playout.on_ready = kick
        self.latency = LatencyTracker()
        self.barge_ins: list[BargeIn] = []
        self.sessions: list[AISession] = []
        """Every session this call opened, in order."""
        self._live: AISession | None = None
        held_frames = max(1, opts.max_held_audio_ms // max(1, call.media.ptime_ms))
        self._held: deque[bytes] = deque(maxlen=held_frames)
        self._inbound: Any = None
        self._outbound: Any = None
        self._recorder: StereoRecorder | None = None
        self._rec_t0 = 0.0
        self._caller_pcm: Callable[[bytes], bytes] | None = None
        self._agent_pcm: Callable[[bytes], bytes] | None = None
        self._active_response: str | None = None
        self._dropped: deque[str] = deque(maxlen=64)
        self._turn_stale: frozenset[str | None] = frozenset()
        self._speech_offsets: dict[str, float] = {}
        self._caller_speaking = False
        self._guard: asyncio.TimerHandle | None = None
        self._digits = ""
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ended: asyncio.Future[None] | None = None
        self._decision: _Decision | None = None
        self._call_gone = False
        self._recovering = False
        self._reconnects_left = opts.reconnect_attempts
        self._transferring = False
        self._ended_in_transfer: CallEnded | None = None
        self._on_hold = False
        self._t0 = 0.0
        self._last_activity = 0.0

    # ================================================================ life cycle

    @property
    def session(self) -> AISession | None:
        """The live AI session (None while connecting, reconnecting or in fallback)."""
        return self._live

    @property
    def ended(self) -> bool:
        """The call's outcome is decided."""
        return self._decision is not None

    async def run(self) -> CallRecord:
        """Bridge the call until it ends; returns the filled CDR. Never raises for call
        or AI failures (they are the CDR's disposition)."""
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        self._t0 = self._last_activity = self._clock()
        if self.cdr.answer_at is None:
            self.cdr.answered()
        self.cdr.ai_format = self.ai_format.value
        self.cdr.codec = self.call.media.encoding
        try:
            self._setup_media(self.call.media)
        except CodecError as exc:
            log.error("call %s: cannot bridge codec: %s", self.call.info.call_id, exc)
            self._finish(Disposition.FAILED, "system", f"codec: {exc}", hangup=True)
        else:
            self.call.set_frame_sink(self._on_caller_frame)
            self.call.set_frame_source(self.playout)
            self._spawn(self._call_events(), "call-events")
            self._spawn(self._housekeeping(), "housekeeping")
            self._spawn(self._converse(), "converse")
        try:
            await self._ended
        finally:
            await self._teardown()
        return self.cdr

    def _setup_media(self, media: MediaFormat) -> None:
        codec = codec_of(media)
        self._inbound, self._outbound = build_converters(codec, self.ai_format.value)
        self.codec = codec

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"bridge-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("bridge task %s failed: %r", task.get_name(), exc, exc_info=exc)
            self._finish(Disposition.FAILED, "system", f"internal error: {type(exc).__name__}")

    def _finish(
        self,
        disposition: Disposition,
        by: HangupSide | None,
        reason: str,
        *,
        hangup: bool = True,
        sip_code: int | None = None,
    ) -> None:
        """Decide the call's outcome (the first decision wins) and end the bridge."""
        if self._decision is not None:
            return
        self._decision = (disposition, by, reason, hangup, sip_code)
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    async def _teardown(self) -> None:
        shutdown: _Decision = (Disposition.SHUTDOWN, "system", "shutdown", True, None)
        decision = self._decision or shutdown  # None: cancelled from outside
        self._decision = decision
        disposition, by, reason, hangup, sip_code = decision
        for h in (self._guard, self._dtmf_timer):
            if h is not None:
                h.cancel()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.playout.clear()
        if hangup and not self._call_gone:
            try:
                await asyncio.wait_for(self.call.hangup(reason), self.options.hangup_timeout)
            except Exception as exc:  # the CDR still gets written
                log.warning("call %s: hangup failed: %r", self.call.info.call_id, exc)
        self.call.set_frame_sink(None)
        self.call.set_frame_source(None)
        self._live = None
        for s in self.sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.close(), self.options.close_timeout)
        cdr = self.cdr
        try:
            cdr.rtp = dict(self.call.stats())
        except Exception as exc:
            log.warning("call %s: no RTP statistics: %r", self.call.info.call_id, exc)
        cdr.turn_latencies_ms = self.latency.totals_ms()
        if self._recorder is not None:
            path = await self._recorder.close()
            cdr.recording_path = None if path is None else str(path)
        cdr.finish(disposition, hangup_by=by, reason=reason, sip_code=sip_code)

    # ================================================================ media

    def _on_caller_frame(self, payload: bytes | None, next_payload: bytes | None = None) -> None:
        """The call's frame sink: one inbound frame, straight to the AI (no task hop). A lost
        frame is concealed, from the next packet's in-band FEC when it has some (Opus)."""
        inbound = self._inbound
        audio = inbound.convert(payload) if payload is not None else inbound.conceal(next_payload)
        s = self._live
        if s is not None:
            s.send_audio(audio)
        else:
            self._held.append(audio)
        if self._recorder is not None and self._caller_pcm is not None:
            self._recorder.add_caller(self._caller_pcm(audio), self._clock() - self._rec_t0)

    def _on_frame_sent(self, payload: bytes, item: PlayoutItem | None, now: float) -> None:
        """Called by the playout queue for every frame handed to the pacer."""
        if (
            item is not None
            and self.latency.pending is not None
            and item.response_id not in self._turn_stale
        ):
            turn = self.latency.frame_sent(now)
            if turn is not None:
                self.cdr.add_event("turn", **turn.breakdown())
        if self._recorder is not None and self._agent_pcm is not None:
            self._recorder.add_agent(self._agent_pcm(payload), now - self._rec_t0)

    def _media_changed(self, media: MediaFormat) -> None:
        self.cdr.add_event("media_changed", codec=media.encoding)
        try:
            self._setup_media(media)
        except CodecError as exc:
            self._finish(Disposition.FAILED, "system", f"codec: {exc}")
            return
        self.playout.clear()  # frames of the old codec

    # ================================================================ the conversation

    async def _converse(self) -> None:
        opts = self.options
        announce: asyncio.Task[None] | None = None
        if opts.recording_path is not None:
            announce = self._spawn(self._announce_and_record(), "announce")
        if not opts.ai_enabled:
            if announce is not None:
                await announce
            await self._fallback(opts.ai_disabled_reason)
            return
        early, self._early = self._early, None
        if early is not None and early.session.config == self.session_config:
            ok = await self._go_live(early.session, early.start, opts.connect_timeout)
        else:
            if early is not None:  # the negotiated codec needs another format
                early.start.cancel()
                with contextlib.suppress(BaseException):
                    await early.start
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(early.session.close(), opts.close_timeout)
            ok = await self._connect(history=(), timeout=opts.connect_timeout)
        while not ok and self._reconnects_left > 0 and not self.ended:
            self._reconnects_left -= 1
            self.cdr.add_event("ai_retry")
            ok = await self._connect(history=(), timeout=opts.reconnect_timeout)
        if announce is not None:
            await announce
        if self.ended:
            return
        if not ok:
            await self._fallback("AI unavailable")
            return
        if opts.greeting and self._live is not None:
            await self._live.create_response(opts.greeting)

    async def _connect(self, history: tuple[HistoryItem, ...], timeout: float) -> bool:
        """Open and start a session; on success it goes live with the held audio first."""
        config = replace(self.session_config, history=history) if history else self.session_config
        try:
            session = self._factory(config)
        except Exception as exc:
            log.error("call %s: cannot create the AI session: %s", self.call.info.call_id, exc)
            self.cdr.add_event("ai_connect_failed", error=str(exc)[:200])
            return False
        return await self._go_live(session, session.start(), timeout)

    async def _go_live(self, session: AISession, starting: Awaitable[None], timeout: float) -> bool:
        """Wait for ``session`` to start; then flush the held audio and make it live."""
        self.sessions.append(session)
        try:
            await asyncio.wait_for(starting, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else str(exc)[:200]
            log.warning("call %s: AI session did not start: %s", self.call.info.call_id, what)
            self.cdr.add_event("ai_connect_failed", error=what)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), self.options.close_timeout)
            return False
        if self.ended:
            return False
        held = list(self._held)
        self._held.clear()
        for audio in held:  # in order, before any newer frame (this block does not yield)
            session.send_audio(audio)
        self._live = session
        self._spawn(self._ai_events(session), "ai-events")
        return True

    def history(self) -> tuple[HistoryItem, ...]:
        """The conversation so far (final transcripts), to re-seed a new session."""
        items = [
            HistoryItem("user" if e.speaker == "caller" else "assistant", e.text)
            for e in self.cdr.transcript
            if e.text
        ]
        return tuple(items[-self.options.history_items :])

    async def _ai_events(self, session: AISession) -> None:
        async for ev in session.events():
            if session is not self._live:
                return
            await self._on_ai_event(session, ev)
            if isinstance(ev, Closed):
                return
        if session is self._live and not self.ended:
            await self._ai_failed(session, "event stream ended")

    async def _on_ai_event(self, session: AISession, ev: AIEvent) -> None:
        if isinstance(ev, AudioDelta):
            if ev.response_id in self._dropped:
                return
            if self.latency.pending is not None:
                self.latency.audio_delta(self._clock())
            self.playout.push(self._outbound.push(ev.audio), ev.item_id, ev.response_id)
        elif isinstance(ev, AudioDone):
            if ev.response_id not in self._dropped:
                self.playout.push(self._outbound.flush(), ev.item_id, ev.response_id)
                self.playout.mark_done(ev.item_id)
        elif isinstance(ev, ResponseStarted):
            self._active_response = ev.response_id
            self.latency.response_started(self._clock())
        elif isinstance(ev, ResponseDone):
            if ev.usage is not None:
                self.cdr.usage.add(ev.usage)
            if self._active_response == ev.response_id:
                self._active_response = None
            if ev.status == "failed":
                self.cdr.add_event("response_failed", reason=ev.reason)
        elif isinstance(ev, SpeechStarted):
            await self._on_speech_started(session, ev)
        elif isinstance(ev, SpeechStopped):
            self._on_speech_stopped(ev)
        elif isinstance(ev, CallerTranscript):
            if ev.final and ev.text.strip():
                at = self._speech_offsets.pop(ev.item_id, None)
                self.cdr.add_transcript("caller", ev.text.strip(), at=at, item_id=ev.item_id)
        elif isinstance(ev, AgentTranscript):
            if ev.final and ev.text.strip():
                self.cdr.add_transcript("agent", ev.text.strip(), item_id=ev.item_id)
        elif isinstance(ev, ToolCall):
            self._spawn(self._run_tool(session, ev), f"tool-{ev.name}")
        elif isinstance(ev, AIErrorEvent):
            self.cdr.add_event("ai_error", code=ev.code, message=ev.message[:200], fatal=ev.fatal)
            if ev.fatal:
                self._spawn(self._ai_failed(session, f"{ev.code}: {ev.message}"), "ai-failed")
        elif isinstance(ev, Closed) and ev.error:
            self._spawn(self._ai_failed(session, ev.reason), "ai-failed")

    # ================================================================ turns and barge-in

    def _agent_audible(self) -> bool:
        return (
            self.playout.busy
            or self._active_response is not None
            or self.playout.current() is not None
        )

    async def _on_speech_started(self, session: AISession, ev: SpeechStarted) -> None:
        now = self._clock()
        self._last_activity = now
        self._caller_speaking = True
        self.latency.speech_started()
        if ev.item_id:
            self._speech_offsets[ev.item_id] = self.cdr.offset()
            if len(self._speech_offsets) > 64:
                self._speech_offsets.pop(next(iter(self._speech_offsets)))
        if not self._agent_audible():
            return
        guard = self.options.min_interrupt_ms
        if guard > 0:
            if self._guard is None:
                loop = asyncio.get_running_loop()
                self._guard = loop.call_later(guard / 1000.0, self._guard_fired, session, now)
            return
        await self.barge_in(session, now)

    def _guard_fired(self, session: AISession, speech_at: float) -> None:
        self._guard = None
        if session is self._live and self._agent_audible():
            self._spawn(self.barge_in(session, speech_at), "barge-in")

    def _on_speech_stopped(self, ev: SpeechStopped) -> None:
        now = self._clock()
        self._last_activity = now
        self._caller_speaking = False
        if self._guard is not None:  # shorter than the guard: not an interruption
            self._guard.cancel()
            self._guard = None
            self.cdr.add_event("false_interruption")
        last = self.playout.last_item
        self._turn_stale = frozenset(
            {self._active_response, last.response_id if last is not None else None}
        )
        self.latency.speech_stopped(now)

    async def barge_in(self, session: AISession, speech_at: float | None = None) -> BargeIn:
        """Cut the agent now: flush playout, truncate at what was heard, cancel if needed."""
        cut_at = self._clock()
        item = self.playout.current()
        dropped = self.playout.clear()
        self._outbound.clear()
        rid = self._active_response
        for r in (rid, item.response_id if item is not None else None):
            if r is not None and r not in self._dropped:
                self._dropped.append(r)
        heard: int | None = None
        if item is not None and not item.finished and not session.truncates_itself:
            heard = min(item.sent_ms, item.queued_ms)
        cancel = rid is not None and not self._server_cancels
        record = BargeIn(
            speech_at if speech_at is not None else cut_at,
            cut_at,
            item.item_id if item is not None else None,
            heard,
            dropped,
            cancel,
        )
        self.barge_ins.append(record)
        self.cdr.add_event(
            "barge_in", item_id=record.item_id, heard_ms=heard, dropped_frames=dropped
        )
        if heard is not None and item is not None:
            await session.truncate(item.item_id, heard)
        if cancel:
            await session.cancel_response()
            if self._active_response == rid:
                self._active_response = None
        return record

    # ================================================================ tools

    async def _run_tool(self, session: AISession, ev: ToolCall) -> None:
        t0 = self._clock()
        try:
            args: Any = json.loads(ev.arguments) if ev.arguments.strip() else {}
        except ValueError:
            args = ev.arguments
        record = ToolCallRecord(
            name=ev.name, call_id=ev.call_id, arguments=args, at=self.cdr.offset()
        )
        self.cdr.add_tool_call(record)
        try:
            result = await self.tools.run(self, ev.name, ev.arguments)
        except asyncio.CancelledError:
            record.error = "cancelled: the call ended"
            raise
        record.result = result.output
        record.error = result.error
        record.duration_ms = round((self._clock() - t0) * 1000.0, 1)
        if session is self._live and not self.ended:
            await session.send_tool_result(ev.call_id, result.to_json(), respond=result.respond)

    # ToolContext ------------------------------------------------------

    async def transfer_to(
        self,
        destination: str,
        uri: str,
        reason: str,
        *,
        wait_quiet: bool = True,
        disposition: Disposition = Disposition.TRANSFERRED,
    ) -> TransferOutcome:
        """Blind-transfer the caller; a transfer that happened ends the bridge."""
        if wait_quiet:
            await self._wait_quiet(self.options.quiet_timeout)
        self.cdr.transfer = rec = TransferRecord(destination=destination, uri=uri)
        self.cdr.add_event("transfer", destination=destination, reason=reason)
        self._transferring = True
        try:
            outcome = await self.call.transfer(uri, timeout=self.options.transfer_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call %s: transfer failed: %r", self.call.info.call_id, exc)
            outcome = TransferOutcome("failed", reason=type(exc).__name__)
        finally:
            self._transferring = False
            self._last_activity = self._clock()
        rec.outcome = outcome.status
        rec.status = outcome.code
        if outcome.status in _ENDED_TRANSFER:
            self._finish(
                disposition,
                "agent",
                f"transferred to {destination} ({outcome.status})",
                sip_code=outcome.code,
            )
        elif self._ended_in_transfer is not None:  # the caller left while we transferred
            self._call_ended(self._ended_in_transfer)
        return outcome

    async def end_call(self, reason: str) -> None:
        """Hang up once the current response has been heard (returns at once)."""
        self.cdr.add_event("end_call", reason=reason)
        self._spawn(self._end_after_playout(reason), "end-call")

    async def send_dtmf(self, digits: str) -> None:
        """Send DTMF on the call."""
        await self.call.send_dtmf(digits)

    async def _end_after_playout(self, reason: str) -> None:
        await self._wait_quiet(self.options.quiet_timeout)
        await asyncio.sleep(self.options.end_call_tail)
        self._finish(Disposition.COMPLETED, "agent", f"end_call: {reason}")

    async def _wait_quiet(self, timeout: float) -> bool:
        """Wait until no response is active and the playout queue is empty."""
        deadline = self._clock() + timeout
        step = self.playout.frame_ms / 1000.0
        while self._active_response is not None or self.playout.busy:
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(step)
        return True

    # ================================================================ call events

    async def _call_events(self) -> None:
        async for ev in self.call.events():
            if isinstance(ev, DtmfReceived):
                self._on_dtmf(ev.digit)
            elif isinstance(ev, MediaTimeout):
                self._finish(Disposition.TIMEOUT, "system", "rtp_timeout")
            elif isinstance(ev, HoldChanged):
                self._on_hold = ev.on_hold
                self.cdr.add_event("hold", on_hold=ev.on_hold)
            elif isinstance(ev, MediaChanged):
                codec = self.codec
                if codec is None or (ev.media.encoding.upper(), ev.media.ptime_ms) != (
                    codec.name.upper(),
                    codec.frame_ms,
                ):
                    self._media_changed(ev.media)
            elif isinstance(ev, CallEnded):
                self._call_ended(ev)
                return
        self._call_gone = True
        self._finish(Disposition.FAILED, "system", "call event stream ended", hangup=False)

    def _call_ended(self, ev: CallEnded) -> None:
        self._call_gone = True
        if self._transferring:
            # our leg ended by the transfer (the transferer hangs up after success): the
            # outcome decides the CDR once known, and the tool call keeps its real result
            self._ended_in_transfer = ev
            return
        reason = ev.reason
        disp: Disposition
        by: HangupSide
        if reason in ("remote_bye", "cancelled") or ev.by == "remote":
            disp, by = Disposition.CALLER_HANGUP, "caller"
        elif reason == "transferred":
            disp, by = Disposition.TRANSFERRED, "agent"
        elif reason == "rtp_timeout":
            disp, by = Disposition.TIMEOUT, "system"
        elif reason == "shutdown":
            disp, by = Disposition.SHUTDOWN, "system"
        elif reason == "local_hangup":
            disp, by = Disposition.COMPLETED, "agent"
        else:
            disp, by = Disposition.FAILED, "system"
        self._finish(disp, by, reason, hangup=False, sip_code=ev.sip_code)

    def _on_dtmf(self, digit: str) -> None:
        self.cdr.add_event("dtmf", digit=digit)
        self._last_activity = self._clock()
        acts = self.options.dtmf_actions
        action = acts.get(digit) or acts.get(digit.upper())
        if action is not None:
            self._spawn(self._dtmf_action(digit, action), "dtmf-action")
            return
        self._digits += digit
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        loop = asyncio.get_running_loop()
        self._dtmf_timer = loop.call_later(self.options.dtmf_collect_timeout, self._flush_digits)

    def _flush_digits(self) -> None:
        self._dtmf_timer = None
        digits, self._digits = self._digits, ""
        if digits:
            self._spawn(self._tell_model(f"The caller pressed {digits} on the keypad."), "dtmf")

    async def _tell_model(self, text: str) -> None:
        s = self._live
        if s is not None and not self.ended:
            await s.add_message(text, "system")
            await s.create_response()

    async def _dtmf_action(self, digit: str, action: str) -> None:
        kind, _, arg = action.partition(":")
        if kind == "transfer":
            uri = self.options.transfers.get(arg)
            if uri is None:
                log.error("dtmf %s: no transfer destination named %r", digit, arg)
                return
            s = self._live
            if s is not None and self._agent_audible():
                await self.barge_in(s)
            outcome = await self.transfer_to(arg, uri, f"dtmf {digit}", wait_quiet=False)
            if outcome.status not in _ENDED_TRANSFER:
                await self._tell_model(
                    f"The caller pressed {digit} to reach {arg}, but the transfer failed "
                    f"({outcome.status}). Tell the caller and offer to help."
                )
        elif kind == "hangup":
            self._finish(Disposition.COMPLETED, "caller", f"dtmf {digit}: hangup")
        elif kind == "message":
            await self._tell_model(arg)

    # ================================================================ failures

    async def _ai_failed(self, session: AISession, reason: str) -> None:
        if self.ended or self._recovering or session is not self._live:
            return
        self._recovering = True
        log.warning("call %s: AI session lost: %s", self.call.info.call_id, reason)
        self.cdr.add_event("ai_lost", reason=reason[:200])
        was_busy = self._agent_audible() or self.latency.pending is not None
        self._live = None
        self.playout.clear()
        self._outbound.clear()
        self._active_response = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.close(), self.options.close_timeout)
        while self._reconnects_left > 0 and not self.ended:
            self._reconnects_left -= 1
            if await self._connect(self.history(), self.options.reconnect_timeout):
                self._recovering = False
                self.cdr.add_event("ai_reconnected")
                instr = self.options.resume_instructions
                if was_busy and instr and self._live is not None:
                    await self._live.create_response(instr)
                return
        self._recovering = False
        await self._fallback(reason)

    async def _fallback(self, why: str) -> None:
        if self.ended:
            return
        opts = self.options
        self.cdr.add_event("fallback", reason=why[:200])
        self._live = None
        played = False
        if opts.fallback_wav is not None:
            played = await self._play_prompt(opts.fallback_wav)
            if played:
                await asyncio.sleep(opts.end_call_tail)
        if self.ended:
            return
        if opts.fallback_uri is not None:
            outcome = await self.transfer_to(
                "fallback",
                opts.fallback_uri,
                why,
                wait_quiet=False,
                disposition=Disposition.FALLBACK,
            )
            if outcome.status in _ENDED_TRANSFER:
                return
        handled = played or opts.fallback_uri is not None
        self._finish(
            Disposition.FALLBACK if handled else Disposition.AI_ERROR,
            "agent",
            f"fallback: {why}" if handled else f"ai_error: {why}",
        )

    async def _play_prompt(self, path: Path) -> bool:
        """Play a WAV through the playout queue; True once it was sent completely."""
        assert self.codec is not None
        try:
            frames = await asyncio.to_thread(load_prompt_frames, path, self.codec)
        except PromptError as exc:
            log.error("call %s: %s", self.call.info.call_id, exc)
            self.cdr.add_event("prompt_error", error=str(exc)[:200])
            return False
        self.playout.push(frames)
        seconds = len(frames) * self.playout.frame_ms / 1000.0
        return await self.playout.wait_drained(seconds + 2.0)

    # ================================================================ recording

    async def _announce_and_record(self) -> None:
        opts = self.options
        if opts.announcement is not None:
            await self._play_prompt(opts.announcement)
        if self.ended or opts.recording_path is None:
            return
        assert self.codec is not None
        rate = self.ai_format.sample_rate
        self._caller_pcm = _ai_to_pcm(self.ai_format)
        self._agent_pcm = _payload_to_pcm(self.codec, rate)
        self._rec_t0 = self._clock()
        self._recorder = StereoRecorder(opts.recording_path, sample_rate=rate)
        self.cdr.add_event("recording_started")

    # ================================================================ timers

    async def _housekeeping(self) -> None:
        opts = self.options
        silence = opts.caller_silence_timeout
        if self.session_config.turn_detection is None:
            silence = None  # no VAD: caller silence cannot be told apart
        while True:
            await asyncio.sleep(opts.housekeeping_interval)
            now = self._clock()
            if opts.max_duration is not None and now - self._t0 >= opts.max_duration:
                self._finish(Disposition.TIMEOUT, "system", "max_duration")
                return
            if (
                self._caller_speaking
                or self.playout.busy
                or self._active_response is not None
                or self._transferring
                or self._on_hold
                or self._live is None
            ):
                self._last_activity = now
            elif silence is not None and now - self._last_activity >= silence:
                self._finish(Disposition.TIMEOUT, "system", "caller_silence")
                return


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
