"""A scripted, non-Realtime :class:`~w3sipagent.ai.session.AISession` for tests and demos.

:class:`ScriptedSession` answers ``create_response`` with scripted replies (audio in the
session's output format, a transcript, optionally a function call), records everything the
bridge asked of it (audio, truncates, cancels, messages, tool results), and lets a test
play the back end's part: :meth:`ScriptedSession.speech_started` /
:meth:`ScriptedSession.speech_stopped` (as a server VAD would, including its
``interrupt_response`` and ``create_response`` behaviour), :meth:`ScriptedSession.drop`
(connection lost), :meth:`ScriptedSession.emit` (any event). It never touches a network:
a bridge that works with it works through the :class:`AISession` interface alone.

:class:`ScriptedBackend` is a session factory that remembers each configuration it was
given, for isolation tests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from w3sipagent.ai.session import (
    AgentTranscript,
    AIErrorEvent,
    AIEvent,
    AISessionConfig,
    AudioDelta,
    AudioDone,
    CallerTranscript,
    Closed,
    ResponseDone,
    ResponseStarted,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    Usage,
)
from w3sipagent.errors import AIError

__all__ = ["ScriptedBackend", "ScriptedReply", "ScriptedSession"]


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One scripted response.

    ``audio`` in the session's output format; sent in chunks of ``chunk_ms`` every
    ``pace`` seconds (0: as fast as possible, as the real service does), after
    ``first_audio_delay``. ``tool``: (name, JSON arguments) called after the audio.
    """

    audio: bytes = b""
    text: str = ""
    tool: tuple[str, str] | None = None
    chunk_ms: int = 100
    pace: float = 0.0
    first_audio_delay: float = 0.0


class ScriptedSession:
    """An AI session that follows a script; see the module docstring."""

    _ids = itertools.count(1)

    def __init__(
        self,
        config: AISessionConfig,
        *,
        greeting: ScriptedReply | None = None,
        replies: Sequence[ScriptedReply] = (),
        after_tool: Sequence[ScriptedReply] = (),
        start_delay: float = 0.0,
        fail_start: str | None = None,
        truncates_itself: bool = False,
        name: str = "",
    ) -> None:
        self._config = config
        self.greeting = greeting
        self.replies = list(replies)
        self.after_tool = list(after_tool)
        self.start_delay = start_delay
        self.fail_start = fail_start
        self._truncates_itself = truncates_itself
        self.name = name
        self._n = next(self._ids)
        self._events: asyncio.Queue[AIEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._active: str | None = None
        self._cancelled: set[str] = set()
        self._waiting: list[ScriptedReply] = []
        self._greeted = False
        self._rid = itertools.count(1)
        self._received_ms = 0
        # what the bridge did
        self.started = False
        self.closed = False
        self.audio = bytearray()
        self.audio_chunks = 0
        self.audio_before_start = 0
        self.truncates: list[tuple[str, int]] = []
        self.cancels = 0
        self.messages: list[tuple[str, str]] = []
        self.tool_results: list[tuple[str, str, bool]] = []
        self.responses_requested: list[str | None] = []
        self.items: dict[str, int] = {}
        """Item id → ms of audio produced for it."""

    # ------------------------------------------------------------ AISession

    @property
    def config(self) -> AISessionConfig:
        return self._config

    @property
    def truncates_itself(self) -> bool:
        return self._truncates_itself

    async def start(self) -> None:
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        if self.fail_start is not None:
            self.closed = True
            raise AIError(self.fail_start)
        self.started = True
        self._events.put_nowait(SessionReady())

    def send_audio(self, audio: bytes) -> None:
        if self.closed:
            return
        if not self.started:
            self.audio_before_start += 1
        self.audio += audio
        self.audio_chunks += 1

    async def events(self) -> AsyncIterator[AIEvent]:
        while True:
            ev = await self._events.get()
            yield ev
            if isinstance(ev, Closed):
                return

    async def create_response(self, instructions: str | None = None) -> None:
        self.responses_requested.append(instructions)
        reply = self._next_reply()
        self._start_or_wait(reply)

    async def add_message(self, text: str, role: Literal["user", "system"] = "system") -> None:
        self.messages.append((role, text))

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        self.truncates.append((item_id, audio_end_ms))

    async def cancel_response(self) -> None:
        self.cancels += 1
        self._cancel_active("client_cancelled")

    async def send_tool_result(self, call_id: str, output: str, *, respond: bool = True) -> None:
        self.tool_results.append((call_id, output, respond))
        if respond:
            self._start_or_wait(self.after_tool.pop(0) if self.after_tool else ScriptedReply())

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self._events.put_nowait(Closed("closed by client", error=False))

    # ------------------------------------------------------------ playing the back end

    def emit(self, event: AIEvent) -> None:
        """Yield any event to the bridge."""
        self._events.put_nowait(event)

    @property
    def response_active(self) -> str | None:
        """The id of the response being produced, if any."""
        return self._active

    def speech_started(self, audio_start_ms: int | None = None, item_id: str | None = None) -> str:
        """The caller started speaking (as the server VAD reports it); returns the item id."""
        item = item_id or f"user_{self._n}_{len(self.items)}_{len(self.audio)}"
        bpm = self._config.input_format.bytes_per_ms
        ms = len(self.audio) // bpm if audio_start_ms is None else audio_start_ms
        self.emit(SpeechStarted(ms, item))
        td = self._config.turn_detection
        if td is not None and td.interrupt_response:
            self._cancel_active("turn_detected")
            self._waiting.clear()
        return item

    def speech_stopped(self, item_id: str | None = None, transcript: str = "") -> None:
        """The caller stopped; with ``create_response`` the next scripted reply starts."""
        bpm = self._config.input_format.bytes_per_ms
        self.emit(SpeechStopped(len(self.audio) // bpm, item_id))
        if transcript:
            self.emit(CallerTranscript(item_id or "", transcript, True))
        td = self._config.turn_detection
        if td is not None and td.create_response:
            self._start_or_wait(self._next_reply())

    def drop(self, reason: str = "connection lost") -> None:
        """The connection died: Closed(error=True)."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self.emit(Closed(reason, error=True))

    def fail(self, code: str = "server_error", message: str = "boom") -> None:
        """A fatal error event."""
        self.emit(AIErrorEvent(code, message, fatal=True))

    # ------------------------------------------------------------ internals

    def _next_reply(self) -> ScriptedReply:
        if not self._greeted and self.greeting is not None:
            self._greeted = True
            return self.greeting
        return self.replies.pop(0) if self.replies else ScriptedReply()

    def _start_or_wait(self, reply: ScriptedReply) -> None:
        if self.closed:
            return
        if self._active is not None:
            self._waiting[:] = [reply]  # at most one create waits
            return
        rid = f"resp_{self._n}_{next(self._rid)}"
        self._active = rid
        self._task = asyncio.create_task(self._respond(rid, reply), name=f"scripted-{rid}")

    def _cancel_active(self, reason: str) -> None:
        rid = self._active
        if rid is None:
            return
        self._cancelled.add(rid)
        self._active = None
        if self._task is not None:
            self._task.cancel()
        self.emit(ResponseDone(rid, "cancelled", Usage(), reason))
        self._next_waiting()

    def _next_waiting(self) -> None:
        if self._waiting and self._active is None:
            self._start_or_wait(self._waiting.pop(0))

    async def _respond(self, rid: str, reply: ScriptedReply) -> None:
        item = f"item_{rid}"
        self.emit(ResponseStarted(rid))
        if reply.first_audio_delay:
            await asyncio.sleep(reply.first_audio_delay)
        fmt = self._config.output_format
        step = max(1, fmt.bytes_per_ms * reply.chunk_ms)
        audio = reply.audio
        if audio:
            self.items[item] = 0
        for i in range(0, len(audio), step):
            chunk = audio[i : i + step]
            self.items[item] += fmt.duration_ms(len(chunk))
            self.emit(AudioDelta(rid, item, chunk))
            await asyncio.sleep(reply.pace)
        if rid in self._cancelled:
            return
        if audio:
            self.emit(AudioDone(rid, item))
        if reply.text:
            self.emit(AgentTranscript(rid, item, reply.text, True))
        if reply.tool is not None:
            name, args = reply.tool
            self.emit(ToolCall(f"call_{rid}", name, args, rid))
        out_ms = fmt.duration_ms(len(audio))
        usage = Usage(
            input_tokens=10,
            output_tokens=out_ms // 50 + len(reply.text) // 4,
            total_tokens=10 + out_ms // 50 + len(reply.text) // 4,
            output_audio_tokens=out_ms // 50,
        )
        self._active = None
        self.emit(ResponseDone(rid, "completed", usage))
        self._next_waiting()


class ScriptedBackend:
    """A session factory for the bridge that builds :class:`ScriptedSession` objects.

    ``make(config, n)`` builds the n-th session (0-based); by default every session gets
    ``session_kwargs``. ``configs`` and ``sessions`` keep what was built, in order.
    """

    def __init__(
        self,
        make: Callable[[AISessionConfig, int], ScriptedSession] | None = None,
        **session_kwargs: Any,
    ) -> None:
        self._make = make
        self._kwargs = session_kwargs
        self.configs: list[AISessionConfig] = []
        self.sessions: list[ScriptedSession] = []

    def __call__(self, config: AISessionConfig) -> ScriptedSession:
        n = len(self.sessions)
        if self._make is not None:
            s = self._make(config, n)
        else:
            s = ScriptedSession(config, **self._kwargs)
        self.configs.append(config)
        self.sessions.append(s)
        return s
