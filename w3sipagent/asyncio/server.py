"""The server entry point: ``async with serve(handler, config=...) as ua:``.

::

    async def echo(call: Call) -> None:
        async for pcm in call.audio():
            call.send_audio(pcm)

    async with serve(echo, config=UserAgentConfig(port=5090)) as ua:
        await asyncio.Event().wait()  # serve until cancelled (Ctrl-C); leaving drains

Leaving the block shuts down gracefully: new INVITEs get 503 with Retry-After, the
calls in progress get ``drain_timeout`` seconds to end, the rest are hung up with BYE.
The admission callable decides every incoming call *before* the 200 OK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from w3sipagent.asyncio.useragent import (
    Accept,
    Admission,
    AdmissionDecision,
    AdmissionRequest,
    Handler,
    Reject,
    UserAgent,
    UserAgentConfig,
)
from w3sipagent.sip.ids import IdSource

__all__ = [
    "Accept",
    "Admission",
    "AdmissionDecision",
    "AdmissionRequest",
    "Handler",
    "Reject",
    "UserAgentConfig",
    "serve",
]


@asynccontextmanager
async def serve(
    handler: Handler,
    *,
    config: UserAgentConfig | None = None,
    admission: Admission | None = None,
    ids: IdSource | None = None,
) -> AsyncIterator[UserAgent]:
    """Run a :class:`UserAgent` answering calls with ``handler`` until the block exits."""
    ua = UserAgent(config, handler=handler, admission=admission, ids=ids)
    await ua.start()
    try:
        yield ua
    finally:
        await ua.close()
