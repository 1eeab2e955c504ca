"""Strict checks of a GPT-Live ``session.start`` / ``session.update`` session object.

Unknown fields give ``unknown_parameter`` (with the dotted ``param``), a missing model
``missing_required_parameter``, a bad value ``invalid_value``, an unknown model
``model_not_found``, and a ``session.update`` touching anything but ``delegation`` (same
type) or ``triggers`` gives ``immutable_field_update``, as the service does.
"""

from __future__ import annotations

from typing import Any

from w3sipagent.ai.session import AudioFormat

__all__ = ["FORMATS", "MODELS", "VOICES", "LiveRequestError", "check_start", "check_update"]

MODELS = ("gpt-live-1", "gpt-live-1.1")
VOICES = frozenset(
    [
        "alloy",
        "ash",
        "ballad",
        "beacon",
        "bossa",
        "cedar",
        "cinder",
        "coral",
        "delta",
        "echo",
        "gleam",
        "marin",
        "meridian",
        "quartz",
        "ripple",
        "sage",
        "shida",
        "shimmer",
        "stone",
        "tempo",
        "verse",
        "vesper",
        "willow",
    ]
)
FORMATS: dict[tuple[str, int], AudioFormat | None] = {
    ("audio/pcm", 24000): AudioFormat.PCM24K,
    ("audio/pcm", 16000): None,  # accepted; the local server analyses it at 16 kHz
    ("audio/pcmu", 8000): AudioFormat.PCMU,
    ("audio/pcma", 8000): AudioFormat.PCMA,
}
_SESSION_KEYS = {
    "type", "model", "instructions", "input", "audio", "delegation", "store",
    "safety_identifier", "triggers",
}  # fmt: skip
_RESPONSES_KEYS = {
    "model", "instructions", "tools", "tool_choice", "parallel_tool_calls",
    "max_output_tokens", "reasoning", "text", "service_tier", "acknowledgement_delay_ms",
}  # fmt: skip
_TIERS = {"auto", "default", "flex", "priority", "fast_tier_temp_pilot", "ultrafast"}
_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}


class LiveRequestError(Exception):
    """A client event the server refuses: becomes an ``error`` event."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def _unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    for key in obj:
        if key not in known:
            raise LiveRequestError(
                "unknown_parameter", f"Unknown parameter: '{where}.{key}'.", f"{where}.{key}"
            )


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LiveRequestError("invalid_type", f"'{where}' must be an object.", where)
    return value


def _invalid(where: str, what: str) -> LiveRequestError:
    return LiveRequestError("invalid_value", f"Invalid value for '{where}': {what}.", where)


_CREATE_ONLY = {"client", "wake_policy", "idle_timeout_s"}


def check_start(session: Any, *, webrtc: bool = False) -> tuple[dict[str, Any], tuple[str, int]]:
    """The validated session of ``session.start`` (or, ``webrtc``, of the create request:
    no ``audio.format``, plus the create-only fields) and its ``(format type, rate)``."""
    s = _obj(session, "session")
    _unknown(s, _SESSION_KEYS | (_CREATE_ONLY if webrtc else set()), "session")
    if webrtc and isinstance(s.get("audio"), dict) and "format" in s["audio"]:
        raise LiveRequestError(
            "unknown_parameter",
            "Unknown parameter: 'session.audio.format' (WebSocket only).",
            "session.audio.format",
        )
    if "model" not in s:
        raise LiveRequestError(
            "missing_required_parameter",
            "Missing required parameter: 'session.model'.",
            "session.model",
        )
    if s["model"] not in MODELS:
        raise LiveRequestError(
            "model_not_found", f"The model '{s['model']}' does not exist.", "session.model"
        )
    if not isinstance(s.get("instructions", ""), str):
        raise _invalid("session.instructions", "expected a string")
    _check_input(s.get("input", []))
    fmt = ("audio/pcm", 24000)
    if "audio" in s:
        audio = _obj(s["audio"], "session.audio")
        _unknown(audio, {"format", "output"}, "session.audio")
        if "format" in audio:
            f = _obj(audio["format"], "session.audio.format")
            _unknown(f, {"type", "rate"}, "session.audio.format")
            fmt = (
                str(f.get("type")),
                int(f.get("rate", 24000 if f.get("type") == "audio/pcm" else 8000)),
            )
            if fmt not in FORMATS:
                raise _invalid(
                    "session.audio.format", f"unsupported format {fmt[0]} at {fmt[1]} Hz"
                )
        if "output" in audio:
            out = _obj(audio["output"], "session.audio.output")
            _unknown(out, {"voice"}, "session.audio.output")
            voice = out.get("voice", "marin")
            if isinstance(voice, dict):
                _unknown(voice, {"id"}, "session.audio.output.voice")
                if not str(voice.get("id", "")).startswith("voice_"):
                    raise _invalid("session.audio.output.voice.id", "expected a voice_… id")
            elif voice not in VOICES:
                raise _invalid("session.audio.output.voice", f"unknown voice {voice!r}")
    if "delegation" in s:
        _check_delegation(s["delegation"])
    return dict(s), fmt


def _check_input(items: Any) -> None:
    if not isinstance(items, list):
        raise _invalid("session.input", "expected an array")
    if len(items) > 128:
        raise _invalid("session.input", "at most 128 messages")
    for i, m in enumerate(items):
        where = f"session.input[{i}]"
        m = _obj(m, where)
        _unknown(m, {"type", "role", "content"}, where)
        if m.get("role") not in ("developer", "user", "assistant"):
            raise _invalid(f"{where}.role", "expected developer, user or assistant")
        content = m.get("content")
        if not isinstance(content, list) or len(content) != 1:
            raise _invalid(f"{where}.content", "expected one text part")
        part = _obj(content[0], f"{where}.content[0]")
        _unknown(part, {"type", "text"}, f"{where}.content[0]")
        ok = ("text", "output_text") if m["role"] == "assistant" else ("input_text",)
        if part.get("type") not in ok or not isinstance(part.get("text"), str):
            raise _invalid(f"{where}.content[0]", f"expected {' or '.join(ok)} with text")


def _check_delegation(d: Any) -> None:
    if d is None:
        return
    d = _obj(d, "session.delegation")
    kind = d.get("type")
    if kind == "client":
        _unknown(d, {"type", "acknowledgement_delay_ms"}, "session.delegation")
        return
    if kind == "decisions":
        _unknown(d, {"type", "decisions", "acknowledgement_delay_ms"}, "session.delegation")
        return
    if kind != "responses":
        raise _invalid("session.delegation.type", "expected client, responses or decisions")
    _unknown(d, {"type", "responses", "acknowledgement_delay_ms"}, "session.delegation")
    r = _obj(d.get("responses"), "session.delegation.responses")
    _unknown(r, _RESPONSES_KEYS, "session.delegation.responses")
    if not isinstance(r.get("model"), str) or not r["model"]:
        raise LiveRequestError(
            "missing_required_parameter",
            "Missing required parameter: 'session.delegation.responses.model'.",
            "session.delegation.responses.model",
        )
    for i, t in enumerate(r.get("tools", [])):
        where = f"session.delegation.responses.tools[{i}]"
        t = _obj(t, where)
        if t.get("type") == "function":
            _unknown(t, {"type", "name", "description", "parameters", "strict"}, where)
            if not isinstance(t.get("name"), str) or not t["name"]:
                raise LiveRequestError(
                    "missing_required_parameter", f"Missing '{where}.name'.", f"{where}.name"
                )
    if "service_tier" in r and r["service_tier"] not in _TIERS:
        raise _invalid("session.delegation.responses.service_tier", repr(r["service_tier"]))
    reasoning = r.get("reasoning")
    if reasoning is not None:
        reasoning = _obj(reasoning, "session.delegation.responses.reasoning")
        _unknown(reasoning, {"effort", "summary"}, "session.delegation.responses.reasoning")
        if "effort" in reasoning and reasoning["effort"] not in _EFFORTS:
            raise _invalid(
                "session.delegation.responses.reasoning.effort", repr(reasoning["effort"])
            )


def check_update(current: dict[str, Any], session: Any) -> dict[str, Any]:
    """The session after a ``session.update`` (only ``delegation`` of the same type and
    ``triggers`` may change)."""
    s = _obj(session, "session")
    _unknown(s, _SESSION_KEYS, "session")
    for key, value in s.items():
        if key in ("delegation", "triggers"):
            continue
        if key == "type" or current.get(key) == value:
            continue
        raise LiveRequestError(
            "immutable_field_update",
            f"'session.{key}' cannot be changed after session.start.",
            f"session.{key}",
        )
    merged = dict(current)
    if "delegation" in s:
        _check_delegation(s["delegation"])
        old = (current.get("delegation") or {}).get("type", "client")
        new = (s["delegation"] or {}).get("type", "client")
        if old != new:
            raise LiveRequestError(
                "immutable_field_update",
                "The delegation type cannot be changed after session.start.",
                "session.delegation.type",
            )
        merged["delegation"] = s["delegation"]
    if "triggers" in s:
        merged["triggers"] = s["triggers"]
    return merged
