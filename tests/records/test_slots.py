"""Cluster-wide tenant limits on a real PostgreSQL: two ledgers (two engines, as two agent
machines would have) racing for a tenant's slots, leases running out, usage caps seen by
every agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.postgres import PostgresCluster
from tests.records.test_store import make_cdr
from tests.wait import wait_until
from w3sipagent.records.cdr import Disposition
from w3sipagent.records.db import make_engine, run_migrations
from w3sipagent.records.slots import SlotLedger
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants.models import TenantConfig

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url(pg_cluster: PostgresCluster) -> str:
    url = pg_cluster.create_database()
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(run_migrations)
    await engine.dispose()
    return url


@pytest.fixture
async def engines(pg_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    a, b = make_engine(pg_url), make_engine(pg_url)
    yield a, b
    await a.dispose()
    await b.dispose()


async def slots_of(engine: AsyncEngine, tenant: str) -> int:
    async with engine.connect() as conn:
        q = text("SELECT count(*) FROM call_slots WHERE tenant = :t")
        return int((await conn.execute(q, {"t": tenant})).scalar_one())


async def test_two_nodes_racing_never_exceed_the_limit(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    async with (
        SlotLedger(engines[0], node_id="node-a") as a,
        SlotLedger(engines[1], node_id="node-b") as b,
    ):
        tries = [a.acquire("acme", f"a-{i}", 10) for i in range(50)]
        tries += [b.acquire("acme", f"b-{i}", 10) for i in range(50)]
        got = await asyncio.gather(*tries)
        assert sum(got) == 10
        assert len(a.held) + len(b.held) == 10
        assert await slots_of(engines[0], "acme") == 10
        # another tenant is not affected by acme's slots
        assert await b.acquire("globex", "g-1", 1)
        assert not await a.acquire("globex", "g-2", 1)
        # released slots are free for the other node at once
        mine = list(a.held) or list(b.held)
        holder = a if a.held else b
        other = b if holder is a else a
        for call_id in mine[:3]:
            holder.release(call_id)

        async def three_more() -> list[bool]:
            return [await other.acquire("acme", f"late-{i}", 10) for i in range(4)]

        for _ in range(100):  # the releases are written in the background
            if await slots_of(engines[0], "acme") == 10 - len(mine[:3]):
                break
            await asyncio.sleep(0.02)
        assert await three_more() == [True] * len(mine[:3]) + [False] * (4 - len(mine[:3]))
    # both left: no slot, no node
    assert await slots_of(engines[0], "acme") == 0


async def test_a_dead_nodes_slots_free_after_its_lease(
    pg_url: str, engines: tuple[AsyncEngine, AsyncEngine]
) -> None:
    dead = SlotLedger(engines[0], node_id="dead", lease=1.0, heartbeat=0.2)
    await dead.start()
    assert all([await dead.acquire("acme", f"d-{i}", 3) for i in range(3)])
    dead.note("globex", "d-3")  # a tenant without a limit: recorded in the background
    await wait_until(lambda: not dead.unwritten_or_pending, 5, "the note written")
    async with CdrStore(pg_url) as store:  # the dead node's calls were in progress
        for i in range(4):
            live = make_cdr(f"d-{i}").model_copy(
                update={"disposition": Disposition.IN_PROGRESS, "end_at": None}
            )
            await store.call_started(live)
    await dead.close(leave=False)  # no heartbeat any more, nothing deleted: a crash
    async with SlotLedger(engines[1], node_id="alive", lease=1.0, heartbeat=0.2) as alive:
        assert not await alive.acquire("acme", "x-0", 3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while not await alive.acquire("acme", "x-1", 3):
            assert loop.time() - t0 < 5, "the dead node's slots never expired"
            await asyncio.sleep(0.05)
        waited = loop.time() - t0
        assert 0.3 < waited < 3.0
        # one lease after expiry the live node's heartbeat forgets the dead one
        async with engines[1].connect() as conn:
            for _ in range(100):
                q = text("SELECT count(*) FROM cluster_nodes WHERE node_id = 'dead'")
                if (await conn.execute(q)).scalar_one() == 0:
                    break
                await conn.commit()
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the dead node was never deleted")
        assert await slots_of(engines[1], "acme") == 1
        async with engines[1].connect() as conn:
            q = text("SELECT disposition, reason, end_at FROM cdrs ORDER BY call_id")
            rows = [tuple(r) for r in await conn.execute(q)]
        assert [r[:2] for r in rows] == [("failed", "agent lost: its lease ran out")] * 4
        assert all(r[2] is not None for r in rows)


async def test_a_forgotten_node_registers_again_with_its_calls(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    async with SlotLedger(engines[0], node_id="slow", lease=5.0, heartbeat=1.0) as slow:
        assert await slow.acquire("acme", "s-1", 2)
        async with engines[1].begin() as conn:  # as if another node had forgotten it
            await conn.execute(text("DELETE FROM cluster_nodes WHERE node_id = 'slow'"))
        assert await slots_of(engines[1], "acme") == 0
        await slow.beat()
        assert await slots_of(engines[1], "acme") == 1
        async with SlotLedger(engines[1], node_id="other") as other:
            assert await other.acquire("acme", "o-1", 2)
            assert not await other.acquire("acme", "o-2", 2)


async def test_a_release_the_database_missed_is_written_by_the_next_heartbeat(
    pg_url: str, engines: tuple[AsyncEngine, AsyncEngine]
) -> None:
    impatient = create_async_engine(  # gives up on a lock after 200 ms
        pg_url, connect_args={"server_settings": {"lock_timeout": "200"}}
    )
    try:
        async with SlotLedger(impatient, node_id="n", lease=30.0, heartbeat=20.0) as n:
            assert await n.acquire("acme", "c-1", 1)
            async with engines[1].begin() as conn:  # the table locked: the release fails
                await conn.execute(text("LOCK TABLE call_slots IN ACCESS EXCLUSIVE MODE"))
                n.release("c-1")
                await wait_until(lambda: n.failed_releases == 1, 5, "the release to fail")
            assert n.unreleased == {"c-1"}
            assert await slots_of(engines[1], "acme") == 1
            await n.beat()
            assert n.unreleased == set()
            assert await slots_of(engines[1], "acme") == 0
    finally:
        await impatient.dispose()


def test_the_ledger_needs_postgresql() -> None:
    engine = make_engine("sqlite+aiosqlite:///:memory:")
    with pytest.raises(ValueError, match="PostgreSQL"):
        SlotLedger(engine)
    with pytest.raises(ValueError, match="heartbeat"):
        SlotLedger(make_engine("postgresql+asyncpg://x@127.0.0.1/x"), lease=5, heartbeat=5)


async def test_usage_caps_see_the_other_agents_calls(pg_url: str) -> None:
    now = datetime.now(UTC)
    capped = TenantConfig.model_validate(
        {"id": "acme", "agents": {"a": {}}, "usage_caps": {"minutes_per_day": 3}}
    )
    async with (
        CdrStore(pg_url, usage_refresh=0.2) as a,
        CdrStore(pg_url, usage_refresh=0.2) as b,
    ):
        assert not await b.over_cap(capped)  # B read acme's usage: nothing yet
        await a.call_ended(make_cdr("on-a", start=now - timedelta(minutes=5), seconds=200))
        await a.flush()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while not await b.over_cap(capped):
            assert loop.time() - t0 < 3, "B never saw A's call"
            await asyncio.sleep(0.05)
        assert (await b.usage("acme")).calls == 1
        # B's own ended calls still count at once, and are not counted twice after a refresh
        await b.call_ended(make_cdr("on-b", start=now - timedelta(minutes=4), seconds=60))
        assert (await b.usage("acme")).calls == 2
        await asyncio.sleep(0.25)
        assert (await b.usage("acme")).calls == 2
    # without a refresh (one agent, the default) the first reading stays
    async with CdrStore(pg_url) as c:
        assert (await c.usage("acme")).calls == 2


async def test_calls_without_a_limit_are_noted_in_the_background(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    async with SlotLedger(engines[0], node_id="n") as n:
        n.note("globex", "g-1")
        n.note("globex", "g-2")
        n.release("g-2")  # before its row was even written: it must not stay
        await wait_until(lambda: not n.unwritten_or_pending, 5, "the notes written")
        assert n.held == {"g-1": "globex"}
        assert await slots_of(engines[1], "globex") == 1
        # a noted call never counts against a limited tenant, and is released like a slot
        assert await n.acquire("acme", "a-1", 1)
        n.release("g-1")
        await wait_until(lambda: not n.unwritten_or_pending, 5, "the release written")
        assert await slots_of(engines[1], "globex") == 0
