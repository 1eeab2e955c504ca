"""``POST /v1/responses`` and ``POST /v1/chat/completions``: scripted answers, streamed.

Event and chunk shapes follow the OpenAI Python SDK's types (openai/openai-python at
e43b422412a9e96c9cc5192c61fffbe2d7e04836: ``types/responses/response_*_event.py``,
``types/chat/chat_completion_chunk.py``). A Responses stream is ``response.created``,
``response.in_progress``, then per output item ``response.output_item.added``, for a
message ``response.content_part.added``, ``response.output_text.delta``…,
``response.output_text.done``, ``response.content_part.done``, for a function call
``response.function_call_arguments.delta``… and ``.done``, then
``response.output_item.done``; last ``response.completed``. Every event carries its
``sequence_number``. A Chat Completions stream is ``chat.completion.chunk`` data lines
ending with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from w3sipagent.ids import IdSource
from w3sipagent.localai.cascade.embeddings import token_count
from w3sipagent.localai.cascade.http import HttpResponse, api_error, json_response, sse
from w3sipagent.localai.cascade.script import Reply, chunk_arguments, chunk_text, plan_reply
from w3sipagent.localai.scenario import Scenario

__all__ = ["ModelApi", "Pacing"]

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


@dataclass(frozen=True, slots=True)
class Pacing:
    """Delays of the imitation (seconds): before the first delta, and between deltas."""

    first_token_delay: float = 0.0
    token_delay: float = 0.0
    audio_chunk_delay: float = 0.0
    transcript_delay: float = 0.0
    """A transcription session: from a commit to the item's first transcription event (the
    service's pass over the committed audio)."""


def _missing(param: str) -> HttpResponse:
    return api_error(
        400,
        f"Missing required parameter: '{param}'.",
        code="missing_required_parameter",
        param=param,
    )


def _bad_type(param: str, expected: str) -> HttpResponse:
    return api_error(
        400,
        f"Invalid type for '{param}': expected {expected}.",
        code="invalid_type",
        param=param,
    )


def _tool_names(tools: Any, *, chat: bool) -> set[str]:
    names: set[str] = set()
    for t in tools if isinstance(tools, list) else []:
        if isinstance(t, dict) and t.get("type") == "function":
            fn = t.get("function") if chat else t
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                names.add(fn["name"])
    return names


@dataclass
class _Stored:
    user_turns: int


@dataclass
class ModelApi:
    """The two model endpoints over one scenario."""

    scenario: Scenario
    ids: IdSource
    pacing: Pacing = field(default_factory=Pacing)
    stored: dict[str, _Stored] = field(default_factory=dict)

    # ------------------------------------------------------------ Responses

    def responses(self, body: dict[str, Any]) -> HttpResponse:
        """``POST /v1/responses``."""
        model = body.get("model")
        if model is None:
            return _missing("model")
        if not isinstance(model, str):
            return _bad_type("model", "a string")
        items = body.get("input", [])
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        if not isinstance(items, list):
            return _bad_type("input", "a string or an array")
        user_turns = 0
        prev = body.get("previous_response_id")
        if prev is not None:
            stored = self.stored.get(str(prev))
            if stored is None:
                return api_error(
                    400,
                    f"Previous response with id '{prev}' not found.",
                    code="previous_response_not_found",
                    param="previous_response_id",
                )
            user_turns = stored.user_turns
        for item in items:
            if not isinstance(item, dict):
                return _bad_type("input", "an array of objects")
            if item.get("role") == "user" and item.get("type", "message") == "message":
                user_turns += 1
        last = items[-1] if items else {}
        reply = plan_reply(
            self.scenario,
            user_turns,
            after_tool=last.get("type") == "function_call_output",
            tool_names=_tool_names(body.get("tools"), chat=False),
            tool_choice=body.get("tool_choice", "auto"),
        )
        resp_id = "resp_" + self.ids.token(24)
        if body.get("store", True) is not False:
            self.stored[resp_id] = _Stored(user_turns)
        base = self._response_obj(resp_id, body, model)
        in_tokens = sum(token_count(str(i.get("content", ""))) for i in items) + token_count(
            str(body.get("instructions") or "")
        )
        if body.get("stream") is True:
            return HttpResponse(
                200, dict(SSE_HEADERS), stream=self._responses_stream(base, reply, in_tokens)
            )
        output = [self._message_item(reply, "completed")] if reply.text else []
        if reply.call is not None:
            output.append(self._call_item(reply, "completed"))
        done = dict(base, status="completed", output=output)
        done["usage"] = _usage(in_tokens, token_count(reply.text))
        return json_response(200, done)

    def _response_obj(self, resp_id: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        return {
            "id": resp_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": model,
            "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": None,
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    def _message_item(self, reply: Reply, status: str, item_id: str = "") -> dict[str, Any]:
        done = status == "completed"
        return {
            "id": item_id or "msg_" + self.ids.token(24),
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [_text_part(reply.text)] if done else [],
        }

    def _call_item(self, reply: Reply, status: str, item_id: str = "") -> dict[str, Any]:
        call = reply.call
        assert call is not None
        return {
            "id": item_id or "fc_" + self.ids.token(24),
            "type": "function_call",
            "status": status,
            "arguments": call.arguments if status == "completed" else "",
            "call_id": call.call_id or "call_" + self.ids.token(12),
            "name": call.name,
        }

    async def _responses_stream(
        self, base: dict[str, Any], reply: Reply, in_tokens: int
    ) -> AsyncIterator[bytes]:
        seq = 0

        def ev(kind: str, **fields: Any) -> bytes:
            nonlocal seq
            event = {"type": kind, **fields, "sequence_number": seq}
            seq += 1
            return sse(event)

        yield ev("response.created", response=base)
        yield ev("response.in_progress", response=base)
        output: list[dict[str, Any]] = []
        await self._sleep(self.pacing.first_token_delay)
        if reply.text:
            idx = len(output)
            item = self._message_item(reply, "in_progress")
            mid = item["id"]
            yield ev("response.output_item.added", output_index=idx, item=item)
            part = _text_part("")
            yield ev(
                "response.content_part.added",
                item_id=mid,
                output_index=idx,
                content_index=0,
                part=part,
            )
            for i, delta in enumerate(chunk_text(reply.text)):
                if i:
                    await self._sleep(self.pacing.token_delay)
                yield ev(
                    "response.output_text.delta",
                    item_id=mid,
                    output_index=idx,
                    content_index=0,
                    delta=delta,
                    logprobs=[],
                )
            yield ev(
                "response.output_text.done",
                item_id=mid,
                output_index=idx,
                content_index=0,
                text=reply.text,
                logprobs=[],
            )
            yield ev(
                "response.content_part.done",
                item_id=mid,
                output_index=idx,
                content_index=0,
                part=_text_part(reply.text),
            )
            done_item = self._message_item(reply, "completed", mid)
            output.append(done_item)
            yield ev("response.output_item.done", output_index=idx, item=done_item)
        if reply.call is not None:
            idx = len(output)
            item = self._call_item(reply, "in_progress")
            yield ev("response.output_item.added", output_index=idx, item=item)
            for delta in chunk_arguments(reply.call.arguments):
                await self._sleep(self.pacing.token_delay)
                yield ev(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=idx,
                    delta=delta,
                )
            yield ev(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=idx,
                name=reply.call.name,
                arguments=reply.call.arguments,
            )
            done_item = dict(item, status="completed", arguments=reply.call.arguments)
            output.append(done_item)
            yield ev("response.output_item.done", output_index=idx, item=done_item)
        final = dict(base, status="completed", output=output)
        final["usage"] = _usage(in_tokens, token_count(reply.text))
        yield ev("response.completed", response=final)

    # ------------------------------------------------------------ Chat Completions

    def chat(self, body: dict[str, Any]) -> HttpResponse:
        """``POST /v1/chat/completions``."""
        model = body.get("model")
        if model is None:
            return _missing("model")
        if not isinstance(model, str):
            return _bad_type("model", "a string")
        messages = body.get("messages")
        if messages is None:
            return _missing("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _bad_type("messages", "an array of objects")
        if not messages:
            return api_error(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                code="empty_array",
                param="messages",
            )
        user_turns = sum(1 for m in messages if m.get("role") == "user")
        reply = plan_reply(
            self.scenario,
            user_turns,
            after_tool=messages[-1].get("role") == "tool",
            tool_names=_tool_names(body.get("tools"), chat=True),
            tool_choice=body.get("tool_choice", "auto"),
        )
        chat_id = "chatcmpl-" + self.ids.token(16)
        in_tokens = sum(token_count(str(m.get("content") or "")) for m in messages)
        call_id = None
        if reply.call is not None:
            call_id = reply.call.call_id or "call_" + self.ids.token(12)
        if body.get("stream") is True:
            opts = body.get("stream_options")
            usage = isinstance(opts, dict) and opts.get("include_usage") is True
            return HttpResponse(
                200,
                dict(SSE_HEADERS),
                stream=self._chat_stream(chat_id, model, reply, call_id, in_tokens, usage),
            )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text or None,
            "refusal": None,
            "annotations": [],
        }
        if reply.call is not None:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": reply.call.name, "arguments": reply.call.arguments},
                }
            ]
        out_tokens = token_count(reply.text)
        return json_response(
            200,
            {
                "id": chat_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if reply.call is not None else "stop",
                    }
                ],
                "usage": _chat_usage(in_tokens, out_tokens),
                "system_fingerprint": None,
            },
        )

    async def _chat_stream(
        self,
        chat_id: str,
        model: str,
        reply: Reply,
        call_id: str | None,
        in_tokens: int,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            body: dict[str, Any] = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                body["usage"] = None
            return sse(body, named=False)

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        await self._sleep(self.pacing.first_token_delay)
        if reply.text:
            for i, delta in enumerate(chunk_text(reply.text)):
                if i:
                    await self._sleep(self.pacing.token_delay)
                yield chunk({"content": delta})
        if reply.call is not None:
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": reply.call.name, "arguments": ""},
                        }
                    ]
                }
            )
            for delta in chunk_arguments(reply.call.arguments):
                await self._sleep(self.pacing.token_delay)
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": delta}}]})
        yield chunk({}, "tool_calls" if reply.call is not None else "stop")
        if include_usage:
            yield sse(
                {
                    "id": chat_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": _chat_usage(in_tokens, token_count(reply.text)),
                },
                named=False,
            )
        yield b"data: [DONE]\n\n"

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _usage(in_tokens: int, out_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": in_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": in_tokens + out_tokens,
    }


def _chat_usage(in_tokens: int, out_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": in_tokens,
        "completion_tokens": out_tokens,
        "total_tokens": in_tokens + out_tokens,
    }
