"""Session timers (RFC 4028) between two user agents: the wiring only (the policy is tested on
a fake clock in tests/sip/test_sessiontimer.py). The shortest interval a config takes is 1 s:
a refresh goes out every 0.5 s, an unrefreshed session ends after 0.67 s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.agent.helpers import wait_until
from tests.asyncio.conftest import UaFactory
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.outbound import CallRejected
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.sip.message import SipRequest, SipResponse, parse_message


def _capturing(
    sent: list[bytes], holder: list[UserAgent]
) -> Callable[[bytes, tuple[str, int], str], None]:
    """A sender that records what the UA sends and then sends it for real."""

    def send(data: bytes, addr: tuple[str, int], transport: str) -> None:
        sent.append(data)
        holder[0].transports.send(data, addr, transport)

    return send


def _requests(sent: list[bytes], method: str) -> list[SipRequest]:
    out = []
    for data in sent:
        msg = parse_message(data)
        if isinstance(msg, SipRequest) and msg.method == method:
            out.append(msg)
    return out


async def test_uas_refreshes_with_update_when_refresher(make_ua: UaFactory) -> None:
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        await call.wait_ended()

    sent: list[bytes] = []
    holder: list[UserAgent] = []
    server = await make_ua(
        handler=handler, min_se=1, session_expires=1, sender=_capturing(sent, holder)
    )
    holder.append(server)
    client = await make_ua(min_se=1, session_timers=False)
    call = await client.dial(
        f"sip:a@127.0.0.1:{server.port}", headers=[("Session-Expires", "1;refresher=uas")]
    )
    # the refresh is re-armed after each answer: two UPDATEs (no re-INVITE: the peer allows it)
    await wait_until(lambda: len(_requests(sent, "UPDATE")) >= 2, what="two refreshes")
    updates = _requests(sent, "UPDATE")
    assert [str(u.session_expires) for u in updates[:2]] == ["1;refresher=uac"] * 2
    assert updates[0].body == b"" and _requests(sent, "INVITE") == []
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
    await wait_until(lambda: server.calls == [] and server.ports.in_use == 0, what="call ended")


async def test_session_expires_below_min_se_is_refused_with_422(make_ua: UaFactory) -> None:
    server = await make_ua(min_se=90)
    client = await make_ua()
    with pytest.raises(CallRejected) as info:
        await client.dial(
            f"sip:a@127.0.0.1:{server.port}", headers=[("Session-Expires", "60;refresher=uac")]
        )
    assert info.value.status == 422
    assert info.value.response.headers.get("Min-SE") == "90"
    assert server.calls == []


async def test_our_2xx_carries_the_negotiated_session_expires(make_ua: UaFactory) -> None:
    async def handler(call: Call) -> None:
        await call.wait_ended()

    sent: list[bytes] = []
    holder: list[UserAgent] = []
    server = await make_ua(
        handler=handler, min_se=90, session_expires=600, sender=_capturing(sent, holder)
    )
    holder.append(server)
    client = await make_ua(session_timers=False)
    call = await client.dial(
        f"sip:a@127.0.0.1:{server.port}",
        headers=[("Session-Expires", "7200"), ("Supported", "timer")],
    )
    ok = [m for m in map(parse_message, sent) if isinstance(m, SipResponse) and m.status == 200]
    assert ok and ok[0].headers.get("Session-Expires") == "600;refresher=uac"
    assert ok[0].headers.get("Require") == "timer"
    await call.hangup()
