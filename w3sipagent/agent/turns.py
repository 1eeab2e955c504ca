"""The conversation's turns: the AI's content events played, transcribed, timed and cut.

:class:`Turns` takes the content events of the live session (audio, responses, the
caller's speech, transcripts) through the :class:`~w3sipagent.ai.session.AISession`
interface only: agent audio goes to the playout queue, transcripts and usage to the CDR,
turn timings to the latency tracker. Barge-in (``SpeechStarted`` while the agent is
audible) follows :class:`~w3sipagent.agent.bargein.BargeInPolicy`: the playout queue is
cleared, so the next pacer tick sends silence; the item being heard is truncated at the
milliseconds actually handed to the pacer; the response is cancelled unless the back end
stops it itself; late deltas of it are dropped. With a guard (``min_interrupt_ms``) the
cut waits until the caller spoke that long. A back end that owns the turns
(``AISessionConfig.playout_lead_ms``) sends no caller-speech events and takes no truncate:
its real-time audio is played in step, the queue trimmed to that lead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from w3sipagent.agent.bargein import BargeIn, BargeInPolicy, Reaction
from w3sipagent.agent.latency import LatencyTracker
from w3sipagent.agent.lifecycle import BridgeLife, LiveSlot
from w3sipagent.agent.media import BridgeMedia
from w3sipagent.agent.partial import PartialTranscript
from w3sipagent.agent.playout import PlayoutItem, PlayoutQueue
from w3sipagent.agent.watchdog import CallWatchdog
from w3sipagent.ai.session import (
    AgentTranscript,
    AIEvent,
    AISession,
    AudioDelta,
    AudioDone,
    CallerTranscript,
    ItemTruncated,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    TurnStages,
    UsageUpdated,
)
from w3sipagent.records.cdr import CallRecord

__all__ = ["Turns"]


class Turns:
    """Turn-taking of one call (see the module docstring)."""

    def __init__(
        self,
        *,
        policy: BargeInPolicy,
        playout: PlayoutQueue,
        media: BridgeMedia,
        latency: LatencyTracker,
        cdr: CallRecord,
        watchdog: CallWatchdog,
        live: LiveSlot,
        life: BridgeLife,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.playout = playout
        self.latency = latency
        self.barge_ins: list[BargeIn] = []
        self.partial = PartialTranscript(cdr.offset)
        """Utterances not final yet (the console's live view shows them)."""
        self._media = media
        self._cdr = cdr
        self._watchdog = watchdog
        self._live = live
        self._life = life
        self._clock = clock
        self._turn_stale: frozenset[str | None] = frozenset()
        self._speech_offsets: dict[str, float] = {}
        self._guard: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ state

    @property
    def active_response(self) -> str | None:
        return self.policy.active_response

    @property
    def audible(self) -> bool:
        """The agent is speaking or about to (queued frames, an active response, an item
        not heard completely)."""
        return (
            self.playout.busy
            or self.policy.active_response is not None
            or self.playout.current() is not None
        )

    @property
    def engaged(self) -> bool:
        """The agent is audible or a caller turn waits for its answer."""
        return self.audible or self.latency.pending is not None

    @property
    def quiet(self) -> bool:
        """No response is active and nothing waits to be played."""
        return self.policy.active_response is None and not self.playout.busy

    @property
    def busy(self) -> bool:
        """Someone is speaking or about to (the caller's silence does not count now)."""
        return (
            self.policy.caller_speaking
            or self.playout.busy
            or self.policy.active_response is not None
        )

    def reset(self) -> None:
        """The session was lost: its audio and response are gone."""
        self.playout.clear()
        self._media.drop_agent_audio()
        self.policy.forget_response()
        self.partial.clear()

    def stop(self) -> None:
        """The bridge ends: no guard fires any more."""
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    # ------------------------------------------------------------ events

    async def on_event(self, session: AISession, ev: AIEvent) -> None:
        """One content event of the live ``session`` (others are ignored)."""
        self.partial.feed(ev)
        if isinstance(ev, AudioDelta):
            if self.policy.dropped(ev.response_id):
                return
            if self.latency.pending is not None:
                self.latency.audio_delta(self._clock())
            self.playout.push(self._media.agent_audio(ev.audio), ev.item_id, ev.response_id)
            lead = session.config.playout_lead_ms
            if lead is not None:  # real-time output: play it in step, never late
                dropped = self.playout.trim(max(1, lead // self.playout.frame_ms))
                if dropped:
                    self._cdr.add_event("playout_trimmed", frames=dropped)
        elif isinstance(ev, AudioDone):
            if not self.policy.dropped(ev.response_id):
                self.playout.push(self._media.agent_audio_end(), ev.item_id, ev.response_id)
                self.playout.mark_done(ev.item_id)
        elif isinstance(ev, ResponseStarted):
            self.policy.response_started(ev.response_id)
            self.latency.response_started(self._clock())
        elif isinstance(ev, UsageUpdated):
            self._cdr.usage.add(ev.usage)
        elif isinstance(ev, ResponseDone):
            if ev.usage is not None:
                self._cdr.usage.add(ev.usage)
            self.policy.response_done(ev.response_id)
            if ev.status == "failed":
                self._cdr.add_event("response_failed", reason=ev.reason)
        elif isinstance(ev, SpeechStarted):
            await self._speech_started(session, ev)
        elif isinstance(ev, SpeechStopped):
            self._speech_stopped()
        elif isinstance(ev, CallerTranscript):
            if ev.final and ev.text.strip():
                at = self._speech_offsets.pop(ev.item_id, None)
                self._cdr.add_transcript("caller", ev.text.strip(), at=at, item_id=ev.item_id)
        elif isinstance(ev, TurnStages):
            self.latency.stages(ev.times)
        elif isinstance(ev, ItemTruncated):
            self._cdr.add_event(
                "truncated",
                item_id=ev.item_id,
                heard_ms=ev.audio_end_ms,
                kept=ev.text,
                full=ev.full_text,
                spans=[[round(end, 1), text] for end, text in ev.spans],
            )
        elif isinstance(ev, AgentTranscript) and ev.final and ev.text.strip():
            self._cdr.add_transcript("agent", ev.text.strip(), item_id=ev.item_id)

    def frame_sent(self, item: PlayoutItem | None, now: float) -> None:
        """A frame went to the caller: the first one of an answer closes the turn."""
        if (
            item is not None
            and self.latency.pending is not None
            and item.response_id not in self._turn_stale
        ):
            turn = self.latency.frame_sent(now)
            if turn is not None:
                stages = turn.stages_ms()
                extra = {"stages": stages} if stages else {}
                self._cdr.add_event("turn", **turn.breakdown(), **extra)

    # ------------------------------------------------------------ caller speech

    async def _speech_started(self, session: AISession, ev: SpeechStarted) -> None:
        now = self._clock()
        self._watchdog.touch(now)
        self.latency.speech_started()
        if ev.item_id:
            self._speech_offsets[ev.item_id] = self._cdr.offset()
            if len(self._speech_offsets) > 64:
                self._speech_offsets.pop(next(iter(self._speech_offsets)))
        reaction = self.policy.speech_started(self.audible)
        if reaction is Reaction.GUARD:
            loop = asyncio.get_running_loop()
            delay = self.policy.guard_ms / 1000.0
            self._guard = loop.call_later(delay, self._guard_fired, session, now)
        elif reaction is Reaction.CUT:
            await self.barge_in(session, now)

    def _guard_fired(self, session: AISession, speech_at: float) -> None:
        self._guard = None
        if self.policy.guard_elapsed(self._live.is_live(session) and self.audible):
            self._life.spawn(self.barge_in(session, speech_at), "barge-in")

    def _speech_stopped(self) -> None:
        now = self._clock()
        self._watchdog.touch(now)
        if self.policy.speech_stopped():  # shorter than the guard: not an interruption
            if self._guard is not None:
                self._guard.cancel()
                self._guard = None
            self._cdr.add_event("false_interruption")
        last = self.playout.last_item
        self._turn_stale = frozenset(
            {self.policy.active_response, last.response_id if last is not None else None}
        )
        self.latency.speech_stopped(now)

    async def barge_in(self, session: AISession, speech_at: float | None = None) -> BargeIn:
        """Cut the agent now: flush playout, truncate at what was heard, cancel if needed."""
        cut_at = self._clock()
        item = self.playout.current()
        dropped = self.playout.clear()
        self._media.drop_agent_audio()
        cut = self.policy.cut(item, session.truncates_itself)
        record = BargeIn(
            speech_at if speech_at is not None else cut_at,
            cut_at,
            cut.item_id,
            cut.heard_ms,
            dropped,
            cut.response_id is not None,
        )
        self.barge_ins.append(record)
        self._cdr.add_event(
            "barge_in", item_id=record.item_id, heard_ms=cut.heard_ms, dropped_frames=dropped
        )
        if cut.heard_ms is not None and cut.item_id is not None:
            await session.truncate(cut.item_id, cut.heard_ms)
        if cut.response_id is not None:
            await session.cancel_response()
            self.policy.cancelled(cut.response_id)
        return record
