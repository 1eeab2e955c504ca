"""The agent: one bridge per call between the call (CallLike) and the AI (AISession).

- :class:`~w3sipagent.agent.bridge.CallBridge`: the per-call bridge, composed of
  :mod:`~w3sipagent.agent.media` (audio both ways, prompts, recording),
  :mod:`~w3sipagent.agent.turns` (AI events, barge-in by the pure
  :mod:`~w3sipagent.agent.bargein` policy), :mod:`~w3sipagent.agent.supervisor` (connect,
  early session, reconnection), :mod:`~w3sipagent.agent.actions` (tools, transfers, DTMF by
  the pure :mod:`~w3sipagent.agent.dtmf` collector, fallback),
  :mod:`~w3sipagent.agent.lifecycle` and :mod:`~w3sipagent.agent.watchdog` (tasks, outcome,
  call limits); its options in :mod:`~w3sipagent.agent.options`;
- :class:`~w3sipagent.agent.service.AgentService`: user agent + tenants + records + bridges;
- :mod:`~w3sipagent.agent.tools`: the tool registry, built-ins and webhook tools;
- :mod:`~w3sipagent.agent.scripted` / :mod:`~w3sipagent.agent.memcall`: a scripted AI session
  and an in-memory call for tests and demos.

See docs/tools-and-transfers.md.
"""

from __future__ import annotations

from w3sipagent.agent.bridge import BridgeOptions, CallBridge, EarlySession, choose_ai_format
from w3sipagent.agent.playout import PlayoutQueue
from w3sipagent.agent.tools import Tool, ToolRegistry, ToolResult, WebhookTool, builtin_tools

__all__ = [
    "BridgeOptions",
    "CallBridge",
    "EarlySession",
    "PlayoutQueue",
    "Tool",
    "ToolRegistry",
    "ToolResult",
    "WebhookTool",
    "builtin_tools",
    "choose_ai_format",
]
