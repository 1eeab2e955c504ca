"""Typed events of the OpenAI Realtime API, GA interface only.

Every client and server event of the GA protocol is a frozen dataclass whose
``type`` class attribute is its wire name. :func:`parse_server_event` turns a
JSON text frame into one of them (``None`` for an event type this module does
not know: callers log and ignore it); :meth:`ClientEvent.to_json` gives the
text frame of a client event. Audio fields are ``bytes`` here and base64 on the
wire. Beta names (``response.audio.delta``...) are deliberately unknown.

Malformed frames raise :class:`EventParseError` naming the defect.

This file is long on purpose: it is one catalogue, a small dataclass per GA event and the
registries keyed by wire name, checked whole against the official SDK's event list.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

from w3sipagent.ai.session import Usage
from w3sipagent.errors import AIError

log = logging.getLogger(__name__)


class EventParseError(AIError, ValueError):
    """A Realtime frame is not valid JSON, not an object, or has a field of the wrong type."""


# ---------------------------------------------------------------- generic wire mapping

_W = TypeVar("_W", bound="_Wire")
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


_PLANS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def _plan(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """``(name, hint, required)`` of each field of ``cls``, once per class; an optional
    hint (``X | None``) is stored as ``X``, as :func:`_convert` unwraps it for any value
    that is not None (None is a missing field)."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = _hints(cls)
        out = []
        for f in fields(cls):
            hint = hints[f.name]
            if get_origin(hint) in (Union, types.UnionType):
                hint = next(a for a in get_args(hint) if a is not type(None))
            required = f.default is MISSING and f.default_factory is MISSING
            out.append((f.name, hint, required))
        plan = _PLANS[cls] = tuple(out)
    return plan


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Convert a JSON value to the annotated Python type, or raise EventParseError."""
    if hint is Any:
        return value
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in get_args(hint) if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise EventParseError(f"{where}: expected a list, got {type(value).__name__}")
        item_hint = get_args(hint)[0]
        return tuple(_convert(item_hint, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise EventParseError(f"{where}: expected an object, got {type(value).__name__}")
        return value
    if hint is bytes:
        if not isinstance(value, str):
            raise EventParseError(f"{where}: expected base64 text, got {type(value).__name__}")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise EventParseError(f"{where}: invalid base64") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise EventParseError(f"{where}: expected true/false, got {value!r:.40}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise EventParseError(f"{where}: expected an integer, got {value!r:.40}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EventParseError(f"{where}: expected a number, got {value!r:.40}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise EventParseError(f"{where}: expected a string, got {type(value).__name__}")
        return value
    if isinstance(hint, type) and issubclass(hint, _Wire):
        if not isinstance(value, dict):
            raise EventParseError(f"{where}: expected an object, got {type(value).__name__}")
        return hint.from_dict(value, where)
    raise TypeError(f"no wire conversion for {hint!r}")  # a bug in this module, not bad input


def _to_wire(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, _Wire):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class _Wire:
    """A JSON object with typed fields named as on the wire."""

    @classmethod
    def from_dict(cls: type[_W], data: Mapping[str, Any], where: str = "") -> _W:
        # every server event of every call comes through here (audio deltas ten times a
        # second): the fields are planned once per class, a plain string or integer is
        # taken as is, and the error path's name is only formatted when needed
        where = where or cls.__name__
        kwargs: dict[str, Any] = {}
        for name, hint, required in _plan(cls):
            value = data.get(name)
            if value is None:
                if required:
                    raise EventParseError(f"{where}: missing field {name!r}")
                continue
            kind = type(value)
            if (kind is str and hint is str) or (kind is int and hint is int):
                kwargs[name] = value
            else:
                kwargs[name] = _convert(hint, value, f"{where}.{name}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, without fields that are None or empty."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == "" or value == ():
                continue
            out[f.name] = _to_wire(value)
        return out


# ---------------------------------------------------------------- shared objects


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentPart(_Wire):
    """One content part of a message item: input_text, input_audio, output_text, output_audio."""

    type: str
    text: str | None = None
    transcript: str | None = None
    audio: str | None = None  # base64, only in input_audio parts (kept encoded)


@dataclass(frozen=True, slots=True, kw_only=True)
class Item(_Wire):
    """A conversation item: message, function_call or function_call_output."""

    type: str
    id: str | None = None
    status: str | None = None
    role: str | None = None
    content: tuple[ContentPart, ...] = ()
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None

    @classmethod
    def message(cls, role: str, text: str) -> Item:
        """A text message item (``output_text`` for assistant, ``input_text`` otherwise)."""
        part = "output_text" if role == "assistant" else "input_text"
        return cls(type="message", role=role, content=(ContentPart(type=part, text=text),))

    @classmethod
    def function_call_output(cls, call_id: str, output: str) -> Item:
        """The result of a tool call, returned to the model."""
        return cls(type="function_call_output", call_id=call_id, output=output)

    @property
    def text(self) -> str:
        """The text or transcript of all content parts, joined."""
        return "".join(p.text or p.transcript or "" for p in self.content)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo(_Wire):
    """The ``error`` object of an error event or a failed transcription."""

    type: str = ""
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo(_Wire):
    """The effective session of session.created / session.updated; ``raw`` is the whole object."""

    id: str | None = None
    model: str | None = None
    expires_at: int | None = None
    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> SessionInfo:
        where = where or "session"
        conv = _convert
        return cls(
            id=conv(str | None, data.get("id"), f"{where}.id"),
            model=conv(str | None, data.get("model"), f"{where}.model"),
            expires_at=conv(int | None, data.get("expires_at"), f"{where}.expires_at"),
            raw=dict(data),
        )


def parse_usage(data: Mapping[str, Any], where: str = "usage") -> Usage:
    """``response.done.response.usage`` -> :class:`~w3sipagent.ai.session.Usage`."""

    def num(obj: Any, key: str) -> int:
        if not isinstance(obj, Mapping):
            return 0
        value = obj.get(key)
        return 0 if value is None else int(_convert(int, value, f"{where}.{key}"))

    inp = data.get("input_token_details")
    out = data.get("output_token_details")
    return Usage(
        input_tokens=num(data, "input_tokens"),
        output_tokens=num(data, "output_tokens"),
        total_tokens=num(data, "total_tokens"),
        input_audio_tokens=num(inp, "audio_tokens"),
        output_audio_tokens=num(out, "audio_tokens"),
        cached_tokens=num(inp, "cached_tokens"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseInfo(_Wire):
    """The ``response`` object of response.created / response.done."""

    id: str
    status: str = "in_progress"
    reason: str | None = None  # status_details.reason (turn_detected, client_cancelled...)
    error: ErrorInfo | None = None  # status_details.error
    output: tuple[Item, ...] = ()
    conversation_id: str | None = None
    usage: Usage | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> ResponseInfo:
        where = where or "response"
        details = data.get("status_details")
        if details is not None and not isinstance(details, Mapping):
            raise EventParseError(f"{where}.status_details: expected an object")
        details = details or {}
        usage = data.get("usage")
        if usage is not None and not isinstance(usage, Mapping):
            raise EventParseError(f"{where}.usage: expected an object")
        rid = data.get("id")
        if rid is None:
            raise EventParseError(f"{where}: missing field 'id'")
        return cls(
            id=_convert(str, rid, f"{where}.id"),
            status=_convert(str, data.get("status") or "in_progress", f"{where}.status"),
            reason=_convert(str | None, details.get("reason"), f"{where}.status_details.reason"),
            error=_convert(ErrorInfo | None, details.get("error"), f"{where}.status_details.error"),
            output=_convert(tuple[Item, ...] | None, data.get("output"), f"{where}.output") or (),
            conversation_id=_convert(str | None, data.get("conversation_id"), where),
            usage=None if usage is None else parse_usage(usage, f"{where}.usage"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit(_Wire):
    """One entry of rate_limits.updated."""

    name: str
    limit: int = 0
    remaining: int = 0
    reset_seconds: float = 0.0


# ---------------------------------------------------------------- events

SERVER_EVENTS: dict[str, type[ServerEvent]] = {}
CLIENT_EVENTS: dict[str, type[ClientEvent]] = {}
_S = TypeVar("_S", bound="ServerEvent")
_C = TypeVar("_C", bound="ClientEvent")


def _server(cls: type[_S]) -> type[_S]:
    SERVER_EVENTS[cls.type] = cls
    return cls


def _client(cls: type[_C]) -> type[_C]:
    CLIENT_EVENTS[cls.type] = cls
    return cls


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerEvent(_Wire):
    """Base class of events the server sends. ``event_id`` is the server's id."""

    type: ClassVar[str] = ""
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientEvent(_Wire):
    """Base class of events the client sends. ``event_id`` comes back in errors."""

    type: ClassVar[str] = ""
    event_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        out.update(_Wire.to_dict(self))
        return out

    def to_json(self) -> str:
        """The text frame to send."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


# -- client events (§3)


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdate(ClientEvent):
    """Change the session configuration (partial; GA session object)."""

    type: ClassVar[str] = "session.update"
    session: dict[str, Any]


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferAppend(ClientEvent):
    """Append caller audio (base64 on the wire) to the input buffer."""

    type: ClassVar[str] = "input_audio_buffer.append"
    audio: bytes

    def to_json(self) -> str:
        """The text frame, built directly: this event goes out every 20 ms of every call,
        and the generic field walk plus ``json.dumps`` cost more than the base64 itself
        (same text as the generic path; a test compares them)."""
        audio = base64.b64encode(self.audio).decode("ascii")
        if not self.event_id:
            return f'{{"type":"input_audio_buffer.append","audio":"{audio}"}}'
        eid = self.event_id
        # our ids ("w3s_12") need no escaping; anything else goes through json
        eid = f'"{eid}"' if eid.isidentifier() else json.dumps(eid, ensure_ascii=False)
        return f'{{"type":"input_audio_buffer.append","event_id":{eid},"audio":"{audio}"}}'


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCommit(ClientEvent):
    """Commit the input buffer as a user item (needs >= 100 ms of audio)."""

    type: ClassVar[str] = "input_audio_buffer.commit"


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferClear(ClientEvent):
    """Drop the uncommitted input audio."""

    type: ClassVar[str] = "input_audio_buffer.clear"


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemCreate(ClientEvent):
    """Add an item to the conversation."""

    type: ClassVar[str] = "conversation.item.create"
    item: Item
    previous_item_id: str | None = None


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemTruncate(ClientEvent):
    """Cut an assistant audio item at what the caller heard."""

    type: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    content_index: int = 0
    audio_end_ms: int

    def to_dict(self) -> dict[str, Any]:
        out = ClientEvent.to_dict(self)
        out["content_index"] = self.content_index  # 0 is meaningful
        out["audio_end_ms"] = self.audio_end_ms
        return out


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemDelete(ClientEvent):
    """Remove an item from the conversation."""

    type: ClassVar[str] = "conversation.item.delete"
    item_id: str


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemRetrieve(ClientEvent):
    """Ask for the server's copy of an item."""

    type: ClassVar[str] = "conversation.item.retrieve"
    item_id: str


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCreate(ClientEvent):
    """Ask the model to respond; ``response`` holds per-response overrides."""

    type: ClassVar[str] = "response.create"
    response: dict[str, Any] | None = None


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCancel(ClientEvent):
    """Cancel the active (or the named) response."""

    type: ClassVar[str] = "response.cancel"
    response_id: str | None = None


@_client
@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudioBufferClear(ClientEvent):
    """WebRTC/SIP only: drop the audio the server has not played yet."""

    type: ClassVar[str] = "output_audio_buffer.clear"


# -- server events (§4): session


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCreated(ServerEvent):
    """First event of every session, with the defaults."""

    type: ClassVar[str] = "session.created"
    session: SessionInfo


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdated(ServerEvent):
    """The effective session after a session.update."""

    type: ClassVar[str] = "session.updated"
    session: SessionInfo


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationCreated(ServerEvent):
    """The conversation object (``{id, object}``)."""

    type: ClassVar[str] = "conversation.created"
    conversation: dict[str, Any]


# -- input buffer


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferSpeechStarted(ServerEvent):
    """VAD heard speech start; ``audio_start_ms`` counts from the session's first audio."""

    type: ClassVar[str] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferSpeechStopped(ServerEvent):
    """VAD decided speech ended."""

    type: ClassVar[str] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCommitted(ServerEvent):
    """The input buffer became a user item."""

    type: ClassVar[str] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCleared(ServerEvent):
    """The input buffer was cleared."""

    type: ClassVar[str] = "input_audio_buffer.cleared"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferTimeoutTriggered(ServerEvent):
    """server_vad idle_timeout_ms elapsed without speech."""

    type: ClassVar[str] = "input_audio_buffer.timeout_triggered"
    audio_start_ms: int = 0
    audio_end_ms: int = 0
    item_id: str | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferDtmfEventReceived(ServerEvent):
    """SIP connector only: a keypad press."""

    type: ClassVar[str] = "input_audio_buffer.dtmf_event_received"
    event: str
    received_at: int = 0


# -- conversation items


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemAdded(ServerEvent):
    """An item entered the conversation (may still be in progress)."""

    type: ClassVar[str] = "conversation.item.added"
    item: Item
    previous_item_id: str | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemDone(ServerEvent):
    """An item is complete."""

    type: ClassVar[str] = "conversation.item.done"
    item: Item
    previous_item_id: str | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemCreated(ServerEvent):
    """Older name still in the GA SDK union; treated like conversation.item.added."""

    type: ClassVar[str] = "conversation.item.created"
    item: Item
    previous_item_id: str | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemTruncated(ServerEvent):
    """An assistant audio item was cut at ``audio_end_ms``."""

    type: ClassVar[str] = "conversation.item.truncated"
    item_id: str
    content_index: int = 0
    audio_end_ms: int


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemDeleted(ServerEvent):
    """An item was removed."""

    type: ClassVar[str] = "conversation.item.deleted"
    item_id: str


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemRetrieved(ServerEvent):
    """The server's copy of an item."""

    type: ClassVar[str] = "conversation.item.retrieved"
    item: Item


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioTranscriptionDelta(ServerEvent):
    """Part of the caller's transcript."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.delta"
    item_id: str
    content_index: int = 0
    delta: str = ""
    logprobs: Any = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioTranscriptionCompleted(ServerEvent):
    """The caller's whole transcript of an item; ``usage`` tokens or duration."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    content_index: int = 0
    transcript: str = ""
    usage: dict[str, Any] | None = None
    logprobs: Any = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioTranscriptionFailed(ServerEvent):
    """Transcribing the caller's item failed."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.failed"
    item_id: str
    content_index: int = 0
    error: ErrorInfo | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioTranscriptionSegment(ServerEvent):
    """A diarized segment of the caller's transcript."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.segment"
    item_id: str
    content_index: int = 0
    id: str = ""
    text: str = ""
    speaker: str = ""
    start: float = 0.0
    end: float = 0.0


# -- responses


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCreated(ServerEvent):
    """A response started (status in_progress)."""

    type: ClassVar[str] = "response.created"
    response: ResponseInfo


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseDone(ServerEvent):
    """A response ended: completed, cancelled, failed or incomplete; carries usage."""

    type: ClassVar[str] = "response.done"
    response: ResponseInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class _OutputItemEvent(ServerEvent):
    response_id: str
    output_index: int = 0
    item: Item


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputItemAdded(_OutputItemEvent):
    """A response added an output item (message or function call)."""

    type: ClassVar[str] = "response.output_item.added"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputItemDone(_OutputItemEvent):
    """An output item of a response is complete."""

    type: ClassVar[str] = "response.output_item.done"


@dataclass(frozen=True, slots=True, kw_only=True)
class _PartEvent(ServerEvent):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseContentPartAdded(_PartEvent):
    """A content part (audio or text) started."""

    type: ClassVar[str] = "response.content_part.added"
    part: ContentPart | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseContentPartDone(_PartEvent):
    """A content part is complete."""

    type: ClassVar[str] = "response.content_part.done"
    part: ContentPart | None = None


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioDelta(_PartEvent):
    """A chunk of agent audio in the session's output format."""

    type: ClassVar[str] = "response.output_audio.delta"
    delta: bytes


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioDone(_PartEvent):
    """No more audio for this item."""

    type: ClassVar[str] = "response.output_audio.done"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioTranscriptDelta(_PartEvent):
    """Part of the transcript of the agent audio."""

    type: ClassVar[str] = "response.output_audio_transcript.delta"
    delta: str = ""


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioTranscriptDone(_PartEvent):
    """The whole transcript of the agent audio item."""

    type: ClassVar[str] = "response.output_audio_transcript.done"
    transcript: str = ""


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputTextDelta(_PartEvent):
    """Part of a text output (text modality)."""

    type: ClassVar[str] = "response.output_text.delta"
    delta: str = ""


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputTextDone(_PartEvent):
    """A whole text output."""

    type: ClassVar[str] = "response.output_text.done"
    text: str = ""


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFunctionCallArgumentsDelta(ServerEvent):
    """Part of a function call's JSON arguments."""

    type: ClassVar[str] = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int = 0
    call_id: str
    delta: str = ""


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFunctionCallArgumentsDone(ServerEvent):
    """A function call is complete: name and JSON arguments."""

    type: ClassVar[str] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int = 0
    call_id: str
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _McpCallEvent(ServerEvent):
    item_id: str
    output_index: int = 0


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallArgumentsDelta(_McpCallEvent):
    """Part of an MCP call's arguments."""

    type: ClassVar[str] = "response.mcp_call_arguments.delta"
    response_id: str = ""
    delta: str = ""


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallArgumentsDone(_McpCallEvent):
    """An MCP call's arguments are complete."""

    type: ClassVar[str] = "response.mcp_call_arguments.done"
    response_id: str = ""
    arguments: str = ""


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallInProgress(_McpCallEvent):
    """An MCP tool call is running."""

    type: ClassVar[str] = "response.mcp_call.in_progress"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallCompleted(_McpCallEvent):
    """An MCP tool call finished."""

    type: ClassVar[str] = "response.mcp_call.completed"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMcpCallFailed(_McpCallEvent):
    """An MCP tool call failed."""

    type: ClassVar[str] = "response.mcp_call.failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class _McpListToolsEvent(ServerEvent):
    item_id: str


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class McpListToolsInProgress(_McpListToolsEvent):
    """Listing an MCP server's tools."""

    type: ClassVar[str] = "mcp_list_tools.in_progress"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class McpListToolsCompleted(_McpListToolsEvent):
    """An MCP server's tools are listed."""

    type: ClassVar[str] = "mcp_list_tools.completed"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class McpListToolsFailed(_McpListToolsEvent):
    """Listing an MCP server's tools failed."""

    type: ClassVar[str] = "mcp_list_tools.failed"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitsUpdated(ServerEvent):
    """Rate limits at the start of a response."""

    type: ClassVar[str] = "rate_limits.updated"
    rate_limits: tuple[RateLimit, ...] = ()


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(ServerEvent):
    """The server reports an error; the session usually survives it."""

    type: ClassVar[str] = "error"
    error: ErrorInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class _OutputAudioBufferEvent(ServerEvent):
    response_id: str = ""


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudioBufferStarted(_OutputAudioBufferEvent):
    """WebRTC/SIP: the server started playing a response's audio."""

    type: ClassVar[str] = "output_audio_buffer.started"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudioBufferStopped(_OutputAudioBufferEvent):
    """WebRTC/SIP: the server's output buffer drained."""

    type: ClassVar[str] = "output_audio_buffer.stopped"


@_server
@dataclass(frozen=True, slots=True, kw_only=True)
class OutputAudioBufferCleared(_OutputAudioBufferEvent):
    """WebRTC/SIP: the output buffer was cleared (interrupt or client request)."""

    type: ClassVar[str] = "output_audio_buffer.cleared"


# ---------------------------------------------------------------- parsing


def _load(data: str | bytes | Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    if isinstance(data, Mapping):
        obj: Any = data
    else:
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EventParseError(f"frame is not JSON: {exc}") from None
    if not isinstance(obj, Mapping):
        raise EventParseError(f"frame is not a JSON object but {type(obj).__name__}")
    etype = obj.get("type")
    if not isinstance(etype, str) or not etype:
        raise EventParseError("frame has no 'type'")
    return etype, obj


def parse_server_event(data: str | bytes | Mapping[str, Any]) -> ServerEvent | None:
    """A server frame -> its typed event; ``None`` (logged at debug) for an unknown type."""
    etype, obj = _load(data)
    cls = SERVER_EVENTS.get(etype)
    if cls is None:
        log.debug("ignoring unknown Realtime server event type %r", etype[:80])
        return None
    return cls.from_dict(obj, etype)


def parse_client_event(data: str | bytes | Mapping[str, Any]) -> ClientEvent | None:
    """A client frame -> its typed event (for servers and tests); ``None`` for an unknown type."""
    etype, obj = _load(data)
    cls = CLIENT_EVENTS.get(etype)
    if cls is None:
        log.debug("ignoring unknown Realtime client event type %r", etype[:80])
        return None
    return cls.from_dict(obj, etype)
