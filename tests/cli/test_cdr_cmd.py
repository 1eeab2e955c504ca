"""`w3sipagent cdr list | show | export` against a real SQLite CDR store."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.conftest import invoke, write_config
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.store import CdrStore

T0 = datetime.now(UTC) - timedelta(hours=1)


def make(call_id: str, tenant: str, minutes_ago: float, disposition: Disposition) -> CallRecord:
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    c = CallRecord(
        call_id=call_id,
        tenant=tenant,
        agent="support",
        caller="sip:+15550001111@x",
        callee="sip:support@acme.example",
        codec="PCMU",
        invite_at=start,
    )
    c.answered(start + timedelta(seconds=0.3))
    c.add_transcript("agent", "Hello, Acme support.", at=0.9)
    c.add_transcript("caller", "Where is my order?", at=3.0)
    c.turn_latencies_ms = [420.0, 610.0, 380.0]
    c.finish(disposition, hangup_by="caller", when=start + timedelta(seconds=42))
    return c


@pytest.fixture
def db(tmp_path: Path) -> Path:
    cfg = write_config(tmp_path, '[records]\ndatabase_url = "sqlite+aiosqlite:///cdr.db"\n')

    async def fill() -> None:
        async with CdrStore(f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}") as store:
            await store.call_ended(make("call-old", "acme", 60 * 24 * 3, Disposition.COMPLETED))
            await store.call_ended(make("call-a", "acme", 30, Disposition.CALLER_HANGUP))
            await store.call_ended(make("call-g", "globex", 10, Disposition.TRANSFERRED))
            await store.flush()

    asyncio.run(fill())
    return cfg


def test_list_table(runner, db: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke(runner, "cdr", "list", "-c", str(db))
    assert result.exit_code == 0, result.output
    assert "3 call(s)" in result.output
    lines = result.output.splitlines()
    order = [
        next(i for i, ln in enumerate(lines) if cid in ln)
        for cid in ("call-g", "call-a", "call-old")
    ]
    assert order == sorted(order)  # newest first
    assert "420" in result.output  # median turn latency


def test_list_filters_json(runner, db: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke(
        runner,
        "cdr",
        "list",
        "-c",
        str(db),
        "--tenant",
        "acme",
        "--since",
        "1d",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [c["call_id"] for c in data] == ["call-a"]
    assert data[0]["transcript"][1]["text"] == "Where is my order?"
    disp = invoke(
        runner, "cdr", "list", "-c", str(db), "--disposition", "transferred", "-f", "json"
    )
    assert [c["call_id"] for c in json.loads(disp.output)] == ["call-g"]


def test_bad_filters_are_usage_errors(runner, db: Path) -> None:  # type: ignore[no-untyped-def]
    r1 = invoke(runner, "cdr", "list", "-c", str(db), "--since", "yesterday-ish")
    assert r1.exit_code == 2 and "--since" in r1.output
    r2 = invoke(runner, "cdr", "list", "-c", str(db), "--disposition", "happy")
    assert r2.exit_code == 2 and "caller_hangup" in r2.output


def test_show(runner, db: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke(runner, "cdr", "show", "call-a", "-c", str(db))
    assert result.exit_code == 0, result.output
    assert "caller_hangup" in result.output
    assert "agent : Hello, Acme support." in result.output
    assert "caller: Where is my order?" in result.output
    assert "420 ms, 610 ms, 380 ms" in result.output
    js = invoke(runner, "cdr", "show", "call-a", "-c", str(db), "--json")
    assert json.loads(js.output)["turn_latencies_ms"] == [420.0, 610.0, 380.0]
    missing = invoke(runner, "cdr", "show", "nope", "-c", str(db))
    assert missing.exit_code == 1 and "no call with id 'nope'" in missing.output


def test_export_csv_file(runner, db: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "cdrs.csv"
    result = invoke(runner, "cdr", "export", "-c", str(db), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["call_id"] for r in rows} == {"call-old", "call-a", "call-g"}
    row = next(r for r in rows if r["call_id"] == "call-g")
    assert row["disposition"] == "transferred"
    assert row["duration_s"].startswith("41.7")
    assert "[3.0] caller: Where is my order?" in row["transcript"]


def test_export_json_stdout(runner, db: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke(runner, "cdr", "export", "-c", str(db), "-f", "json", "--tenant", "globex")
    assert [c["call_id"] for c in json.loads(result.output)] == ["call-g"]


def test_no_database_yet(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, '[records]\ndatabase_url = "sqlite+aiosqlite:///none.db"\n')
    result = invoke(runner, "cdr", "list", "-c", str(cfg))
    assert result.exit_code == 3
    assert "no CDR database at" in result.output
    assert not (tmp_path / "none.db").exists()
