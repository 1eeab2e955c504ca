"""What the scripted model answers, from the conversation a request carries.

The HTTP endpoints are stateless, so the place in the :class:`Scenario` comes from the
conversation itself: the number of *user* messages is the caller turn (0: the greeting),
and a conversation that ends with a tool output gets the ``after`` text of that turn's
function call. The same scenario file as the Realtime imitation drives it, so one script
plays the same call on every backend.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from w3sipagent.localai.scenario import FunctionCall, Scenario

__all__ = ["Reply", "chunk_text", "plan_reply"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: words to say (may be empty) and a function call (or None)."""

    text: str
    call: FunctionCall | None
    turn: int


def plan_reply(
    scenario: Scenario,
    user_turns: int,
    *,
    after_tool: bool,
    tool_names: set[str],
    tool_choice: Any = "auto",
) -> Reply:
    """The scripted answer at caller turn ``user_turns``.

    A scripted call is made only when the request offers a function of that name and
    ``tool_choice`` is not ``"none"`` (as a real model could not call it otherwise); the
    turn then says its ``say`` text, or the fallback when it has none.
    """
    entry = scenario.turn(user_turns)
    if after_tool:
        after = entry.call.after if entry is not None and entry.call is not None else ""
        return Reply(after or scenario.fallback, None, user_turns)
    if user_turns == 0:
        return Reply(scenario.greeting or scenario.fallback, None, 0)
    if entry is None:
        return Reply(scenario.fallback, None, user_turns)
    call = entry.call
    if call is not None and (tool_choice == "none" or call.name not in tool_names):
        log.warning(
            "scenario calls %r but the request does not offer it (tools %s): not called",
            call.name,
            sorted(tool_names),
        )
        call = None
    text = entry.say if entry.say or call is not None else scenario.fallback
    return Reply(text, call, user_turns)


def chunk_text(text: str) -> list[str]:
    """Text deltas as a model streams them: one word with its leading space each."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words) if w or i == 0]


def chunk_arguments(arguments: str, size: int = 8) -> list[str]:
    """Function-call argument deltas: the JSON text in pieces of ``size`` characters."""
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]
