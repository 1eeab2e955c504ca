"""Responses of a local Realtime session: what to say, and saying it as GA events.

:class:`TurnPlanner` decides what a response says (greeting, the scenario's answer to
the caller's turn, a function call's follow-up, the fallback); :class:`ResponseRunner`
streams one response through the session (:class:`~.ports.SessionHost`):
``response.created``, the output items with their audio or
text deltas paced as configured, function-call arguments, and ``response.done`` with
usage. Cancellation (``turn_detected``, ``client_cancelled``) and injected failures stop
it at the next chunk.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from w3sipagent.localai.audio import converted_output
from w3sipagent.localai.realtime.config import format_enum
from w3sipagent.localai.realtime.conversation import Item
from w3sipagent.localai.realtime.ports import SessionEnded, SessionHost
from w3sipagent.localai.scenario import FunctionCall, Injection, Scenario

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What a response says and which scenario turn it answers."""

    say: str
    call: FunctionCall | None
    turn: int


@dataclass
class Response:
    """One response in progress."""

    id: str
    turn: int
    modalities: list[str]
    fmt: dict[str, Any]
    voice: Any
    conversation: bool
    metadata: Any
    max_output_tokens: Any
    tools: list[dict[str, Any]]
    tool_choice: Any
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    fail: Injection | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    out_text: str = ""
    out_audio_ms: int = 0
    input_ms_at_start: float = 0.0

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None


class TurnPlanner:
    """The scenario's position: caller turns counted, turns answered, calls awaiting output."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.user_turns = 0
        self.answered_turn = 0
        self._greeted = False
        self._pending_calls: dict[str, tuple[FunctionCall, int]] = {}
        self._after: list[tuple[str, int]] = []

    def new_user_turn(self) -> int:
        self.user_turns += 1
        return self.user_turns

    def call_made(self, call_id: str, call: FunctionCall, turn: int) -> None:
        """The response called ``call``; its ``after`` text waits for the output."""
        self._pending_calls[call_id] = (call, turn)

    def call_output(self, call_id: str) -> None:
        """The client sent the output of ``call_id``: the next response says its ``after``."""
        pending = self._pending_calls.pop(call_id, None)
        if pending is not None and pending[0].after:
            self._after.append((pending[0].after, pending[1]))

    def idle_plan(self) -> Plan:
        """The prompt after an ``idle_timeout_ms``."""
        return Plan(self.scenario.idle or self.scenario.fallback, None, self.answered_turn)

    def plan(self, params: dict[str, Any]) -> Plan:
        """What the next response (``response.create`` parameters ``params``) says."""
        if params.get("conversation") == "none" or "input" in params:
            return Plan(self.scenario.fallback, None, self.answered_turn)
        if self._after:
            texts = [t for t, _ in self._after]
            turn = self._after[-1][1]
            self._after.clear()
            return Plan(" ".join(texts), None, turn)
        if self.answered_turn < self.user_turns:
            self.answered_turn = self.user_turns
            self._greeted = True
            entry = self.scenario.turn(self.user_turns)
            if entry is None:
                return Plan(self.scenario.fallback, None, self.user_turns)
            return Plan(entry.say, entry.call, self.user_turns)
        if not self._greeted:
            self._greeted = True
            return Plan(self.scenario.greeting or self.scenario.fallback, None, 0)
        return Plan(self.scenario.fallback, None, self.answered_turn)


class ResponseRunner:
    """Streams responses of one session as GA server events."""

    def __init__(self, host: SessionHost, planner: TurnPlanner) -> None:
        self.host = host
        self.planner = planner
        self._prev_input_tokens = 0

    def _input_tokens(self) -> tuple[int, int]:
        config = self.host.config
        return self.host.conversation.input_tokens(config["instructions"], config["tools"])

    def response_obj(self, resp: Response, status: str) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": resp.cancel_reason}
        elif status == "failed" and resp.fail is not None:
            details = {"type": "failed", "error": {"type": resp.fail.type, "code": resp.fail.code}}
        return {
            "object": "realtime.response",
            "id": resp.id,
            "status": status,
            "status_details": details,
            "output": json.loads(json.dumps(resp.output)),
            "conversation_id": ("conv_" + self.host.id[5:]) if resp.conversation else None,
            "output_modalities": resp.modalities,
            "max_output_tokens": resp.max_output_tokens,
            "audio": {"output": {"format": resp.fmt, "voice": resp.voice}},
            "usage": None,
            "metadata": resp.metadata,
        }

    def _usage(self, resp: Response) -> dict[str, Any]:
        text_in, audio_in = self._input_tokens()
        total_in = text_in + audio_in
        cached = (self._prev_input_tokens // 64) * 64 if self._prev_input_tokens >= 1024 else 0
        cached = min(cached, total_in)
        self._prev_input_tokens = total_in
        text_out = math.ceil(len(resp.out_text) / 4)
        audio_out = math.ceil(resp.out_audio_ms / 50)
        return {
            "total_tokens": total_in + text_out + audio_out,
            "input_tokens": total_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "cached_tokens": cached,
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens_details": {
                    "text_tokens": min(cached, text_in),
                    "audio_tokens": max(0, cached - text_in),
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    async def run(self, resp: Response, plan: Plan) -> None:
        try:
            await self.host.emit(
                {"type": "response.created", "response": self.response_obj(resp, "in_progress")}
            )
            await self.host.inject("response.created", plan.turn, resp)
            if self.host.options.first_audio_delay_s > 0 and resp.fail is None:
                await self._wait_cancel(resp, self.host.options.first_audio_delay_s)
            index = 0
            call = plan.call if self._tool_allowed(resp, plan.call) else None
            if resp.fail is None and not resp.cancelled and (plan.say or call is None):
                await self._message(resp, plan.say or self.host.scenario.fallback, index, plan.turn)
                index += 1
            if resp.fail is None and not resp.cancelled and call is not None:
                await self._function_call(resp, call, index, plan.turn)
            status = (
                "failed"
                if resp.fail is not None
                else "cancelled"
                if resp.cancelled
                else "completed"
            )
            done = self.response_obj(resp, status)
            done["usage"] = self._usage(resp)
            self.host.response_finished(resp)
            await self.host.emit({"type": "response.done", "response": done})
            self.host.spawn(self._rate_limits(resp))
            if self.host.player is not None:
                self.host.player.end_response(resp.id)
            await self.host.inject("response.done", plan.turn, resp)
        except (SessionEnded, ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # a transport failure: the session is over
            log.debug("response %s aborted: %r", resp.id, exc)
        finally:
            if self.host.active is resp:
                self.host.active = None

    async def _rate_limits(self, resp: Response) -> None:
        """``rate_limits.updated``, ``rate_limits_delay_s`` after ``response.done`` (as
        captured from the service; the SDK docs put it after ``response.created``)."""
        await asyncio.sleep(self.host.options.rate_limits_delay_s)
        text_in, audio_in = self._input_tokens()
        reserve = (
            text_in
            + audio_in
            + (4096 if resp.max_output_tokens == "inf" else int(resp.max_output_tokens))
        )
        limit = self.host.options.token_limit
        await self.host.emit(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {
                        "name": "tokens",
                        "limit": limit,
                        "remaining": max(0, limit - reserve),
                        "reset_seconds": round(reserve / limit * 60, 3),
                    }
                ],
            }
        )

    def _tool_allowed(self, resp: Response, call: FunctionCall | None) -> bool:
        if call is None:
            return False
        names = {t.get("name") for t in resp.tools if t.get("type") == "function"}
        if resp.tool_choice == "none" or call.name not in names:
            log.warning(
                "scenario calls %r but the session does not offer it (tools %s, tool_choice %r): not called",
                call.name,
                sorted(n for n in names if n),
                resp.tool_choice,
            )
            return False
        return True

    async def _wait_cancel(self, resp: Response, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # never swallows a cancellation (3.11)
                await resp.cancel_event.wait()

    async def _output_item_added(self, resp: Response, item: Item, index: int) -> str | None:
        """``response.output_item.added`` then, in the conversation, ``conversation.item.added``."""
        await self.host.emit(
            {
                "type": "response.output_item.added",
                "response_id": resp.id,
                "output_index": index,
                "item": item.public(),
            }
        )
        if not resp.conversation:
            return None
        prev = self.host.conversation.add(item)
        await self.host.emit(
            {"type": "conversation.item.added", "previous_item_id": prev, "item": item.public()}
        )
        return prev

    async def _output_item_done(
        self, resp: Response, item: Item, index: int, prev: str | None
    ) -> None:
        """In the conversation ``conversation.item.done``, then ``response.output_item.done``
        (the order of the service capture)."""
        if resp.conversation:
            await self.host.emit(
                {"type": "conversation.item.done", "previous_item_id": prev, "item": item.public()}
            )
        await self.host.emit(
            {
                "type": "response.output_item.done",
                "response_id": resp.id,
                "output_index": index,
                "item": item.public(),
            }
        )

    async def _message(self, resp: Response, text: str, index: int, turn: int) -> None:
        audio_mode = resp.modalities == ["audio"]
        fmt = format_enum(resp.fmt)
        pcm = b""
        if audio_mode:
            pcm = await self.host.tts.synthesize(
                text,
                resp.voice if isinstance(resp.voice, str) else "marin",
                float(self.host.config["audio"]["output"]["speed"]),
            )
        item_id = self.host.new_id("item")
        base = {
            "response_id": resp.id,
            "item_id": item_id,
            "output_index": index,
            "content_index": 0,
        }
        data: dict[str, Any] = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        item = Item(item_id, data, bytearray(), fmt if audio_mode else None, turn)
        prev = await self._output_item_added(resp, item, index)
        part_type = "audio" if audio_mode else "text"
        key = "transcript" if audio_mode else "text"
        await self.host.emit(
            {"type": "response.content_part.added", **base, "part": {"type": part_type, key: ""}}
        )
        words = text.split(" ")
        said: list[str] = []
        if audio_mode:
            out = converted_output(pcm, fmt)
            bpm = fmt.bytes_per_ms
            chunk = max(1, self.host.options.chunk_ms) * bpm
            n_chunks = max(1, math.ceil(len(out) / chunk))
            speed = 1.0 if self.host.options.realtime_pacing else self.host.options.burst_speed
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for k in range(n_chunks):
                due = math.ceil(len(words) * (k + 1) / n_chunks)
                if len(said) < due:
                    delta = " ".join(words[len(said) : due])
                    delta = delta if not said else " " + delta
                    said.extend(words[len(said) : due])
                    await self.host.emit(
                        {"type": "response.output_audio_transcript.delta", **base, "delta": delta}
                    )
                piece = out[k * chunk : (k + 1) * chunk]
                if piece:
                    item.audio += piece
                    self.host.assistant_audio_sent = True
                    resp.out_audio_ms += len(piece) // bpm
                    if self.host.player is not None:
                        self.host.player.enqueue(
                            resp.id,
                            item_id,
                            pcm[
                                k * self.host.options.chunk_ms * 48 : (k + 1)
                                * self.host.options.chunk_ms
                                * 48
                            ],
                        )
                    else:
                        await self.host.emit(
                            {
                                "type": "response.output_audio.delta",
                                **base,
                                "delta": base64.b64encode(piece).decode("ascii"),
                            }
                        )
                if k == 0:
                    await self.host.inject("first_audio", turn, resp)
                if resp.cancelled or resp.fail is not None:
                    break
                if speed:
                    wait = t0 + (k + 1) * self.host.options.chunk_ms / 1000.0 / speed - loop.time()
                    await self._wait_cancel(resp, wait)
                else:
                    await asyncio.sleep(0)
                if resp.cancelled:
                    break
            transcript = " ".join(said)
            await self.host.emit({"type": "response.output_audio.done", **base})
            await self.host.emit(
                {"type": "response.output_audio_transcript.done", **base, "transcript": transcript}
            )
        else:
            for i, w in enumerate(words):
                if resp.cancelled:
                    break
                said.append(w)
                await self.host.emit(
                    {
                        "type": "response.output_text.delta",
                        **base,
                        "delta": w if i == 0 else " " + w,
                    }
                )
                await asyncio.sleep(0)
            transcript = " ".join(said)
            await self.host.emit({"type": "response.output_text.done", **base, "text": transcript})
        resp.out_text += transcript
        part = {"type": part_type, key: transcript}
        await self.host.emit({"type": "response.content_part.done", **base, "part": part})
        data["status"] = "incomplete" if resp.cancelled else "completed"
        data["content"] = [
            {"type": "output_audio" if audio_mode else "output_text", key: transcript}
        ]
        resp.output.append(item.public())
        await self._output_item_done(resp, item, index, prev)
        if (
            resp.cancelled
            and self.host.player is not None
            and resp.cancel_reason == "turn_detected"
        ):
            await self.host.clear_playout()

    async def _function_call(
        self, resp: Response, call: FunctionCall, index: int, turn: int
    ) -> None:
        item_id = self.host.new_id("item")
        call_id = call.call_id or self.host.new_id("call")
        data: dict[str, Any] = {
            "id": item_id,
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "call_id": call_id,
            "name": call.name,
            "arguments": "",
        }
        item = Item(item_id, data, turn=turn)
        prev = await self._output_item_added(resp, item, index)
        args = call.arguments
        step = max(1, math.ceil(len(args) / 3))
        base = {
            "response_id": resp.id,
            "item_id": item_id,
            "output_index": index,
            "call_id": call_id,
        }
        for i in range(0, len(args), step):
            await self.host.emit(
                {
                    "type": "response.function_call_arguments.delta",
                    **base,
                    "delta": args[i : i + step],
                }
            )
            await asyncio.sleep(0)
        await self.host.emit(
            {
                "type": "response.function_call_arguments.done",
                **base,
                "name": call.name,
                "arguments": args,
            }
        )
        data["arguments"] = args
        data["status"] = "completed"
        resp.out_text += args
        resp.output.append(item.public())
        await self._output_item_done(resp, item, index, prev)
        self.planner.call_made(call_id, call, turn)
