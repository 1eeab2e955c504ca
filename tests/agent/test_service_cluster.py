"""Cluster-wide tenant limits in the service, in process: two services (each its own store
and engine, as two machines would have) on one real PostgreSQL share a tenant's limit; on
SQLite the limit stays local and ``cluster.limits = "database"`` is refused at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.helpers import wait_until
from tests.agent.test_service import ENV, Recorder, tenants
from tests.asyncio.helpers import fast_config
from tests.postgres import PostgresCluster, pg_cluster
from w3sipagent.agent.service import AgentService
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import CallRejected, UserAgent
from w3sipagent.config import Settings
from w3sipagent.errors import ConfigError
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants import TenantTable

__all__ = ["pg_cluster"]


def limited(n: int) -> TenantTable:
    table = tenants()
    acme = table.tenants["acme"].model_copy(update={"max_concurrent_calls": n})
    return TenantTable({"acme": acme, "globex": table.tenants["globex"]})


async def test_database_limits_need_postgresql(tmp_path: Path) -> None:
    settings = Settings(cluster={"limits": "database"})  # type: ignore[arg-type]
    async with CdrStore(f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}") as store:
        svc = AgentService(
            settings, tenants=tenants(), store=store, ai_factory=Recorder(),
            ua_config=fast_config(), environ=dict(ENV),
        )  # fmt: skip
        with pytest.raises(ConfigError, match="PostgreSQL"):
            await svc.start()
        await svc.close(timeout=0)
        # auto on SQLite: the local count, no database slots
        svc = AgentService(
            Settings(), tenants=tenants(), store=store, ai_factory=Recorder(),
            ua_config=fast_config(), environ=dict(ENV),
        )  # fmt: skip
        await svc.start()
        assert svc.admission.cluster is None
        await svc.close(timeout=0)


@pytest.fixture
async def two_services(
    pg_cluster: PostgresCluster,
) -> AsyncIterator[tuple[AgentService, AgentService, CdrStore]]:
    url = pg_cluster.create_database()
    stores = [CdrStore(url, retry_delay=0.01), CdrStore(url, retry_delay=0.01)]
    for store in stores:  # both open before the services start (the leak check's baseline)
        await store.open()
    services = []
    for i, store in enumerate(stores):
        cluster = {"node_id": f"svc-{i}", "heartbeat": 1, "lease": 5, "acquire_timeout": 20}
        settings = Settings(cluster=cluster)  # type: ignore[arg-type]
        svc = AgentService(
            settings, tenants=limited(3), store=store, ai_factory=Recorder(),
            ua_config=fast_config(), environ=dict(ENV),
        )  # fmt: skip
        await svc.start()
        services.append(svc)
    yield services[0], services[1], stores[0]
    for svc in reversed(services):  # the later one's tasks are not the earlier one's leak
        await svc.close(timeout=0)
    for store in stores:
        await store.close()


@pytest.mark.postgres
async def test_two_services_share_a_tenant_limit(
    two_services: tuple[AgentService, AgentService, CdrStore],
) -> None:
    a, b, store = two_services
    assert a.admission.cluster is not None and b.admission.cluster is not None
    caller = UserAgent(fast_config())
    await caller.start()

    async def dial(svc: AgentService) -> Call | CallRejected:
        try:
            return await caller.dial("sip:support@acme.example", proxy=("127.0.0.1", svc.port))
        except CallRejected as e:
            return e

    try:
        results = await asyncio.gather(*(dial(svc) for svc in (a, b) * 5))
        calls = [r for r in results if isinstance(r, Call)]
        refused = [r for r in results if isinstance(r, CallRejected)]
        unavailable = a.admission.cluster.unavailable + b.admission.cluster.unavailable
        assert unavailable == 0, "the database did not answer in time"
        assert len(calls) == 3 and len(refused) == 7
        assert {r.status for r in refused} == {486}
        assert {r.response.headers.get("Reason") for r in refused} == {
            'SIP;cause=486;text="tenant call limit"'
        }
        held = len(a.admission.cluster.ledger.held) + len(b.admission.cluster.ledger.held)
        assert held == 3
        # one call ends: its slot is free for either service
        await calls[0].hangup()
        ledgers = (a.admission.cluster.ledger, b.admission.cluster.ledger)
        await wait_until(lambda: sum(len(x.held) for x in ledgers) == 2, 5, "slot released")
        await wait_until(lambda: not any(x.unreleased for x in ledgers), 5, "release written")
        calls.append(await caller.dial("sip:support@acme.example", proxy=("127.0.0.1", b.port)))
        with pytest.raises(CallRejected):
            await caller.dial("sip:support@acme.example", proxy=("127.0.0.1", a.port))
        for call in calls[1:]:
            await call.hangup()
        await wait_until(lambda: not a.bridges and not b.bridges, 10, "bridges ended")
    finally:
        await caller.close(timeout=0)
    for svc in (a, b):
        assert isinstance(svc.store, CdrStore)
        await svc.store.flush()
    acts = {(x.tenant, x.code, x.reason): x.count for x in await store.list_activity()}
    assert acts[("acme", 200, "accepted")] == 4, acts
    refusals = acts.get(("acme", 486, "tenant call limit (cluster)"), 0)
    refusals += acts.get(("acme", 486, "tenant call limit"), 0)
    assert refusals == 8
    assert acts.get(("acme", 486, "tenant call limit (cluster)"), 0) >= 1


@pytest.mark.parametrize("fail_open", [False, True])
async def test_database_down_refuses_or_admits_locally(fail_open: bool) -> None:
    """Nothing listens at the database's address: 503 (default) or the local limit."""
    from tests.ports import free_port
    from w3sipagent.agent.cluster import ClusterLimits
    from w3sipagent.config import ClusterSettings
    from w3sipagent.records.db import make_engine
    from w3sipagent.records.slots import SlotLedger

    engine = make_engine(f"postgresql+asyncpg://x@127.0.0.1:{free_port()}/none")
    limits = ClusterLimits(
        SlotLedger(engine), ClusterSettings(fail_open=fail_open, acquire_timeout=5)
    )
    try:
        answer = await limits.acquire("acme", "call-1", 3)
    finally:
        await engine.dispose()
    assert answer == ("ok" if fail_open else "unavailable")
    from w3sipagent.agent.admission import reject_kind

    assert reject_kind(503, "cluster limits unavailable") == "cluster_unavailable"
    assert limits.unavailable == 1
    assert limits.ledger.held == {}
