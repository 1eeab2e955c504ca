"""CDR store: the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text

from w3sipagent.ai.session import Usage
from w3sipagent.records.cdr import (
    CSV_COLUMNS,
    CallRecord,
    Disposition,
    ToolCallRecord,
    TransferRecord,
    export_csv,
    export_json,
)
from w3sipagent.records.db import head_revision
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants.models import TenantConfig

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def make_cdr(
    call_id: str, tenant: str = "acme", *, start: datetime = T0, seconds: float = 30.0
) -> CallRecord:
    c = CallRecord(
        call_id=call_id,
        tenant=tenant,
        agent="support",
        did="+15551230000",
        caller="sip:+15550001111@carrier.example",
        callee="sip:support@acme.example",
        request_uri="sip:support@acme.example",
        source="127.0.0.1:5060",
        codec="PCMU",
        ai_format="audio/pcmu",
        invite_at=start,
    )
    c.answered(start + timedelta(seconds=0.2))
    c.add_transcript("agent", "Hello, Acme support.", at=0.9, item_id="item_1")
    c.add_transcript("caller", "I need my invoice.", at=3.2, item_id="item_2")
    c.add_tool_call(
        ToolCallRecord(
            name="lookup_invoice",
            call_id="call_9",
            arguments={"n": 42},
            result={"total": "12.50"},
            at=4.0,
            duration_ms=120.0,
        )
    )
    c.usage.add(Usage(input_tokens=100, output_tokens=50, total_tokens=150))
    c.usage.add(Usage(input_tokens=10, output_tokens=5, total_tokens=15))
    c.turn_latencies_ms.extend([640.0, 720.5])
    c.rtp.update({"packets_received": 1500, "lost": 2, "jitter_ms": 3.5})
    c.transfer = TransferRecord(
        destination="human", uri="sip:100@pbx.example", outcome="busy", status=486
    )
    c.finish(
        Disposition.CALLER_HANGUP, hangup_by="caller", when=start + timedelta(seconds=0.2 + seconds)
    )
    return c


async def test_migrations_created_tables(store: CdrStore) -> None:
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert {"cdrs", "activity", "knowledge_docs", "knowledge_chunks", "alembic_version"} <= tables
    assert {"control_tenants", "control_dids"} <= tables
    assert version == head_revision() == "0004"


async def test_reopen_is_idempotent(db_url: str) -> None:
    for _ in range(2):
        async with CdrStore(db_url) as s:
            await s.call_ended(make_cdr(f"c-{s.written}-{time.monotonic_ns()}"))
            await s.flush()
    async with CdrStore(db_url) as s:
        assert await s.count_cdrs() == 2


async def test_cdr_round_trip(store: CdrStore) -> None:
    c = make_cdr("call-1@host")
    await store.call_started(c.model_copy(update={"disposition": Disposition.IN_PROGRESS}))
    await store.call_ended(c)
    await store.flush()
    got = await store.get_cdr("call-1@host")
    assert got is not None
    assert got.model_dump() == c.model_dump()
    assert got.invite_at == T0 and got.invite_at.tzinfo is not None
    assert got.duration_s == pytest.approx(30.0)
    assert got.usage.total_tokens == 165
    assert [e.speaker for e in got.transcript] == ["agent", "caller"]
    assert got.tool_calls[0].arguments == {"n": 42}
    assert got.transfer is not None and got.transfer.status == 486
    assert await store.count_cdrs() == 1
    assert store.written == 2


async def test_started_row_is_visible_as_in_progress(store: CdrStore) -> None:
    c = CallRecord(call_id="live-1", tenant="acme", invite_at=T0)
    await store.call_started(c)
    await store.flush()
    got = await store.get_cdr("live-1")
    assert got is not None and got.disposition is Disposition.IN_PROGRESS and got.end_at is None


async def test_call_events_are_kept_with_final_cdr(store: CdrStore) -> None:
    c = make_cdr("ev-1")
    await store.call_started(c)
    await store.call_event("ev-1", "barge_in", {"audio_end_ms": 1240})
    await store.call_event("ev-1", "reconnect")
    await store.call_ended(c)
    await store.flush()
    got = await store.get_cdr("ev-1")
    assert got is not None
    assert [e["kind"] for e in got.events] == ["barge_in", "reconnect"]
    assert got.events[0]["audio_end_ms"] == 1240


async def test_list_filters_and_order(store: CdrStore) -> None:
    for i in range(5):
        await store.call_ended(make_cdr(f"a{i}", "acme", start=T0 + timedelta(minutes=i)))
    for i in range(3):
        await store.call_ended(make_cdr(f"g{i}", "globex", start=T0 + timedelta(minutes=i)))
    await store.flush()
    acme = await store.list_cdrs(tenant="acme")
    assert [c.call_id for c in acme] == ["a4", "a3", "a2", "a1", "a0"]
    recent = await store.list_cdrs(since=T0 + timedelta(minutes=2))
    assert {c.call_id for c in recent} == {"a2", "a3", "a4", "g2"}
    assert [c.call_id for c in await store.list_cdrs(limit=2)] == ["a4", "a3"]
    assert await store.list_cdrs(tenant="nobody") == []
    assert len(await store.list_cdrs(disposition="caller_hangup")) == 8
    assert await store.list_cdrs(disposition="transferred") == []


async def test_export_csv_and_json(store: CdrStore) -> None:
    await store.call_ended(make_cdr("x1"))
    await store.flush()
    rows = await store.list_cdrs()
    parsed = list(csv.DictReader(io.StringIO(export_csv(rows))))
    assert len(parsed) == 1 and tuple(parsed[0]) == CSV_COLUMNS
    r = parsed[0]
    assert r["call_id"] == "x1" and r["disposition"] == "caller_hangup"
    assert r["total_tokens"] == "165" and r["duration_s"] == "30.000"
    assert r["transfer_outcome"] == "busy" and r["turns"] == "2"
    assert r["transcript"].splitlines() == [
        "[0.9] agent: Hello, Acme support.",
        "[3.2] caller: I need my invoice.",
    ]
    doc = json.loads(export_json(rows))
    assert doc[0]["call_id"] == "x1" and doc[0]["transcript"][1]["text"] == "I need my invoice."


async def test_slow_database_never_blocks_call_ended(
    store: CdrStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = store.engine
    real_begin = type(engine).begin
    gate = asyncio.Event()

    @contextlib.asynccontextmanager
    async def stuck_begin(self):  # type: ignore[no-untyped-def]
        await gate.wait()  # the database does not answer until the gate opens
        async with real_begin(self) as conn:
            yield conn

    monkeypatch.setattr(type(engine), "begin", stuck_begin)
    t = time.perf_counter()
    for i in range(200):
        await store.call_ended(make_cdr(f"slow{i}"))
    elapsed = time.perf_counter() - t
    assert elapsed < 0.5, f"200 call_ended took {elapsed:.3f}s with a stuck database"
    assert store.pending > 0
    gate.set()
    await asyncio.wait_for(store.flush(), 20)
    assert store.pending == 0
    assert await store.count_cdrs() == 200


async def test_write_failure_is_retried(store: CdrStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    engine = store.engine
    calls = {"n": 0}
    real_begin = engine.begin

    def flaky_begin():  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real_begin()

    monkeypatch.setattr(type(engine), "begin", lambda self: flaky_begin())
    await store.call_ended(make_cdr("retry-1"))
    await asyncio.wait_for(store.flush(), 10)
    monkeypatch.undo()
    assert store.write_errors == 2
    assert await store.get_cdr("retry-1") is not None


async def test_activity_flood_is_aggregated(store: CdrStore) -> None:
    when = T0 + timedelta(seconds=5)
    for i in range(20_000):
        store.record_admission(
            "203.0.113.9", None, 404, "no tenant", when=when + timedelta(milliseconds=i)
        )
    for _ in range(3):
        store.record_admission("127.0.0.1", "acme", 200, "accepted", when=when)
    store.record_admission("127.0.0.1", "acme", 486, "max concurrent calls", when=when)
    await store.flush()
    # a second flush of the same window adds to the same row
    store.record_admission("203.0.113.9", None, 404, "no tenant", when=when + timedelta(seconds=30))
    await store.flush()
    entries = await store.list_activity()
    assert len(entries) == 3
    flood = next(e for e in entries if e.source == "203.0.113.9")
    assert flood.count == 20_001 and flood.tenant is None and flood.decision == "rejected"
    assert flood.window_start == T0 and flood.code == 404
    assert flood.first_at == when and flood.last_at == when + timedelta(seconds=30)
    ok = next(e for e in entries if e.code == 200)
    assert ok.count == 3 and ok.tenant == "acme" and ok.decision == "accepted"
    assert [e.code for e in await store.list_activity(tenant="acme")] in ([200, 486], [486, 200])


async def test_activity_windows_and_key_cap(db_url: str) -> None:
    async with CdrStore(db_url, activity_window=60.0, max_activity_keys=100) as s:
        for i in range(1000):  # a scanner rotating source addresses
            s.record_admission(
                f"198.51.100.{i % 250}", None, 404, "no tenant", when=T0 + timedelta(seconds=i % 60)
            )
        s.record_admission(
            "192.0.2.1", None, 403, "source not allowed", when=T0 + timedelta(minutes=1)
        )
        await s.flush()
        entries = await s.list_activity(limit=1000)
    first = [e for e in entries if e.window_start == T0]
    assert len(first) == 101  # 100 distinct keys + the overflow bucket
    assert sum(e.count for e in first) == 1000
    overflow = next(e for e in first if e.reason == "overflow")
    assert overflow.source == "*" and overflow.count == 1000 - sum(
        e.count for e in first if e.reason != "overflow"
    )
    second = [e for e in entries if e.window_start == T0 + timedelta(minutes=1)]
    assert [(e.code, e.count) for e in second] == [(403, 1)]


async def test_usage_counts_and_caps(db_url: str) -> None:
    now = T0 + timedelta(hours=3)
    async with CdrStore(db_url, clock=lambda: now) as s:
        await s.call_ended(make_cdr("u1", start=T0, seconds=120))  # 2 min, 165 tokens
        await s.call_ended(make_cdr("u2", start=T0, seconds=60))  # 1 min
        await s.call_ended(make_cdr("u3", "globex", start=T0, seconds=600))
        await s.call_ended(make_cdr("old", start=T0 - timedelta(days=1), seconds=600))
        used = await s.usage("acme")
        assert used.calls == 2 and used.minutes == pytest.approx(3.0) and used.tokens == 330
        # calls ending after the first query are counted in memory at once
        await s.call_ended(make_cdr("u4", start=T0 + timedelta(hours=1), seconds=120))
        used = await s.usage("acme")
        assert used.calls == 3 and used.minutes == pytest.approx(5.0) and used.tokens == 495
        base = {"id": "acme", "agents": {"a": {}}}
        assert not await s.over_cap(TenantConfig.model_validate(base))
        assert await s.over_cap(
            TenantConfig.model_validate({**base, "usage_caps": {"minutes_per_day": 5}})
        )
        assert not await s.over_cap(
            TenantConfig.model_validate({**base, "usage_caps": {"minutes_per_day": 5.5}})
        )
        assert await s.over_cap(
            TenantConfig.model_validate({**base, "usage_caps": {"tokens_per_day": 400}})
        )
        assert not await s.over_cap(
            TenantConfig.model_validate({**base, "usage_caps": {"tokens_per_day": 496}})
        )
        yesterday = await s.usage("acme", (T0 - timedelta(days=1)).date())
        assert yesterday.calls == 1 and yesterday.minutes == pytest.approx(10.0)
    # a new process sees the same totals from the database
    async with CdrStore(db_url, clock=lambda: now) as s2:
        used = await s2.usage("acme")
        assert used.calls == 3 and used.minutes == pytest.approx(5.0)


async def test_close_drains_queue(db_url: str) -> None:
    s = CdrStore(db_url)
    await s.open()
    for i in range(50):
        await s.call_ended(make_cdr(f"d{i}"))
    s.record_admission("127.0.0.1", "acme", 200, "accepted")
    await s.close()
    async with CdrStore(db_url) as s2:
        assert await s2.count_cdrs() == 50
        assert [e.count for e in await s2.list_activity()] == [1]


async def test_closed_store_drops_and_counts(db_url: str) -> None:
    s = CdrStore(db_url)
    await s.call_ended(make_cdr("never"))
    assert s.dropped == 1
