"""The call detail record the bridge fills during a call, and its JSON / CSV exports.

A :class:`CallRecord` is created when a call is admitted (``call_started``), filled as the
call goes (transcript, tool calls, usage, turn latencies) and handed to the records sink at
the end (``call_ended``). Times are aware UTC datetimes; transcript and tool-call times are
seconds since the INVITE. A CDR never holds an API key or a password.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from w3sipagent.ai.session import Usage


class Disposition(enum.StrEnum):
    """How a call ended."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    """The agent ended the call (end_call) after the conversation."""
    CALLER_HANGUP = "caller_hangup"
    TRANSFERRED = "transferred"
    """The peer confirmed the transfer (a final 2xx NOTIFY, or the ESL target answered)."""
    TRANSFER_UNKNOWN = "transfer_unknown"
    """The caller left our leg by a transfer whose result the peer never told (FreeSWITCH
    without ``confirm-blind-transfer``; no NOTIFY while the caller's RTP stopped)."""
    REJECTED = "rejected"
    """Refused after the tenant was known (busy, over a limit, codec); ``sip_code`` says how."""
    AI_ERROR = "ai_error"
    """The AI failed and no fallback could take the call."""
    FALLBACK = "fallback"
    """The caller got the tenant's fallback (AI down or usage cap)."""
    TIMEOUT = "timeout"
    """Max duration, caller silence or RTP inactivity ended the call (``reason`` says which)."""
    FAILED = "failed"
    """SIP or media failure (no ACK, transport error)."""
    SHUTDOWN = "shutdown"
    """The process stopped (drain timeout)."""


HangupSide = Literal["caller", "agent", "system"]


class TranscriptEntry(BaseModel):
    """One utterance: who, what, when (seconds since the INVITE)."""

    speaker: Literal["caller", "agent"]
    text: str
    at: float
    item_id: str | None = None


class ToolCallRecord(BaseModel):
    """A tool the model called, its arguments and what it got back."""

    name: str
    call_id: str = ""
    arguments: Any = None
    result: Any = None
    error: str | None = None
    at: float = 0.0
    duration_ms: float | None = None


class TransferRecord(BaseModel):
    """A transfer attempt: the destination name the model picked, the URI, the outcome."""

    destination: str
    uri: str
    outcome: str = "pending"
    """succeeded / accepted / unknown / busy / rejected / failed / timed_out / pending."""
    status: int | None = None
    """Final SIP status from the NOTIFY sipfrag, when one came."""


class TokenUsage(BaseModel):
    """Summed token usage of the call."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    """Billed AI session seconds (time-billed back ends such as GPT-Live)."""

    def add(self, usage: Usage) -> None:
        """Add one response's usage."""
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.total_tokens += usage.total_tokens
        self.input_audio_tokens += usage.input_audio_tokens
        self.output_audio_tokens += usage.output_audio_tokens
        self.cached_tokens += usage.cached_tokens
        self.seconds = round(self.seconds + usage.seconds, 3)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class CallRecord(BaseModel):
    """The CDR of one call."""

    model_config = ConfigDict(validate_assignment=False)

    call_id: str
    tenant: str | None = None
    agent: str | None = None
    did: str | None = None
    store_id: str | None = None
    """The tenant's store (control plane), when the DID or trunk names one."""
    caller: str | None = None
    """The From URI (or its user part)."""
    callee: str | None = None
    """The To URI."""
    request_uri: str | None = None
    source: str | None = None
    """``ip:port`` the INVITE came from."""
    codec: str | None = None
    ai_format: str | None = None
    invite_at: datetime = Field(default_factory=utcnow)
    answer_at: datetime | None = None
    end_at: datetime | None = None
    disposition: Disposition = Disposition.IN_PROGRESS
    sip_code: int | None = None
    reason: str | None = None
    hangup_by: HangupSide | None = None
    transfer: TransferRecord | None = None
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    turn_latencies_ms: list[float] = Field(default_factory=list)
    """Caller speech end → first agent RTP packet, per turn."""
    rtp: dict[str, Any] = Field(default_factory=dict)
    """RTP statistics (packets, loss, jitter...) as the media layer reports them."""
    recording_path: str | None = None
    transcript_purged: bool = False
    events: list[dict[str, Any]] = Field(default_factory=list)
    """Notable events (barge-ins, reconnects, fallback...) with ``at`` and ``kind``."""

    def turn_stages_ms(self) -> list[dict[str, float]]:
        """Per turn, the back end's stages in ms from the caller's speech end (``end_of_turn``,
        ``transcript_final``, ``model_first_token``, ``first_sentence``, ``tts_first_byte``,
        ``first_rtp``): the ``stages`` of the ``turn`` events, for back ends that report them."""
        return [
            dict(e["stages"]) for e in self.events if e.get("kind") == "turn" and e.get("stages")
        ]

    # -------------------------------------------------------------- filling

    def offset(self, when: datetime | None = None) -> float:
        """Seconds from the INVITE to ``when`` (default: now)."""
        return round(((when or utcnow()) - self.invite_at).total_seconds(), 3)

    def add_transcript(
        self,
        speaker: Literal["caller", "agent"],
        text: str,
        *,
        at: float | None = None,
        item_id: str | None = None,
    ) -> None:
        """Append a final utterance (``at`` defaults to now)."""
        self.transcript.append(
            TranscriptEntry(
                speaker=speaker, text=text, at=self.offset() if at is None else at, item_id=item_id
            )
        )

    def add_tool_call(self, record: ToolCallRecord) -> None:
        """Append a tool call."""
        self.tool_calls.append(record)

    def add_event(self, kind: str, **data: Any) -> None:
        """Append a notable event, stamped with the offset since the INVITE."""
        self.events.append({"at": self.offset(), "kind": kind, **data})

    def answered(self, when: datetime | None = None) -> None:
        """Mark the call answered."""
        self.answer_at = when or utcnow()

    def finish(
        self,
        disposition: Disposition,
        *,
        hangup_by: HangupSide | None = None,
        reason: str | None = None,
        sip_code: int | None = None,
        when: datetime | None = None,
    ) -> None:
        """Mark the call ended."""
        self.disposition = disposition
        self.hangup_by = hangup_by
        self.reason = reason
        self.sip_code = sip_code
        self.end_at = when or utcnow()

    # -------------------------------------------------------------- derived

    @property
    def duration_s(self) -> float | None:
        """Answered duration in seconds (None if never answered or not ended)."""
        if self.answer_at is None or self.end_at is None:
            return None
        return max(0.0, (self.end_at - self.answer_at).total_seconds())

    @property
    def minutes(self) -> float:
        """Answered minutes (for usage caps)."""
        return (self.duration_s or 0.0) / 60.0


CSV_COLUMNS = (
    "call_id",
    "tenant",
    "agent",
    "did",
    "caller",
    "callee",
    "request_uri",
    "source",
    "codec",
    "ai_format",
    "invite_at",
    "answer_at",
    "end_at",
    "duration_s",
    "disposition",
    "sip_code",
    "reason",
    "hangup_by",
    "transfer_destination",
    "transfer_outcome",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "turns",
    "turn_latency_ms_median",
    "tool_calls",
    "recording_path",
    "transcript",
)


def _iso(d: datetime | None) -> str:
    return d.isoformat() if d is not None else ""


def flat_row(cdr: CallRecord) -> dict[str, str]:
    """One CSV row: scalar columns, the transcript as ``[t] speaker: text`` lines."""
    lat = sorted(cdr.turn_latencies_ms)
    median = lat[len(lat) // 2] if lat else None
    row: dict[str, Any] = {
        "call_id": cdr.call_id,
        "tenant": cdr.tenant,
        "agent": cdr.agent,
        "did": cdr.did,
        "caller": cdr.caller,
        "callee": cdr.callee,
        "request_uri": cdr.request_uri,
        "source": cdr.source,
        "codec": cdr.codec,
        "ai_format": cdr.ai_format,
        "invite_at": _iso(cdr.invite_at),
        "answer_at": _iso(cdr.answer_at),
        "end_at": _iso(cdr.end_at),
        "duration_s": None if cdr.duration_s is None else f"{cdr.duration_s:.3f}",
        "disposition": cdr.disposition.value,
        "sip_code": cdr.sip_code,
        "reason": cdr.reason,
        "hangup_by": cdr.hangup_by,
        "transfer_destination": cdr.transfer.destination if cdr.transfer else None,
        "transfer_outcome": cdr.transfer.outcome if cdr.transfer else None,
        "input_tokens": cdr.usage.input_tokens,
        "output_tokens": cdr.usage.output_tokens,
        "total_tokens": cdr.usage.total_tokens,
        "turns": len(cdr.turn_latencies_ms),
        "turn_latency_ms_median": None if median is None else f"{median:.1f}",
        "tool_calls": ",".join(t.name for t in cdr.tool_calls),
        "recording_path": cdr.recording_path,
        "transcript": "\n".join(f"[{e.at:.1f}] {e.speaker}: {e.text}" for e in cdr.transcript),
    }
    return {k: "" if v is None else str(v) for k, v in row.items()}


def export_csv(cdrs: Iterable[CallRecord]) -> str:
    """CDRs as CSV text with a header line (:data:`CSV_COLUMNS`)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for c in cdrs:
        w.writerow(flat_row(c))
    return buf.getvalue()


def export_json(cdrs: Iterable[CallRecord], *, indent: int | None = 2) -> str:
    """CDRs as a JSON array of full records."""
    return json.dumps([c.model_dump(mode="json") for c in cdrs], indent=indent)
