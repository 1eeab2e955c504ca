"""The three HTTP stages over any OpenAI-compatible endpoint (httpx).

:class:`SpeechToText` posts an utterance to ``/audio/transcriptions``;
:class:`Model` streams ``/responses`` (SSE) or ``/chat/completions`` (chunks) into
:class:`TextDelta` / :class:`FunctionCall` / :class:`ModelDone`; :class:`TextToSpeech`
streams ``/audio/speech`` as 24 kHz 16-bit PCM. A failure (status, timeout, broken
stream) raises :class:`StageError` naming the stage. A 429 whose ``retry-after`` is at
most ``MAX_RETRY_WAIT`` seconds is retried once after that wait (before any data came).
"""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from w3sipagent.ai.session import ToolSpec, Usage
from w3sipagent.cascade.config import StageEndpoint
from w3sipagent.errors import AIError

TTS_RATE = 24000
MAX_RETRY_WAIT = 1.0


class StageError(AIError):
    """A stage failed: ``stage`` (stt, llm, tts), HTTP ``status`` (None: no answer),
    the service's error ``code`` and, for 429, ``retry_after`` seconds."""

    def __init__(
        self,
        stage: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.status = status
        self.code = code
        self.retry_after = retry_after


def _client(ep: StageEndpoint) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {ep.api_key}"} if ep.api_key else {}
    return httpx.AsyncClient(base_url=ep.base_url.rstrip("/"), headers=headers, timeout=ep.timeout)


async def _raise_for(stage: str, resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    body = await resp.aread()
    message, code = f"HTTP {resp.status_code}", None
    try:
        err = json.loads(body)["error"]
        message, code = str(err.get("message") or message), err.get("code")
    except (ValueError, KeyError, TypeError):
        pass
    raise StageError(
        stage,
        message,
        status=resp.status_code,
        code=code,
        retry_after=_retry_after(resp.headers),
    )


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait: ``retry-after-ms`` (as OpenAI sends), else ``retry-after``."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) / scale)
        except ValueError:
            continue
    return None


def wav_file(pcm: bytes, rate: int) -> bytes:
    """A mono 16-bit WAV holding ``pcm``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


class _Stage:
    name = "stage"

    def __init__(self, endpoint: StageEndpoint) -> None:
        self.endpoint = endpoint
        self._http = _client(endpoint)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def probe(self) -> None:
        """``GET /models``: the endpoint answers and takes the key (raises StageError)."""
        try:
            resp = await self._http.get("/models")
            await _raise_for(self.name, resp)
        except httpx.HTTPError as exc:
            raise StageError(self.name, f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    async def _may_retry(exc: StageError, attempt: int) -> bool:
        """Wait out a short 429 once; False: give up."""
        wait = exc.retry_after
        if attempt > 0 or exc.status != 429 or wait is None or wait > MAX_RETRY_WAIT:
            return False
        await asyncio.sleep(wait)
        return True


class SpeechToText(_Stage):
    """``POST /audio/transcriptions`` per utterance."""

    name = "stt"

    async def transcribe(
        self,
        pcm: bytes,
        rate: int,
        *,
        language: str | None = None,
        prompt: str | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> str:
        """The text of an utterance. With ``on_delta``, models that stream (``gpt-4o-*``)
        are asked to (``stream=true``) and each ``transcript.text.delta`` is passed on."""
        data = {"model": self.endpoint.model, "response_format": "json"}
        if language:
            data["language"] = language
        if prompt:
            data["prompt"] = prompt
        streaming = on_delta is not None and self.endpoint.model.startswith("gpt-4o")
        if streaming:
            data["stream"] = "true"
        files = {"file": ("utterance.wav", wav_file(pcm, rate), "audio/wav")}
        for attempt in range(2):
            try:
                req = self._http.build_request(
                    "POST", "/audio/transcriptions", data=data, files=files
                )
                resp = await self._http.send(req, stream=True)
                try:
                    await _raise_for(self.name, resp)
                    if not streaming or on_delta is None:
                        return str(json.loads(await resp.aread()).get("text", "")).strip()
                    return await _transcript_events(resp, on_delta)
                finally:
                    await resp.aclose()
            except StageError as exc:
                if not await self._may_retry(exc, attempt):
                    raise
            except httpx.HTTPError as exc:
                raise StageError(self.name, f"{type(exc).__name__}: {exc}") from exc
            except (ValueError, AttributeError) as exc:
                raise StageError(self.name, f"unreadable answer: {exc}") from exc
        raise AssertionError("unreachable")


async def _transcript_events(resp: httpx.Response, on_delta: Callable[[str], None]) -> str:
    """The text of a streamed transcription (``transcript.text.delta`` / ``.done``)."""
    text = ""
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        ev = json.loads(line[5:].strip())
        if ev.get("type") == "transcript.text.delta":
            on_delta(str(ev.get("delta", "")))
            text += str(ev.get("delta", ""))
        elif ev.get("type") == "transcript.text.done":
            return str(ev.get("text", text)).strip()
    return text.strip()


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ModelDone:
    usage: Usage | None


ModelEvent = TextDelta | FunctionCall | ModelDone

Message = dict[str, Any]
"""A conversation item in Responses ``input`` form (user/assistant/system message,
``function_call``, ``function_call_output``)."""


class Model(_Stage):
    """The model stage: ``api`` ``responses`` (SSE) or ``chat`` (Chat Completions chunks)."""

    name = "llm"

    def __init__(
        self, endpoint: StageEndpoint, api: Literal["responses", "chat"] = "responses"
    ) -> None:
        super().__init__(endpoint)
        self.api = api

    async def stream(
        self,
        instructions: str,
        items: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        tool_choice: str = "auto",
        max_output_tokens: int | None = None,
    ) -> AsyncIterator[ModelEvent]:
        parse: _ChatParser | _ResponsesParser
        if self.api == "chat":
            body = _chat_body(self.endpoint.model, instructions, items, tools, tool_choice)
            if max_output_tokens:
                body["max_completion_tokens"] = max_output_tokens
            path, parse = "/chat/completions", _ChatParser()
        else:
            body = {
                "model": self.endpoint.model,
                "instructions": instructions,
                "input": list(items),
                "stream": True,
                "store": False,
            }
            if tools:
                body["tools"] = [
                    {
                        "type": "function",
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                    for t in tools
                ]
                body["tool_choice"] = tool_choice
            if max_output_tokens:
                body["max_output_tokens"] = max_output_tokens
            path, parse = "/responses", _ResponsesParser()
        try:
            for attempt in range(2):
                async with self._http.stream("POST", path, json=body) as resp:
                    try:
                        await _raise_for(self.name, resp)
                    except StageError as exc:
                        if await self._may_retry(exc, attempt):
                            continue
                        raise
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        for out in parse.feed(json.loads(data)):
                            yield out
                    break
        except httpx.HTTPError as exc:
            raise StageError(self.name, f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise StageError(self.name, f"unreadable stream: {exc}") from exc
        yield ModelDone(parse.usage)


class _ResponsesParser:
    def __init__(self) -> None:
        self.usage: Usage | None = None

    def feed(self, ev: dict[str, Any]) -> list[ModelEvent]:
        kind = ev.get("type")
        if kind == "response.output_text.delta":
            return [TextDelta(str(ev.get("delta", "")))]
        if kind == "response.output_item.done":
            item = ev.get("item") or {}
            if item.get("type") == "function_call":
                return [FunctionCall(item["call_id"], item["name"], item.get("arguments", "{}"))]
        elif kind == "response.completed":
            u = (ev.get("response") or {}).get("usage") or {}
            self.usage = Usage(
                u.get("input_tokens", 0), u.get("output_tokens", 0), u.get("total_tokens", 0)
            )
        elif kind in ("response.failed", "error"):
            err = (ev.get("response") or {}).get("error") or ev.get("error") or ev
            raise StageError(
                "llm", str(err.get("message", "response failed")), code=err.get("code")
            )
        return []


class _ChatParser:
    def __init__(self) -> None:
        self.usage: Usage | None = None
        self._calls: dict[int, dict[str, str]] = {}

    def feed(self, chunk: dict[str, Any]) -> list[ModelEvent]:
        out: list[ModelEvent] = []
        u = chunk.get("usage")
        if u:
            self.usage = Usage(
                u.get("prompt_tokens", 0), u.get("completion_tokens", 0), u.get("total_tokens", 0)
            )
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out.append(TextDelta(delta["content"]))
            for tc in delta.get("tool_calls") or ():
                call = self._calls.setdefault(
                    tc.get("index", 0), {"id": "", "name": "", "args": ""}
                )
                fn = tc.get("function") or {}
                call["id"] = tc.get("id") or call["id"]
                call["name"] = fn.get("name") or call["name"]
                call["args"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                out.extend(
                    FunctionCall(c["id"], c["name"], c["args"] or "{}")
                    for _, c in sorted(self._calls.items())
                )
                self._calls.clear()
        return out


def _chat_body(
    model: str,
    instructions: str,
    items: Sequence[Message],
    tools: Sequence[ToolSpec],
    tool_choice: str,
) -> dict[str, Any]:
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": instructions}] if instructions else []
    )
    for it in items:
        kind = it.get("type", "message")
        if kind == "function_call":
            call = {
                "id": it["call_id"],
                "type": "function",
                "function": {"name": it["name"], "arguments": it["arguments"]},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": it["call_id"], "content": it["output"]}
            )
        else:
            messages.append({"role": it["role"], "content": it["content"]})
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
        body["tool_choice"] = tool_choice
    return body


class TextToSpeech(_Stage):
    """``POST /audio/speech`` streamed as raw PCM (24 kHz, 16-bit, mono)."""

    name = "tts"

    async def speak(
        self, text: str, voice: str, instructions: str | None = None
    ) -> AsyncIterator[bytes]:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "input": text,
            "voice": voice,
            "response_format": "pcm",
        }
        if instructions:
            body["instructions"] = instructions
        try:
            for attempt in range(2):
                async with self._http.stream("POST", "/audio/speech", json=body) as resp:
                    try:
                        await _raise_for(self.name, resp)
                    except StageError as exc:
                        if await self._may_retry(exc, attempt):
                            continue
                        raise
                    async for chunk in resp.aiter_bytes():
                        if chunk:
                            yield chunk
                    break
        except httpx.HTTPError as exc:
            raise StageError(self.name, f"{type(exc).__name__}: {exc}") from exc
