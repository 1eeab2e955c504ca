"""The console in a real Chromium, what an operator does to calls in progress: a tenant token
never sees another tenant's live call (the list, the stream, the call's page by URL), an
admin hangs a real softphone call up and transfers another from the page (the BYE and the
REFER reach the softphone; the CDRs and the activity log say so); a cascaded agent's call
record shows its per-stage latency (STT / model / TTS) as a chart with the CDR's figures.
Screenshots go to ``$W3SIPAGENT_CONSOLE_SHOTS`` (docs/console to refresh the docs)."""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.browser import Browser, why_not

if why_not() is not None:
    pytest.skip(str(why_not()), allow_module_level=True)

from tests.agent.helpers import wait_until
from tests.api.provision import ok, provision
from tests.asyncio.helpers import rtp_range
from tests.console.test_console_browser import ADMIN, login, running_agent, step
from w3sipagent.agent.service import AgentService
from w3sipagent.cli.call import CallSummary, place_call
from w3sipagent.cli.demo import AGENT, HOST, TENANT
from w3sipagent.demo_assets import caller_utterances
from w3sipagent.records.cdr import CallRecord, Disposition


def _shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("W3SIPAGENT_CONSOLE_SHOTS", tmp_path / "shots")).resolve()


def _call(service: AgentService, **kw: Any) -> asyncio.Task[CallSummary]:
    """A softphone call to the demo agent, up to a minute long unless ended."""
    return asyncio.create_task(
        place_call(
            f"sip:{AGENT}@{HOST}",
            proxy=("127.0.0.1", service.port),
            duration=kw.pop("duration", 60),
            rtp_ports=rtp_range(),
            from_uri="sip:+15550001234@caller.example",
            **kw,
        )
    )


async def _up(service: AgentService, call: asyncio.Task[CallSummary], known: set[str]) -> str:
    """The Call-ID of the call ``call`` brought up (a bridge not in ``known``)."""
    await wait_until(lambda: set(service.bridges) - known or call.done(), 30, what="the call up")
    new = set(service.bridges) - known
    assert new, "the call never reached the agent"
    return new.pop()


def _cdr(service: AgentService, call_id: str) -> CallRecord | None:
    return next((c for c in service.finished if c.call_id == call_id), None)


async def _activity(url: str, call_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url) as api:
        rows = await ok(
            api.get(f"/api/tenants/{TENANT}/activity", headers={"Authorization": f"Bearer {ADMIN}"})
        )
    return [r for r in rows if r["entity"] == "call" and r["ref"].startswith(call_id)]


async def test_operator_hangup_transfer_and_isolation(tmp_path: Path) -> None:
    shots = _shots(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    async with running_agent(run_dir) as (service, url):
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=url) as api:
            await provision(api, headers, "globex", "+39069999999")
            globex = (
                await ok(
                    api.post("/api/tokens", json={"tenant_id": "globex"}, headers=headers), 201
                )
            )["token"]
        b = await step(Browser)
        try:
            first = _call(service)
            call_id = await _up(service, first, set())
            await _isolated(b, url, globex, call_id)
            await step(lambda: b.css("#logout").click())
            await step(login, b, url, ADMIN)
            await _hang_up(b, service, url, first, call_id, shots)
            second = _call(service, accept_refer=True)
            await _transfer(b, service, url, second, await _up(service, second, {call_id}), shots)
        finally:
            await step(b.close)


async def _isolated(b: Browser, url: str, globex: str, call_id: str) -> None:
    """globex's token, while acme's call is up: no row, no stream, no page."""
    await step(login, b, url, globex)
    await step(b.wait, lambda: b.css("#live[data-pushes]"), 10, "globex's live view")
    pushes = int(await step(b.css("#live").get_attribute, "data-pushes"))
    # the stream pushes at least once a second: two more pushes while the call is up
    await step(
        b.wait,
        lambda: int(b.css("#live").get_attribute("data-pushes")) >= pushes + 2,
        10,
        "two more pushes",
    )
    assert "No call in progress" in await step(b.text, "#live")
    assert not await step(b.all, "#live-table tbody tr")
    await step(b.hash, f"#/live/{call_id}")  # URL tampering: acme's call by its Call-ID
    await step(b.wait, lambda: "Not found" in b.text("main"), 10, "not found")
    assert TENANT not in await step(b.text, "main")
    assert not await step(b.all, "#hangup")


async def _hang_up(
    b: Browser,
    service: AgentService,
    url: str,
    call: asyncio.Task[CallSummary],
    call_id: str,
    shots: Path,
) -> None:
    await step(b.hash, f"#/live/{call_id}")
    button = await step(b.wait, lambda: b.css("#hangup"), 10, "the hang-up button")
    # this softphone declines a REFER (603): the page says why the transfer failed, and
    # the call goes on
    await step(lambda: b.css("#transfer").click())
    state = await step(
        b.wait, lambda: "rejected" in b.text("#transfer-state") and b.text("#transfer-state"), 15
    )
    assert state == "manager: rejected 603", state
    assert not call.done() and call_id in service.bridges
    await step(b.shot, shots / "live-call-actions.png")
    await step(button.click)
    summary = await asyncio.wait_for(call, 15)
    # the agent sent the BYE: the softphone saw the far end hang up, long before its 60 s
    assert summary.answered and summary.ended_by == "far end", summary
    assert summary.transferred_to is None
    assert summary.duration_s < 30
    await step(b.wait, lambda: b.css("#ended"), 10, "the page to say the call ended")
    await wait_until(lambda: _cdr(service, call_id), 10, what="the CDR")
    cdr = _cdr(service, call_id)
    assert cdr is not None
    assert cdr.hangup_by == "agent" and cdr.disposition is Disposition.COMPLETED, cdr
    assert any(e["kind"] == "operator_hangup" and e["actor"] == "admin" for e in cdr.events)
    assert cdr.transfer is not None
    assert (cdr.transfer.outcome, cdr.transfer.status) == ("rejected", 603)
    acts = await _activity(url, call_id)
    assert sorted(r["after"]["action"] for r in acts) == ["hangup", "transfer"]


async def _transfer(
    b: Browser,
    service: AgentService,
    url: str,
    call: asyncio.Task[CallSummary],
    call_id: str,
    shots: Path,
) -> None:
    await step(b.hash, f"#/live/{call_id}")
    await step(b.wait, lambda: b.css("#transfer"), 10, "the transfer button")
    options = await step(lambda: [o.text for o in b.all("#dest option")])
    assert options == ["manager"]  # the tenant's named destinations
    await step(lambda: b.css("#transfer").click())
    summary = await asyncio.wait_for(call, 20)
    # the REFER reached the softphone, which took the call to the manager and left our leg
    assert summary.transferred_to == f"sip:manager@{HOST}", summary
    await step(b.wait, lambda: b.css("#ended"), 10, "the page to say the call ended")
    await wait_until(lambda: _cdr(service, call_id), 10, what="the CDR")
    cdr = _cdr(service, call_id)
    assert cdr is not None and cdr.transfer is not None
    assert cdr.transfer.destination == "manager"
    assert (cdr.transfer.outcome, cdr.transfer.status) == ("succeeded", 200)
    assert cdr.disposition is Disposition.TRANSFERRED
    acts = await _activity(url, call_id)
    assert [(r["after"]["action"], r["after"]["destination"]) for r in acts] == [
        ("transfer", "manager")
    ]
    # the record page shows the transfer's outcome
    await step(b.hash, f"#/calls/{TENANT}/{call_id}")
    text = await step(b.wait, lambda: b.text("#rtp"), 10, "the record")
    assert f"manager (sip:manager@{HOST}): succeeded 200" in text


async def test_cascade_stage_chart(tmp_path: Path) -> None:
    shots = _shots(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    async with running_agent(run_dir, backend="cascade") as (service, url):
        utterances = await caller_utterances(8000, engine="tone")
        call = _call(service, turns=utterances[:2], turn_gap=0.9, turn_timeout=15.0, duration=25)
        call_id = await _up(service, call, set())
        b = await step(Browser)
        try:
            await step(login, b, url, ADMIN)
            await asyncio.wait_for(call, 60)
            await wait_until(lambda: _cdr(service, call_id), 10, what="the CDR")
            cdr = _cdr(service, call_id)
            assert cdr is not None
            stages = cdr.turn_stages_ms()
            assert stages, cdr.events  # a caller's turn answered (a barge-in may cut one)
            await step(b.hash, f"#/calls/{TENANT}/{call_id}")
            await step(b.wait, lambda: b.css("#stage-chart"), 10, "the stage chart")
            rows = await step(
                lambda: [
                    [c.text for c in r.find_elements("css selector", "th, td")]
                    for r in b.all("#stage-table tbody tr")
                ]
            )
            heads = await step(lambda: [h.text for h in b.all("#stage-table thead th")])
            assert heads == ["Turn", "turn end", "STT", "model", "TTS", "send", "Total"]
            assert [r[1:-1] for r in rows] == [_spans(s) for s in stages]
            title = await step(
                b.driver.execute_script,
                "return document.getElementById('stage-title').textContent",
            )
            assert f"turn {len(stages)}: turn end" in title and "STT" in title
            segments = await step(b.all, "#stage-chart rect[data-stage=STT]")
            assert len(segments) == sum(1 for s in stages if _spans(s)[1] not in ("-", "0"))
            await step(lambda: b.css("#stage-chart").location_once_scrolled_into_view)
            await step(b.shot, shots / "call-record-cascade.png")
        finally:
            await step(b.close)


def _spans(st: dict[str, float]) -> list[str]:
    """What the page shows per stage: ms since the stage before (as the page cuts them)."""
    out, prev = [], 0.0
    for key in ("end_of_turn", "transcript_final", "first_sentence", "tts_first_byte", "first_rtp"):
        v = st.get(key)
        if v is None:
            out.append("-")
            continue
        out.append(str(math.floor(max(0.0, v - prev) + 0.5)))  # JavaScript's Math.round
        prev = max(prev, v)
    return out
