"""A tiny agent for the network-namespace tests: ``serve()`` with an echo handler.

Run inside a loopback-only namespace only (it refuses otherwise)::

    ip netns exec NS .venv/bin/python -m tests.netns.agent_main --port 5090

Prints ``READY <port>`` once listening; stops on SIGTERM / SIGINT (graceful drain).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.server import UserAgentConfig, serve


def only_loopback() -> bool:
    """True when this process sees no network interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


async def echo(call: Call) -> None:
    """Send back what the caller says."""
    async for pcm in call.audio():
        call.send_audio(pcm)


async def main(port: int, t1: float) -> None:
    config = UserAgentConfig(
        host="127.0.0.1",
        port=port,
        t1=t1,
        t2=max(t1 * 8, 0.4),
        drain_timeout=0.5,
        bye_timeout=0.5,
        rtp_port_min=21000,
        rtp_port_max=21199,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(echo, config=config) as ua:
        print(f"READY {ua.port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5090)
    parser.add_argument("--t1", type=float, default=0.05)
    args = parser.parse_args()
    if not only_loopback():
        sys.exit("refusing to run: this network namespace has interfaces other than lo")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(args.port, args.t1))
