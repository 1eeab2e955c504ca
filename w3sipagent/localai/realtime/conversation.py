"""The conversation of a local Realtime session: its items and the rules for them.

:class:`Conversation` owns the ordered items (insert after a given item, look up,
delete, truncate assistant audio, count input tokens); :func:`validate_item` turns the
``item`` of a ``conversation.item.create`` into an :class:`Item` or raises the
service's error. No I/O: the session emits the events.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.realtime.errors import (
    RealtimeProtocolError,
    bad_type,
    bad_value,
    missing,
)


@dataclass
class Item:
    """One conversation item: its wire object, its audio and the scenario turn it belongs to."""

    id: str
    data: dict[str, Any]
    audio: bytearray = field(default_factory=bytearray)
    audio_format: AudioFormat | None = None
    turn: int | None = None

    def audio_ms(self) -> int:
        if self.audio_format is None:
            return 0
        return len(self.audio) // self.audio_format.bytes_per_ms

    def public(self) -> dict[str, Any]:
        """A deep copy of the wire object (what events carry)."""
        return json.loads(json.dumps(self.data))  # type: ignore[no-any-return]


class Conversation:
    """The ordered items of one session."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._by_id: dict[str, Item] = {}

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._by_id

    def get(self, item_id: str) -> Item | None:
        return self._by_id.get(item_id)

    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def add(
        self, item: Item, previous_item_id: str | None = None, *, append: bool = True
    ) -> str | None:
        """Insert ``item`` (at the end, or after ``previous_item_id``, ``"root"`` = first);
        returns the previous item's id."""
        if not append and previous_item_id is not None:
            if previous_item_id == "root":
                self.items.insert(0, item)
                prev = None
            else:
                idx = next(i for i, it in enumerate(self.items) if it.id == previous_item_id)
                self.items.insert(idx + 1, item)
                prev = previous_item_id
        else:
            prev = self.last_id()
            self.items.append(item)
        self._by_id[item.id] = item
        return prev

    def remove(self, item: Item) -> None:
        self.items.remove(item)
        del self._by_id[item.id]

    def find(self, ev: dict[str, Any]) -> Item:
        """The item named by ``ev["item_id"]``, or the service's error."""
        item_id = ev.get("item_id")
        if item_id is None:
            raise missing("item_id")
        item = self._by_id.get(item_id) if isinstance(item_id, str) else None
        if item is None:
            raise RealtimeProtocolError(
                f"Item with item_id '{item_id}' not found.", param="item_id"
            )
        return item

    def input_tokens(self, instructions: str, tools: list[dict[str, Any]]) -> tuple[int, int]:
        """Estimated (text, audio) input tokens of instructions, tools and every item."""
        text_chars = len(instructions) + len(json.dumps(tools)) * int(bool(tools))
        audio_ms = 0
        for it in self.items:
            if it.data.get("role") == "user" and it.audio:
                audio_ms += it.audio_ms()
            for part in it.data.get("content") or []:
                text_chars += len(part.get("text") or part.get("transcript") or "")
            text_chars += len(it.data.get("arguments", "")) + len(it.data.get("output", ""))
        return math.ceil(text_chars / 4), math.ceil(audio_ms / 100)


def check_truncate(ev: dict[str, Any], item: Item) -> int:
    """The ``audio_end_ms`` of a valid ``conversation.item.truncate`` of ``item``."""
    end = ev.get("audio_end_ms")
    ci = ev.get("content_index", 0)
    if end is None:
        raise missing("audio_end_ms")
    if isinstance(end, bool) or not isinstance(end, int):
        raise bad_type("audio_end_ms", "an integer", end)
    if end < 0:
        raise RealtimeProtocolError(
            f"Invalid 'audio_end_ms': integer below minimum value. Expected a value >= 0, but got {end} instead.",
            code="integer_below_min_value",
            param="audio_end_ms",
        )
    if ci != 0:
        raise bad_value("content_index", ci, ["0"])
    if item.data.get("role") != "assistant" or item.audio_format is None:
        raise RealtimeProtocolError(
            "Only assistant messages with audio can be truncated.", param="item_id"
        )
    have = item.audio_ms()
    if end > have:
        raise RealtimeProtocolError(
            f"Audio content of {have}ms is already shorter than {end}ms",
            param="audio_end_ms",
        )
    return end


def truncate_audio(item: Item, end_ms: int) -> None:
    """Cut an assistant item's audio at ``end_ms`` and its transcript in proportion."""
    assert item.audio_format is not None
    have = item.audio_ms()
    del item.audio[end_ms * item.audio_format.bytes_per_ms :]
    content = item.data.get("content") or [{}]
    transcript = content[0].get("transcript") or ""
    if have > 0 and transcript:
        words = transcript.split()
        keep = int(len(words) * min(1.0, end_ms / have))
        content[0]["transcript"] = " ".join(words[:keep])


_ALLOWED_PARTS = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio"),
}


def validate_item(
    raw: dict[str, Any], new_id: Callable[[str], str], input_format: AudioFormat
) -> Item:
    """The :class:`Item` of a ``conversation.item.create``, or the service's error.

    ``new_id`` makes an id when the client gave none; user audio is in ``input_format``.
    """
    kind = raw.get("type")
    if kind is None:
        raise missing("item.type")
    item_id = raw.get("id") or new_id("item")
    if not isinstance(item_id, str):
        raise bad_type("item.id", "a string", item_id)
    if kind == "message":
        return _message(raw, item_id, input_format)
    if kind == "function_call":
        for key in ("call_id", "name"):
            if not isinstance(raw.get(key), str):
                raise missing(f"item.{key}")
        data = {
            "id": item_id,
            "type": "function_call",
            "object": "realtime.item",
            "status": "completed",
            "call_id": raw["call_id"],
            "name": raw["name"],
            "arguments": raw.get("arguments", ""),
        }
        return Item(item_id, data)
    if kind == "function_call_output":
        if not isinstance(raw.get("call_id"), str):
            raise missing("item.call_id")
        output = raw.get("output")
        if not isinstance(output, str):
            raise (
                missing("item.output")
                if output is None
                else bad_type("item.output", "a string", output)
            )
        data = {
            "id": item_id,
            "type": "function_call_output",
            "object": "realtime.item",
            "status": "completed",
            "call_id": raw["call_id"],
            "output": output,
        }
        return Item(item_id, data)
    raise bad_value("item.type", kind, ("message", "function_call", "function_call_output"))


def _message(raw: dict[str, Any], item_id: str, input_format: AudioFormat) -> Item:
    role = raw.get("role")
    if role not in ("user", "assistant", "system"):
        raise bad_value("item.role", role, ("user", "assistant", "system"))
    content = raw.get("content")
    if not isinstance(content, list):
        raise missing("item.content")
    allowed = _ALLOWED_PARTS[role]
    parts = []
    audio = bytearray()
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise bad_type(f"item.content[{i}]", "an object", part)
        ptype = part.get("type")
        if ptype not in allowed:
            raise bad_value(f"item.content[{i}].type", ptype, allowed)
        if role == "assistant" and ptype == "output_audio" and part.get("audio"):
            raise RealtimeProtocolError(
                "Assistant audio content cannot be created.", param=f"item.content[{i}]"
            )
        p = {k: v for k, v in part.items() if k != "audio"}
        if ptype == "input_audio":
            try:
                audio += base64.b64decode(part.get("audio") or "", validate=True)
            except (binascii.Error, ValueError):
                raise RealtimeProtocolError(
                    "Invalid 'audio': expected base64-encoded audio bytes.",
                    param=f"item.content[{i}].audio",
                ) from None
            p.setdefault("transcript", None)
        parts.append(p)
    data = {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": "completed",
        "role": role,
        "content": parts,
    }
    return Item(item_id, data, audio, input_format if audio else None)
