"""An OpenAI Realtime agent with a tool, on one SIP port, from Python.

    export OPENAI_API_KEY=sk-...        # or run `w3sipagent realtime-server` and set
    python examples/openai_agent.py     # BASE_URL=ws://127.0.0.1:8765/v1 below
    w3sipagent call sip:agent@127.0.0.1:5090 -d 30

The agent answers, greets and can call `get_weather` (a Python tool here; webhook tools are
configured in w3sipagent.toml). Every call's CDR is printed at the end of the call.
"""

from __future__ import annotations

import asyncio
import os

from w3sipagent.agent.bridge import BridgeOptions, CallBridge, choose_ai_format
from w3sipagent.agent.tools import Tool, ToolContext, ToolRegistry, ToolResult, builtin_tools
from w3sipagent.ai.session import AISessionConfig, ToolSpec, TurnDetection
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.server import UserAgentConfig, serve
from w3sipagent.realtime import open_session

BASE_URL = os.environ.get("REALTIME_BASE_URL", "wss://api.openai.com/v1")


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


async def agent(call: Call) -> None:
    fmt = choose_ai_format(call.media.encoding)  # G.711 passes straight through
    config = AISessionConfig(
        instructions="You are a friendly phone assistant. Keep answers short.",
        voice="marin",
        input_format=fmt,
        output_format=fmt,
        turn_detection=TurnDetection(),
    )
    tools = ToolRegistry([*builtin_tools({}), WEATHER])
    key = os.environ["OPENAI_API_KEY"]
    bridge = CallBridge(
        call,
        lambda cfg: open_session(cfg, api_key=key, base_url=BASE_URL),
        config,
        tools=tools,
        options=BridgeOptions(greeting="Greet the caller and offer the weather forecast."),
    )
    cdr = await bridge.run()
    print(cdr.model_dump_json(indent=2, include={"call_id", "transcript", "tool_calls"}))


async def main() -> None:
    async with serve(agent, config=UserAgentConfig(host="127.0.0.1", port=5090)):
        print("agent on 127.0.0.1:5090; Ctrl-C stops")
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
