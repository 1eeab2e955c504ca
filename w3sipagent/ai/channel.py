"""What an AI client session runs over, shared by the Realtime and GPT-Live back ends: a
:class:`Channel` of JSON text events, :class:`ChannelClosed` when it ends, a
:class:`SessionLink` (one connection's protocol state, channel, writer queue and tasks),
and the writer loop and bounded close that every transport uses the same way.

The WebSocket channels stay with their back ends: each words a lost connection in its own
service's terms.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Channel", "ChannelClosed", "SessionLink", "close_channel", "write_events"]


class ChannelClosed(Exception):
    """The transport under a session ended; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Channel(Protocol):
    """A connected transport carrying a session's events as JSON text."""

    async def send(self, text: str) -> None:
        """Send one event; raises :class:`ChannelClosed`."""
        ...

    async def recv(self) -> str:
        """The next server event; raises :class:`ChannelClosed`."""
        ...

    async def close(self) -> None:
        """Close the transport (idempotent)."""
        ...


P = TypeVar("P")


class SessionLink(Generic[P]):
    """One connection of a client session: its protocol state ``proto``, the channel, the
    writer queue, the set-up future ``ready``, the reader and writer tasks; ``extra`` holds
    transport state (WebRTC tracks). Each back end adds what its renewal needs."""

    def __init__(self, proto: P) -> None:
        self.proto = proto
        self.channel: Channel | None = None
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.extra: Any = None


async def write_events(queue: asyncio.Queue[str], channel: Channel) -> None:
    """Send the queued events in order until the channel closes (the reader reports it)."""
    while True:
        text = await queue.get()
        try:
            await channel.send(text)
        except ChannelClosed:
            return


async def close_channel(channel: Channel | None, timeout: float) -> None:
    """Close ``channel`` (if any) within ``timeout`` seconds; a failure to close is ignored."""
    if channel is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(), timeout)
