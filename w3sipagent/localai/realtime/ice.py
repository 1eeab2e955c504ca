"""ICE host candidates on one address, so an offline run sends no packet elsewhere.

aioice gathers host candidates on every interface except loopback, from the module
function ``aioice.ice.get_host_addresses``. :func:`restrict_ice` installs (once) a
wrapper of that function which answers the one address set in a context variable and
defers to aioice otherwise, then gathers through aiortc's public
``RTCIceGatherer.gather()``: only gatherings started inside :func:`restrict_ice` see the
address; every other peer connection in the process gathers as usual.
"""

from __future__ import annotations

import asyncio
import contextvars

import aioice.ice
from aiortc import RTCPeerConnection

_HOST: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "w3sipagent_ice_host", default=None
)
_aioice_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    host = _HOST.get()
    if host is None:
        return _aioice_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [host]


async def restrict_ice(pc: RTCPeerConnection, host: str = "127.0.0.1") -> None:
    """Gather ICE host candidates on ``host`` only, for every transport of ``pc``.

    Call this after the transceivers / data channel exist (offerer: after addTrack and
    createDataChannel; answerer: after setRemoteDescription) and before
    setLocalDescription, whose own gathering then has nothing left to do.
    """
    aioice.ice.get_host_addresses = _host_addresses
    gatherers = [t.sender.transport.transport.iceGatherer for t in pc.getTransceivers()]
    if pc.sctp is not None:
        gatherers.append(pc.sctp.transport.transport.iceGatherer)
    token = _HOST.set(host)
    try:  # tasks created here copy the context, so they see _HOST
        await asyncio.gather(*(g.gather() for g in gatherers))
    finally:
        _HOST.reset(token)
