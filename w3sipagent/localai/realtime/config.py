"""GA session configuration for the local server: defaults, ``session.update``, ``response.create``.

:func:`apply_session_update` merges a ``session.update`` payload into the
effective session object exactly as the service does: all-or-nothing, partial
(only the fields present change), with the service's error codes and messages
(``missing_required_parameter``, ``unknown_parameter``, ``invalid_type``,
``invalid_value``, ``decimal_above_max_value``...). Beta field names such as
``input_audio_format`` are unknown parameters to the GA interface.
"""

from __future__ import annotations

import copy
from typing import Any

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.realtime.errors import (
    RealtimeProtocolError,
    as_object,
    bad_type,
    bad_value,
    check_keys,
    missing,
    number,
    unknown,
)

VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. "
    "Act like a human, but remember that you aren't a human and that you can't do human things "
    "in the real world. Your voice and personality should be warm and engaging."
)
SESSION_KEYS = frozenset(
    {
        "type",
        "model",
        "output_modalities",
        "instructions",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "tracing",
        "truncation",
        "include",
        "prompt",
        "reasoning",
        "parallel_tool_calls",
        "id",
        "object",
        "expires_at",
    }
)
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")


def default_turn_detection() -> dict[str, Any]:
    """GA ``server_vad`` defaults."""
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,  # what session.created reports (the SDK docstring: 500)
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def default_session(session_id: str, model: str, expires_at: int) -> dict[str, Any]:
    """The session object of ``session.created``: the service defaults."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": expires_at,
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": default_turn_detection(),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "marin",
                "speed": 1.0,
            },
        },
    }


def parse_format(param: str, v: Any) -> dict[str, Any]:
    """Validate a GA audio format object; returns its canonical form."""
    if not isinstance(v, dict):
        raise bad_type(param, "an object", v)
    check_keys(v, {"type", "rate"}, param)
    if "type" not in v:
        raise missing(f"{param}.type")
    t = v["type"]
    allowed = ("audio/pcm", "audio/pcmu", "audio/pcma")
    if t not in allowed:
        raise bad_value(f"{param}.type", t, allowed)
    if t == "audio/pcm":
        if "rate" not in v:
            raise missing(f"{param}.rate")
        if v["rate"] != 24000:
            raise bad_value(f"{param}.rate", v["rate"], ["24000"])
        return {"type": "audio/pcm", "rate": 24000}
    if "rate" in v and v["rate"] != 8000:
        raise bad_value(f"{param}.rate", v["rate"], ["8000"])
    return {"type": t}


def format_enum(fmt: dict[str, Any]) -> AudioFormat:
    """The :class:`AudioFormat` of a canonical format object."""
    return AudioFormat(fmt["type"])


def _turn_detection(param: str, v: Any, current: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is None:
        return None
    td = as_object(param, v)
    check_keys(
        td,
        {
            "type",
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "idle_timeout_ms",
            "create_response",
            "interrupt_response",
            "eagerness",
        },
        param,
    )
    if "type" not in td:
        raise missing(f"{param}.type")
    kind = td["type"]
    if kind not in ("server_vad", "semantic_vad"):
        raise bad_value(f"{param}.type", kind, ("server_vad", "semantic_vad"))
    if kind == "server_vad":
        base = (
            dict(current)
            if current is not None and current.get("type") == "server_vad"
            else default_turn_detection()
        )
        if "eagerness" in td:
            raise unknown(f"{param}.eagerness")
        if "threshold" in td:
            base["threshold"] = number(
                f"{param}.threshold", td["threshold"], 0.0, 1.0, integer=False
            )
        for key, hi in (("prefix_padding_ms", 10000), ("silence_duration_ms", 10000)):
            if key in td:
                base[key] = int(number(f"{param}.{key}", td[key], 0, hi, integer=True))
        if "idle_timeout_ms" in td:
            if td["idle_timeout_ms"] is None:
                base["idle_timeout_ms"] = None
            else:
                base["idle_timeout_ms"] = int(
                    number(
                        f"{param}.idle_timeout_ms", td["idle_timeout_ms"], 5000, 30000, integer=True
                    )
                )
    else:
        base = (
            dict(current)
            if current is not None and current.get("type") == "semantic_vad"
            else {
                "type": "semantic_vad",
                "eagerness": "auto",
                "create_response": True,
                "interrupt_response": True,
            }
        )
        for key in ("threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
            if key in td:
                raise unknown(f"{param}.{key}")
        if "eagerness" in td:
            if td["eagerness"] not in ("low", "medium", "high", "auto"):
                raise bad_value(
                    f"{param}.eagerness", td["eagerness"], ("low", "medium", "high", "auto")
                )
            base["eagerness"] = td["eagerness"]
    for key in ("create_response", "interrupt_response"):
        if key in td:
            if not isinstance(td[key], bool):
                raise bad_type(f"{param}.{key}", "a boolean", td[key])
            base[key] = td[key]
    return base


def _tools(param: str, v: Any) -> list[dict[str, Any]]:
    if not isinstance(v, list):
        raise bad_type(param, "an array", v)
    out = []
    for i, tool in enumerate(v):
        p = f"{param}[{i}]"
        t = as_object(p, tool)
        if "type" not in t:
            raise missing(f"{p}.type")
        if t["type"] == "function":
            check_keys(t, {"type", "name", "description", "parameters"}, p)
            if not isinstance(t.get("name"), str) or not t["name"]:
                raise missing(f"{p}.name")
            if "parameters" in t and not isinstance(t["parameters"], dict):
                raise bad_type(f"{p}.parameters", "an object", t["parameters"])
        elif t["type"] != "mcp":
            raise bad_value(f"{p}.type", t["type"], ("function", "mcp"))
        out.append(copy.deepcopy(t))
    return out


def _tool_choice(param: str, v: Any) -> Any:
    if isinstance(v, str):
        if v not in ("auto", "none", "required"):
            raise bad_value(param, v, ("auto", "none", "required"))
        return v
    tc = as_object(param, v)
    if tc.get("type") not in ("function", "mcp"):
        raise bad_value(f"{param}.type", tc.get("type"), ("function", "mcp"))
    if tc["type"] == "function" and not isinstance(tc.get("name"), str):
        raise missing(f"{param}.name")
    return copy.deepcopy(tc)


def _max_tokens(param: str, v: Any) -> Any:
    if v == "inf":
        return "inf"
    if isinstance(v, str):
        raise bad_value(param, v, ["inf"])
    return int(number(param, v, 1, 4096, integer=True))


def _modalities(param: str, v: Any) -> list[str]:
    if not isinstance(v, list):
        raise bad_type(param, "an array", v)
    if len(v) != 1:
        raise RealtimeProtocolError(
            f"Invalid '{param}': expected exactly one of 'audio' or 'text'.",
            code="invalid_value",
            param=param,
        )
    if v[0] not in ("audio", "text"):
        raise bad_value(f"{param}[0]", v[0], ("audio", "text"))
    return [v[0]]


def validate_voice(param: str, v: Any) -> Any:
    """A GA voice: one of :data:`VOICES` or a custom ``{"id": "voice_..."}``."""
    if isinstance(v, dict):
        if not isinstance(v.get("id"), str) or not v["id"].startswith("voice_"):
            raise bad_value(f"{param}.id", v.get("id"), ["voice_..."])
        return {"id": v["id"]}
    if not isinstance(v, str):
        raise bad_type(param, "a string", v)
    if v not in VOICES:
        raise bad_value(param, v, VOICES)
    return v


def _common_fields(src: dict[str, Any], dst: dict[str, Any], prefix: str) -> None:
    """Validate the fields a session and a response share, copying the present ones."""
    if "output_modalities" in src:
        dst["output_modalities"] = _modalities(
            f"{prefix}.output_modalities", src["output_modalities"]
        )
    if "instructions" in src:
        if not isinstance(src["instructions"], str):
            raise bad_type(f"{prefix}.instructions", "a string", src["instructions"])
        dst["instructions"] = src["instructions"]
    if "tools" in src:
        dst["tools"] = _tools(f"{prefix}.tools", src["tools"])
    if "tool_choice" in src:
        dst["tool_choice"] = _tool_choice(f"{prefix}.tool_choice", src["tool_choice"])
    if "max_output_tokens" in src:
        dst["max_output_tokens"] = _max_tokens(
            f"{prefix}.max_output_tokens", src["max_output_tokens"]
        )


def apply_session_update(
    current: dict[str, Any], update: Any, *, audio_sent: bool
) -> dict[str, Any]:
    """Merge a ``session.update`` ``session`` payload into ``current``; all-or-nothing.

    ``audio_sent``: whether assistant audio exists already (the voice is then frozen).
    Raises :class:`RealtimeProtocolError` with the service's code and param.
    """
    if update is None:
        raise missing("session")
    s = as_object("session", update)
    check_keys(s, SESSION_KEYS, "session")
    if "type" not in s:
        raise missing("session.type")
    if s["type"] != current["type"]:
        if s["type"] not in ("realtime", "transcription"):
            raise bad_value("session.type", s["type"], ("realtime", "transcription"))
        raise RealtimeProtocolError(
            f"Cannot change session type from '{current['type']}' to '{s['type']}'.",
            code="invalid_value",
            param="session.type",
        )
    new = copy.deepcopy(current)
    if "model" in s and s["model"] != current["model"]:
        raise RealtimeProtocolError(
            "Cannot update a session's model.", code="invalid_value", param="session.model"
        )
    _common_fields(s, new, "session")
    if "truncation" in s:
        tr = s["truncation"]
        if isinstance(tr, str):
            if tr not in ("auto", "disabled"):
                raise bad_value("session.truncation", tr, ("auto", "disabled"))
        elif not isinstance(tr, dict) or tr.get("type") != "retention_ratio":
            raise bad_value("session.truncation.type", _get(tr, "type"), ["retention_ratio"])
        new["truncation"] = copy.deepcopy(tr)
    if "tracing" in s:
        if current["tracing"] is not None and s["tracing"] != current["tracing"]:
            raise RealtimeProtocolError(
                "Tracing cannot be modified once enabled.",
                code="invalid_value",
                param="session.tracing",
            )
        if (
            s["tracing"] is not None
            and s["tracing"] != "auto"
            and not isinstance(s["tracing"], dict)
        ):
            raise bad_value("session.tracing", s["tracing"], ["auto"])
        new["tracing"] = copy.deepcopy(s["tracing"])
    for key in ("include", "prompt"):
        if key in s:
            new[key] = copy.deepcopy(s[key])
    if "reasoning" in s:  # newer (reasoning) models
        r = as_object("session.reasoning", s["reasoning"])
        check_keys(r, {"effort"}, "session.reasoning")
        if "effort" in r and r["effort"] not in REASONING_EFFORTS:
            raise bad_value("session.reasoning.effort", r["effort"], REASONING_EFFORTS)
        new["reasoning"] = copy.deepcopy(r)
    if "parallel_tool_calls" in s:
        if not isinstance(s["parallel_tool_calls"], bool):
            raise bad_type("session.parallel_tool_calls", "a boolean", s["parallel_tool_calls"])
        new["parallel_tool_calls"] = s["parallel_tool_calls"]
    if "audio" in s:
        audio = as_object("session.audio", s["audio"])
        check_keys(audio, {"input", "output"}, "session.audio")
        if "input" in audio:
            inp = as_object("session.audio.input", audio["input"])
            check_keys(
                inp,
                {"format", "transcription", "noise_reduction", "turn_detection"},
                "session.audio.input",
            )
            cur_in = new["audio"]["input"]
            if "format" in inp:
                cur_in["format"] = parse_format("session.audio.input.format", inp["format"])
            if "turn_detection" in inp:
                cur_in["turn_detection"] = _turn_detection(
                    "session.audio.input.turn_detection",
                    inp["turn_detection"],
                    current["audio"]["input"]["turn_detection"],
                )
            if "transcription" in inp:
                tr = inp["transcription"]
                if tr is not None:
                    tr = as_object("session.audio.input.transcription", tr)
                    tr = _transcription(tr)
                cur_in["transcription"] = tr
            if "noise_reduction" in inp:
                nr = inp["noise_reduction"]
                if nr is not None:
                    nr = as_object("session.audio.input.noise_reduction", nr)
                    check_keys(nr, {"type"}, "session.audio.input.noise_reduction")
                    if nr.get("type") not in ("near_field", "far_field"):
                        raise bad_value(
                            "session.audio.input.noise_reduction.type",
                            nr.get("type"),
                            ("near_field", "far_field"),
                        )
                    nr = {"type": nr["type"]}
                cur_in["noise_reduction"] = nr
        if "output" in audio:
            out = as_object("session.audio.output", audio["output"])
            check_keys(out, {"format", "voice", "speed"}, "session.audio.output")
            cur_out = new["audio"]["output"]
            if "format" in out:
                cur_out["format"] = parse_format("session.audio.output.format", out["format"])
            if "voice" in out:
                voice = validate_voice("session.audio.output.voice", out["voice"])
                if audio_sent and voice != current["audio"]["output"]["voice"]:
                    raise RealtimeProtocolError(
                        "Cannot update a conversation's voice if assistant audio is present.",
                        code="cannot_update_voice",
                        param="session.audio.output.voice",
                    )
                cur_out["voice"] = voice
            if "speed" in out:
                cur_out["speed"] = number(
                    "session.audio.output.speed", out["speed"], 0.25, 1.5, integer=False
                )
    return new


def _transcription(tr: dict[str, Any]) -> dict[str, Any]:
    param = "session.audio.input.transcription"
    check_keys(tr, {"model", "language", "prompt", "delay", "keywords", "languages"}, param)
    for key in ("model", "language", "prompt"):
        if tr.get(key) is not None and not isinstance(tr[key], str):
            raise bad_type(f"{param}.{key}", "a string", tr[key])
    for key in ("keywords", "languages"):
        if key in tr and (
            not isinstance(tr[key], list) or not all(isinstance(x, str) for x in tr[key])
        ):
            raise bad_type(f"{param}.{key}", "an array of strings", tr[key])
    out = {
        "model": tr.get("model", "whisper-1"),
        "language": tr.get("language"),
        "prompt": tr.get("prompt"),
    }
    out.update({k: copy.deepcopy(tr[k]) for k in ("delay", "keywords", "languages") if k in tr})
    return out


def _get(v: Any, key: str) -> Any:
    return v.get(key) if isinstance(v, dict) else v


def validate_response_params(params: Any) -> dict[str, Any]:
    """Validate ``response.create.response``; returns the accepted parameters."""
    if params is None:
        return {}
    r = as_object("response", params)
    check_keys(
        r,
        {
            "output_modalities",
            "instructions",
            "tools",
            "tool_choice",
            "max_output_tokens",
            "audio",
            "conversation",
            "input",
            "metadata",
            "prompt",
        },
        "response",
    )
    out: dict[str, Any] = {}
    _common_fields(r, out, "response")
    if "conversation" in r:
        if r["conversation"] not in ("auto", "none"):
            raise bad_value("response.conversation", r["conversation"], ("auto", "none"))
        out["conversation"] = r["conversation"]
    if "metadata" in r:
        if r["metadata"] is not None and not isinstance(r["metadata"], dict):
            raise bad_type("response.metadata", "an object", r["metadata"])
        out["metadata"] = r["metadata"]
    if "input" in r:
        if not isinstance(r["input"], list):
            raise bad_type("response.input", "an array", r["input"])
        out["input"] = r["input"]
    if "audio" in r:
        audio = as_object("response.audio", r["audio"])
        check_keys(audio, {"output"}, "response.audio")
        o = as_object("response.audio.output", audio.get("output", {}))
        check_keys(o, {"format", "voice"}, "response.audio.output")
        if "format" in o:
            out["format"] = parse_format("response.audio.output.format", o["format"])
        if "voice" in o:
            out["voice"] = validate_voice("response.audio.output.voice", o["voice"])
    return out
