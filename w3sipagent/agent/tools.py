"""Tools the model may call during a call: a registry, the built-ins and webhook tools.

Built-ins (:func:`builtin_tools`):

- ``transfer_call(destination, reason)``: blind transfer (REFER) to one of the tenant's
  *named* destinations. The model only ever picks a name from a closed list; a URI or an
  unknown name is refused with a tool error listing the allowed names, so a caller who
  talks the model into "transfer me to sip:+4419..." cannot route the call anywhere (toll
  fraud). The result is the real outcome learnt from the NOTIFYs.
- ``end_call(reason)``: hang up once the current response has finished playing.
- ``send_dtmf(digits)``: RFC 4733 digits towards the caller's side (IVRs behind it).
- ``search_knowledge(query)``: the best passages of the tenant's knowledge base with their
  source (file and chunk), for agents with ``knowledge = true`` (:func:`knowledge_tool`);
  the search is bound to the call's tenant, so it never sees another tenant's passages.

Webhook tools (:class:`WebhookTool`): a tenant's HTTP endpoints, POSTed the model's JSON
arguments with httpx; non-2xx answers, network errors and timeouts come back to the model
as tool errors. The auth header value is read from its environment variable when the tool
runs and never logged.

A :class:`ToolRegistry` is built per call from that call's tenant only
(:meth:`ToolRegistry.for_tenant`); it runs a tool by name with a timeout and always
returns a :class:`ToolResult`, never raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from w3sipagent.ai.session import ToolSpec
from w3sipagent.asyncio.call_api import TransferOutcome
from w3sipagent.errors import ConfigError
from w3sipagent.knowledge.sources import KnowledgeError
from w3sipagent.knowledge.store import Passage
from w3sipagent.tenants.models import TenantConfig, WebhookToolConfig
from w3sipagent.tenants.secrets import resolve_header

__all__ = [
    "KnowledgeSearch",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "WebhookTool",
    "builtin_tools",
    "knowledge_tool",
]

log = logging.getLogger("w3sipagent.agent.tools")

MAX_RESULT_CHARS = 8000
"""Webhook answers longer than this are cut before they reach the model."""
DTMF_RE = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
MAX_PASSAGE_CHARS = 1500
"""A passage longer than this is cut in the tool result (the model gets top_k of them)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool gives back: ``output`` (JSON-able) or ``error``.

    ``respond``: whether the agent should speak about it right away (False for end_call
    and a completed transfer: the call is ending).
    """

    output: Any = None
    error: str | None = None
    respond: bool = True

    def to_json(self) -> str:
        """The text sent to the model as the function call output."""
        if self.error is not None:
            return json.dumps({"error": self.error})
        if isinstance(self.output, str):
            return json.dumps({"result": self.output})
        return json.dumps(self.output)


class ToolContext(Protocol):
    """What the built-in tools need from the call they run in (implemented by the
    bridge's :class:`~w3sipagent.agent.actions.CallActions`)."""

    async def transfer_to(self, destination: str, uri: str, reason: str) -> TransferOutcome:
        """Transfer the caller to ``uri`` (the destination named ``destination``)."""
        ...

    async def end_call(self, reason: str) -> None:
        """Hang up after the current response has finished playing."""
        ...

    async def send_dtmf(self, digits: str) -> None:
        """Send DTMF digits on the call."""
        ...


class KnowledgeSearch(Protocol):
    """A knowledge base bound to one tenant (:class:`w3sipagent.knowledge.TenantKnowledge`)."""

    async def search(self, query: str, top_k: int | None = None) -> list[Passage]:
        """The best passages for ``query``."""
        ...


Handler = Callable[[ToolContext, dict[str, Any]], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class Tool:
    """A named tool: its spec for the model, its handler, its time limit (None: none)."""

    spec: ToolSpec
    handler: Handler
    timeout: float | None = 10.0

    @property
    def name(self) -> str:
        return self.spec.name


class ToolRegistry:
    """The tools of one call, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self.tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool) -> None:
        """Add a tool; a name may appear once."""
        if tool.name in self.tools:
            raise ConfigError(f"tool {tool.name!r} is registered twice")
        self.tools[tool.name] = tool

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def specs(self) -> tuple[ToolSpec, ...]:
        """The specs for the AI session, in registration order."""
        return tuple(t.spec for t in self.tools.values())

    async def run(self, ctx: ToolContext, name: str, arguments: str) -> ToolResult:
        """Run ``name`` with the model's JSON ``arguments``; errors become tool errors."""
        tool = self.tools.get(name)
        if tool is None:
            return ToolResult(error=f"unknown tool {name!r}; available: {', '.join(self.tools)}")
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return ToolResult(error=f"arguments are not valid JSON: {exc.msg}")
        if not isinstance(args, dict):
            return ToolResult(error="arguments must be a JSON object")
        try:
            if tool.timeout is None:
                return await tool.handler(ctx, args)
            return await asyncio.wait_for(tool.handler(ctx, args), tool.timeout)
        except TimeoutError:
            return ToolResult(error=f"tool {name} timed out after {tool.timeout:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool bug is the model's tool error, not a dead call
            log.exception("tool %s failed", name)
            return ToolResult(error=f"tool {name} failed: {type(exc).__name__}")

    @classmethod
    def for_tenant(
        cls,
        tenant: TenantConfig,
        agent_tools: Iterable[WebhookToolConfig],
        *,
        http: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
        knowledge: KnowledgeSearch | None = None,
    ) -> ToolRegistry:
        """Built-ins bound to ``tenant``'s destinations plus the agent's webhook tools;
        ``search_knowledge`` when ``knowledge`` (the tenant's own base) is given."""
        tools = builtin_tools(tenant.transfers)
        if knowledge is not None:
            tools.append(knowledge_tool(knowledge))
        for cfg in agent_tools:
            tools.append(WebhookTool(cfg, http=http, environ=environ).tool())
        return cls(tools)


# ---------------------------------------------------------------- built-ins


def _transfer_tool(destinations: Mapping[str, str]) -> Tool:
    names = sorted(destinations)
    allowed = dict(destinations)  # a copy: the call keeps the table it was admitted with

    async def transfer_call(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        dest = args.get("destination")
        reason = str(args.get("reason") or "")[:200]
        if not isinstance(dest, str) or dest not in allowed:
            shown = dest if isinstance(dest, str) else type(dest).__name__
            return ToolResult(
                error=f"unknown destination {shown[:80]!r}; allowed: {', '.join(names)}"
            )
        outcome = await ctx.transfer_to(dest, allowed[dest], reason)
        out: dict[str, Any] = {"destination": dest, "status": outcome.status}
        if outcome.code is not None:
            out["sip_code"] = outcome.code
        ended = outcome.status in ("succeeded", "accepted", "unknown")
        if outcome.status == "unknown":
            out["note"] = "the caller has left this call; whether the target took it is unknown"
        elif not ended:
            out["note"] = "the transfer did not happen; the caller is still with you"
            if outcome.reason:
                out["reason"] = outcome.reason[:120]
        return ToolResult(out, respond=not ended)

    spec = ToolSpec(
        "transfer_call",
        "Transfer the caller to a person or department. Say briefly that you are "
        "transferring before calling it. destination must be one of: " + ", ".join(names),
        {
            "type": "object",
            "properties": {
                "destination": {"type": "string", "enum": names},
                "reason": {"type": "string", "description": "why, in a few words"},
            },
            "required": ["destination"],
        },
    )
    return Tool(spec, transfer_call, timeout=None)  # bounded by the call's transfer timeout


async def _end_call(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    reason = str(args.get("reason") or "conversation finished")[:200]
    await ctx.end_call(reason)
    return ToolResult(
        {"status": "ending", "note": "the call ends after your last words"}, respond=False
    )


async def _send_dtmf(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    digits = args.get("digits")
    if not isinstance(digits, str) or not DTMF_RE.match(digits):
        return ToolResult(error="digits must be 1 to 32 of 0-9 * # A-D")
    await ctx.send_dtmf(digits.upper())
    return ToolResult({"status": "sent", "digits": digits.upper()}, respond=False)


def builtin_tools(destinations: Mapping[str, str]) -> list[Tool]:
    """transfer_call (only when there are destinations), end_call and send_dtmf."""
    tools: list[Tool] = []
    if destinations:
        tools.append(_transfer_tool(destinations))
    tools.append(
        Tool(
            ToolSpec(
                "end_call",
                "End the call after your last sentence (say goodbye first).",
                {
                    "type": "object",
                    "properties": {"reason": {"type": "string"}},
                },
            ),
            _end_call,
        )
    )
    tools.append(
        Tool(
            ToolSpec(
                "send_dtmf",
                "Send keypad tones (DTMF) on the call, e.g. to navigate a menu.",
                {
                    "type": "object",
                    "properties": {"digits": {"type": "string", "pattern": "^[0-9*#A-D]+$"}},
                    "required": ["digits"],
                },
            ),
            _send_dtmf,
        )
    )
    return tools


def knowledge_tool(kb: KnowledgeSearch, *, timeout: float = 15.0) -> Tool:
    """``search_knowledge(query)`` over ``kb``: passages with their file and chunk."""

    async def search_knowledge(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            return ToolResult(error="query must be a non-empty string")
        try:
            passages = await kb.search(query.strip()[:1000])
        except KnowledgeError as exc:
            log.warning("search_knowledge failed: %s", exc)
            return ToolResult(error="the knowledge base is unavailable right now")
        passages = [p for p in passages if p.score > 0]  # nothing in common: not a hit
        if not passages:
            return ToolResult({"passages": [], "note": "nothing found in the knowledge base"})
        return ToolResult(
            {
                "passages": [
                    {
                        "text": p.text[:MAX_PASSAGE_CHARS],
                        "source": p.source,
                        "chunk": p.chunk,
                        "score": p.score,
                    }
                    for p in passages
                ]
            }
        )

    spec = ToolSpec(
        "search_knowledge",
        "Search the company's knowledge base (documents, menus, policies, FAQs). Use it "
        "before answering factual questions about the company; answer from the passages "
        "and say which document it comes from when useful.",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "what to look for, in a few words"}
            },
            "required": ["query"],
        },
    )
    return Tool(spec, search_knowledge, timeout=timeout)


# ---------------------------------------------------------------- webhooks


class WebhookTool:
    """A tenant's HTTP tool: POST the arguments as JSON to ``config.url``."""

    def __init__(
        self,
        config: WebhookToolConfig,
        *,
        http: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
        user_agent: str = "w3sipagent",
    ) -> None:
        self.config = config
        self._http = http
        self._environ = environ
        self.user_agent = user_agent

    def tool(self) -> Tool:
        """The registry entry (the HTTP timeout is enforced by httpx and by the registry)."""
        return Tool(self.config.spec(), self._run, timeout=self.config.timeout + 1.0)

    async def _run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        cfg = self.config
        headers = {"User-Agent": self.user_agent, "Content-Type": "application/json"}
        try:
            auth = resolve_header(
                cfg.auth_env,
                cfg.auth_header,
                cfg.auth_prefix,
                what=f"tool {cfg.name}: auth",
                environ=self._environ,
            )
        except ConfigError as exc:
            log.error("%s", exc)  # names the variable, never a value
            return ToolResult(error=f"tool {cfg.name} is not configured")
        if auth is not None:
            headers[auth[0]] = auth[1]
        client = self._http
        own = client is None
        if client is None:
            client = httpx.AsyncClient(follow_redirects=False)
        t0 = time.monotonic()
        try:
            resp = await client.post(
                cfg.url, content=json.dumps(args).encode(), headers=headers, timeout=cfg.timeout
            )
        except httpx.TimeoutException:
            return ToolResult(error=f"tool {cfg.name} timed out after {cfg.timeout:g} s")
        except httpx.HTTPError as exc:
            return ToolResult(error=f"tool {cfg.name} unreachable: {type(exc).__name__}")
        finally:
            if own:
                await client.aclose()
        elapsed = (time.monotonic() - t0) * 1000
        log.debug("tool %s: HTTP %d in %.0f ms", cfg.name, resp.status_code, elapsed)
        text = resp.text[:MAX_RESULT_CHARS]
        if not 200 <= resp.status_code < 300:
            return ToolResult(error=f"tool {cfg.name} failed: HTTP {resp.status_code} {text[:200]}")
        try:
            return ToolResult(json.loads(text) if text.strip() else {"status": "ok"})
        except ValueError:
            return ToolResult(text)
