"""The sans-IO core of a GPT-Live session (``/v1/live/sessions``): events in, events out.

:class:`LiveProtocol` builds the ``session.start`` of an
:class:`~w3sipagent.ai.session.AISessionConfig`, turns the server's events (parsed JSON)
into :mod:`w3sipagent.ai.session` events and queues the client events to send. It does no
I/O and reads no clock: its clock is the input audio itself (the session timeline only
moves with the input, so the client streams frames, silence included, for the whole call).

GPT-Live has no response objects, no "audio done" and no turn events: the model owns the
turns. The bridge's view is derived here from the audio: an *utterance* starts with the
first loud output frame (``ResponseStarted``), forwards every frame while it lasts and ends
(``AudioDone`` + ``ResponseDone``) after ``hangover_ms`` of quiet output or of no output
at all; silence between utterances is not forwarded (the bridge's pacer sends silence).
Transcript deltas are grouped into messages (final after ``transcript_gap_ms`` without a
delta, or when the other side starts talking). Tool calls arrive from the delegated
Responses run (``response.event``); each is answered with ``response.item.create`` and,
once all calls of that run are answered, one ``response.create``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from w3sipagent.ai import session as ai
from w3sipagent.live.audio import level_dbfs, silence_frame
from w3sipagent.live.start import (
    DEFAULT_TOOL_MODEL,
    MAX_INPUT_MESSAGES,
    audio_format_object,
    session_start_object,
)

__all__ = [
    "CLOSE_REASONS",
    "DEFAULT_MODEL",
    "DEFAULT_TOOL_MODEL",
    "LIVE_MODELS",
    "LIVE_VOICES",
    "LiveError",
    "LiveProtocol",
    "audio_format_object",
    "silence_frame",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-live-1"
LIVE_MODELS = ("gpt-live-1", "gpt-live-1.1")
LIVE_VOICES: tuple[str, ...] = (
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo",
    "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone",
    "tempo", "verse", "vesper", "willow",
)  # fmt: skip
CLOSE_REASONS = ("close_requested", "expired", "content", "remote_hangup", "connection_lost")


@dataclass(frozen=True, slots=True)
class LiveError:
    """An ``error`` event's body."""

    type: str
    code: str | None
    message: str
    param: str | None = None


@dataclass(slots=True)
class _Message:
    """A transcript message being assembled from deltas."""

    item_id: str = ""
    text: str = ""
    last_at: int = 0


@dataclass(slots=True)
class _Batch:
    """The function calls of one delegated Responses run."""

    calls: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    done: bool = False
    respond: bool = False


class LiveProtocol:
    """One GPT-Live session's state (see the module docstring).

    ``speech_dbfs``: output level that counts as speech; ``hangover_ms``: quiet output (or
    none) that ends an utterance; ``transcript_gap_ms``: silence of a transcript side
    that makes its message final; ``max_held_ms``: input held before ``session.started``.
    """

    def __init__(
        self,
        config: ai.AISessionConfig,
        *,
        speech_dbfs: float = -50.0,
        hangover_ms: int = 400,
        transcript_gap_ms: int = 1000,
        max_held_ms: int = 10_000,
        wire_audio: bool = True,
    ) -> None:
        self.config = config
        self.wire_audio = wire_audio
        """False over WebRTC: audio travels on the media tracks, not as events (the input
        is still counted: it is the session's clock)."""
        self.fmt = config.input_format
        self.speech_dbfs = speech_dbfs
        self.hangover_ms = hangover_ms
        self.transcript_gap_ms = transcript_gap_ms
        self.max_held_ms = max_held_ms
        self._out: list[dict[str, Any]] = []
        self.start_sent = False
        self.started = False
        self.closed_reason: str | None = None
        self.session_id: str | None = None
        self.expires_at: int | None = None
        self.setup_error: LiveError | None = None
        self.server_session: dict[str, Any] | None = None
        self._held: deque[bytes] = deque()
        self._held_ms = 0
        self.input_ms = 0
        """Milliseconds of input audio sent: the session's clock."""
        self._speaking = False
        self._utterances = 0
        self._quiet_ms = 0
        self._last_output_at = 0
        self._caller: _Message | None = None
        self._agent: _Message | None = None
        self._messages = 0
        self._history: deque[ai.HistoryItem] = deque(
            config.history[-MAX_INPUT_MESSAGES:], maxlen=MAX_INPUT_MESSAGES
        )
        self._batches: dict[str, _Batch] = {}
        self._call_batch: dict[str, str] = {}
        self._usage_seconds = 0.0
        self._next_event = 0

    # ------------------------------------------------------------ what to send

    def take_outgoing(self) -> list[dict[str, Any]]:
        """The client events queued since the last call, in order."""
        out, self._out = self._out, []
        return out

    def _send(self, event: dict[str, Any]) -> None:
        self._next_event += 1
        event.setdefault("event_id", f"evt_w3s_{self._next_event}")
        self._out.append(event)

    def session_object(self) -> dict[str, Any]:
        """The ``session`` of ``session.start`` (the history so far as its ``input``)."""
        return session_start_object(replace(self.config, history=tuple(self._history)))

    def start(self) -> None:
        """Queue ``session.start`` (the first and, until ``session.started``, only event)."""
        if not self.start_sent:
            self.start_sent = True
            self._send({"type": "session.start", "session": self.session_object()})

    def append_audio(self, audio: bytes) -> list[ai.AIEvent]:
        """Caller audio (input format); held until ``session.started``. Returns the events
        due because the session's clock moved (ended utterances, final transcripts)."""
        if not audio or self.closed_reason is not None:
            return []
        ms = self.fmt.duration_ms(len(audio))
        if not self.started:
            self._held.append(audio)
            self._held_ms += ms
            while self._held_ms > self.max_held_ms and self._held:
                self._held_ms -= self.fmt.duration_ms(len(self._held.popleft()))
            return []
        if self.wire_audio:
            audio_b64 = base64.b64encode(audio).decode()
            self._send({"type": "session.input_audio.append", "audio": audio_b64})
        self.input_ms += ms
        return self._clock_moved()

    def instructions(self, text: str) -> None:
        """A trusted behaviour change, e.g. "greet the caller now"."""
        self._append("session.instructions.append", text)

    def thinking(self, text: str) -> None:
        """Silent context (the caller pressed a key, a system note)."""
        self._append("session.thinking.append", text)

    def _append(self, kind: str, text: str) -> None:
        if text.strip() and self.closed_reason is None:
            self._send({"type": kind, "content": text, "delegation_id": None})

    def tool_result(self, call_id: str, output: str, *, respond: bool = True) -> bool:
        """Answer a function call; False when the call is unknown (another session's)."""
        key = self._call_batch.pop(call_id, None)
        batch = self._batches.get(key) if key is not None else None
        if batch is None or self.closed_reason is not None:
            return False
        self._send(
            {
                "type": "response.item.create",
                "item": {"type": "function_call_output", "call_id": call_id, "output": output},
            }
        )
        batch.answered.add(call_id)
        batch.respond = batch.respond or respond
        self._maybe_continue(key)
        return True

    def _maybe_continue(self, key: str | None) -> None:
        batch = self._batches.get(key) if key is not None else None
        if batch is None or not batch.done or not batch.calls <= batch.answered:
            return
        del self._batches[key]  # type: ignore[arg-type]
        if batch.calls and batch.respond:
            self._send({"type": "response.create"})

    def close(self) -> None:
        """Queue ``session.close``."""
        if self.started and self.closed_reason is None:
            self._send({"type": "session.close"})

    # ------------------------------------------------------------ state

    @property
    def speaking(self) -> bool:
        """An utterance of the model is under way."""
        return self._speaking

    @property
    def idle(self) -> bool:
        """Nobody speaks, no message is open, no tool call waits: a good moment to renew."""
        return (
            not self._speaking
            and self._caller is None
            and self._agent is None
            and not self._batches
        )

    @property
    def retry_helps(self) -> bool:
        """A new session could take over: not after the service refused the content
        (``content``) or the far end hung up (``remote_hangup``)."""
        return self.closed_reason not in ("content", "remote_hangup")

    def history(self) -> tuple[ai.HistoryItem, ...]:
        """The conversation as text (≤ 128 messages, open ones included), to re-seed."""
        items = list(self._history)
        for role, msg in (("user", self._caller), ("assistant", self._agent)):
            if msg is not None and msg.text.strip():
                items.append(ai.HistoryItem(role, msg.text.strip()))  # type: ignore[arg-type]
        return tuple(items[-MAX_INPUT_MESSAGES:])

    # ------------------------------------------------------------ server events

    def receive(self, event: dict[str, Any]) -> list[ai.AIEvent]:
        """One server event; returns the AI events it causes."""
        kind = event.get("type")
        if kind == "session.output_audio.delta":
            return self._output_audio(event)
        if kind == "session.input_transcript.delta":
            return self._transcript(event, caller=True)
        if kind == "session.output_transcript.delta":
            return self._transcript(event, caller=False)
        if kind == "response.event":
            return self._response_event(event)
        if kind == "session.usage.updated":
            return self._usage(event.get("usage"))
        if kind == "session.started":
            return self._started(event)
        if kind == "session.updated":
            sess = event.get("session")
            if isinstance(sess, dict):
                self.server_session = sess
            return []
        if kind == "error":
            return self._error(event)
        if kind == "session.closed":
            return self._closed(event)
        return []  # appended acks, delegation.created, info, mute acks: nothing to do

    def _started(self, event: dict[str, Any]) -> list[ai.AIEvent]:
        sess = event.get("session")
        sess = sess if isinstance(sess, dict) else {}
        self.server_session = sess
        if self.started:  # WebRTC: started by the HTTP answer, announced again on the channel
            return []
        self.session_id = str(sess.get("id") or "") or None
        exp = sess.get("expires_at")
        self.expires_at = int(exp) if isinstance(exp, int | float) else None
        self.started = True
        held, self._held = list(self._held), deque()
        self._held_ms = 0
        out: list[ai.AIEvent] = [ai.SessionReady()]
        for chunk in held:
            out += self.append_audio(chunk)
        return out

    def _error(self, event: dict[str, Any]) -> list[ai.AIEvent]:
        body = event.get("error")
        body = body if isinstance(body, dict) else {}
        err = LiveError(
            str(body.get("type") or "error"),
            str(body["code"]) if body.get("code") else None,
            str(body.get("message") or ""),
            str(body["param"]) if body.get("param") else None,
        )
        if not self.started:
            self.setup_error = err
            return []
        return [ai.AIErrorEvent(err.code or err.type, err.message, fatal=False)]

    def _closed(self, event: dict[str, Any]) -> list[ai.AIEvent]:
        reason = str(event.get("reason") or "connection_lost")
        out = self._usage(event.get("usage"))
        out += self._finish_all()
        self.closed_reason = reason
        if not self.started:
            self.setup_error = self.setup_error or LiveError("session_closed", reason, reason)
            return []
        error = reason != "close_requested"
        out.append(ai.Closed(f"live session closed: {reason}", error=error, retry=self.retry_helps))
        return out

    def _usage(self, usage: Any) -> list[ai.AIEvent]:
        if not isinstance(usage, dict):
            return []
        seconds = usage.get("seconds")
        if not isinstance(seconds, int | float) or seconds <= self._usage_seconds:
            return []
        inc = float(seconds) - self._usage_seconds
        self._usage_seconds = float(seconds)
        return [ai.UsageUpdated(ai.Usage(seconds=inc))]

    # ------------------------------------------------------------ output audio

    def _utterance_ids(self) -> tuple[str, str]:
        return f"live_utt_{self._utterances}", f"live_out_{self._utterances}"

    def _output_audio(self, event: dict[str, Any]) -> list[ai.AIEvent]:
        try:
            data = base64.b64decode(str(event.get("delta", "")), validate=True)
        except (binascii.Error, ValueError):
            log.warning("ignoring an output audio delta that is not base64")
            return []
        return self.output_audio(data)

    def output_audio(self, data: bytes) -> list[ai.AIEvent]:
        """Model audio in the session format (a delta, or a WebRTC track's frames)."""
        if not data or self.closed_reason is not None:
            return []
        frame = self.fmt.bytes_per_ms * 20
        loud = False
        trailing = 0
        for off in range(0, len(data), frame):
            part = data[off : off + frame]
            if level_dbfs(part, self.fmt) >= self.speech_dbfs:
                loud = True
                trailing = 0
            else:
                trailing += self.fmt.duration_ms(len(part))
        out: list[ai.AIEvent] = []
        if not self._speaking:
            if not loud:
                return []  # silence between utterances: the pacer sends silence anyway
            self._speaking = True
            self._utterances += 1
            self._quiet_ms = 0
            out.append(ai.ResponseStarted(self._utterance_ids()[0]))
        rid, iid = self._utterance_ids()
        out.append(ai.AudioDelta(rid, iid, data))
        self._last_output_at = self.input_ms
        self._quiet_ms = trailing if loud else self._quiet_ms + self.fmt.duration_ms(len(data))
        if self._quiet_ms >= self.hangover_ms:
            out += self._end_utterance()
        return out

    def _end_utterance(self) -> list[ai.AIEvent]:
        if not self._speaking:
            return []
        self._speaking = False
        rid, iid = self._utterance_ids()
        return [ai.AudioDone(rid, iid), ai.ResponseDone(rid, "completed")]

    def _clock_moved(self) -> list[ai.AIEvent]:
        out: list[ai.AIEvent] = []
        if self._speaking and self.input_ms - self._last_output_at >= self.hangover_ms:
            out += self._end_utterance()
        gap = self.transcript_gap_ms
        if self._caller is not None and self.input_ms - self._caller.last_at >= gap:
            out += self._finish(caller=True)
        if self._agent is not None and self.input_ms - self._agent.last_at >= gap:
            out += self._finish(caller=False)
        return out

    # ------------------------------------------------------------ transcripts

    def _transcript(self, event: dict[str, Any], *, caller: bool) -> list[ai.AIEvent]:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        out = self._finish(caller=not caller)  # the other side's message is over
        msg = self._caller if caller else self._agent
        if msg is None:
            self._messages += 1
            msg = _Message(item_id=f"live_{'in' if caller else 'out'}_msg_{self._messages}")
            if caller:
                self._caller = msg
            else:
                self._agent = msg
        msg.text += delta
        msg.last_at = self.input_ms
        if caller:
            out.append(ai.CallerTranscript(msg.item_id, delta, final=False))
        else:
            rid = self._utterance_ids()[0]
            out.append(ai.AgentTranscript(rid, msg.item_id, delta, final=False))
        return out

    def _finish(self, *, caller: bool) -> list[ai.AIEvent]:
        msg = self._caller if caller else self._agent
        if msg is None:
            return []
        if caller:
            self._caller = None
        else:
            self._agent = None
        text = msg.text.strip()
        if not text:
            return []
        self._history.append(ai.HistoryItem("user" if caller else "assistant", text))
        if caller:
            return [ai.CallerTranscript(msg.item_id, text, final=True)]
        return [ai.AgentTranscript(self._utterance_ids()[0], msg.item_id, text, final=True)]

    def _finish_all(self) -> list[ai.AIEvent]:
        return self._end_utterance() + self._finish(caller=True) + self._finish(caller=False)

    # ------------------------------------------------------------ delegation

    def _response_event(self, event: dict[str, Any]) -> list[ai.AIEvent]:
        nested = event.get("event")
        if not isinstance(nested, dict):
            return []
        kind = nested.get("type")
        key = str(event.get("delegation_id") or "")
        if not key:
            resp = nested.get("response")
            key = str(resp.get("id")) if isinstance(resp, dict) and resp.get("id") else "default"
        if kind == "response.output_item.done":
            item = nested.get("item")
            if not isinstance(item, dict) or item.get("type") != "function_call":
                return []
            call_id = str(item.get("call_id") or "")
            if not call_id or call_id in self._call_batch:
                return []
            if any(call_id in b.calls for b in self._batches.values()):
                return []
            self._batches.setdefault(key, _Batch()).calls.add(call_id)
            self._call_batch[call_id] = key
            args = item.get("arguments")
            name = str(item.get("name") or "")
            call = ai.ToolCall(
                call_id, name, args if isinstance(args, str) else "{}", response_id=key
            )
            return [*self._finish(caller=True), call]  # the model acts on what was said
        if kind in (
            "response.completed",
            "response.done",
            "response.failed",
            "response.incomplete",
        ):
            batch = self._batches.get(key)
            if batch is not None:
                batch.done = True
                self._maybe_continue(key)
        return []
