"""Scenarios: what the local Realtime server says, calls and breaks, as TOML.

A scenario is a script of *responses*. Response 0 is the greeting (the first
``response.create`` before the caller said anything); each committed caller
turn advances to the next ``[[turns]]`` entry. A turn may speak (``say``),
call a function (``[turns.call]``) and, once the client returned the tool
output, speak ``after``. When the script runs out the server speaks
``fallback``. ``idle`` is said when server_vad's ``idle_timeout_ms`` fires (the
caller stayed silent; ``fallback`` when unset). ``[[inject]]`` entries break the
session on purpose at a chosen point. See docs/realtime-server.md for the full format::

    name = "support-desk"
    fallback = "Is there anything else?"
    idle = "Are you still there?"

    [greeting]
    say = "Hello, thanks for calling."

    [[turns]]
    caller = "Where is my order?"          # used as the input transcription
    say = "Let me check."
    call = { name = "check_order", arguments = { order_id = "4217" }, after = "It shipped." }

    [[inject]]
    turn = 2                 # 0 = greeting
    at = "response.done"     # session.created, committed, response.created, first_audio, response.done
    action = "close"         # error, close, abort, fail, expire (GPT-Live: session.closed expired)
    close_code = 1011

The server has no speech recognizer: the caller transcript it reports for
turn N is the ``caller`` text of turn N, whatever audio arrived.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from w3sipagent.errors import ConfigError

InjectPoint = Literal[
    "session.created", "committed", "response.created", "first_audio", "response.done"
]
InjectAction = Literal["error", "close", "abort", "fail", "expire"]

INJECT_POINTS: tuple[str, ...] = (
    "session.created",
    "committed",
    "response.created",
    "first_audio",
    "response.done",
)
INJECT_ACTIONS: tuple[str, ...] = ("error", "close", "abort", "fail", "expire")

DEFAULT_FALLBACK = "I'm sorry, I have nothing more to add."


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A tool call the model makes in a turn, and what it says after the tool output."""

    name: str
    arguments: str = "{}"
    after: str = ""
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One scripted response to a caller turn."""

    say: str = ""
    caller: str | None = None
    call: FunctionCall | None = None


@dataclass(frozen=True, slots=True)
class Injection:
    """A failure to inject: at ``at`` of response/turn ``turn``, do ``action``."""

    at: InjectPoint
    action: InjectAction
    turn: int = 0
    code: str | None = "server_error"
    message: str = "The server had an error while processing your request."
    type: str = "server_error"
    close_code: int = 1011
    close_reason: str = ""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole script: greeting, turns, fallback text and injected failures."""

    name: str = "default"
    greeting: str = ""
    turns: tuple[Turn, ...] = ()
    fallback: str = DEFAULT_FALLBACK
    instructions: str = ""
    inject: tuple[Injection, ...] = field(default=())
    idle: str = ""

    def turn(self, n: int) -> Turn | None:
        """The script entry for caller turn ``n`` (1-based), or None past the end."""
        if 1 <= n <= len(self.turns):
            return self.turns[n - 1]
        return None

    def injections(self, at: str, turn: int | None = None) -> list[Injection]:
        """The injections due at point ``at`` for ``turn`` (ignored for session.created)."""
        return [
            i for i in self.inject if i.at == at and (at == "session.created" or i.turn == turn)
        ]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<scenario>") -> Scenario:
        """Build a scenario from parsed TOML; raises :class:`ConfigError` naming the key."""
        known = {
            "name",
            "description",
            "greeting",
            "turns",
            "fallback",
            "idle",
            "instructions",
            "inject",
        }
        for key in data:
            if key not in known:
                raise ConfigError(f"{source}: unknown key {key!r}")
        name = _str(data, "name", source, "default")
        greeting_tbl = data.get("greeting", {})
        if isinstance(greeting_tbl, str):
            greeting = greeting_tbl
        elif isinstance(greeting_tbl, dict):
            greeting = _str(greeting_tbl, "say", f"{source}: greeting", "")
        else:
            raise ConfigError(f"{source}: greeting must be a table with 'say' or a string")
        turns_raw = data.get("turns", [])
        if not isinstance(turns_raw, list):
            raise ConfigError(f"{source}: turns must be an array of tables ([[turns]])")
        turns = tuple(_turn(t, f"{source}: turns[{i}]") for i, t in enumerate(turns_raw))
        inject_raw = data.get("inject", [])
        if not isinstance(inject_raw, list):
            raise ConfigError(f"{source}: inject must be an array of tables ([[inject]])")
        inject = tuple(_injection(t, f"{source}: inject[{i}]") for i, t in enumerate(inject_raw))
        return cls(
            name=name,
            greeting=greeting,
            turns=turns,
            fallback=_str(data, "fallback", source, DEFAULT_FALLBACK),
            instructions=_str(data, "instructions", source, ""),
            inject=inject,
            idle=_str(data, "idle", source, ""),
        )

    @classmethod
    def loads(cls, text: str, source: str = "<scenario>") -> Scenario:
        """Parse scenario TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: invalid TOML: {exc}") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Load a scenario file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read scenario: {exc.strerror}") from None
        return cls.loads(text, str(p))


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``w3sipagent/localai/scenarios``."""
    root = resources.files("w3sipagent.localai") / "scenarios"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path | None = None) -> Scenario:
    """A bundled scenario by name (default ``demo``) or a scenario file by path."""
    if name_or_path is None:
        name_or_path = "demo"
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return Scenario.load(p)
    name = str(name_or_path)
    if name not in bundled_scenarios():
        raise ConfigError(
            f"scenario {name!r}: no such file and not a bundled scenario "
            f"(bundled: {', '.join(bundled_scenarios())})"
        )
    res = resources.files("w3sipagent.localai") / "scenarios" / f"{name}.toml"
    return Scenario.loads(res.read_text(encoding="utf-8"), f"scenarios/{name}.toml")


def _str(tbl: dict[str, Any], key: str, source: str, default: str) -> str:
    v = tbl.get(key, default)
    if not isinstance(v, str):
        raise ConfigError(f"{source}: {key} must be a string, got {type(v).__name__}")
    return v


def _int(tbl: dict[str, Any], key: str, source: str, default: int) -> int:
    v = tbl.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ConfigError(f"{source}: {key} must be an integer, got {v!r}")
    return v


def _turn(t: Any, source: str) -> Turn:
    if not isinstance(t, dict):
        raise ConfigError(f"{source}: must be a table")
    for key in t:
        if key not in {"say", "caller", "call"}:
            raise ConfigError(f"{source}: unknown key {key!r}")
    caller = t.get("caller")
    if caller is not None and not isinstance(caller, str):
        raise ConfigError(f"{source}: caller must be a string")
    call = None
    if "call" in t:
        call = _call(t["call"], f"{source}.call")
    say = _str(t, "say", source, "")
    if not say and call is None:
        raise ConfigError(f"{source}: a turn needs 'say', 'call' or both")
    return Turn(say=say, caller=caller, call=call)


def _call(c: Any, source: str) -> FunctionCall:
    if not isinstance(c, dict):
        raise ConfigError(f"{source}: must be a table")
    for key in c:
        if key not in {"name", "arguments", "after", "call_id"}:
            raise ConfigError(f"{source}: unknown key {key!r}")
    name = _str(c, "name", source, "")
    if not name:
        raise ConfigError(f"{source}: name is required")
    args = c.get("arguments", {})
    if isinstance(args, dict):
        arguments = json.dumps(args, separators=(",", ":"))
    elif isinstance(args, str):
        try:
            json.loads(args)
        except json.JSONDecodeError:
            raise ConfigError(f"{source}: arguments is not valid JSON") from None
        arguments = args
    else:
        raise ConfigError(f"{source}: arguments must be a table or a JSON string")
    call_id = c.get("call_id")
    if call_id is not None and not isinstance(call_id, str):
        raise ConfigError(f"{source}: call_id must be a string")
    return FunctionCall(
        name=name, arguments=arguments, after=_str(c, "after", source, ""), call_id=call_id
    )


def _injection(t: Any, source: str) -> Injection:
    if not isinstance(t, dict):
        raise ConfigError(f"{source}: must be a table")
    known = {"turn", "at", "action", "code", "message", "type", "close_code", "close_reason"}
    for key in t:
        if key not in known:
            raise ConfigError(f"{source}: unknown key {key!r}")
    at = t.get("at", "response.done")
    if at not in INJECT_POINTS:
        raise ConfigError(f"{source}: at must be one of {', '.join(INJECT_POINTS)}, got {at!r}")
    action = t.get("action", "error")
    if action not in INJECT_ACTIONS:
        raise ConfigError(
            f"{source}: action must be one of {', '.join(INJECT_ACTIONS)}, got {action!r}"
        )
    code = t.get("code", "server_error")
    if code is not None and not isinstance(code, str):
        raise ConfigError(f"{source}: code must be a string")
    close_code = _int(t, "close_code", source, 1011)
    if not (close_code == 1000 or 1001 <= close_code <= 1014 or 3000 <= close_code <= 4999):
        raise ConfigError(f"{source}: close_code {close_code} is not a valid WebSocket close code")
    turn = _int(t, "turn", source, 0)
    if turn < 0:
        raise ConfigError(f"{source}: turn must be >= 0")
    return Injection(
        at=at,
        action=action,
        turn=turn,
        code=code,
        message=_str(
            t, "message", source, "The server had an error while processing your request."
        ),
        type=_str(t, "type", source, "server_error"),
        close_code=close_code,
        close_reason=_str(t, "close_reason", source, ""),
    )
