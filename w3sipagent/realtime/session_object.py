"""The GA ``session`` object of a Realtime session, built from an :class:`AISessionConfig`.

:func:`session_object` is what ``session.update`` (WebSocket) and the WebRTC call's
``session`` field carry; :func:`audio_format_object` maps an audio format to its GA object.
"""

from __future__ import annotations

from typing import Any

from w3sipagent.ai import session as ai

CUSTOM_VOICE_PREFIX = "voice_"


def audio_format_object(fmt: ai.AudioFormat) -> dict[str, Any]:
    """The GA ``audio.*.format`` object of an audio format."""
    if fmt is ai.AudioFormat.PCM24K:
        return {"type": "audio/pcm", "rate": 24000}
    return {"type": fmt.value}


def _turn_detection(td: ai.TurnDetection | None) -> dict[str, Any] | None:
    if td is None:
        return None
    if td.type == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": td.eagerness,
            "create_response": td.create_response,
            "interrupt_response": td.interrupt_response,
        }
    out: dict[str, Any] = {
        "type": "server_vad",
        "threshold": td.threshold,
        "prefix_padding_ms": td.prefix_padding_ms,
        "silence_duration_ms": td.silence_duration_ms,
        "create_response": td.create_response,
        "interrupt_response": td.interrupt_response,
    }
    if td.idle_timeout_ms is not None:
        out["idle_timeout_ms"] = td.idle_timeout_ms
    return out


def session_object(
    config: ai.AISessionConfig, *, with_model: bool = False, with_formats: bool = True
) -> dict[str, Any]:
    """The full GA session object for ``session.update`` (or the WebRTC ``session`` field).

    ``with_model`` adds ``model`` (WebRTC calls; over WebSocket it is in the URL and not
    updatable). ``with_formats`` False leaves out the audio formats (WebRTC carries Opus).
    """
    transcription: dict[str, Any] | None = None
    if config.transcription_model:
        transcription = {"model": config.transcription_model}
        if config.transcription_language:
            transcription["language"] = config.transcription_language
        if config.transcription_prompt:
            transcription["prompt"] = config.transcription_prompt
    audio_in: dict[str, Any] = {
        "turn_detection": _turn_detection(config.turn_detection),
        "transcription": transcription,
        "noise_reduction": (
            {"type": config.noise_reduction} if config.noise_reduction is not None else None
        ),
    }
    audio_out: dict[str, Any] = {}
    if with_formats:
        audio_in["format"] = audio_format_object(config.input_format)
        audio_out["format"] = audio_format_object(config.output_format)
    if config.voice:
        audio_out["voice"] = voice_object(config.voice)
    if config.speed is not None:
        audio_out["speed"] = config.speed
    session: dict[str, Any] = {"type": "realtime"}
    if with_model:
        session["model"] = config.model
    session["output_modalities"] = ["audio"]
    session["instructions"] = config.instructions  # "" too: no default persona
    session["audio"] = {"input": audio_in, "output": audio_out}
    session["tools"] = [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters,
        }
        for t in config.tools
    ]
    if config.tool_choice in ("auto", "none", "required"):
        session["tool_choice"] = config.tool_choice
    else:
        session["tool_choice"] = {"type": "function", "name": config.tool_choice}
    session["max_output_tokens"] = (
        config.max_output_tokens if config.max_output_tokens is not None else "inf"
    )
    if config.truncation is not None:  # None: the service default ("auto")
        session["truncation"] = config.truncation
    if config.prompt is not None:
        prompt: dict[str, Any] = {"id": config.prompt.id}
        if config.prompt.version is not None:
            prompt["version"] = config.prompt.version
        if config.prompt.variables:
            prompt["variables"] = dict(config.prompt.variables)
        session["prompt"] = prompt
    if config.tracing is not None:  # immutable once on: the same value on every update
        session["tracing"] = config.tracing
    if config.include:
        session["include"] = list(config.include)
    return session


def voice_object(voice: str) -> str | dict[str, str]:
    """A built-in voice by name, a custom voice (``voice_...``) as ``{"id": ...}``."""
    return {"id": voice} if voice.startswith(CUSTOM_VOICE_PREFIX) else voice
