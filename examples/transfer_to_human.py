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
(a Realtime session with the built-in transfer_call tool) transfers, and the outcome is
in the CDR. Run the local Realtime server's demo scenario against it, or use OpenAI:

    w3sipagent realtime-server &            # its demo scenario ends with a transfer
    python examples/transfer_to_human.py
    w3sipagent call sip:agent@127.0.0.1:5090 -d 40
"""

from __future__ import annotations

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

DESTINATIONS = {"human": "sip:1000@127.0.0.1:5060", "manager": "sip:1001@127.0.0.1:5060"}
BASE_URL = os.environ.get("REALTIME_BASE_URL", "ws://127.0.0.1:8765/v1")
KEY = os.environ.get("OPENAI_API_KEY", "sk-local")


async def agent(call: Call) -> None:
    fmt = choose_ai_format(call.media.encoding)
    config = AISessionConfig(
        instructions="You answer for Acme. If the caller asks for a person, use transfer_call.",
        input_format=fmt,
        output_format=fmt,
        turn_detection=TurnDetection(),
    )
    bridge = CallBridge(
        call,
        lambda cfg: open_session(cfg, api_key=KEY, base_url=BASE_URL),
        config,
        tools=ToolRegistry(builtin_tools(DESTINATIONS)),
        options=BridgeOptions(greeting="Greet the caller.", transfers=DESTINATIONS),
    )
    cdr = await bridge.run()
    print("disposition:", cdr.disposition.value, "transfer:", cdr.transfer)


async def main() -> None:
    ua = UserAgent(UserAgentConfig(host="127.0.0.1", port=5090), handler=agent)
    transferer = Transferer(ua)  # REFER with NOTIFY tracking: the real outcome
    transferer.install(ua)
    ua.transferer = transferer
    await ua.start()
    print("agent on 127.0.0.1:5090; Ctrl-C stops")
    try:
        await asyncio.Event().wait()
    finally:
        await ua.close()


if __name__ == "__main__":
    asyncio.run(main())
