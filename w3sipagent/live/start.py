"""The ``session.start`` of a GPT-Live session, built from an AI session configuration.

Audio format both ways (G.711 passthrough at 8 kHz or PCM16 at 24 kHz), the voice (a
``voice_…`` id becomes a custom voice object), the conversation so far as ``input``
(≤ 128 messages) and the tools, which GPT-Live runs through a delegated Responses model.
"""

from __future__ import annotations

from typing import Any

from w3sipagent.ai import session as ai

__all__ = [
    "DEFAULT_TOOL_MODEL",
    "MAX_INPUT_MESSAGES",
    "audio_format_object",
    "input_messages",
    "session_start_object",
]

DEFAULT_TOOL_MODEL = "gpt-5-mini"
"""The delegated Responses model when the agent names none."""
MAX_INPUT_MESSAGES = 128
_MAX_INPUT_CHARS = 24_000  # ≈ the 8,192 rendered tokens session.start's input allows


def audio_format_object(fmt: ai.AudioFormat) -> dict[str, Any]:
    """``audio.format`` of ``session.start`` for an AI audio format."""
    return {"type": fmt.value, "rate": fmt.sample_rate}


def session_start_object(c: ai.AISessionConfig) -> dict[str, Any]:
    """The ``session`` of ``session.start`` for configuration ``c``."""
    session: dict[str, Any] = {"model": c.model, "instructions": c.instructions}
    history = input_messages(c.history)
    if history:
        session["input"] = history
    audio: dict[str, Any] = {"format": audio_format_object(c.input_format)}
    if c.voice:
        voice: Any = {"id": c.voice} if c.voice.startswith("voice_") else c.voice
        audio["output"] = {"voice": voice}
    session["audio"] = audio
    responses: dict[str, Any] = {"model": c.tool_model or DEFAULT_TOOL_MODEL}
    if c.instructions:
        responses["instructions"] = c.instructions
    if c.tools:
        responses["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            }
            for t in c.tools
        ]
        responses["tool_choice"] = c.tool_choice
    if c.tool_reasoning_effort:
        responses["reasoning"] = {"effort": c.tool_reasoning_effort}
    if c.tool_service_tier:
        responses["service_tier"] = c.tool_service_tier
    if c.max_output_tokens is not None:
        responses["max_output_tokens"] = c.max_output_tokens
    session["delegation"] = {"type": "responses", "responses": responses}
    return session


def input_messages(history: tuple[ai.HistoryItem, ...]) -> list[dict[str, Any]]:
    """``session.start``'s ``input``: the last ≤ 128 messages, within its size limit."""
    items = list(history)[-MAX_INPUT_MESSAGES:]
    while items and sum(len(i.text) for i in items) > _MAX_INPUT_CHARS:
        items.pop(0)
    out: list[dict[str, Any]] = []
    for it in items:
        if it.role == "assistant":
            out.append({"role": "assistant", "content": [{"type": "output_text", "text": it.text}]})
        else:
            role = "user" if it.role == "user" else "developer"
            out.append({"role": role, "content": [{"type": "input_text", "text": it.text}]})
    return out
