"""An echo "agent" in a few lines of the library API: whatever the caller says comes back.

python examples/echo_agent.py [PORT]       # listens on 127.0.0.1:5090 by default
w3sipagent call sip:echo@127.0.0.1:5090 --play some.wav --record heard.wav -d 5
"""

from __future__ import annotations

import asyncio
import sys

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.server import UserAgentConfig, serve


async def echo(call: Call) -> None:
    async for pcm in call.audio():  # 20 ms PCM frames until the caller hangs up
        call.send_audio(pcm)


async def main(port: int) -> None:
    async with serve(echo, config=UserAgentConfig(host="127.0.0.1", port=port)) as ua:
        print(f"echo agent on udp/tcp 127.0.0.1:{ua.port}; Ctrl-C stops", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5090))
