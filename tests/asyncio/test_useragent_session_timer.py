"""Session timers (RFC 4028) between two user agents, with a 1-2 s interval."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.asyncio.conftest import UaFactory
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.sip.message import SipRequest, parse_message


async def test_uas_refreshes_with_update_when_refresher(make_ua: UaFactory) -> None:
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        await call.wait_ended()

    sent: list[bytes] = []  # what the server puts on the wire
    uas: list[UserAgent] = []

    def sender(data: bytes, destination: Any, transport: str) -> None:
        sent.append(data)
        uas[0].transports.send(data, destination, transport)

    server = await make_ua(handler=handler, min_se=1, session_expires=1, sender=sender)
    uas.append(server)
    client = await make_ua(min_se=1, session_timers=False)
    call = await client.dial(
        f"sip:a@127.0.0.1:{server.port}", headers=[("Session-Expires", "1;refresher=uas")]
    )
    await asyncio.sleep(1.3)
    updates = [m for m in map(parse_message, sent) if isinstance(m, SipRequest)]
    assert [m.method for m in updates].count("UPDATE") >= 2
    assert all(m.session_expires is not None and m.session_expires.delta == 1 for m in updates)
    assert not call.ended and answered[0].state == "active"
    await call.hangup()


async def test_session_expires_without_refresh_ends_with_bye(make_ua: UaFactory) -> None:
    async def handler(call: Call) -> None:
        await call.wait_ended()

    server = await make_ua(handler=handler, min_se=1, session_expires=1)
    client = await make_ua(min_se=1, session_timers=False)  # promises to refresh, never does
    call = await client.dial(
        f"sip:a@127.0.0.1:{server.port}", headers=[("Session-Expires", "1;refresher=uac")]
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = await asyncio.wait_for(call.wait_ended(), 3)
    assert end.reason == "remote_bye"
    assert 0.5 < loop.time() - start < 1.5  # interval - interval/3
    await asyncio.sleep(0.05)
    assert server.calls == [] and server.ports.in_use == 0
