"""Purging expired transcripts, recordings and activity rows, per tenant retention setting.

``retention.transcripts`` empties a CDR's transcript and tool calls (arguments and results
may hold personal data) and sets ``transcript_purged``; the call's metadata stays.
``retention.recordings`` deletes the WAV file (in a worker thread) and clears
``recording_path``. Age counts from the call's end. Activity rows older than
``activity_retention`` are deleted. :class:`RetentionTask` runs the purge periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, delete, select, update

from w3sipagent.records.cdr import utcnow
from w3sipagent.records.models import ActivityRow, CdrRow
from w3sipagent.records.store import CdrStore
from w3sipagent.tenants.models import TenantConfig

log = logging.getLogger("w3sipagent.records.retention")


@dataclass(slots=True)
class PurgeReport:
    """What one purge did."""

    transcripts: int = 0
    recordings: int = 0
    files_deleted: int = 0
    activity_rows: int = 0


def _delete_files(paths: list[str]) -> int:
    n = 0
    for p in paths:
        try:
            Path(p).unlink()
            n += 1
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("retention: cannot delete %s: %s", p, e)
    return n


async def purge_expired(
    store: CdrStore,
    tenants: Mapping[str, TenantConfig],
    *,
    now: datetime | None = None,
    activity_retention: float | None = None,
) -> PurgeReport:
    """Apply every tenant's retention now; returns counts."""
    now = now or utcnow()
    report = PurgeReport()
    for tid, tenant in tenants.items():
        keep = tenant.retention.transcripts
        if keep is not None:
            cutoff = now - timedelta(seconds=keep)
            async with store.engine.begin() as conn:
                res = await conn.execute(
                    update(CdrRow)
                    .where(
                        and_(
                            CdrRow.tenant == tid,
                            CdrRow.end_at < cutoff,
                            CdrRow.transcript_purged.is_(False),
                        )
                    )
                    .values(transcript=[], tool_calls=[], transcript_purged=True)
                )
                report.transcripts += res.rowcount or 0
        keep = tenant.retention.recordings
        if keep is not None:
            cutoff = now - timedelta(seconds=keep)
            cond = and_(
                CdrRow.tenant == tid, CdrRow.end_at < cutoff, CdrRow.recording_path.is_not(None)
            )
            async with store.engine.begin() as conn:
                rows = (
                    await conn.execute(select(CdrRow.id, CdrRow.recording_path).where(cond))
                ).all()
                if rows:
                    paths = [r.recording_path for r in rows if r.recording_path]
                    report.files_deleted += await asyncio.to_thread(_delete_files, paths)
                    await conn.execute(
                        update(CdrRow)
                        .where(CdrRow.id.in_([r.id for r in rows]))
                        .values(recording_path=None)
                    )
                    report.recordings += len(rows)
    if activity_retention is not None:
        cutoff = now - timedelta(seconds=activity_retention)
        async with store.engine.begin() as conn:
            res = await conn.execute(delete(ActivityRow).where(ActivityRow.window_start < cutoff))
            report.activity_rows += res.rowcount or 0
    if report.transcripts or report.recordings or report.activity_rows:
        log.info(
            "retention: purged %d transcripts, %d recordings (%d files), %d activity rows",
            report.transcripts,
            report.recordings,
            report.files_deleted,
            report.activity_rows,
        )
    return report


class RetentionTask:
    """Runs :func:`purge_expired` every ``interval`` seconds with the current tenants."""

    def __init__(
        self,
        store: CdrStore,
        tenants: Callable[[], Mapping[str, TenantConfig]],
        *,
        interval: float = 3600.0,
        activity_retention: float | None = 30 * 86400.0,
    ) -> None:
        self.store = store
        self.tenants = tenants
        self.interval = interval
        self.activity_retention = activity_retention
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    async def run_once(self) -> PurgeReport:
        """Purge now."""
        self.runs += 1
        return await purge_expired(
            self.store, self.tenants(), activity_retention=self.activity_retention
        )

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as e:  # keep purging later; a failure must not kill the task
                log.warning("retention: purge failed: %s: %s", type(e).__name__, e)
            await asyncio.sleep(self.interval)

    def start(self) -> asyncio.Task[None]:
        """Start the periodic purge (first run at once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="w3sipagent-retention")
        return self._task

    async def stop(self) -> None:
        """Stop the periodic purge."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
