"""The agent behind a real Kamailio 5.6 (registrar, dispatcher) on 127.0.0.1.

- registrar: the agent registers (``register.py``) with a per-registration Contact user;
  a call to the AOR through Kamailio reaches the agent and carries
  ``CallInfo.registration``; after unregistering, Kamailio answers 404.
- dispatcher: two agents behind Kamailio's round-robin set, probed with OPTIONS every
  second; calls alternate; once one agent is stopped Kamailio marks it inactive and the
  following calls all reach the other.

The caller is a third in-process user agent dialling through Kamailio (an outbound proxy).
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.interop.conftest import Kamailio, KamailioFactory
from tests.interop.test_baresip import agent_config
from tests.wait import wait_until
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.register import RegisterConfig, Registration, RegistrationManager
from w3sipagent.asyncio.useragent import CallRejected, UserAgent

pytestmark = pytest.mark.interop


class Recorder:
    """A handler that notes who got the call (and its registration) and holds it briefly."""

    def __init__(self, name: str, hold: float = 2.0) -> None:
        self.name = name
        self.hold = hold
        self.calls: list[Call] = []

    async def handler(self, call: Call) -> None:
        self.calls.append(call)
        try:
            await asyncio.wait_for(call.wait_ended(), self.hold)
        except TimeoutError:
            pass


async def call_through(caller: UserAgent, kam: Kamailio, user: str, *to: Recorder) -> None:
    """Dial ``user`` at Kamailio, wait for the answer (and for one of ``to`` to get it), hang up."""
    before = sum(len(r.calls) for r in to)
    call = await caller.dial(
        f"sip:{user}@127.0.0.1:{kam.port}", proxy=("127.0.0.1", kam.port), timeout=8
    )
    if to:
        got = lambda: sum(len(r.calls) for r in to) > before  # noqa: E731
        await wait_until(got, 3, "the agent's handler has the call")
    await call.hangup()
    end = await asyncio.wait_for(call.wait_ended(), 3)
    assert end.reason == "local_hangup"


async def test_register_at_kamailio_and_receive_a_call(
    kamailio: KamailioFactory, interop_log: list[str]
) -> None:
    kam = await kamailio()
    rec = Recorder("agent")
    agent = UserAgent(agent_config(), handler=rec.handler)
    caller = UserAgent(agent_config())
    await agent.start()
    await caller.start()
    mgr = RegistrationManager(
        agent,  # the Contact comes from agent.contact(user, transport)
        config=RegisterConfig(request_timeout=3, backoff_initial=0.2, backoff_jitter=0),
    )
    try:
        client = mgr.add(
            Registration(
                id="acme",
                registrar=f"sip:127.0.0.1:{kam.port}",
                aor=f"sip:support@127.0.0.1:{kam.port}",
                expires=60,
            )
        )
        assert await mgr.wait_registered(timeout=5), client.status
        status = mgr.statuses()["acme"]
        interop_log.append(f"registered: {status}")
        assert status.state == "registered" and status.code == 200
        assert status.expires is not None and 0 < status.expires <= 60
        dump = kam.kamcmd("ul.dump")
        assert f"sip:reg-acme@127.0.0.1:{agent.port}" in dump, dump[-1500:]

        await call_through(caller, kam, "support", rec)
        assert len(rec.calls) == 1
        info = rec.calls[0].info
        interop_log.append(
            f"call through Kamailio: {info.request_uri} registration={info.registration}"
        )
        assert info.registration == "acme"
        assert info.request_uri.startswith("sip:reg-acme@")

        await mgr.aclose()
        assert client.status.state == "unregistered"
        assert "reg-acme" not in kam.kamcmd("ul.dump")
        with pytest.raises(CallRejected) as ei:
            await call_through(caller, kam, "support")
        assert ei.value.status == 404
    finally:
        await mgr.aclose(unregister=False)
        await caller.close(timeout=0)
        await agent.close(timeout=0)


def destination_flags(kam: Kamailio, port: int) -> str | None:
    """The dispatcher FLAGS (AP active+probing, IP inactive+probing...) of an agent."""
    out = kam.kamcmd("dispatcher.list")
    m = re.search(rf"URI: sip:127\.0\.0\.1:{port}\s+FLAGS: (\w+)", out)
    return m.group(1) if m else None


async def test_dispatcher_alternates_and_fails_over(
    kamailio: KamailioFactory, interop_log: list[str]
) -> None:
    a, b = Recorder("A", hold=1.0), Recorder("B", hold=1.0)
    ua_a = UserAgent(agent_config(), handler=a.handler)
    ua_b = UserAgent(agent_config(), handler=b.handler)
    caller = UserAgent(agent_config())
    for ua in (ua_a, ua_b, caller):
        await ua.start()
    kam = await kamailio(agents=(ua_a.port, ua_b.port), ping_interval=1)
    try:
        order: list[str] = []
        for _ in range(4):
            before = (len(a.calls), len(b.calls))
            await call_through(caller, kam, "agents", a, b)
            order.append("A" if len(a.calls) > before[0] else "B")
        interop_log.append(f"round robin: {order}")
        assert order in (["A", "B", "A", "B"], ["B", "A", "B", "A"])

        loop = asyncio.get_running_loop()
        await ua_a.close(timeout=0)
        t0 = loop.time()
        inactive = lambda: destination_flags(kam, ua_a.port) in ("IP", "IX", "I")  # noqa: E731
        await wait_until(inactive, 8, "agent A marked inactive", interval=0.25)
        marked = loop.time() - t0
        interop_log.append(
            f"agent A inactive after {marked:.1f} s: {destination_flags(kam, ua_a.port)}"
        )
        assert destination_flags(kam, ua_b.port) in ("AP", "A")
        n_a = len(a.calls)
        for _ in range(2):
            before_b = len(b.calls)
            await call_through(caller, kam, "agents", a, b)
            assert len(b.calls) == before_b + 1
        assert len(a.calls) == n_a
        assert marked < 6.0
    finally:
        await caller.close(timeout=0)
        await ua_b.close(timeout=0)
        await ua_a.close(timeout=0)
