"""The sans-IO core of a Realtime session, shared by the WebSocket and WebRTC clients.

:class:`RealtimeProtocol` turns calls of the :class:`~w3sipagent.ai.session.AISession`
API into GA client events (drained with :meth:`RealtimeProtocol.take_outgoing`) and
GA server events into :mod:`w3sipagent.ai.session` events (returned by
:meth:`RealtimeProtocol.receive`). It does no I/O and reads no clock. It keeps the
protocol hygiene rules:

- never a ``response.create`` while a response is active or requested: one create
  waits and is sent after ``response.done``; nor between the end of a caller turn
  (``speech_stopped`` with ``create_response``, or ``timeout_triggered``) and the
  ``response.created`` of the response the server makes for it: a create asked for in
  that window is dropped when that response starts (it answers the turn and sees every
  item), or sent by :meth:`RealtimeProtocol.auto_response_overdue` if none comes;
- never an ``input_audio_buffer.commit`` of less than ``min_commit_ms``;
- ``conversation.item.truncate`` clamped to the audio received for the item;
- no deltas of a response once it was cancelled, truncated or interrupted;
- caller audio that arrives before ``session.updated`` is held, then flushed in order;
- never two ``response.cancel`` for one response; no key fragment in error texts.

The file runs past 500 lines because the state machine, one handler per GA event, reads
best in one place.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any, Literal

from w3sipagent.ai import session as ai
from w3sipagent.ai.redaction import strip_masked_keys
from w3sipagent.realtime import events as ev
from w3sipagent.realtime.session_object import session_object

log = logging.getLogger(__name__)

#: Error codes after which the session cannot be used any more.
FATAL_ERROR_CODES = frozenset({"session_expired"})

_ITEMS_TRACKED = 256  # per-item bookkeeping kept for the most recent items only


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _ITEMS_TRACKED:
        table.popitem(last=False)


@dataclass(slots=True)
class _HistoryEntry:
    role: Literal["user", "assistant", "system"]
    text: str | None


class RealtimeProtocol:
    """State of one Realtime session (one connection), without I/O.

    Feed server events to :meth:`receive`; send what :meth:`take_outgoing` returns.
    ``wire_audio`` False means caller audio travels outside the event stream (WebRTC
    track): :meth:`append_audio` then only counts it for commit accounting.
    """

    def __init__(
        self,
        config: ai.AISessionConfig,
        *,
        wire_audio: bool = True,
        min_commit_ms: int = 100,
        max_held_audio_ms: int = 10_000,
        history_limit: int = 20,
        append_ms: int = 0,
    ) -> None:
        self.config = config
        self.wire_audio = wire_audio
        self.append_ms = append_ms
        """Caller audio goes out in appends of at least this many ms (0: each chunk as it
        comes, i.e. every 20 ms frame); any other event sends what is gathered first."""
        self._gathered: list[bytes] = []
        self._gathered_ms = 0.0
        self.min_commit_ms = min_commit_ms
        self.max_held_audio_ms = max_held_audio_ms
        self.history_limit = history_limit
        self.ready = False
        self.setup_error: ev.ErrorInfo | None = None
        self.session: ev.SessionInfo | None = None
        self.rate_limits: tuple[ev.RateLimit, ...] = ()
        self.usage_total = ai.Usage()
        self._outbox: list[ev.ClientEvent] = []
        self._held: deque[bytes] = deque()
        self._held_ms = 0
        self._awaiting_update = True
        self._seq = 0
        self._appended_ms = 0  # caller audio since the last commit / clear
        self._active: set[str] = set()  # response ids between created and done
        self._create_in_flight: str | None = None  # event_id of our unanswered response.create
        self._pending_create: tuple[str | None] | None = None  # one waiting create (instructions)
        self._cancel_when_created = False
        self._cancelled: deque[str] = deque(maxlen=32)
        self._cancel_sent: deque[str] = deque(maxlen=32)
        self._item_response: OrderedDict[str, str] = OrderedDict()
        self._item_audio_bytes: OrderedDict[str, int] = OrderedDict()
        self._auto_expected = False  # the server is about to answer a caller turn by itself
        self._tool_calls_seen: deque[str] = deque(maxlen=64)
        self._speaking = False
        self._seed = list(config.history)
        self._items: OrderedDict[str, _HistoryEntry] = OrderedDict()

    # ------------------------------------------------------------ helpers

    def _send(self, event: ev.ClientEvent) -> str:
        if self._gathered:  # caller audio stays ahead of what follows it (a commit...)
            self._send_gathered()
        eid = self._next_event_id()
        self._outbox.append(replace(event, event_id=eid))
        return eid

    def _next_event_id(self) -> str:
        self._seq += 1
        return f"w3s_{self._seq}"

    def take_outgoing(self) -> list[ev.ClientEvent]:
        """The client events to send now, in order (clears the queue)."""
        out, self._outbox = self._outbox, []
        return out

    @property
    def output_format(self) -> ai.AudioFormat:
        return self.config.output_format

    @property
    def response_active(self) -> bool:
        """True while a response is in progress or our request for one is unanswered."""
        return bool(self._active) or self._create_in_flight is not None

    @property
    def awaiting_auto_response(self) -> bool:
        """A caller turn ended and the server's own response for it has not started yet."""
        return self._auto_expected

    @property
    def idle(self) -> bool:
        """No response active or waiting and the caller is not speaking: a safe moment to swap."""
        return (
            not self.response_active
            and self._pending_create is None
            and not self._speaking
            and not self._auto_expected
        )

    @property
    def expires_at(self) -> int | None:
        """Unix time at which the server ends the session (60 minutes in GA)."""
        return self.session.expires_at if self.session else None

    def is_cancelled(self, response_id: str) -> bool:
        """True for a response whose late output is dropped."""
        return response_id in self._cancelled

    # ------------------------------------------------------------ client actions

    def configure(self, *, send_update: bool = True) -> None:
        """Queue the session.update (if ``send_update``) and the history items to seed."""
        self._awaiting_update = send_update
        if send_update:
            self._send(ev.SessionUpdate(session=session_object(self.config)))
        for h in self._seed:
            self._send(ev.ConversationItemCreate(item=ev.Item.message(h.role, h.text)))

    def append_audio(self, audio: bytes) -> None:
        """Caller audio in the input format: appended now, or held until the session is ready."""
        if not audio:
            return
        if not self.ready:
            self._held.append(audio)
            self._held_ms += self.config.input_format.duration_ms(len(audio))
            while self._held_ms > self.max_held_audio_ms and len(self._held) > 1:
                dropped = self._held.popleft()
                self._held_ms -= self.config.input_format.duration_ms(len(dropped))
            return
        self._appended_ms += self.config.input_format.duration_ms(len(audio))
        if not self.wire_audio:
            return
        if self.append_ms > 0:
            self._gathered.append(audio)
            self._gathered_ms += self.config.input_format.duration_ms(len(audio))
            if self._gathered_ms >= self.append_ms:
                self._send_gathered()
            return
        # made with its id (no dataclasses.replace): this runs every 20 ms of every call
        self._outbox.append(ev.InputAudioBufferAppend(audio=audio, event_id=self._next_event_id()))

    def _send_gathered(self) -> None:
        audio = b"".join(self._gathered)
        self._gathered.clear()
        self._gathered_ms = 0.0
        self._outbox.append(ev.InputAudioBufferAppend(audio=audio, event_id=self._next_event_id()))

    def take_held_audio(self) -> list[bytes]:
        """Audio held before the session was ready (for transports that send it themselves)."""
        held = list(self._held)
        self._held.clear()
        self._held_ms = 0
        return held

    def create_response(self, instructions: str | None = None) -> None:
        """Ask for a response; waits (one at most) while another is active.

        With no turn detection the input buffer is committed first when it holds at
        least ``min_commit_ms`` of audio.
        """
        if self.response_active or self._auto_expected:
            self._pending_create = (instructions,)
            return
        if self.config.turn_detection is None and self._appended_ms >= self.min_commit_ms:
            self._send(ev.InputAudioBufferCommit())
            self._appended_ms = 0
        body = {"instructions": instructions} if instructions else None
        self._create_in_flight = self._send(ev.ResponseCreate(response=body))

    def auto_response_overdue(self) -> None:
        """The server did not start the response expected after a caller turn: stop waiting.

        A create asked for meanwhile is sent now. The runner calls this after a timeout.
        """
        if not self._auto_expected:
            return
        self._auto_expected = False
        self._send_pending_create()

    def _send_pending_create(self) -> None:
        if self._pending_create is not None and not self.response_active:
            (instructions,) = self._pending_create
            self._pending_create = None
            self.create_response(instructions)

    def commit(self) -> bool:
        """Commit the input buffer if it holds at least ``min_commit_ms``; True if sent."""
        if self._appended_ms < self.min_commit_ms:
            return False
        self._send(ev.InputAudioBufferCommit())
        self._appended_ms = 0
        return True

    def add_message(
        self, text: str, role: Literal["user", "system", "assistant"] = "system"
    ) -> None:
        """Add a text item to the conversation."""
        self._send(ev.ConversationItemCreate(item=ev.Item.message(role, text)))

    def send_tool_result(self, call_id: str, output: str, *, respond: bool = True) -> None:
        """Return a tool's output and, with ``respond``, ask for a response about it."""
        self._send(ev.ConversationItemCreate(item=ev.Item.function_call_output(call_id, output)))
        if respond:
            self.create_response()

    def cancel_response(self) -> bool:
        """Cancel the active response (none: nothing is sent) and drop a waiting create.

        Never twice for one response; True when a ``response.cancel`` was queued."""
        self._pending_create = None
        sent = False
        if self._active:
            for rid in sorted(self._active):
                self._mark_cancelled(rid)
                if rid not in self._cancel_sent:
                    self._cancel_sent.append(rid)
                    self._send(ev.ResponseCancel(response_id=rid))
                    sent = True
        elif self._create_in_flight is not None or self._auto_expected:
            self._cancel_when_created = True  # cancel the response about to start
        return sent

    def drop_response(self, response_id: str) -> None:
        """Drop the late output of ``response_id`` (its playout was cut elsewhere)."""
        self._mark_cancelled(response_id)

    def clear_output_audio(self) -> None:
        """WebRTC/SIP: drop the audio the server has not played yet (after a cancel)."""
        self._send(ev.OutputAudioBufferClear())

    def truncate(self, item_id: str, audio_end_ms: int) -> int | None:
        """Queue a truncate clamped to the item's received audio; returns the ms sent, or None.

        Nothing is sent for an unknown item or when the caller heard all of a finished item.
        The item's response is treated as cancelled from now on.
        """
        received = self._item_audio_bytes.get(item_id)
        if received is None:
            return None
        rid = self._item_response.get(item_id)
        item_ms = self.output_format.duration_ms(received)
        end_ms = max(0, min(audio_end_ms, item_ms))
        finished = rid is None or rid not in self._active
        if rid is not None:
            self._mark_cancelled(rid)
        if finished and end_ms >= item_ms:
            return None
        self._send(ev.ConversationItemTruncate(item_id=item_id, audio_end_ms=end_ms))
        entry = self._items.get(item_id)
        if entry is not None and entry.text and item_ms > 0:
            entry.text = entry.text[: len(entry.text) * end_ms // item_ms]
        return end_ms

    def _mark_cancelled(self, response_id: str) -> None:
        if response_id not in self._cancelled:
            self._cancelled.append(response_id)

    # ------------------------------------------------------------ history

    def history(self) -> tuple[ai.HistoryItem, ...]:
        """Recent conversation as text (seed + transcripts), at most ``history_limit`` items."""
        items = [ai.HistoryItem(h.role, h.text) for h in self._seed]
        items += [ai.HistoryItem(e.role, e.text) for e in self._items.values() if e.text]
        return tuple(items[-self.history_limit :])

    def _note_item(self, item: ev.Item) -> None:
        if item.type != "message" or item.id is None or item.role not in ("user", "assistant"):
            return
        if item.id not in self._items:
            role: Literal["user", "assistant"] = "user" if item.role == "user" else "assistant"
            self._items[item.id] = _HistoryEntry(role, item.text or None)
            while len(self._items) > 4 * self.history_limit:
                self._items.popitem(last=False)

    def _set_text(self, item_id: str, role: Literal["user", "assistant"], text: str) -> None:
        entry = self._items.get(item_id)
        if entry is None:
            self._items[item_id] = _HistoryEntry(role, text)
        else:
            entry.text = text

    # ------------------------------------------------------------ server events

    def receive(self, event: ev.ServerEvent) -> list[ai.AIEvent]:
        """Apply one server event; returns the AI events it yields (often none)."""
        out: list[ai.AIEvent] = []
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            handler(event, out)
        return out

    def _become_ready(self, out: list[ai.AIEvent]) -> None:
        if self.ready:
            return
        self.ready = True
        held = self.take_held_audio()
        if self.wire_audio:
            for chunk in held:
                self.append_audio(chunk)
        else:
            self._held.extend(held)  # the transport takes them with take_held_audio()
        out.append(ai.SessionReady())

    def _on_SessionCreated(self, e: ev.SessionCreated, out: list[ai.AIEvent]) -> None:
        self.session = e.session
        if not self._awaiting_update:
            self._become_ready(out)

    def _on_SessionUpdated(self, e: ev.SessionUpdated, out: list[ai.AIEvent]) -> None:
        self.session = e.session
        self._become_ready(out)

    def _on_InputAudioBufferSpeechStarted(
        self, e: ev.InputAudioBufferSpeechStarted, out: list[ai.AIEvent]
    ) -> None:
        self._speaking = True
        td = self.config.turn_detection
        if td is not None and td.interrupt_response:
            for rid in self._active:  # the server cancels it; drop its late deltas now
                self._mark_cancelled(rid)
        if td is not None and td.create_response:
            self._pending_create = None  # the turn will bring its own response
        out.append(ai.SpeechStarted(e.audio_start_ms, e.item_id))

    def _on_InputAudioBufferSpeechStopped(
        self, e: ev.InputAudioBufferSpeechStopped, out: list[ai.AIEvent]
    ) -> None:
        self._speaking = False
        td = self.config.turn_detection
        if td is not None and td.create_response and (td.interrupt_response or not self._active):
            self._auto_expected = True
        out.append(ai.SpeechStopped(e.audio_end_ms, e.item_id))

    def _on_InputAudioBufferTimeoutTriggered(
        self, e: ev.InputAudioBufferTimeoutTriggered, out: list[ai.AIEvent]
    ) -> None:
        # the silent audio is committed and the server makes a response by itself
        log.info(
            "caller silent for %d ms (idle_timeout_ms): the server prompts them",
            e.audio_end_ms - e.audio_start_ms,
        )
        self._auto_expected = True

    def _on_InputAudioBufferCommitted(
        self, e: ev.InputAudioBufferCommitted, out: list[ai.AIEvent]
    ) -> None:
        self._appended_ms = 0
        if e.item_id not in self._items:
            self._items[e.item_id] = _HistoryEntry("user", None)

    def _on_InputAudioBufferCleared(
        self, e: ev.InputAudioBufferCleared, out: list[ai.AIEvent]
    ) -> None:
        self._appended_ms = 0

    def _on_ConversationItemAdded(self, e: ev.ConversationItemAdded, out: list[ai.AIEvent]) -> None:
        self._note_item(e.item)

    def _on_ConversationItemCreated(
        self, e: ev.ConversationItemCreated, out: list[ai.AIEvent]
    ) -> None:
        self._note_item(e.item)

    def _on_InputAudioTranscriptionDelta(
        self, e: ev.InputAudioTranscriptionDelta, out: list[ai.AIEvent]
    ) -> None:
        if e.delta:
            out.append(ai.CallerTranscript(e.item_id, e.delta, final=False))

    def _on_InputAudioTranscriptionCompleted(
        self, e: ev.InputAudioTranscriptionCompleted, out: list[ai.AIEvent]
    ) -> None:
        self._set_text(e.item_id, "user", e.transcript)
        out.append(ai.CallerTranscript(e.item_id, e.transcript, final=True))

    def _on_InputAudioTranscriptionFailed(
        self, e: ev.InputAudioTranscriptionFailed, out: list[ai.AIEvent]
    ) -> None:
        err = e.error or ev.ErrorInfo()
        log.warning("input transcription failed for %s: %s %s", e.item_id, err.code, err.message)
        # a turn not understood (the agent policy handover_when_not_understood counts them)
        out.append(ai.CallerTranscript(e.item_id, "", final=True))

    def _on_ResponseCreated(self, e: ev.ResponseCreated, out: list[ai.AIEvent]) -> None:
        rid = e.response.id
        self._active.add(rid)
        if self._auto_expected and self._create_in_flight is None:
            self._auto_expected = False  # the server's answer to the turn: it sees every item
            if self._pending_create is not None:
                log.debug("dropping a waiting response.create: the turn's response answers")
                self._pending_create = None
        self._create_in_flight = None
        if self._cancel_when_created:
            self._cancel_when_created = False
            self._mark_cancelled(rid)
            self._send(ev.ResponseCancel(response_id=rid))
        out.append(ai.ResponseStarted(rid))

    def _on_ResponseOutputItemAdded(
        self, e: ev.ResponseOutputItemAdded, out: list[ai.AIEvent]
    ) -> None:
        if e.item.id is not None:
            _remember(self._item_response, e.item.id, e.response_id)
        self._note_item(e.item)

    def _on_ResponseOutputItemDone(
        self, e: ev.ResponseOutputItemDone, out: list[ai.AIEvent]
    ) -> None:
        item = e.item
        if item.type == "function_call" and item.status == "completed" and item.call_id:
            self._tool_call(e.response_id, item.call_id, item.name or "", item.arguments or "", out)

    def _on_ResponseOutputAudioDelta(
        self, e: ev.ResponseOutputAudioDelta, out: list[ai.AIEvent]
    ) -> None:
        if e.response_id in self._cancelled:
            return
        if e.item_id not in self._item_response:
            _remember(self._item_response, e.item_id, e.response_id)
        _remember(
            self._item_audio_bytes,
            e.item_id,
            self._item_audio_bytes.get(e.item_id, 0) + len(e.delta),
        )
        out.append(ai.AudioDelta(e.response_id, e.item_id, e.delta))

    def _on_ResponseOutputAudioDone(
        self, e: ev.ResponseOutputAudioDone, out: list[ai.AIEvent]
    ) -> None:
        if e.response_id not in self._cancelled:
            out.append(ai.AudioDone(e.response_id, e.item_id))

    def _on_ResponseOutputAudioTranscriptDelta(
        self, e: ev.ResponseOutputAudioTranscriptDelta, out: list[ai.AIEvent]
    ) -> None:
        if e.response_id not in self._cancelled and e.delta:
            out.append(ai.AgentTranscript(e.response_id, e.item_id, e.delta, final=False))

    def _on_ResponseOutputAudioTranscriptDone(
        self, e: ev.ResponseOutputAudioTranscriptDone, out: list[ai.AIEvent]
    ) -> None:
        entry = self._items.get(e.item_id)
        if entry is None or entry.text is None or e.response_id not in self._cancelled:
            self._set_text(e.item_id, "assistant", e.transcript)
        out.append(ai.AgentTranscript(e.response_id, e.item_id, e.transcript, final=True))

    def _on_ResponseOutputTextDelta(
        self, e: ev.ResponseOutputTextDelta, out: list[ai.AIEvent]
    ) -> None:
        if e.response_id not in self._cancelled and e.delta:
            out.append(ai.AgentTranscript(e.response_id, e.item_id, e.delta, final=False))

    def _on_ResponseOutputTextDone(
        self, e: ev.ResponseOutputTextDone, out: list[ai.AIEvent]
    ) -> None:
        self._set_text(e.item_id, "assistant", e.text)
        out.append(ai.AgentTranscript(e.response_id, e.item_id, e.text, final=True))

    def _on_ResponseFunctionCallArgumentsDone(
        self, e: ev.ResponseFunctionCallArgumentsDone, out: list[ai.AIEvent]
    ) -> None:
        self._tool_call(e.response_id, e.call_id, e.name, e.arguments, out)

    def _tool_call(
        self, response_id: str, call_id: str, name: str, arguments: str, out: list[ai.AIEvent]
    ) -> None:
        if call_id in self._tool_calls_seen or response_id in self._cancelled:
            return
        self._tool_calls_seen.append(call_id)
        out.append(ai.ToolCall(call_id, name, arguments, response_id))

    def _on_ResponseDone(self, e: ev.ResponseDone, out: list[ai.AIEvent]) -> None:
        r = e.response
        self._active.discard(r.id)
        if self._create_in_flight is not None and not self._active:
            self._create_in_flight = None  # a done without our created: do not wait forever
        if r.usage is not None:
            self.usage_total = self.usage_total + r.usage
        for item in r.output:  # function calls that came without arguments.done
            if item.type == "function_call" and item.call_id and r.status == "completed":
                self._tool_call(r.id, item.call_id, item.name or "", item.arguments or "", out)
        reason = r.reason or (r.error.code if r.error else None)
        out.append(ai.ResponseDone(r.id, r.status, r.usage, reason))
        if not self._auto_expected:
            self._send_pending_create()

    def _on_ConversationItemTruncated(
        self, e: ev.ConversationItemTruncated, out: list[ai.AIEvent]
    ) -> None:
        rid = self._item_response.get(e.item_id)
        if rid is not None:
            self._mark_cancelled(rid)

    def _on_RateLimitsUpdated(self, e: ev.RateLimitsUpdated, out: list[ai.AIEvent]) -> None:
        self.rate_limits = e.rate_limits

    def _on_ErrorEvent(self, e: ev.ErrorEvent, out: list[ai.AIEvent]) -> None:
        # "Incorrect API key provided: sk-abc***xyz": no key fragment in texts or CDRs
        err = replace(e.error, message=strip_masked_keys(e.error.message))
        if not self.ready:
            self.setup_error = err
        if err.event_id is not None and err.event_id == self._create_in_flight:
            self._create_in_flight = None  # our create was refused; the active one stands
            self._cancel_when_created = False
        code = err.code
        out.append(ai.AIErrorEvent(code, err.message, fatal=code in FATAL_ERROR_CODES))
