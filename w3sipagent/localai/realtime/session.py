"""One Realtime session of the local server: the GA protocol engine.

Transport-agnostic: the WebSocket endpoint (:mod:`.ws`) and the WebRTC
endpoint (:mod:`.webrtc`) feed client events in with :meth:`ServerSession.handle_text`
and give it a :class:`~.ports.Transport` to send server events on. Over WebRTC the
session also gets an :class:`~.ports.AudioPlayer` (the outgoing Opus track): response
audio goes there instead of ``response.output_audio.delta`` events, and the
player reports playout so the server can emit ``output_audio_buffer.*`` and
truncate by itself, as the service does for WebRTC and SIP calls.

This module dispatches client events and owns the session's lifecycle; the input
buffer (:mod:`.input`), the conversation (:mod:`.conversation`) and the responses
(:mod:`.responses`) are its parts. Event order follows the GA reference
(docs/realtime-server.md lists it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Awaitable
from typing import Any

from w3sipagent.ai.session import AudioFormat
from w3sipagent.ids import IdSource, SecureIdSource
from w3sipagent.localai.realtime.config import (
    apply_session_update,
    default_session,
    format_enum,
    validate_response_params,
)
from w3sipagent.localai.realtime.conversation import (
    Conversation,
    Item,
    check_truncate,
    truncate_audio,
    validate_item,
)
from w3sipagent.localai.realtime.errors import (
    RealtimeProtocolError,
    bad_type,
    bad_value,
    missing,
)
from w3sipagent.localai.realtime.events import CLIENT_EVENTS
from w3sipagent.localai.realtime.input import InputAudio
from w3sipagent.localai.realtime.ports import (
    AudioPlayer,
    ServerOptions,
    SessionEnded,
    Transport,
)
from w3sipagent.localai.realtime.responses import Plan, Response, ResponseRunner, TurnPlanner
from w3sipagent.localai.recorder import CancelRecord, SessionRecording, TruncateRecord
from w3sipagent.localai.scenario import Scenario
from w3sipagent.localai.tasks import TaskSet
from w3sipagent.localai.tts import Synthesizer

log = logging.getLogger(__name__)

APPEND_TEXT = re.compile(
    r'\{"type":"input_audio_buffer\.append",(?:"event_id":"([^"\\]*)",)?"audio":"([A-Za-z0-9+/=]*)"\}'
)
"""An append as the agent (and most clients) write it: no escapes, these keys in this
order. It comes every 20 ms of every session, so it is read without ``json.loads``; any
other text goes the general way (same events, same recording: a test compares them)."""
_MAX_APPEND_CHARS = 15 * 1024 * 1024 * 4 // 3 + 4


class ServerSession:
    """The state of one GA Realtime session and its handling of client events."""

    def __init__(
        self,
        transport: Transport,
        *,
        scenario: Scenario,
        synthesizer: Synthesizer,
        options: ServerOptions,
        model: str = "gpt-realtime",
        ids: IdSource | None = None,
        player: AudioPlayer | None = None,
        recording: SessionRecording | None = None,
    ) -> None:
        self.transport = transport
        self.scenario = scenario
        self.tts = synthesizer
        self.options = options
        self.ids: IdSource = ids or SecureIdSource()
        self.player = player
        self.id = "sess_" + self.ids.token(11)
        self.created_at = int(time.time())
        self.config = default_session(
            self.id, model, self.created_at + int(options.session_duration_s)
        )
        if scenario.instructions:
            self.config["instructions"] = scenario.instructions
        self.recording = recording or SessionRecording(self.id, transport.kind, model)
        self.conversation = Conversation()
        self.planner = TurnPlanner(scenario)
        self.input = InputAudio(self, self._fmt_in())
        self.responses = ResponseRunner(self, self.planner)
        self.active: Response | None = None
        self.assistant_audio_sent = False
        self._fired: set[int] = set()
        self._tasks = TaskSet(expected=(SessionEnded, ConnectionError), report=self._task_failed)
        self._closed = False
        self._expiry: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Send ``session.created`` and arm the session-length limit."""
        await self.emit({"type": "session.created", "session": self._session_obj()})
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(
            self.options.session_duration_s, lambda: self.spawn(self._expire())
        )
        await self.inject("session.created", None)

    async def _expire(self) -> None:
        minutes = round(self.options.session_duration_s / 60)
        await self._emit_error(
            RealtimeProtocolError(
                f"Your session hit the maximum duration of {minutes} minutes.",
                code="session_expired",
            ),
            None,
        )
        await self.transport.close(1000, "session expired")

    def closed(self, reason: str = "") -> None:
        """The transport went away: stop everything."""
        if self._closed:
            return
        self._closed = True
        self.recording.closed = True
        self.recording.close_reason = reason
        if self._expiry is not None:
            self._expiry.cancel()
        if self.active is not None:
            self.active.cancel_reason = self.active.cancel_reason or "client_cancelled"
            self.active.cancel_event.set()
            if self.active.task is not None:
                self.active.task.cancel()
        self._tasks.cancel_all()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of this session (cancelled when it closes)."""
        return self._tasks.spawn(coro)

    def _task_failed(self, exc: BaseException) -> None:
        log.debug("session %s task failed: %r", self.id, exc)

    # ------------------------------------------------------------ helpers

    def new_id(self, prefix: str) -> str:
        """A fresh ``<prefix>_...`` identifier."""
        return f"{prefix}_{self.ids.token(11)}"

    def _session_obj(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.config))  # type: ignore[no-any-return]

    def _fmt_in(self) -> AudioFormat:
        if self.transport.kind == "webrtc":
            return AudioFormat.PCM24K
        return format_enum(self.config["audio"]["input"]["format"])

    async def emit(self, event: dict[str, Any]) -> None:
        """Send one server event with a fresh ``event_id`` (and record it)."""
        if self._closed:
            raise SessionEnded()
        ev = {
            "type": event["type"],
            "event_id": self.new_id("event"),
            **{k: v for k, v in event.items() if k != "type"},
        }
        self.recording.record_sent(ev)
        await self.transport.send_json(ev)

    async def _emit_error(self, err: RealtimeProtocolError, client_event_id: str | None) -> None:
        await self.emit({"type": "error", "error": err.to_error(client_event_id)})

    # ------------------------------------------------------------ client events

    async def handle_text(self, text: str | bytes) -> None:
        """Handle one client frame (JSON text); errors become ``error`` events."""
        if isinstance(text, bytes):  # the service answers binary frames so, whatever they hold
            await self._emit_error(
                RealtimeProtocolError(
                    "Invalid event: binary frames are not supported; send JSON text frames.",
                    code="invalid_event",
                ),
                None,
            )
            return
        fast = APPEND_TEXT.fullmatch(text)
        if fast is not None:
            eid, audio = fast.group(1, 2)
            self.recording.record_append(eid, len(audio))
            try:
                await self.input.append(_decode_audio(audio), self.input.format)
            except RealtimeProtocolError as err:
                await self._emit_error(err, eid)
            return
        try:
            ev = json.loads(text)
        except json.JSONDecodeError as exc:
            await self._emit_error(
                RealtimeProtocolError(
                    f"We could not parse the JSON body of your request. ({exc.msg})",
                    code="invalid_json",
                ),
                None,
            )
            return
        if not isinstance(ev, dict):
            await self._emit_error(bad_type("event", "an object", ev), None)
            return
        self.recording.record_event(ev)
        cid = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
        try:
            etype = ev.get("type")
            if etype is None:
                raise missing("type")
            if etype not in CLIENT_EVENTS:
                raise bad_value("type", etype, CLIENT_EVENTS)
            handler = getattr(self, "_on_" + etype.replace(".", "_"))
            await handler(ev, cid)
        except RealtimeProtocolError as err:
            await self._emit_error(err, cid)

    async def _on_session_update(self, ev: dict[str, Any], cid: str | None) -> None:
        self.update_config(ev.get("session"))
        await self.emit({"type": "session.updated", "session": self._session_obj()})

    def update_config(self, update: Any) -> None:
        """Apply a GA ``session`` object (a ``session.update``, or the WebRTC ``session``
        field before the call starts); raises :class:`RealtimeProtocolError`."""
        old_td = self.config["audio"]["input"]["turn_detection"]
        old_fmt = self.config["audio"]["input"]["format"]
        self.config = apply_session_update(
            self.config, update, audio_sent=self.assistant_audio_sent
        )
        if self.config["audio"]["input"]["turn_detection"] != old_td:
            self.input.turn_detection_changed()
        if self.config["audio"]["input"]["format"] != old_fmt and self.transport.kind != "webrtc":
            self.input.format_changed(self._fmt_in())

    def adopt_config(self, session: dict[str, Any]) -> None:
        """Start from the session an ephemeral key was minted with (its id and expiry
        stay this session's own)."""
        keep = {k: self.config[k] for k in ("id", "expires_at", "object", "model")}
        self.config = {**json.loads(json.dumps(session)), **keep}
        self.input.turn_detection_changed()
        if self.transport.kind != "webrtc":
            self.input.format_changed(self._fmt_in())

    async def _on_input_audio_buffer_append(self, ev: dict[str, Any], cid: str | None) -> None:
        audio = ev.get("audio")
        if audio is None:
            raise missing("audio")
        if not isinstance(audio, str):
            raise bad_type("audio", "a string", audio)
        await self.input.append(_decode_audio(audio), self.input.format)

    async def append_audio(self, raw: bytes, fmt: AudioFormat) -> None:
        """Input audio from the WebRTC track (or a test), in ``fmt``."""
        await self.input.append(raw, fmt)

    async def _on_input_audio_buffer_commit(self, ev: dict[str, Any], cid: str | None) -> None:
        await self.input.commit()

    async def _on_input_audio_buffer_clear(self, ev: dict[str, Any], cid: str | None) -> None:
        await self.input.clear()

    async def _on_conversation_item_create(self, ev: dict[str, Any], cid: str | None) -> None:
        raw = ev.get("item")
        if raw is None:
            raise missing("item")
        if not isinstance(raw, dict):
            raise bad_type("item", "an object", raw)
        prev_id = ev.get("previous_item_id")
        if prev_id is not None and prev_id != "root" and prev_id not in self.conversation:
            raise RealtimeProtocolError(
                f"Previous item with id '{prev_id}' not found.", param="previous_item_id"
            )
        item = validate_item(raw, self.new_id, self.input.format)
        if item.data.get("role") == "user":
            item.turn = self.planner.new_user_turn()
        if item.id in self.conversation:
            raise RealtimeProtocolError(
                f"Item with id '{item.id}' already exists.",
                code="duplicate_item_id",
                param="item.id",
            )
        prev = self.conversation.add(item, prev_id, append=prev_id is None)
        if item.data["type"] == "function_call_output":
            self.planner.call_output(item.data["call_id"])
        await self.emit(
            {"type": "conversation.item.added", "previous_item_id": prev, "item": item.public()}
        )
        await self.emit(
            {"type": "conversation.item.done", "previous_item_id": prev, "item": item.public()}
        )

    async def _on_conversation_item_retrieve(self, ev: dict[str, Any], cid: str | None) -> None:
        item = self.conversation.find(ev)
        data = item.public()
        if item.audio and data.get("content"):
            data["content"][0]["audio"] = base64.b64encode(bytes(item.audio)).decode("ascii")
        await self.emit({"type": "conversation.item.retrieved", "item": data})

    async def _on_conversation_item_delete(self, ev: dict[str, Any], cid: str | None) -> None:
        item = self.conversation.find(ev)
        self.conversation.remove(item)
        await self.emit({"type": "conversation.item.deleted", "item_id": item.id})

    async def _on_conversation_item_truncate(self, ev: dict[str, Any], cid: str | None) -> None:
        end = ev.get("audio_end_ms")
        ci = ev.get("content_index", 0)
        now = self.recording.now()
        try:
            item = self.conversation.find(ev)
            end_ms = check_truncate(ev, item)
            have = item.audio_ms()
        except RealtimeProtocolError:
            self.recording.truncates.append(
                TruncateRecord(
                    now,
                    str(ev.get("item_id")),
                    ci if isinstance(ci, int) else -1,
                    end if isinstance(end, int) else -1,
                    False,
                    None,
                )
            )
            raise
        self.recording.truncates.append(TruncateRecord(now, item.id, ci, end_ms, True, have))
        await self._truncate(item, end_ms)

    async def _truncate(self, item: Item, end_ms: int) -> None:
        truncate_audio(item, end_ms)
        await self.emit(
            {
                "type": "conversation.item.truncated",
                "item_id": item.id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    async def _on_response_create(self, ev: dict[str, Any], cid: str | None) -> None:
        if self.active is not None:
            raise RealtimeProtocolError(
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        params = validate_response_params(ev.get("response"))
        await self.start_response(params)

    async def _on_response_cancel(self, ev: dict[str, Any], cid: str | None) -> None:
        rid = ev.get("response_id")
        act = self.active
        if act is None or act.cancelled or (rid is not None and rid != act.id):
            self.recording.cancels.append(
                CancelRecord(self.recording.now(), rid, "client_cancelled", False)
            )
            raise RealtimeProtocolError(
                "Cancellation failed: no active response found", code="response_cancel_not_active"
            )
        self.recording.cancels.append(
            CancelRecord(self.recording.now(), act.id, "client_cancelled", True)
        )
        self.cancel(act, "client_cancelled")

    async def _on_output_audio_buffer_clear(self, ev: dict[str, Any], cid: str | None) -> None:
        if self.player is None:
            raise RealtimeProtocolError(
                "output_audio_buffer.clear is only supported for WebRTC and SIP sessions.",
                param="type",
            )
        await self.clear_playout(always=True)

    # ------------------------------------------------------------ responses

    def cancel(self, resp: Response, reason: str) -> None:
        """Cancel ``resp``: its runner stops at the next chunk."""
        resp.cancel_reason = reason
        resp.cancel_event.set()

    async def clear_playout(self, always: bool = False) -> None:
        """WebRTC: drop queued audio, emit ``output_audio_buffer.cleared``, truncate items."""
        if self.player is None:
            return
        rid = self.player.playing_response
        played = self.player.clear()
        if rid is None and not always:
            return
        await self.emit({"type": "output_audio_buffer.cleared", "response_id": rid})
        for item_id, ms in played.items():
            item = self.conversation.get(item_id)
            if item is not None and item.audio_format is not None and ms < item.audio_ms():
                await self._truncate(item, ms)

    async def start_response(self, params: dict[str, Any], plan: Plan | None = None) -> None:
        """Start a response with ``response.create`` parameters ``params``."""
        out_cfg = self.config["audio"]["output"]
        resp = Response(
            id=self.new_id("resp"),
            turn=0,
            modalities=params.get("output_modalities", self.config["output_modalities"]),
            fmt=params.get("format", out_cfg["format"]),
            voice=params.get("voice", out_cfg["voice"]),
            conversation=params.get("conversation", "auto") == "auto" and "input" not in params,
            metadata=params.get("metadata"),
            max_output_tokens=params.get("max_output_tokens", self.config["max_output_tokens"]),
            tools=params.get("tools", self.config["tools"]),
            tool_choice=params.get("tool_choice", self.config["tool_choice"]),
        )
        plan = plan or self.planner.plan(params)
        resp.turn = plan.turn
        resp.input_ms_at_start = self.input.input_ms
        self.active = resp
        resp.task = self.spawn(self.responses.run(resp, plan))

    def response_finished(self, resp: Response) -> None:
        """``resp`` is done: no active response; idle_timeout_ms counts from its playout end."""
        if self.active is resp:
            self.active = None
            self.input.response_played(resp.input_ms_at_start + resp.out_audio_ms)

    # ------------------------------------------------------------ injections

    async def inject(self, at: str, turn: int | None, resp: Response | None = None) -> None:
        """Fire the scenario's injections for ``at`` (each at most once)."""
        for inj in self.scenario.injections(at, turn):
            key = id(inj)
            if key in self._fired:
                continue
            self._fired.add(key)
            log.info("session %s: injecting %s at %s (turn %s)", self.id, inj.action, at, turn)
            if inj.action == "error":
                await self._emit_error(
                    RealtimeProtocolError(inj.message, code=inj.code, type=inj.type), None
                )
            elif inj.action == "fail":
                if resp is not None:
                    resp.fail = inj
            elif inj.action == "close":
                await self.transport.close(inj.close_code, inj.close_reason)
                self.closed("injected close")
                raise SessionEnded()
            elif inj.action == "abort":
                self.transport.abort()
                self.closed("injected abort")
                raise SessionEnded()

    # ------------------------------------------------------------ WebRTC playout

    def playout_started(self, response_id: str) -> None:
        """Called by the player when the first frame of a response plays."""
        if not self._closed:
            self.spawn(
                self.emit({"type": "output_audio_buffer.started", "response_id": response_id})
            )

    def playout_stopped(self, response_id: str) -> None:
        """Called by the player when a finished response's audio has drained."""
        if not self._closed:
            self.spawn(
                self.emit({"type": "output_audio_buffer.stopped", "response_id": response_id})
            )


def _decode_audio(audio: str) -> bytes:
    """The bytes of an append's base64 ``audio``; raises :class:`RealtimeProtocolError`."""
    if len(audio) > _MAX_APPEND_CHARS:
        raise RealtimeProtocolError(
            "Invalid 'audio': the audio chunk exceeds the maximum of 15 MiB.", param="audio"
        )
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise RealtimeProtocolError(
            "Invalid 'audio': expected base64-encoded audio bytes.", param="audio"
        ) from None
