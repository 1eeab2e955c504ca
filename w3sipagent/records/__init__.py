"""Records: CDRs, the activity log, usage counters, CDR webhooks, retention and recordings.

Used by the bridge and the CLI, never by the protocol core.
"""

from __future__ import annotations

from w3sipagent.records.cdr import (
    CallRecord,
    Disposition,
    ToolCallRecord,
    TranscriptEntry,
    TransferRecord,
    export_csv,
    export_json,
)
from w3sipagent.records.store import ActivityEntry, CdrStore, NullSink, RecordsSink, UsageTotals

__all__ = [
    "ActivityEntry",
    "CallRecord",
    "CdrStore",
    "Disposition",
    "NullSink",
    "RecordsSink",
    "ToolCallRecord",
    "TranscriptEntry",
    "TransferRecord",
    "UsageTotals",
    "export_csv",
    "export_json",
]
