"""Transfer to a human: the agent hands the caller to a named destination with REFER.

A tenant lists where its agent may send callers (the model only picks a *name*)::

    [tenants.acme]
    transfers = { human = "sip:1000@pbx.acme.example" }
    dtmf = { "0" = "transfer:human" }       # pressing 0 does it without the model
    [tenants.acme.fallback]
    transfer = "human"                     # also when the AI is down

With FreeSWITCH, the REFER's Refer-To user part (1000) is dialled as an extension of the
caller's context, and `confirm-blind-transfer` on the profile makes the NOTIFY carry the
real outcome (200: the human answered; 486/480: back to the agent, which says so).

This script shows the same thing with the library: the caller asks for a person, the agent
(a Realtime session with the built-in transfer_call tool) transfers with REFER, and the
outcome is in the CDR it prints. Offline, with the local Realtime server and the softphone
standing in for the PBX (`--accept-refer` answers the REFER like FreeSWITCH would)::

    w3sipagent realtime-server --port 8765 --scenario examples/transfer_scenario.toml &
    python examples/transfer_to_human.py --realtime-url ws://127.0.0.1:8765/v1
    w3sipagent call sip:agent@127.0.0.1:5090 --play hello.wav --accept-refer -d 30

With OpenAI, export OPENAI_API_KEY and leave out --realtime-url.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from w3sipagent.agent.bridge import BridgeOptions, CallBridge, choose_ai_format
from w3sipagent.agent.tools import ToolRegistry, builtin_tools
from w3sipagent.ai.session import AISessionConfig, TurnDetection
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.refer import Transferer
from w3sipagent.asyncio.server import UserAgentConfig
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.realtime import open_session

DESTINATIONS = {"human": "sip:1000@pbx.example", "manager": "sip:1001@pbx.example"}
"""Where the agent may send callers: the model only picks a name."""
BASE_URL = "wss://api.openai.com/v1"


async def agent(call: Call, base_url: str, key: str) -> None:
    fmt = choose_ai_format(call.media.encoding)
    config = AISessionConfig(
        instructions="You answer for Acme. If the caller asks for a person, use transfer_call.",
        input_format=fmt,
        output_format=fmt,
        turn_detection=TurnDetection(),
    )
    bridge = CallBridge(
        call,
        lambda cfg: open_session(cfg, api_key=key, base_url=base_url),
        config,
        tools=ToolRegistry(builtin_tools(DESTINATIONS)),
        options=BridgeOptions(greeting="Greet the caller.", transfers=DESTINATIONS),
    )
    cdr = await bridge.run()
    t = cdr.transfer
    where = f"{t.destination} ({t.uri}): {t.outcome}" if t else "none"
    print(f"call {cdr.call_id}: {cdr.disposition.value}, transfer {where}", flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser(description="An agent that transfers callers to a human.")
    ap.add_argument("--port", type=int, default=5090, help="SIP port on 127.0.0.1")
    ap.add_argument("--realtime-url", default=BASE_URL, help="Realtime base URL (…/v1)")
    args = ap.parse_args()
    key = os.environ.get("OPENAI_API_KEY", "")
    if not key and args.realtime_url == BASE_URL:
        raise SystemExit("set OPENAI_API_KEY, or use --realtime-url with the local server")
    key = key or "sk-local"

    async def handler(call: Call) -> None:
        await agent(call, args.realtime_url, key)

    ua = UserAgent(UserAgentConfig(host="127.0.0.1", port=args.port), handler=handler)
    transferer = Transferer(ua)  # REFER with NOTIFY tracking: the real outcome
    transferer.install(ua)
    ua.transferer = transferer
    await ua.start()
    print(f"agent on 127.0.0.1:{ua.port} → {args.realtime_url}; Ctrl-C stops", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await ua.close()


if __name__ == "__main__":
    asyncio.run(main())
