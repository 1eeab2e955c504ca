"""Several agents behind Kamailio's dispatcher, one PostgreSQL: a tenant's limit holds for
the whole cluster, a crashed agent's slots come back after its lease, a rolling restart
drops no call (see conftest.py for the namespaces, the bridge and the processes)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text

from tests.cluster.conftest import AgentProc, Dispatcher, Lan
from tests.ports import rtp_block
from tests.wait import wait_until
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import CallRejected, UserAgent, UserAgentConfig
from w3sipagent.records.db import make_engine

pytestmark = [pytest.mark.interop, pytest.mark.postgres, pytest.mark.slow]

URI = "sip:support@acme.example"
Agents = Callable[..., Awaitable[AgentProc]]
Kamailio = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def caller(lan: Lan) -> AsyncIterator[UserAgent]:
    """The test's phone, on the bridge address (the agents send it RTP and BYEs)."""
    lo, hi = rtp_block(260)
    ua = UserAgent(
        UserAgentConfig(
            host=lan.hub, port=0, rtp_port_min=lo, rtp_port_max=hi, t1=0.2,
            drain_timeout=0.5, bye_timeout=1.0, dial_timeout=30.0,
            allowed_sources=(lan.network,),
        )
    )  # fmt: skip
    await ua.start()
    yield ua
    await ua.close(timeout=0)


async def sql(db_url: str, query: str) -> int:
    """One number from the cluster's database."""
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(query))).scalar_one())
    finally:
        await engine.dispose()


async def poll(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Ask ``check()`` again every 100 ms until it says yes (an HTTP or SQL condition)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


def answered_by(call: Call) -> str:
    """The agent address in the answer's SDP (each agent has its own)."""
    connection = getattr(call.remote_sdp, "connection", None)
    return str(getattr(connection, "address", "?"))


async def both_active(kam: Dispatcher, *nodes: str) -> None:
    await wait_until(
        lambda: all(kam.flags(n) in ("AP", "A") for n in nodes), 15, "agents active", interval=0.25
    )


async def hang_up(calls: list[Call]) -> None:
    await asyncio.gather(*(c.hangup() for c in calls if not c.ended))


async def test_two_agents_racing_admit_exactly_the_tenant_limit(
    lan: Lan, dispatcher: Kamailio, agents: Agents, caller: UserAgent, db_url: str
) -> None:
    a, b = await agents("a", limit=10), await agents("b", limit=10)
    kam = await dispatcher("a", "b")
    await both_active(kam, "a", "b")

    async def dial() -> Call | CallRejected:
        try:
            return await caller.dial(URI, proxy=kam.address, timeout=30)
        except CallRejected as e:
            return e

    results = await asyncio.gather(*(dial() for _ in range(100)))
    calls = [r for r in results if isinstance(r, Call)]
    refused = [r for r in results if isinstance(r, CallRejected)]
    try:
        per_agent = Counter(answered_by(c) for c in calls)
        print(f"\n  100 INVITEs through Kamailio: {len(calls)} answered {dict(per_agent)}")
        assert len(calls) == 10, [r.status for r in refused][:20]
        assert len(refused) == 90
        assert {r.status for r in refused} == {486}
        reasons = {r.response.headers.get("Reason") for r in refused}
        assert reasons == {'SIP;cause=486;text="tenant call limit"'}
        assert set(per_agent) <= {a.address, b.address}
        # each agent refused its share with the tenant-limit reason (50 INVITEs each)
        label = 'w3sipagent_rejected_calls_total{code="486",reason="tenant_limit"}'
        refusals = [await a.metric(label), await b.metric(label)]
        print(f"  486 per agent: {refusals}")
        assert sum(refusals) == 90 and min(refusals) >= 40
        ended = [x.end for x in calls if x.ended]
        assert ended == []
        assert await sql(db_url, "SELECT count(*) FROM call_slots WHERE tenant = 'acme'") == 10
    finally:
        await hang_up(calls)

    async def all_written() -> bool:
        q = "SELECT count(*) FROM cdrs WHERE tenant = 'acme' AND disposition <> 'in_progress'"
        return await sql(db_url, q) == 10

    await poll(all_written, 20, "10 final CDRs")
    assert await sql(db_url, "SELECT count(*) FROM cdrs") == 10
    slots = "SELECT count(*) FROM call_slots"

    async def released() -> bool:
        return await sql(db_url, slots) == 0

    await poll(released, 10, "every slot released")


async def test_a_killed_agents_slots_are_free_after_its_lease(
    lan: Lan, dispatcher: Kamailio, agents: Agents, caller: UserAgent, db_url: str
) -> None:
    lease, heartbeat = 3.0, 0.5
    a = await agents("a", limit=10, lease=lease, heartbeat=heartbeat)
    b = await agents("b", limit=10, lease=lease, heartbeat=heartbeat)
    kam = await dispatcher("a", "b")
    await both_active(kam, "a", "b")
    calls = [await caller.dial(URI, proxy=kam.address, timeout=15) for _ in range(10)]
    try:
        on_a = [c for c in calls if answered_by(c) == a.address]
        assert len(on_a) == 5, Counter(answered_by(c) for c in calls)
        ids = ", ".join(f"'{c.call_id}'" for c in on_a)
        live = f"SELECT count(*) FROM cdrs WHERE call_id IN ({ids}) AND disposition = 'in_progress'"

        async def recorded() -> bool:
            return await sql(db_url, live) == 5

        await poll(recorded, 10, "A's calls recorded in progress")
        loop = asyncio.get_running_loop()
        a.proc.send_signal(signal.SIGKILL)  # `ip netns exec` exec'd the agent: this is it
        killed = loop.time()
        await a.proc.wait()
        # A's five slots still count: B, with five calls, is at the limit
        with pytest.raises(CallRejected) as refused:
            await caller.dial(URI, proxy=b.sip, timeout=10)
        assert refused.value.status == 486
        assert loop.time() - killed < lease - heartbeat, "too slow to see the slots held"
        # once A's lease ran out B takes calls again: exactly A's five
        while True:
            try:
                calls.append(await caller.dial(URI, proxy=b.sip, timeout=10))
                break
            except CallRejected as e:
                assert e.status == 486
                assert loop.time() - killed < lease + 5, "A's slots never came back"
                await asyncio.sleep(0.1)
        freed = loop.time() - killed
        print(f"\n  slots of the killed agent free {freed:.2f} s after SIGKILL (lease {lease} s)")
        assert freed > lease - heartbeat - 0.5
        # Kamailio stops sending to A; the next calls all reach B, up to the limit
        await wait_until(
            lambda: kam.flags("a") in ("IP", "I", "IX"), 10, "A inactive", interval=0.25
        )
        for _ in range(4):
            calls.append(await caller.dial(URI, proxy=kam.address, timeout=15))
            assert answered_by(calls[-1]) == b.address
        with pytest.raises(CallRejected) as full:
            await caller.dial(URI, proxy=kam.address, timeout=15)
        assert full.value.status == 486
        q = "SELECT count(*) FROM call_slots s JOIN cluster_nodes n USING (node_id)"
        assert await sql(db_url, q + " WHERE n.expires_at > timezone('utc', now())") == 10
        # one lease later B forgets A, and the CDRs A left in progress say what happened
        lost = f"SELECT count(*) FROM cdrs WHERE call_id IN ({ids}) AND disposition = 'failed'"

        async def marked() -> bool:
            return await sql(db_url, lost + " AND reason LIKE 'agent lost%'") == 5

        await poll(marked, 2 * lease + 5, "the killed agent's CDRs marked failed")
    finally:
        await hang_up(calls)


async def test_rolling_restart_drops_no_call(
    lan: Lan, dispatcher: Kamailio, agents: Agents, caller: UserAgent, db_url: str
) -> None:
    a = await agents("a", limit=50, drain=60)
    b = await agents("b", limit=50)
    kam = await dispatcher("a", "b")
    await both_active(kam, "a", "b")
    calls = [await caller.dial(URI, proxy=kam.address, timeout=15) for _ in range(4)]
    try:
        on_a = [c for c in calls if answered_by(c) == a.address]
        assert len(on_a) == 2
        # 1. the new agent starts and joins the dispatcher set
        c = await agents("c", limit=50)
        await kam.set_agents("a", "b", "c")
        await both_active(kam, "a", "b", "c")
        # 2. the old one drains: readiness 503, its calls go on, Kamailio routes around it
        a.proc.send_signal(signal.SIGTERM)

        async def draining() -> bool:
            return await a.ready() == 503

        await poll(draining, 10, "A draining")
        for _ in range(6):
            calls.append(await caller.dial(URI, proxy=kam.address, timeout=15))
            assert answered_by(calls[-1]) in (b.address, c.address)
        new_ones = Counter(answered_by(x) for x in calls[4:])
        print(f"\n  calls during the drain: {dict(new_ones)}")
        assert set(new_ones) == {b.address, c.address}
        # A's calls are still up and still carry its audio
        assert not any(x.ended for x in on_a)
        before = [int(str(x.stats().get("packets_received", 0))) for x in on_a]
        await wait_until(
            lambda: all(
                int(str(x.stats().get("packets_received", 0))) > n + 10
                for x, n in zip(on_a, before, strict=True)
            ),
            5,
            "RTP from the draining agent",
        )
        # 3. its last calls end: it exits by itself, cleanly; it leaves the dispatcher set
        await hang_up(on_a)
        assert await asyncio.wait_for(a.proc.wait(), 20) == 0
        gone = "SELECT count(*) FROM cluster_nodes WHERE node_id LIKE 'agent-a%'"
        assert await sql(db_url, gone) == 0  # A left the cluster on its way out
        await kam.set_agents("b", "c")
        for _ in range(2):
            calls.append(await caller.dial(URI, proxy=kam.address, timeout=15))
        assert {answered_by(x) for x in calls[-2:]} == {b.address, c.address}
    finally:
        await hang_up(calls)

    async def all_written() -> bool:
        q = "SELECT count(*) FROM cdrs WHERE disposition <> 'in_progress'"
        return await sql(db_url, q) == 12

    await poll(all_written, 20, "12 final CDRs")
    engine = make_engine(db_url)
    async with engine.connect() as conn:
        q = text("SELECT disposition, reason, hangup_by FROM cdrs ORDER BY invite_at")
        rows = [tuple(r) for r in await conn.execute(q)]
    await engine.dispose()
    assert {r[0] for r in rows} == {"caller_hangup"}, rows


async def test_usage_caps_hold_across_the_cluster(
    agents: Agents, caller: UserAgent, db_url: str
) -> None:
    """globex may talk 3 s a day (0.05 min): B, which read globex's usage before, sees the
    call A carried and gives the next caller the fallback instead of the AI."""
    a, b = await agents("a"), await agents("b")
    globex = "sip:main@globex.example"
    first = await caller.dial(globex, proxy=b.sip, timeout=15)  # B reads globex's usage
    await first.hangup()
    long = await caller.dial(globex, proxy=a.sip, timeout=15)
    await asyncio.sleep(4.0)  # the call's length: over the 3 s cap
    await long.hangup()

    async def a_wrote_it() -> bool:
        q = "SELECT count(*) FROM cdrs WHERE tenant = 'globex' AND duration_s > 3.5"
        return await sql(db_url, q) == 1

    await poll(a_wrote_it, 10, "A's CDR of the long call")
    await asyncio.sleep(1.0)  # cluster.usage_refresh: B's reading is now old enough
    capped = await caller.dial(globex, proxy=b.sip, timeout=15)
    end = await asyncio.wait_for(capped.wait_ended(), 15)
    assert end.by == "remote"  # the agent hung up: no AI for an over-cap tenant

    async def b_wrote_it() -> bool:
        q = "SELECT count(*) FROM cdrs WHERE reason LIKE '%usage cap reached%'"
        return await sql(db_url, q) == 1

    await poll(b_wrote_it, 10, "B's CDR of the capped call")
