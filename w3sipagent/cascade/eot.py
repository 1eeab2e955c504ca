"""The optional semantic end-of-turn check: after the silence ended a turn, a model judges
whether the caller finished (a complete question or statement) or stopped mid-sentence.

Off by default (``CascadeSettings.turn_check`` None). When on, a turn the model judges
unfinished is held for up to ``ListenSettings.turn_check_wait_ms``: if the caller speaks
again in that time their next utterance is joined to it and the whole is answered once; if
not, the held text is answered as it is (a joined turn is not checked again). A check that fails or is late counts as
"finished": the check can delay a turn, never lose it. With a transcription model that
writes while the caller speaks, the check starts at the end of the turn on the words so far
(:class:`EarlyCheck`), in parallel with the final transcript.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from w3sipagent.cascade.config import StageEndpoint
from w3sipagent.cascade.stages import Message, Model, StageError, TextDelta

PROMPT = (
    "You decide whether a phone caller has finished their turn. Read the conversation and "
    "the caller's last message. Answer with one word: 'yes' if the last message is complete "
    "(a finished question, request, answer or statement that should be answered now), 'no' "
    "if the caller stopped mid-sentence or mid-thought and will probably go on."
)


class TurnCheck:
    """Asks ``endpoint``'s model (Responses or Chat) whether a caller turn is finished."""

    def __init__(self, endpoint: StageEndpoint, api: str = "responses") -> None:
        self.model = Model(endpoint, "chat" if api == "chat" else "responses")
        self.checks: list[tuple[str, bool]] = []
        """Every check made: (the caller's text, judged finished), for tests and logs."""

    async def finished(self, items: Sequence[Message], text: str) -> bool:
        """True unless the model answers that ``text`` is unfinished (errors: True)."""
        answer = ""
        try:
            async with asyncio.timeout(self.model.endpoint.timeout):
                async for ev in self.model.stream(
                    PROMPT,
                    [*items, {"role": "user", "content": text}],
                    (),
                    max_output_tokens=16,
                ):
                    if isinstance(ev, TextDelta):
                        answer += ev.text
        except (StageError, TimeoutError):
            answer = ""
        done = not answer.strip().lower().startswith("no")
        self.checks.append((text, done))
        return done

    async def aclose(self) -> None:
        await self.model.aclose()


class HeldTurn:
    """Caller text of turns judged unfinished, waiting for the caller to go on."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> bool:
        return bool(self.texts)

    def hold(self, text: str, wait_s: float, release: Callable[[str], None]) -> None:
        """Keep ``text``; ``release(all held text)`` after ``wait_s`` unless paused/taken."""
        self.texts.append(text)
        self.pause()
        self._timer = asyncio.get_running_loop().call_later(wait_s, self._fire, release)

    def take(self) -> str:
        """All held text (joined), no longer held."""
        self.pause()
        text, self.texts = " ".join(self.texts), []
        return text

    def pause(self) -> None:
        """The caller speaks again: their next turn will join the held text."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self, release: Callable[[str], None]) -> None:
        self._timer = None
        text = self.take()
        if text:
            release(text)


class EarlyCheck:
    """The check started on a streaming model's words so far when the silence ends the turn,
    while the final transcript is still on its way (``stt_mode = "stream"`` with a model in
    ``LIVE_MODELS``). :meth:`finished` uses its answer when the final transcript says the same
    words, and checks the final text otherwise, so the check never judges other words than
    the ones answered."""

    def __init__(self, check: TurnCheck, items: Sequence[Message], text: str) -> None:
        self.check = check
        self.text = text
        self.task = asyncio.get_running_loop().create_task(
            check.finished(list(items), text), name="cascade-early-turn-check"
        )
        self.used = False
        """The early answer judged the final transcript (set by :meth:`finished`)."""

    async def finished(self, items: Sequence[Message], text: str) -> bool:
        if " ".join(text.split()) == " ".join(self.text.split()):
            self.used = True
            return await self.task
        self.cancel()
        return await self.check.finished(items, text)

    def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()
