"""An OpenAI Realtime agent with a tool, on one SIP port, from Python.

    export OPENAI_API_KEY=sk-...
    python examples/openai_agent.py [--port 5090]
    w3sipagent call sip:agent@127.0.0.1:5090 -d 30

Offline, against the local Realtime-compatible server (no key needed)::

    w3sipagent realtime-server --port 8765 &
    python examples/openai_agent.py --realtime-url ws://127.0.0.1:8765/v1

The agent answers, greets and can call `get_weather` (a Python tool here; webhook tools are
configured in w3sipagent.toml). Every call's CDR is printed at the end of the call.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from w3sipagent.agent.bridge import BridgeOptions, CallBridge, choose_ai_format
from w3sipagent.agent.tools import Tool, ToolContext, ToolRegistry, ToolResult, builtin_tools
from w3sipagent.ai.session import AISessionConfig, ToolSpec, TurnDetection
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.server import UserAgentConfig, serve
from w3sipagent.realtime import open_session

BASE_URL = "wss://api.openai.com/v1"


async def get_weather(ctx: ToolContext, args: dict[str, object]) -> ToolResult:
    city = str(args.get("city", "Paris"))
    return ToolResult({"city": city, "forecast": "sunny", "celsius": 21})


WEATHER = Tool(
    ToolSpec(
        "get_weather",
        "The weather forecast for a city",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ),
    get_weather,
)


async def agent(call: Call, base_url: str, key: str) -> None:
    fmt = choose_ai_format(call.media.encoding)  # G.711 passes straight through
    config = AISessionConfig(
        instructions="You are a friendly phone assistant. Keep answers short.",
        voice="marin",
        input_format=fmt,
        output_format=fmt,
        turn_detection=TurnDetection(),
    )
    tools = ToolRegistry([*builtin_tools({}), WEATHER])
    bridge = CallBridge(
        call,
        lambda cfg: open_session(cfg, api_key=key, base_url=base_url),
        config,
        tools=tools,
        options=BridgeOptions(greeting="Greet the caller and offer the weather forecast."),
    )
    cdr = await bridge.run()
    print(cdr.model_dump_json(indent=2, include={"call_id", "transcript", "tool_calls"}))


async def main() -> None:
    ap = argparse.ArgumentParser(description="An OpenAI Realtime agent with a tool.")
    ap.add_argument("--port", type=int, default=5090, help="SIP port on 127.0.0.1")
    ap.add_argument("--realtime-url", default=BASE_URL, help="Realtime base URL (…/v1)")
    args = ap.parse_args()
    key = os.environ.get("OPENAI_API_KEY", "")
    if not key and args.realtime_url == BASE_URL:
        raise SystemExit("set OPENAI_API_KEY, or use --realtime-url with the local server")
    key = key or "sk-local"  # the local server accepts any key

    async def handler(call: Call) -> None:
        await agent(call, args.realtime_url, key)

    config = UserAgentConfig(host="127.0.0.1", port=args.port)
    async with serve(handler, config=config) as ua:
        print(f"agent on 127.0.0.1:{ua.port} → {args.realtime_url}; Ctrl-C stops", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
