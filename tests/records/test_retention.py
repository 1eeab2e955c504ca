"""Retention: expired transcripts and recordings are purged per tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.retention import RetentionTask, purge_expired
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants.models import TenantConfig

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def tenant(tid: str, **retention: str) -> TenantConfig:
    return TenantConfig.model_validate({"id": tid, "agents": {"a": {}}, "retention": retention})


def cdr(call_id: str, tid: str, ended_days_ago: float, recording: Path | None = None) -> CallRecord:
    end = NOW - timedelta(days=ended_days_ago)
    c = CallRecord(call_id=call_id, tenant=tid, invite_at=end - timedelta(minutes=2))
    c.answered(end - timedelta(minutes=2))
    c.add_transcript("caller", f"my account number is {call_id}", at=1.0)
    c.recording_path = str(recording) if recording else None
    c.finish(Disposition.CALLER_HANGUP, hangup_by="caller", when=end)
    return c


async def test_purge_by_tenant_setting(store: CdrStore, tmp_path: Path) -> None:
    files = {}
    for name in ("a_old", "a_new", "g_old"):
        files[name] = tmp_path / f"{name}.wav"
        files[name].write_bytes(b"RIFF")
    await store.call_ended(cdr("a_old", "acme", 40, files["a_old"]))
    await store.call_ended(cdr("a_new", "acme", 2, files["a_new"]))
    await store.call_ended(cdr("g_old", "globex", 400, files["g_old"]))
    store.record_admission("203.0.113.1", None, 404, "no tenant", when=NOW - timedelta(days=40))
    store.record_admission("203.0.113.1", None, 404, "no tenant", when=NOW - timedelta(days=1))
    await store.flush()
    tenants = {
        "acme": tenant("acme", transcripts="30d", recordings="7d"),
        "globex": tenant("globex"),
    }
    report = await purge_expired(store, tenants, now=NOW, activity_retention=30 * 86400)
    assert (report.transcripts, report.recordings, report.files_deleted, report.activity_rows) == (
        1,
        1,
        1,
        1,
    )
    old = await store.get_cdr("a_old")
    assert (
        old is not None
        and old.transcript == []
        and old.transcript_purged
        and old.recording_path is None
    )
    assert old.disposition is Disposition.CALLER_HANGUP and old.tenant == "acme"  # metadata kept
    new = await store.get_cdr("a_new")
    assert new is not None and new.transcript[0].text == "my account number is a_new"
    assert new.recording_path == str(files["a_new"])
    globex = await store.get_cdr("g_old")  # no retention set: kept forever
    assert globex is not None and globex.transcript and globex.recording_path
    assert not files["a_old"].exists() and files["a_new"].exists() and files["g_old"].exists()
    assert [e.count for e in await store.list_activity()] == [1]
    again = await purge_expired(store, tenants, now=NOW, activity_retention=30 * 86400)
    assert (again.transcripts, again.recordings, again.activity_rows) == (0, 0, 0)


async def test_periodic_task_runs(store: CdrStore) -> None:
    await store.call_ended(cdr("p1", "acme", 3))
    await store.flush()
    task = RetentionTask(store, lambda: {"acme": tenant("acme", transcripts="1d")}, interval=3600)
    report = await task.run_once()
    assert report.transcripts == 1 and task.runs == 1
    task.start()
    await task.stop()
