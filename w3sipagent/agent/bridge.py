"""The per-call bridge: one call (:class:`CallLike`) ↔ one AI conversation (:class:`AISession`).

This is the only place where telephony meets the AI, and it sees each side through its
small interface only: the call's frames, events, transfer and hangup; the session's audio,
events and a handful of requests. Nothing of SIP, RTP or any AI back end's wire format is
visible here, so a scripted session (:mod:`w3sipagent.agent.scripted`) and an in-memory call
(:mod:`w3sipagent.agent.memcall`) can drive it in tests.

:class:`CallBridge` is the composition of its parts, each with one job:

- :mod:`~w3sipagent.agent.media`: caller frames to the AI (held until a session is live),
  agent audio framed into the playout queue (:mod:`~w3sipagent.agent.playout`), prompts,
  the recording;
- :mod:`~w3sipagent.agent.turns`: the AI's content events; barge-in decided by
  :mod:`~w3sipagent.agent.bargein` (pure); turn latency (:mod:`~w3sipagent.agent.latency`);
- :mod:`~w3sipagent.agent.supervisor`: connect, early session, reconnect with history;
- :mod:`~w3sipagent.agent.actions`: tools, transfers, end of call, DTMF
  (:mod:`~w3sipagent.agent.dtmf`, pure), the fallback;
- :mod:`~w3sipagent.agent.lifecycle` / :mod:`~w3sipagent.agent.watchdog`: tasks, the
  outcome, the live session; maximum duration and caller silence (pure).

Audio path (no transcoding for G.711)::

    call frame sink ─ payload ─ InboundConverter (identity for PCMU↔audio/pcmu) ─ session.send_audio
    session AudioDelta ─ OutboundConverter (framing only) ─ PlayoutQueue ─ pacer tick ─ RTP

Every end fills the CDR (:class:`~w3sipagent.records.cdr.CallRecord`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from w3sipagent.agent.actions import CallActions
from w3sipagent.agent.bargein import BargeIn, BargeInPolicy
from w3sipagent.agent.latency import LatencyTracker
from w3sipagent.agent.lifecycle import BridgeLife, LiveSlot, Outcome
from w3sipagent.agent.media import BridgeMedia
from w3sipagent.agent.options import (
    BridgeOptions,
    EarlySession,
    SessionFactory,
    bridge_session_config,
    choose_ai_format,
    codec_of,
)
from w3sipagent.agent.playout import PlayoutItem, PlayoutQueue
from w3sipagent.agent.supervisor import SessionSupervisor
from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.agent.turns import Turns
from w3sipagent.agent.watchdog import CallWatchdog
from w3sipagent.ai.session import (
    AIEvent,
    AISession,
    AISessionConfig,
    CallerTranscript,
    HistoryItem,
    ToolCall,
)
from w3sipagent.asyncio.call_api import (
    CallEnded,
    CallLike,
    DtmfReceived,
    HoldChanged,
    MediaChanged,
    MediaTimeout,
    TransferOutcome,
)
from w3sipagent.codecs.base import Codec
from w3sipagent.errors import CodecError
from w3sipagent.records.cdr import CallRecord, Disposition

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
        self._clock = clock
        info = call.info
        self.cdr = cdr = cdr or CallRecord(
            call_id=info.call_id,
            caller=info.from_uri,
            callee=info.to_uri,
            request_uri=info.request_uri,
            source=f"{info.source[0]}:{info.source[1]}",
        )
        self.ai_format = choose_ai_format(call.media.encoding)
        self.session_config = config = bridge_session_config(
            session_config, self.ai_format, self.tools, opts.min_interrupt_ms
        )
        ptime = call.media.ptime_ms
        self.playout = PlayoutQueue(ptime, clock=clock, on_sent=self._on_frame_sent)
        kick = getattr(call, "kick_audio", None)  # optional in CallLike: talk-spurt kick
        if callable(kick):
            self.playout.on_ready = kick
        self.latency = LatencyTracker()
        self._life = life = BridgeLife()
        self._live = live = LiveSlot()
        self._call_gone = False
        self._on_hold = False
        self._not_understood = 0  # caller turns in a row (agent policy handover_…)
        self._handed_over = False
        silence = opts.caller_silence_timeout if config.detects_turns else None
        self._watchdog = watchdog = CallWatchdog(opts.max_duration, silence)
        self._media = media = BridgeMedia(
            info.call_id,
            self.ai_format,
            self.playout,
            live,
            life,
            cdr,
            ptime_ms=ptime,
            max_held_ms=opts.max_held_audio_ms,
            clock=clock,
        )
        policy = BargeInPolicy(
            opts.min_interrupt_ms,
            backend_cancels=config.interrupts_itself,
            enabled=opts.barge_in,
        )
        self._turns = turns = Turns(
            policy=policy,
            playout=self.playout,
            media=media,
            latency=self.latency,
            cdr=cdr,
            watchdog=watchdog,
            live=live,
            life=life,
            clock=clock,
        )
        self._actions = actions = CallActions(
            call,
            opts,
            self.tools,
            cdr,
            turns=turns,
            media=media,
            live=live,
            life=life,
            touch=watchdog.touch,
            clock=clock,
        )
        self._supervisor = SessionSupervisor(
            session_factory,
            config,
            opts,
            cdr,
            call_id=info.call_id,
            media=media,
            turns=turns,
            live=live,
            life=life,
            on_event=self._on_ai_event,
            on_unavailable=actions.fallback,
            early=early,
        )

    # ================================================================ what others see

    @property
    def session(self) -> AISession | None:
        """The live AI session (None while connecting, reconnecting or in fallback)."""
        return self._live.session

    @property
    def sessions(self) -> list[AISession]:
        """Every session this call opened, in order."""
        return self._supervisor.sessions

    @property
    def ended(self) -> bool:
        """The call's outcome is decided."""
        return self._life.ended

    @property
    def codec(self) -> Codec | None:
        """The call's codec (None before :meth:`run` set the media up)."""
        return self._media.codec

    @property
    def partial_transcript(self) -> list[dict[str, object]]:
        """What is being said and not final yet (speaker, text so far, at, item_id)."""
        return self._turns.partial.lines()

    @property
    def barge_ins(self) -> list[BargeIn]:
        """Every cut of the agent's audio, in order."""
        return self._turns.barge_ins

    def history(self) -> tuple[HistoryItem, ...]:
        """The conversation so far (final transcripts), to re-seed a new session."""
        return self._supervisor.history()

    async def barge_in(self, session: AISession, speech_at: float | None = None) -> BargeIn:
        """Cut the agent now: flush playout, truncate at what was heard, cancel if needed."""
        return await self._turns.barge_in(session, speech_at)

    # ToolContext (the tools run in :class:`CallActions`; these are for other callers)

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
        return await self._actions.transfer_to(
            destination, uri, reason, wait_quiet=wait_quiet, disposition=disposition
        )

    async def end_call(self, reason: str) -> None:
        """Hang up once the current response has been heard (returns at once)."""
        await self._actions.end_call(reason)

    async def send_dtmf(self, digits: str) -> None:
        """Send DTMF on the call."""
        await self._actions.send_dtmf(digits)

    def hang_up(self, reason: str) -> None:
        """End the call now (an operator's hang-up): the agent's side sends the BYE, the
        CDR says ``completed``, ended by the agent, with ``reason``."""
        self._life.finish(Outcome(Disposition.COMPLETED, "agent", reason))

    # ================================================================ life cycle

    async def run(self) -> CallRecord:
        """Bridge the call until it ends; returns the filled CDR. Never raises for call
        or AI failures (they are the CDR's disposition)."""
        life = self._life
        life.start()
        self._watchdog.start(self._clock())
        if self.cdr.answer_at is None:
            self.cdr.answered()
        self.cdr.ai_format = self.ai_format.value
        self.cdr.codec = self.call.media.encoding
        try:
            self._media.setup(self.call.media)
        except CodecError as exc:
            log.error("call %s: cannot bridge codec: %s", self.call.info.call_id, exc)
            life.finish(Outcome(Disposition.FAILED, "system", f"codec: {exc}"))
        else:
            self.call.set_frame_sink(self._media.caller_frame)
            self.call.set_frame_source(self.playout)
            life.spawn(self._call_events(), "call-events")
            life.spawn(self._housekeeping(), "housekeeping")
            life.spawn(self._converse(), "converse")
        try:
            await life.wait()
        finally:
            await self._teardown()
        return self.cdr

    async def _teardown(self) -> None:
        outcome = self._life.conclude()
        self._turns.stop()
        self._actions.stop()
        await self._life.cancel_tasks()
        self.playout.clear()
        if outcome.hangup and not self._call_gone:
            try:
                await asyncio.wait_for(
                    self.call.hangup(outcome.reason), self.options.hangup_timeout
                )
            except Exception as exc:  # the CDR still gets written
                log.warning("call %s: hangup failed: %r", self.call.info.call_id, exc)
        self.call.set_frame_sink(None)
        self.call.set_frame_source(None)
        await self._supervisor.close_all()
        cdr = self.cdr
        try:
            cdr.rtp = dict(self.call.stats())
        except Exception as exc:
            log.warning("call %s: no RTP statistics: %r", self.call.info.call_id, exc)
        cdr.turn_latencies_ms = self.latency.totals_ms()
        if self._media.recording:
            cdr.recording_path = await self._media.close_recording()
        cdr.finish(
            outcome.disposition,
            hangup_by=outcome.by,
            reason=outcome.reason,
            sip_code=outcome.sip_code,
        )

    async def _converse(self) -> None:
        opts = self.options
        announce: asyncio.Task[None] | None = None
        if opts.recording_path is not None:
            announce = self._life.spawn(
                self._media.announce_and_record(opts.announcement, opts.recording_path),
                "announce",
            )
        if not opts.ai_enabled:
            if announce is not None:
                await announce
            await self._actions.fallback(opts.ai_disabled_reason)
            return
        ok = await self._supervisor.open()
        if announce is not None:
            await announce
        if self.ended:
            return
        if not ok:
            await self._actions.fallback("AI unavailable")
            return
        await self._supervisor.greet(opts.greeting)

    async def _on_ai_event(self, session: AISession, ev: AIEvent) -> None:
        if isinstance(ev, ToolCall):
            self._life.spawn(self._actions.run_tool(session, ev), f"tool-{ev.name}")
        else:
            await self._turns.on_event(session, ev)
            if isinstance(ev, CallerTranscript) and ev.final:
                self._caller_turn(ev.text)

    def _caller_turn(self, text: str) -> None:
        """The agent policy ``handover_when_not_understood``: caller turns in a row that were
        not understood (an empty or failed transcription) hand the caller over to
        ``options.handover_uri`` once there are ``options.handover_after`` of them."""
        uri = self.options.handover_uri
        if uri is None or self._handed_over:
            return
        if text.strip():
            self._not_understood = 0
            return
        self._not_understood += 1
        self.cdr.add_event("not_understood", in_a_row=self._not_understood)
        if self._not_understood >= self.options.handover_after:
            self._handed_over = True
            self._life.spawn(
                self._actions.transfer_to("handover", uri, "caller not understood"), "handover"
            )

    def _on_frame_sent(self, payload: bytes, item: PlayoutItem | None, now: float) -> None:
        """Called by the playout queue for every frame handed to the pacer."""
        self._turns.frame_sent(item, now)
        self._media.agent_frame_sent(payload, now)

    # ================================================================ the call's side

    async def _call_events(self) -> None:
        async for ev in self.call.events():
            if isinstance(ev, DtmfReceived):
                self._actions.dtmf(ev.digit)
            elif isinstance(ev, MediaTimeout):
                self._life.finish(Outcome(Disposition.TIMEOUT, "system", "rtp_timeout"))
            elif isinstance(ev, HoldChanged):
                self._on_hold = ev.on_hold
                self.cdr.add_event("hold", on_hold=ev.on_hold)
            elif isinstance(ev, MediaChanged):
                if not self._media.is_current(ev.media):
                    self._media.change(ev.media)
            elif isinstance(ev, CallEnded):
                self._call_gone = True
                self._actions.call_ended(ev)
                return
        self._call_gone = True
        self._life.finish(
            Outcome(Disposition.FAILED, "system", "call event stream ended", hangup=False)
        )

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.options.housekeeping_interval)
            busy = (
                self._turns.busy
                or self._actions.transferring
                or self._on_hold
                or self._live.session is None
            )
            reason = self._watchdog.check(self._clock(), busy)
            if reason is not None:
                self._life.finish(Outcome(Disposition.TIMEOUT, "system", reason))
                return
