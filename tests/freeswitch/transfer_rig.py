"""One row of the transfer table: a real caller through FreeSWITCH, the agent's blind REFER,
and everything FreeSWITCH then sends to the agent's leg, timed.

The caller is a SIP call FreeSWITCH places to itself (``sofia/internal/DID@127.0.0.1:5080``:
the inbound leg enters ``public`` like a trunk call) playing a 1 kHz tone; the dialplan
bridges it to the agent service (bridge mode: the shipped public dialplan; REGISTER mode:
the shipped register files). The scripted AI calls ``transfer_call`` right after a short
greeting. Measured from the agent's own SIP trace (``logging.sip_trace``): the REFER, the
202, each NOTIFY (sipfrag status line, ``Subscription-State``), a BYE from FreeSWITCH; from
the AI's input: when the caller's tone stopped reaching the agent and whether it came back;
over ESL: whether and when FreeSWITCH hung the caller up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.freeswitch.helpers import Ai, TimedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.freeswitch.esl import EslClient
from w3sipagent.records.cdr import CallRecord

# Extensions of the caller's context (public) that the agent transfers to: one per kind
# of target of the table.
TARGETS_XML = """<?xml version="1.0" encoding="utf-8"?>
<include>
  <extension name="xfer-answer">
    <condition field="destination_number" expression="^xfer-answer$">
      <action application="bridge" data="loopback/9197/public"/>
    </condition>
  </extension>
  <extension name="xfer-echo">
    <condition field="destination_number" expression="^xfer-echo$">
      <action application="answer"/>
      <action application="echo"/>
    </condition>
  </extension>
  <extension name="xfer-busy">
    <condition field="destination_number" expression="^xfer-busy$">
      <action application="bridge" data="error/user_busy"/>
    </condition>
  </extension>
  <extension name="xfer-hangup">
    <condition field="destination_number" expression="^xfer-hangup$">
      <action application="respond" data="486"/>
    </condition>
  </extension>
  <extension name="xfer-ringout">
    <condition field="destination_number" expression="^xfer-ringout$">
      <action application="set" data="call_timeout=3"/>
      <action application="bridge" data="loopback/xfer-ring-inner/public"/>
    </condition>
  </extension>
  <extension name="xfer-ring-inner">
    <condition field="destination_number" expression="^xfer-ring-inner$">
      <action application="ring_ready"/>
      <action application="sleep" data="60000"/>
    </condition>
  </extension>
</include>
"""

# target kind -> the Refer-To user part (an extension of public; "missing" has none)
TARGETS = {
    "answer": "xfer-answer",
    "echo": "xfer-echo",
    "busy": "xfer-busy",
    "missing": "xfer-missing",
    "hangup": "xfer-hangup",
    "ringout": "xfer-ringout",
}
TRANSFERS = {kind: f"sip:{ext}@pbx.example" for kind, ext in TARGETS.items()}
LOUD = 1000.0  # rms of the caller's tone as the AI gets it is ~6000


@dataclass
class Row:
    """What happened in one transfer."""

    mode: str
    confirm: bool
    target: str
    sip: list[str] = field(default_factory=list)  # "+ms DIR what"
    outcome: str = ""
    code: int | None = None
    disposition: str = ""
    reason: str = ""
    ended_ms: float | None = None  # our call's end, from the REFER
    caller_audio_until_ms: float | None = None  # the last caller audio the agent got
    caller_audio_gap_ms: float | None = None  # the longest gap in it after the REFER
    audio_chunks_until_ms: float | None = None  # the last audio (any level) the AI got
    rtp_until_ms: float | None = None  # the last RTP packet FreeSWITCH sent to our leg
    rtp_gap_ms: float | None = None  # the longest pause in that RTP after the REFER
    caller_hangup_ms: float | None = None
    caller_cause: str = ""
    bye_from_fs_ms: float | None = None
    notify: list[tuple[float, str, str]] = field(default_factory=list)  # (ms, sipfrag, sub-state)
    messages: list[dict[str, object]] = field(default_factory=list)  # the trace from the REFER

    @property
    def caller_back(self) -> bool:
        """The caller's audio reached the agent again well after FreeSWITCH's last word."""
        last = max([n[0] for n in self.notify] or [0.0])
        return self.caller_audio_until_ms is not None and self.caller_audio_until_ms > last + 1000

    def line(self) -> str:
        return (
            f"{self.mode:8} confirm={int(self.confirm)} {self.target:8} -> {self.outcome}"
            f"({self.code}) {self.disposition}; sip: {' | '.join(self.sip)}; caller audio until "
            f"{_ms(self.caller_audio_until_ms)} gap {_ms(self.caller_audio_gap_ms)}; RTP until "
            f"{_ms(self.rtp_until_ms)} gap {_ms(self.rtp_gap_ms)}; caller "
            f"hangup {_ms(self.caller_hangup_ms)} {self.caller_cause}; our end {_ms(self.ended_ms)}"
        )


def _ms(v: float | None) -> str:
    return "-" if v is None else f"+{v:.0f}ms"


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def read_trace(path: Path, call_id: str | None) -> list[dict[str, object]]:
    """The trace's messages (of one call, or all)."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [x for x in lines if call_id in (None, x.get("call_id"))]


async def run_row(
    esl: EslClient,
    svc: AgentService,
    ai: Ai,
    trace: Path,
    *,
    mode: str,
    confirm: bool,
    target: str,
    did: str,
    observe: float = 7.0,
) -> tuple[Row, CallRecord]:
    """Place the call, let the AI transfer it, observe ``observe`` s after the REFER."""
    row = Row(mode, confirm, target)
    caller = str(uuid.uuid4())
    q = esl.subscribe()
    tone = "tone_stream://%(40000,0,1000)"
    out = await esl.bgapi(
        f"originate {{origination_uuid={caller},originate_timeout=10}}"
        f"sofia/internal/{did}@127.0.0.1:5080 &playback({tone})",
        timeout=20,
    )
    if not out.startswith("+OK"):
        raise RuntimeError(f"originate: {out}")
    if ai.tool_gate is not None:
        ai.tool_gate.set()  # the caller is answered: the AI may transfer now
    loop = asyncio.get_running_loop()
    rtp: list[tuple[float, int]] = []  # (wall clock, RTP packets received on our leg)

    async def sample_rtp() -> None:
        while True:
            for bridge in list(svc.bridges.values()):
                n = bridge.call.stats().get("packets_received")
                if isinstance(n, int) and (not rtp or rtp[-1][1] != n):
                    rtp.append((time.time(), n))
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample_rtp())
    end = loop.time() + 15
    refer_at: float | None = None
    hangup_at: float | None = None
    while loop.time() < end:
        try:
            ev = await asyncio.wait_for(q.get(), 0.2)
        except TimeoutError:
            ev = None
        if ev is not None and ev.name == "CHANNEL_HANGUP_COMPLETE" and ev.uuid == caller:
            hangup_at = int(ev.get("Event-Date-Timestamp")) / 1e6
            row.caller_cause = ev.get("Hangup-Cause")
        if refer_at is None and trace.exists():
            refers = [m for m in read_trace(trace, None) if m.get("method") == "REFER"]
            if refers:
                refer_at = _ts(str(refers[0]["ts"]))
                end = loop.time() + observe
        if refer_at is not None and svc.finished and hangup_at is not None:
            break
    esl.unsubscribe(q)
    sampler.cancel()
    if hangup_at is None:
        await esl.api(f"uuid_kill {caller}")
    loop_end = loop.time() + 10
    while not svc.finished:
        if loop.time() > loop_end:
            raise RuntimeError("the agent's call never ended")
        await asyncio.sleep(0.05)
    cdr = svc.finished[-1]
    if refer_at is None:
        raise RuntimeError("no REFER sent")
    msgs = read_trace(trace, cdr.call_id)
    for m in msgs:
        t = (_ts(str(m["ts"])) - refer_at) * 1000
        if t < -1:
            continue
        text = str(m["message"])
        first = text.split("\r\n", 1)[0]
        what = first.replace(" SIP/2.0", "") if not first.startswith("SIP/2.0") else first[8:]
        if m.get("method") == "NOTIFY" and not first.startswith("SIP/2.0"):
            body = text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else ""
            frag = body.split("\r\n", 1)[0].strip()
            sub = re.search(r"(?im)^Subscription-State:\s*(.+?)\s*$", text)
            row.notify.append((t, frag, sub[1] if sub else ""))
            what = f"NOTIFY [{frag}] ({sub[1] if sub else '-'})"
        elif first.startswith("SIP/2.0"):
            cseq = re.search(r"(?im)^CSeq:\s*\d+\s+(\w+)", text)
            what = f"{first[8:]} ({cseq[1] if cseq else '?'})"
        else:
            what = first.split(" ", 1)[0]
            if what == "BYE" and m.get("dir") == "in":
                row.bye_from_fs_ms = t
        row.sip.append(f"{t:+.0f}ms {m.get('dir')} {what}")
        row.messages.append({"ms": round(t, 1), "dir": m.get("dir"), "message": text})
    session: TimedSession = ai.made[-1][1]
    chunks = [ts for ts, _ in session.received if ts > refer_at]
    if chunks:
        row.audio_chunks_until_ms = (chunks[-1] - refer_at) * 1000
    loud = [ts for ts, r in session.received if r > LOUD and ts > refer_at]
    if loud:
        row.caller_audio_until_ms = (loud[-1] - refer_at) * 1000
        edges = [refer_at, *loud]
        row.caller_audio_gap_ms = max(b - a for a, b in itertools.pairwise(edges)) * 1000
    moving = [ts for ts, _ in rtp if ts > refer_at]
    row.rtp_until_ms = (moving[-1] - refer_at) * 1000 if moving else None
    edges = [refer_at, *moving]
    row.rtp_gap_ms = max(b - a for a, b in itertools.pairwise(edges)) * 1000 if moving else None
    if hangup_at is not None:
        row.caller_hangup_ms = (hangup_at - refer_at) * 1000
    if cdr.end_at is not None:
        row.ended_ms = (cdr.end_at.timestamp() - refer_at) * 1000
    tr = cdr.transfer
    row.outcome = tr.outcome if tr else "-"
    row.code = tr.status if tr else None
    row.disposition = cdr.disposition.value
    row.reason = cdr.reason or ""
    return row, cdr
