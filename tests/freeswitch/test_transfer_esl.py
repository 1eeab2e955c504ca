"""The transfer table of issue 13 with ``transfer_method = "esl"``, against the real
FreeSWITCH: the same kinds of target as tests/freeswitch/test_transfer_refer.py, in bridge
mode (the shipped public dialplan) and REGISTER mode (the shipped register files), both of
which put the caller's UUID into the INVITE (``sip_h_X-W3-Caller-UUID=${uuid}``).

The agent rings the target over the event socket while the caller stays with it, and only
then bridges the caller to the target, so every row has a known outcome: answered
(``succeeded``: the caller is bridged to the target, our leg ends, CDR ``transferred``) or
the target's Hangup-Cause (busy / no_answer / failed: the caller's audio keeps reaching the
agent, the call goes on, CDR not ``transferred``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.freeswitch.conftest import ESL_PASSWORD, ROOT, FreeSwitch
from tests.freeswitch.helpers import Ai, TimedSession, agent_service, finished_cdr
from tests.freeswitch.test_transfer_refer import PASSWORD, _registered, fs_transfers, tenants
from tests.freeswitch.transfer_rig import LOUD, TARGETS
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.service import AgentService
from w3sipagent.freeswitch.esl import EslClient, EslEvent
from w3sipagent.freeswitch.transfer import CALLER_UUID_HEADER
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.tenants import SecretRef, TenantConfig
from w3sipagent.tenants.models import EslConfig

__all__ = ["fs_transfers"]

FS_DIR = ROOT / "freeswitch"
TRANSFER_TIMEOUT = 4.0  # how long the target may ring (originate_timeout)
# the targets of the REFER table, reached through a loopback leg; a ring-out is the
# ringing extension itself: the agent's transfer_timeout bounds the ringing
ESL_TRANSFERS = {
    **{kind: f"loopback/{ext}/public" for kind, ext in TARGETS.items()},
    "ringout": "loopback/xfer-ring-inner/public",
}

# target -> (outcome, code, the target's Hangup-Cause the model is told), as measured. A
# loopback leg ends NORMAL_CLEARING when its extension rejects (`respond 486`) or does not
# exist; USER_BUSY of `bridge error/user_busy` passes through.
EXPECTED = {
    "answer": ("succeeded", 200, ""),
    "echo": ("succeeded", 200, ""),
    "busy": ("busy", 486, "USER_BUSY"),
    "hangup": ("failed", None, "NORMAL_CLEARING"),
    "missing": ("failed", None, "NORMAL_CLEARING"),
    "ringout": ("no_answer", 480, "NO_ANSWER"),
}


def esl_tenants(mode: str) -> dict[str, TenantConfig]:
    esl = EslConfig(password=SecretRef(env="FS_ESL_PASSWORD"))
    return {
        tid: t.model_copy(update={"transfers": ESL_TRANSFERS, "transfer_method": "esl", "esl": esl})
        for tid, t in tenants(mode).items()
    }


@dataclass
class EslRow:
    mode: str
    target: str
    outcome: str = ""
    code: int | None = None
    disposition: str = ""
    reason: str = ""  # what the model was told (the target's Hangup-Cause)
    caller_cause: str = ""
    caller_partners: set[str] = field(default_factory=set)  # channels bridged to the caller
    caller_audio_after_ms: float | None = None  # last loud caller audio after the outcome
    decided_ms: float | None = None  # the outcome, after the tool call

    def line(self) -> str:
        return (
            f"esl {self.mode:8} {self.target:8} -> {self.outcome}({self.code}) {self.reason} "
            f"{self.disposition}; decided +{self.decided_ms or 0:.0f}ms; caller hangup "
            f"{self.caller_cause or '-'}; bridged to {len(self.caller_partners)} channel(s); "
            f"caller audio until {self.caller_audio_after_ms} ms after the outcome"
        )


async def run_esl_row(
    esl: EslClient, svc: AgentService, ai: Ai, *, mode: str, target: str, did: str
) -> tuple[EslRow, CallRecord]:
    row = EslRow(mode, target)
    caller = str(uuid.uuid4())
    q = esl.subscribe()
    tone = "tone_stream://%(40000,0,1000)"
    out = await esl.bgapi(
        f"originate {{origination_uuid={caller},originate_timeout=10}}"
        f"sofia/internal/{did}@127.0.0.1:5080 &playback({tone})",
        timeout=20,
    )
    assert out.startswith("+OK"), out
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    started: float | None = None
    decided: float | None = None  # wall clock
    cdr: CallRecord | None = None
    events: list[EslEvent] = []
    inbound = ""  # FreeSWITCH's inbound leg of the call: the UUID the agent was given
    while loop.time() < end:
        try:
            ev = await asyncio.wait_for(q.get(), 0.05)
        except TimeoutError:
            ev = None
        if ev is not None:
            events.append(ev)
        for bridge in list(svc.bridges.values()):
            inbound = inbound or (bridge.call.info.header(CALLER_UUID_HEADER) or "")
            cdr = bridge.cdr
            tr = cdr.transfer
            if tr is not None and started is None:
                started = time.time()
            if tr is not None and tr.outcome != "pending" and decided is None:
                decided = time.time()
                end = loop.time() + 2.5  # watch the caller a little longer
        if svc.finished and decided is None:
            decided = time.time()  # the transfer ended our leg at once
            end = loop.time() + 2.5
    esl.unsubscribe(q)
    for ev in events:
        if ev.name == "CHANNEL_HANGUP_COMPLETE" and ev.uuid == inbound:
            row.caller_cause = ev.get("Hangup-Cause")
        a, b = ev.get("Bridge-A-Unique-ID"), ev.get("Bridge-B-Unique-ID")
        if ev.name == "CHANNEL_BRIDGE" and inbound in (a, b):
            row.caller_partners.add(b if a == inbound else a)
    await esl.api(f"uuid_kill {caller}")
    cdr = await finished_cdr(svc)
    session: TimedSession = ai.made[-1][1]
    if decided is not None:
        loud = [ts for ts, r in session.received if r > LOUD and ts > decided]
        row.caller_audio_after_ms = round((loud[-1] - decided) * 1000) if loud else None
        if started is not None:
            row.decided_ms = (decided - started) * 1000
    tr = cdr.transfer
    row.outcome = tr.outcome if tr else "-"
    row.code = tr.status if tr else None
    row.disposition = cdr.disposition.value
    results = [t.result for t in cdr.tool_calls if isinstance(t.result, dict)]
    row.reason = str(results[0].get("reason", "")) if results else ""
    return row, cdr


@pytest.mark.parametrize("mode", ["bridge", "register"])
@pytest.mark.parametrize("target", list(TARGETS))
async def test_esl_outcome(
    fs_transfers: FreeSwitch,
    esl: EslClient,
    tmp_path: Path,
    interop_log: list[str],
    mode: str,
    target: str,
) -> None:
    fs = fs_transfers
    # the tool call ~2 s into the call: the rig sees the live call before the transfer
    ai = Ai(
        greeting_ms=16000,
        tool=("transfer_call", json.dumps({"destination": target, "reason": "test"})),
    )
    async with agent_service(
        esl_tenants(mode),
        tmp_path,
        ai,
        environ_extra={"GLOBEX_SIP_PASSWORD": PASSWORD, "FS_ESL_PASSWORD": ESL_PASSWORD},
        bridge_defaults=BridgeOptions(
            housekeeping_interval=0.02, transfer_timeout=TRANSFER_TIMEOUT, quiet_timeout=1.0
        ),
    ) as svc:
        if mode == "bridge":
            xml = (FS_DIR / "dialplan/public/10_w3sipagent.xml").read_text()
            fs.put(
                "dialplan/public/10_w3sipagent.xml",
                xml.replace("127.0.0.1:5090", f"127.0.0.1:{svc.port}"),
            )
            assert fs.reloadxml() == []
            did = "15551230000"
        else:
            (fs.conf / "dialplan/public/10_w3sipagent.xml").unlink(missing_ok=True)
            assert fs.reloadxml() == []
            await _registered(svc)
            did = "442071234567"
        row, cdr = await run_esl_row(esl, svc, ai, mode=mode, target=target, did=did)
    interop_log.append(row.line())
    status, code, reason = EXPECTED[target]
    assert (row.outcome, row.code, row.reason) == (status, code, reason), row.line()
    if status == "succeeded":
        # the caller is with the target: bridged to a second channel, not hung up
        assert cdr.disposition is Disposition.TRANSFERRED, row.line()
        assert len(row.caller_partners) >= 2 and not row.caller_cause, row.line()
    else:
        # nothing moved: the caller is still with the agent, whose call goes on
        assert cdr.disposition is not Disposition.TRANSFERRED, row.line()
        assert row.caller_audio_after_ms is not None and row.caller_audio_after_ms > 1000, (
            row.line()
        )
        assert row.decided_ms is not None and row.decided_ms < (TRANSFER_TIMEOUT + 2) * 1000


async def test_esl_without_the_caller_uuid_header_fails_and_keeps_the_caller(
    fs_transfers: FreeSwitch, esl: EslClient, tmp_path: Path
) -> None:
    """A dialplan without the ``sip_h_X-W3-Caller-UUID`` line: the transfer says why it
    cannot work, and the caller stays with the agent."""
    fs = fs_transfers
    ai = Ai(greeting_ms=16000, tool=("transfer_call", json.dumps({"destination": "answer"})))
    async with agent_service(
        esl_tenants("bridge"),
        tmp_path,
        ai,
        environ_extra={"FS_ESL_PASSWORD": ESL_PASSWORD},
        bridge_defaults=BridgeOptions(housekeeping_interval=0.02, quiet_timeout=1.0),
    ) as svc:
        xml = (FS_DIR / "dialplan/public/10_w3sipagent.xml").read_text()
        xml = "\n".join(line for line in xml.splitlines() if "X-W3-Caller-UUID" not in line)
        fs.put(
            "dialplan/public/10_w3sipagent.xml",
            xml.replace("127.0.0.1:5090", f"127.0.0.1:{svc.port}"),
        )
        assert fs.reloadxml() == []
        row, cdr = await run_esl_row(
            esl, svc, ai, mode="bridge", target="answer", did="15551230000"
        )
    assert row.outcome == "failed" and row.code is None, row.line()
    assert cdr.disposition is not Disposition.TRANSFERRED
    assert row.caller_audio_after_ms is not None and row.caller_audio_after_ms > 1000
