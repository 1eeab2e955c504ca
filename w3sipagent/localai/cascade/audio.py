"""``POST /v1/audio/transcriptions`` and ``POST /v1/audio/speech``.

Transcription has no recognizer: the text of the N-th transcription request made with an
API key is the ``caller`` line of the scenario's turn N (as the Realtime imitation
reports the caller's turn N), empty past the script. The audio is still checked (a known
file format, not empty) and a WAV's length gives ``duration``. Response formats
``json``, ``text``, ``verbose_json`` (``whisper-1`` only, with segments and, when asked,
words), ``srt`` and ``vtt``; ``stream=true`` (``gpt-4o-*`` models) sends
``transcript.text.delta`` / ``transcript.text.done`` events (shapes from
``openai/types/audio/`` at e43b422412a9e96c9cc5192c61fffbe2d7e04836).

Speech is espeak-ng through :class:`~w3sipagent.localai.tts.Synthesizer` (tones when it
is missing), streamed as it is produced in 100 ms chunks: ``pcm`` (24 kHz 16-bit
little-endian mono, the service's raw format) or ``wav`` (a streaming header whose sizes
are 0xFFFFFFFF, as the service sends); ``stream_format = "sse"`` sends
``speech.audio.delta`` / ``speech.audio.done`` events. mp3, opus, aac and flac are
refused with a 400 naming the formats this server has.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from w3sipagent.localai.audio import PCM_RATE, WavError, parse_wav
from w3sipagent.localai.cascade.embeddings import token_count
from w3sipagent.localai.cascade.http import (
    FormField,
    HttpResponse,
    api_error,
    json_response,
    sse,
)
from w3sipagent.localai.cascade.model import SSE_HEADERS, Pacing
from w3sipagent.localai.cascade.script import chunk_text
from w3sipagent.localai.scenario import Scenario
from w3sipagent.localai.tts import Synthesizer

__all__ = ["AudioApi"]

FILE_FORMATS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
TRANSCRIPTION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
SPEECH_FORMATS = ("pcm", "wav")
SPEECH_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse", "marin", "cedar",
)  # fmt: skip
MAX_SPEECH_INPUT = 4096
CHUNK_BYTES = PCM_RATE * 2 // 10  # 100 ms


def _streaming_wav_header() -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, PCM_RATE, PCM_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


@dataclass
class AudioApi:
    """The two audio endpoints; ``turns`` counts transcriptions per API key."""

    scenario: Scenario
    synthesizer: Synthesizer
    pacing: Pacing

    def __post_init__(self) -> None:
        self.turns: dict[str, int] = {}

    def reset(self) -> None:
        """Start every key's script again at the first caller line."""
        self.turns.clear()

    # ------------------------------------------------------------ transcriptions

    def next_caller_line(self, key: str) -> str:
        """The scenario's caller line of this key's next turn (empty past the script)."""
        n = self.turns.get(key, 0) + 1
        self.turns[key] = n
        entry = self.scenario.turn(n)
        return entry.caller if entry is not None and entry.caller is not None else ""

    def transcribe(self, key: str, fields: dict[str, FormField]) -> HttpResponse:
        """``POST /v1/audio/transcriptions`` (``fields``: the multipart form)."""
        file = fields.get("file")
        if file is None or file.filename is None:
            return api_error(
                400,
                "Missing required parameter: 'file'.",
                code="missing_required_parameter",
                param="file",
            )
        model_f = fields.get("model")
        if model_f is None or not model_f.text:
            return api_error(
                400,
                "Missing required parameter: 'model'.",
                code="missing_required_parameter",
                param="model",
            )
        model = model_f.text
        ext = file.filename.rsplit(".", 1)[-1].lower() if "." in file.filename else ""
        if ext not in FILE_FORMATS:
            return api_error(400, f"Invalid file format. Supported formats: {list(FILE_FORMATS)}")
        if not file.value:
            return api_error(400, "Audio file is empty.", param="file", code="invalid_value")
        fmt = fields["response_format"].text if "response_format" in fields else "json"
        if fmt not in TRANSCRIPTION_FORMATS:
            return api_error(
                400,
                f"Invalid value: '{fmt}'. Supported values are: "
                + ", ".join(f"'{f}'" for f in TRANSCRIPTION_FORMATS)
                + ".",
                code="invalid_value",
                param="response_format",
            )
        whisper = model.startswith("whisper")
        if not whisper and fmt not in ("json", "text"):
            return api_error(
                400,
                f"response_format '{fmt}' is not compatible with model '{model}'. "
                "Use 'json' or 'text' instead.",
                code="unsupported_value",
                param="response_format",
            )
        stream = "stream" in fields and fields["stream"].text.lower() == "true"
        if stream and whisper:
            return api_error(
                400,
                f"Streaming is not supported for model '{model}'.",
                code="unsupported_value",
                param="stream",
            )
        duration = 0.0
        if ext == "wav":
            try:
                pcm, rate, _ = parse_wav(file.value)
            except (WavError, ValueError) as exc:
                return api_error(
                    400, f"Invalid WAV file: {exc}", param="file", code="invalid_value"
                )
            duration = len(pcm) / 2 / rate
        text = self.next_caller_line(key)
        usage: dict[str, Any] = (
            {"type": "duration", "seconds": round(duration, 3)}
            if whisper
            else {
                "type": "tokens",
                "input_tokens": max(1, round(duration * 10)),
                "output_tokens": token_count(text) if text else 0,
                "total_tokens": max(1, round(duration * 10)) + (token_count(text) if text else 0),
                "input_token_details": {
                    "audio_tokens": max(1, round(duration * 10)),
                    "text_tokens": 0,
                },
            }
        )
        if stream:
            return HttpResponse(200, dict(SSE_HEADERS), stream=self._stream(text, usage))
        if fmt == "text":
            return HttpResponse(
                200, {"Content-Type": "text/plain; charset=utf-8"}, (text + "\n").encode()
            )
        if fmt in ("srt", "vtt"):
            return HttpResponse(
                200,
                {"Content-Type": "text/plain; charset=utf-8"},
                _subtitles(fmt, text, duration).encode(),
            )
        if fmt == "verbose_json":
            grans = [f.text for k, f in fields.items() if k.startswith("timestamp_granularities")]
            return json_response(200, _verbose(text, duration, usage, "word" in grans, fields))
        return json_response(200, {"text": text, "usage": usage})

    async def _stream(self, text: str, usage: dict[str, Any]) -> AsyncIterator[bytes]:
        for i, delta in enumerate(chunk_text(text) if text else []):
            if i:
                await _sleep(self.pacing.token_delay)
            yield sse(
                {"type": "transcript.text.delta", "delta": delta, "logprobs": None}, named=False
            )
        yield sse(
            {"type": "transcript.text.done", "text": text, "logprobs": None, "usage": usage},
            named=False,
        )

    # ------------------------------------------------------------ speech

    def speech_request(self, body: Any) -> tuple[dict[str, Any], HttpResponse | None]:
        """Validate a speech request: (its parameters, None) or ({}, the error)."""
        if not isinstance(body, dict):
            return {}, api_error(400, "The body must be a JSON object.")
        for param in ("model", "input", "voice"):
            if body.get(param) in (None, ""):
                return {}, api_error(
                    400,
                    f"Missing required parameter: '{param}'.",
                    code="missing_required_parameter",
                    param=param,
                )
        text = body["input"]
        if not isinstance(text, str):
            return {}, api_error(
                400,
                "Invalid type for 'input': expected a string.",
                code="invalid_type",
                param="input",
            )
        if len(text) > MAX_SPEECH_INPUT:
            return {}, api_error(
                400,
                f"Invalid 'input': string too long. Expected a string with maximum length "
                f"{MAX_SPEECH_INPUT}, but got a string with length {len(text)} instead.",
                code="string_above_max_length",
                param="input",
            )
        voice = body["voice"]
        if isinstance(voice, dict):
            voice = voice.get("id", "")
        if not isinstance(voice, str) or (
            voice not in SPEECH_VOICES and not voice.startswith("voice_")
        ):
            return {}, api_error(
                400,
                f"Invalid value: '{voice}'. Supported values are: "
                + ", ".join(f"'{v}'" for v in SPEECH_VOICES)
                + ".",
                code="invalid_value",
                param="voice",
            )
        fmt = body.get("response_format", "mp3")
        if fmt not in SPEECH_FORMATS:
            return {}, api_error(
                400,
                f"response_format '{fmt}' is not available on the local server: use 'pcm' or 'wav'.",
                code="unsupported_value",
                param="response_format",
            )
        speed = body.get("speed", 1.0)
        if (
            isinstance(speed, bool)
            or not isinstance(speed, int | float)
            or not 0.25 <= speed <= 4.0
        ):
            return {}, api_error(
                400,
                "Invalid 'speed': expected a number between 0.25 and 4.0.",
                code="invalid_value",
                param="speed",
            )
        stream_format = body.get("stream_format", "audio")
        if stream_format not in ("audio", "sse"):
            return {}, api_error(
                400,
                f"Invalid value: '{stream_format}'. Supported values are: 'audio' and 'sse'.",
                code="invalid_value",
                param="stream_format",
            )
        if stream_format == "sse" and str(body["model"]) in ("tts-1", "tts-1-hd"):
            return {}, api_error(
                400,
                f"stream_format 'sse' is not supported for model '{body['model']}'.",
                code="unsupported_value",
                param="stream_format",
            )
        params = {
            "text": text,
            "voice": voice,
            "format": fmt,
            "speed": float(speed),
            "sse": stream_format == "sse",
        }
        return params, None

    def speech(self, params: dict[str, Any]) -> HttpResponse:
        """The streamed speech of validated ``params``."""
        if params["sse"]:
            return HttpResponse(200, dict(SSE_HEADERS), stream=self._speech_sse(params))
        ctype = "audio/wav" if params["format"] == "wav" else "audio/pcm"
        return HttpResponse(200, {"Content-Type": ctype}, stream=self._speech_audio(params))

    async def _pcm_chunks(self, params: dict[str, Any]) -> AsyncIterator[bytes]:
        # sentence by sentence, so the first audio leaves before the whole text is spoken
        sentences = _sentences(params["text"])
        for sentence in sentences:
            pcm = await self.synthesizer.synthesize(sentence, params["voice"], params["speed"])
            for i in range(0, len(pcm), CHUNK_BYTES):
                yield pcm[i : i + CHUNK_BYTES]
                await _sleep(self.pacing.audio_chunk_delay)

    async def _speech_audio(self, params: dict[str, Any]) -> AsyncIterator[bytes]:
        if params["format"] == "wav":
            yield _streaming_wav_header()
        async for chunk in self._pcm_chunks(params):
            yield chunk

    async def _speech_sse(self, params: dict[str, Any]) -> AsyncIterator[bytes]:
        async for chunk in self._pcm_chunks(params):
            yield sse(
                {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()},
                named=False,
            )
        n = token_count(params["text"])
        yield sse(
            {
                "type": "speech.audio.done",
                "usage": {"input_tokens": n, "output_tokens": n * 10, "total_tokens": n * 11},
            },
            named=False,
        )


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    cur = ""
    for word in text.split():
        cur = f"{cur} {word}" if cur else word
        if word[-1] in ".!?;":
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def _words(text: str, duration: float) -> list[dict[str, Any]]:
    words = text.split()
    step = duration / len(words) if words and duration else 0.0
    return [
        {"word": w.strip(".,!?;:"), "start": round(i * step, 2), "end": round((i + 1) * step, 2)}
        for i, w in enumerate(words)
    ]


def _verbose(
    text: str, duration: float, usage: dict[str, Any], words: bool, fields: dict[str, FormField]
) -> dict[str, Any]:
    lang = fields["language"].text if "language" in fields else "english"
    out: dict[str, Any] = {
        "task": "transcribe",
        "language": {"en": "english"}.get(lang, lang),
        "duration": round(duration, 2),
        "text": text,
        "segments": [
            {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": round(duration, 2),
                "text": " " + text if text else "",
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": -0.2,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.01 if text else 0.9,
            }
        ]
        if text
        else [],
        "usage": usage,
    }
    if words:
        out["words"] = _words(text, duration)
    return out


def _subtitles(fmt: str, text: str, duration: float) -> str:
    if not text:
        return "WEBVTT\n\n" if fmt == "vtt" else ""
    sep = "." if fmt == "vtt" else ","
    cue = f"{_timestamp(0.0, sep)} --> {_timestamp(duration, sep)}\n{text}\n"
    return f"WEBVTT\n\n{cue}\n" if fmt == "vtt" else f"1\n{cue}\n"


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def speech_json(body: bytes) -> Any:
    """The speech request body parsed (ValueError when it is not JSON)."""
    return json.loads(body.decode("utf-8"))
