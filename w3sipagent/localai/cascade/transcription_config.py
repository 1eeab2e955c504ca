"""The transcription session's configuration in the local cascade server: the models and
what each does, the defaults ``session.created`` reports, and ``session.update`` checked as
the service checks it (errors from :mod:`w3sipagent.localai.realtime.errors`).

Sources, so that what is verified and what is assumed stays apart (docs/localai-cascade.md):

- the OpenAI Python SDK (``types/realtime/audio_transcription.py``,
  ``realtime_transcription_session_audio_input*.py``,
  ``realtime_transcription_session_turn_detection.py``): the model names; ``delay``
  (``minimal`` … ``xhigh``) "only supported with ``gpt-realtime-whisper``"; ``prompt`` "not
  supported with ``gpt-realtime-whisper``"; ``keywords`` and ``languages`` "supported by
  ``gpt-transcribe`` and ``gpt-live-transcribe``"; for ``gpt-realtime-whisper`` "turn
  detection must be set to ``null``"; server VAD defaults threshold 0.5, prefix 300 ms,
  silence 500 ms; the session's turn detection object has exactly those four fields;
  "transcription begins when the input audio buffer is committed" (the ``.completed``
  event, written before the streaming models).
- OpenAI's realtime transcription guide: ``gpt-realtime-whisper`` is "natively streaming"
  (deltas as audio arrives), ``gpt-live-transcribe`` "returns transcript deltas as speech
  arrives and a final transcript when your application commits each audio turn";
  ``gpt-4o-transcribe`` is for workflows "where streaming isn't required".
- third-party reports (assumed): ``gpt-live-transcribe`` also refuses any turn detection
  ("Turn detection is not supported for this transcription model") and takes ``delay``;
  ``whisper-1`` sends one delta (the whole transcript).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from w3sipagent.localai.realtime.errors import (
    RealtimeProtocolError,
    as_object,
    bad_type,
    bad_value,
    check_keys,
    missing,
    number,
)

__all__ = [
    "DELAY_LAG_MS",
    "MODELS",
    "ModelTraits",
    "default_config",
    "update_config",
]

DELAYS = ("minimal", "low", "medium", "high", "xhigh")
DELAY_LAG_MS = {"minimal": 80, "low": 160, "medium": 320, "high": 640, "xhigh": 1280}
"""How far (ms of audio) a streaming model's words lag the speech, per ``delay`` (the
values are this imitation's choice; the service publishes none). No ``delay``: ``low``."""


@dataclass(frozen=True, slots=True)
class ModelTraits:
    """What a transcription model does in a transcription session."""

    live: bool
    """Streams words while the audio arrives (else: transcribes the committed item)."""
    usage: Literal["tokens", "duration"]
    vad: bool = True
    """Takes ``turn_detection`` (the live models refuse anything but null)."""
    prompt: bool = True
    delay: bool = False
    hints: bool = False
    """Takes ``keywords`` and ``languages``."""
    one_delta: bool = False
    """Sends the whole transcript as a single delta (``whisper-1``)."""


MODELS: dict[str, ModelTraits] = {
    "gpt-realtime-whisper": ModelTraits(True, "duration", vad=False, prompt=False, delay=True),
    "gpt-live-transcribe": ModelTraits(True, "duration", vad=False, delay=True, hints=True),
    "gpt-transcribe": ModelTraits(False, "tokens", hints=True),
    "gpt-4o-transcribe": ModelTraits(False, "tokens"),
    "gpt-4o-mini-transcribe": ModelTraits(False, "tokens"),
    "gpt-4o-mini-transcribe-2025-12-15": ModelTraits(False, "tokens"),
    "whisper-1": ModelTraits(False, "duration", one_delta=True),
}
_TD = "session.audio.input.turn_detection"
_TR = "session.audio.input.transcription"


def default_turn_detection() -> dict[str, Any]:
    """``server_vad`` with the SDK's documented defaults (the service's default mode)."""
    return {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 500}  # fmt: skip


def default_config(session_id: str) -> dict[str, Any]:
    """The session object of ``session.created``."""
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "type": "transcription",
        "expires_at": 0,
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "noise_reduction": None,
                "transcription": None,
                "turn_detection": default_turn_detection(),
            }
        },
    }


def unsupported(param: str) -> RealtimeProtocolError:
    """A field the chosen model does not take (the service's wording for such a field
    elsewhere in the API; its code here is assumed)."""
    return RealtimeProtocolError(
        f"Unsupported parameter: '{param}' is not supported with this model.",
        code="unsupported_parameter",
        param=param,
    )


def update_config(config: dict[str, Any], session: Any) -> None:
    """Apply a ``session.update``'s ``session`` to ``config`` (all or nothing; raises
    :class:`RealtimeProtocolError`)."""
    if session is None:
        raise missing("session")
    session = as_object("session", session)
    if session.get("type") != "transcription":
        raise RealtimeProtocolError(
            f"Invalid value: '{session.get('type')}'. This is a transcription session: "
            "session.type must be 'transcription'.",
            param="session.type",
        )
    check_keys(session, {"type", "audio", "include", "id", "object", "expires_at"}, "session")
    audio = as_object("session.audio", session.get("audio") or {})
    check_keys(audio, {"input"}, "session.audio")
    inp = as_object("session.audio.input", audio.get("input") or {})
    check_keys(
        inp, {"format", "noise_reduction", "transcription", "turn_detection"}, "session.audio.input"
    )
    cur = config["audio"]["input"]
    new = dict(cur)
    if "format" in inp:
        new["format"] = _format(inp["format"])
    if "noise_reduction" in inp:
        nr = inp["noise_reduction"]
        if nr is not None:
            nr = as_object("session.audio.input.noise_reduction", nr)
            if nr.get("type") not in ("near_field", "far_field"):
                raise bad_value(
                    "session.audio.input.noise_reduction.type",
                    nr.get("type"),
                    ("near_field", "far_field"),
                )
            nr = {"type": nr["type"]}
        new["noise_reduction"] = nr
    if "transcription" in inp:
        new["transcription"] = _transcription(inp["transcription"])
    traits = model_traits(new["transcription"])
    if "turn_detection" in inp:
        td = inp["turn_detection"]
        if td is not None and traits is not None and not traits.vad:
            raise RealtimeProtocolError(
                "Turn detection is not supported for this transcription model: set "
                "turn_detection to null and commit the input audio buffer.",
                param=_TD,
            )
        new["turn_detection"] = None if td is None else _turn_detection(td, cur["turn_detection"])
    elif traits is not None and not traits.vad:
        new["turn_detection"] = None  # a live model without VAD: the client commits
    if "include" in session:
        inc = session["include"]
        if inc is not None and (
            not isinstance(inc, list)
            or any(i != "item.input_audio_transcription.logprobs" for i in inc)
        ):
            raise bad_value("session.include", inc, ["item.input_audio_transcription.logprobs"])
        config["include"] = inc
    config["audio"]["input"] = new


def model_traits(transcription: dict[str, Any] | None) -> ModelTraits | None:
    """The traits of the configured model (None: transcription off)."""
    return None if transcription is None else MODELS[transcription["model"]]


def _format(v: Any) -> dict[str, Any]:
    fmt = as_object("session.audio.input.format", v)
    kind = fmt.get("type")
    if kind not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
        raise bad_value(
            "session.audio.input.format.type", kind, ("audio/pcm", "audio/pcmu", "audio/pcma")
        )
    if kind == "audio/pcm":
        if fmt.get("rate", 24000) != 24000:
            raise RealtimeProtocolError(
                "Only a 24kHz sample rate is supported.", param="session.audio.input.format.rate"
            )
        return {"type": kind, "rate": 24000}
    return {"type": kind}


def _transcription(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    tr = as_object(_TR, v)
    check_keys(tr, {"model", "language", "prompt", "delay", "keywords", "languages"}, _TR)
    model = tr.get("model")
    if model == "gpt-4o-transcribe-diarize":
        raise RealtimeProtocolError(
            "The local server does not imitate diarization: use another transcription model.",
            code="unsupported_value",
            param=f"{_TR}.model",
        )
    if model not in MODELS:
        raise bad_value(f"{_TR}.model", model, list(MODELS))
    traits = MODELS[model]
    out: dict[str, Any] = {"model": model, "language": None, "prompt": None}
    for key in ("language", "prompt"):
        if tr.get(key) is not None:
            if not isinstance(tr[key], str):
                raise bad_type(f"{_TR}.{key}", "a string", tr[key])
            out[key] = tr[key]
    if out["prompt"] is not None and not traits.prompt:
        raise unsupported(f"{_TR}.prompt")
    if tr.get("delay") is not None:
        if not traits.delay:
            raise unsupported(f"{_TR}.delay")
        if tr["delay"] not in DELAYS:
            raise bad_value(f"{_TR}.delay", tr["delay"], DELAYS)
        out["delay"] = tr["delay"]
    for key in ("keywords", "languages"):
        if tr.get(key) is None:
            continue
        if not traits.hints:
            raise unsupported(f"{_TR}.{key}")
        items = tr[key]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise bad_type(f"{_TR}.{key}", "an array of strings", items)
        if key == "languages" and not items:
            raise RealtimeProtocolError(
                f"Invalid '{_TR}.languages': empty array. Expected an array with minimum "
                "length 1, but got an empty array instead.",
                code="empty_array",
                param=f"{_TR}.languages",
            )
        out[key] = list(items)
    return out


def _turn_detection(v: Any, current: dict[str, Any] | None) -> dict[str, Any]:
    td = as_object(_TD, v)
    check_keys(
        td,
        {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms",
         "create_response", "interrupt_response", "eagerness"},
        _TD,
    )  # fmt: skip
    if "type" not in td:
        raise missing(f"{_TD}.type")
    if td["type"] == "semantic_vad":
        raise RealtimeProtocolError(
            "The local server imitates server_vad only in transcription sessions.",
            code="unsupported_value",
            param=f"{_TD}.type",
        )
    if td["type"] != "server_vad":
        raise bad_value(f"{_TD}.type", td["type"], ("server_vad", "semantic_vad"))
    if "eagerness" in td:
        raise RealtimeProtocolError(f"Unknown parameter: '{_TD}.eagerness'.",
                                    code="unknown_parameter", param=f"{_TD}.eagerness")  # fmt: skip
    base = dict(current) if current is not None else default_turn_detection()
    if "threshold" in td:
        base["threshold"] = number(f"{_TD}.threshold", td["threshold"], 0.0, 1.0, integer=False)
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if key in td:
            base[key] = int(number(f"{_TD}.{key}", td[key], 0, 10000, integer=True))
    for key in ("create_response", "interrupt_response"):  # no responses here: checked only
        if key in td and not isinstance(td[key], bool):
            raise bad_type(f"{_TD}.{key}", "a boolean", td[key])
    if td.get("idle_timeout_ms") is not None:
        number(f"{_TD}.idle_timeout_ms", td["idle_timeout_ms"], 5000, 30000, integer=True)
    return base
