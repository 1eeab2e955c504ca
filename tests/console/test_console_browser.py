"""The console in a real Chromium against a running agent with the API and the local AI
server: a softphone call appears live within a second, its transcript grows, it ends; its
record page shows the transcript and the recording loads with the call's duration; a tenant
token cannot see another tenant's calls (URL tampering included); an agent's voice edited in
the page is stored and shown in the activity log. Screenshots of each page go to
``$W3SIPAGENT_CONSOLE_SHOTS`` (docs/console to refresh the docs), else to the test's tmp dir."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.console.browser import Browser, why_not

if why_not() is not None:
    pytest.skip(str(why_not()), allow_module_level=True)

from tests.agent.helpers import wait_until
from tests.api.provision import ok, provision
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.agent.service import AgentService
from w3sipagent.cli.call import place_call
from w3sipagent.cli.controlplane import ControlPlane
from w3sipagent.cli.demo import AGENT, HOST, TENANT, demo_config, tool_server
from w3sipagent.config import load_settings
from w3sipagent.demo_assets import caller_utterances, scenario_path
from w3sipagent.localai import RealtimeServer
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.records.store import CdrStore

ADMIN = "console-admin-token-0123456789"


@contextlib.asynccontextmanager
async def running_agent(
    run_dir: Path, backend: str = "realtime", *, burst_speed: float | None = None
) -> AsyncIterator[tuple[AgentService, str]]:
    """The demo tenant (file) on a live agent, a database tenant beside it, the API on;
    ``backend`` "cascade": the demo agent as a cascade on the local cascade server;
    ``burst_speed``: the local Realtime server sends its answers at that many times real
    time, their transcript deltas along (as a real model's arrive), rather than at once."""
    async with contextlib.AsyncExitStack() as stack:
        rt = await stack.enter_async_context(
            RealtimeServer(
                "127.0.0.1",
                0,
                scenario=scenario_path(),
                tts_engine="tone",
                burst_speed=burst_speed,
            )
        )
        cascade_url = None
        if backend == "cascade":
            cascade = CascadeServer(scenario=scenario_path(), tts_engine="tone")
            await stack.enter_async_context(cascade)
            cascade_url = cascade.base_url
        tool_url = await stack.enter_async_context(tool_server())
        cfg = run_dir / "w3sipagent.toml"
        text = demo_config(
            run_dir,
            f"ws://127.0.0.1:{rt.port}/v1",
            tool_url,
            codec="PCMU",
            backend=backend,
            cascade_url=cascade_url,
        )
        text = text.replace(
            "[tenancy]", '[control]\nsource = "both"\n[api]\nlisten = "127.0.0.1:0"\n[tenancy]'
        )
        text = text.replace("[logging]\nsip_trace = true", "[logging]\nsip_trace = false")
        cfg.write_text(text)
        old = os.getcwd()
        os.chdir(run_dir)  # the demo's relative database and recordings paths
        stack.callback(os.chdir, old)
        settings = load_settings(cfg, environ={}, discover=False)
        settings.api.admin_token = SecretStr(ADMIN)
        store = await stack.enter_async_context(CdrStore.from_settings(settings.records))
        service = AgentService(settings, store=store, retention_interval=None)
        await service.start()
        stack.push_async_callback(service.close, timeout=3.0)
        registry = TenantRegistry(settings, lambda: settings)
        plane = await ControlPlane.start(settings, registry, service)
        stack.push_async_callback(plane.close)
        assert plane.api is not None
        yield service, plane.api.url


# Wall-clock times (ms) at which the page first showed a live row and each transcript line,
# taken in the browser by a MutationObserver (no polling between the page and the test).
WATCH = """
window.__seen = window.__seen || {row: null, lines: {}};
if (!window.__watching) {
  window.__watching = true;
  new MutationObserver(() => {
    const s = window.__seen, now = Date.now();
    if (s.row === null && document.querySelector('#live-table tbody tr')) s.row = now;
    for (const m of document.querySelectorAll('#transcript li .msg'))
      if (!(m.textContent in s.lines)) s.lines[m.textContent] = now;
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}
"""
BURST = 3.0
"""The local model speaks three times faster than real time, as a real one roughly does."""
LIVE_BOUND_S = 1.0
"""The issue: a call placed by the softphone appears in the live view within a second."""


CHANNELS = """
const [tenant, call, done] = arguments;
fetch(`/api/tenants/${tenant}/cdrs/${call}/recording`,
      {headers: {Authorization: `Bearer ${sessionStorage.getItem('w3.token')}`}})
  .then((r) => r.arrayBuffer())
  .then((buf) => new OfflineAudioContext(1, 1, 8000).decodeAudioData(buf))
  .then((a) => done([...Array(a.numberOfChannels).keys()].map((c) => {
    const d = a.getChannelData(c); let s = 0; for (const x of d) s += x * x;
    return Math.sqrt(s / d.length); })))
  .catch((e) => done(String(e)));
"""


def step(fn: Any, *args: Any) -> Any:
    """A blocking browser step, off the event loop (the agent runs on it)."""
    return asyncio.to_thread(fn, *args)


def login(b: Browser, url: str, token: str, shot: Path | None = None) -> None:
    b.go(f"{url}/console/")
    b.wait(lambda: b.css("#token"), what="the login form")
    if shot is not None:
        b.shot(shot, False)
    b.css("#token").send_keys(token)
    b.css("#login").click()
    b.wait(lambda: b.css("#nav").is_displayed(), what="logged in")


async def test_console_in_chromium(tmp_path: Path) -> None:
    shots = Path(os.environ.get("W3SIPAGENT_CONSOLE_SHOTS", tmp_path / "shots")).resolve()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    async with running_agent(run_dir, burst_speed=BURST) as (service, url):
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
            await _scenario(b, service, url, globex, shots)
        finally:
            await step(b.close)


async def _scenario(b: Browser, service: AgentService, url: str, globex: str, shots: Path) -> None:
    await step(login, b, url, ADMIN, shots / "login.png")
    await step(b.wait, lambda: "No call in progress" in b.text("#live"), 10, "the empty live view")
    utterances = await caller_utterances(8000, engine="tone")
    await step(b.driver.execute_script, WATCH)
    t0 = time.time()  # the softphone starts its INVITE now
    call = asyncio.create_task(
        place_call(
            f"sip:{AGENT}@{HOST}",
            proxy=("127.0.0.1", service.port),
            turns=utterances,
            turn_gap=0.9,
            turn_timeout=15.0,
            accept_refer=True,
            duration=40,
            rtp_ports=(45000, 45199),
            from_uri="sip:+15550001234@caller.example",
        )
    )
    # the call appears in the live view within a second of being placed
    await wait_until(lambda: service.bridges or call.done(), timeout=30, what="the call up")
    assert service.bridges, "the call never reached the agent"
    row = await step(
        b.wait, lambda: [r.text for r in b.all("#live-table tbody tr")], 5, "the live row"
    )
    shown = await step(b.driver.execute_script, "return window.__seen.row")
    appear_s = shown / 1000.0 - t0
    assert appear_s < LIVE_BOUND_S, f"the call showed {appear_s:.3f} s after it was placed"
    assert TENANT in row[0]
    await step(b.shot, shots / "live.png", False)
    await step(lambda: b.css("#live-table tbody tr a").click())
    await step(b.wait, lambda: b.css("#last-turn"), 10, "the live call's page")
    opened = await step(b.driver.execute_script, "return Date.now()") / 1000.0
    # the transcript grows while the call is up, then the call ends
    first = await step(b.wait, lambda: len(b.all("#transcript li")), 20, "a first line")
    await step(b.wait, lambda: len(b.all("#transcript li")) > first, 30, "the transcript to grow")
    await step(b.wait, lambda: b.text("#last-turn").endswith("ms"), 30, "a turn's latency")
    # an agent line under way: its words so far, marked as such
    # (the text read inside the wait: each push re-renders the lines)
    speaking = await step(
        b.wait, lambda: [e.text for e in b.all("#transcript li.partial")], 30, "words under way"
    )
    assert "(speaking…)" in speaking[0]
    await step(b.shot, shots / "live-call.png")
    await step(b.wait, lambda: b.css("#ended"), 60, "the call to end")
    summary = await call
    assert summary.answered
    await step(b.shot, shots / "live-call-ended.png")
    # each agent line was whole on the page within the bound of the moment the bridge had
    # its final text (an agent line's ``at`` is when it was added to the CDR; a caller's is
    # its speech start); with the words shown as they come it is often there before
    seen = await step(b.driver.execute_script, "return window.__seen.lines")
    await wait_until(lambda: service.finished, timeout=10, what="the CDR")
    cdr = service.finished[0]
    lags = [
        seen.get(e.text, float("inf")) / 1000.0 - (cdr.invite_at.timestamp() + e.at)
        for e in cdr.transcript
        if e.speaker == "agent" and cdr.invite_at.timestamp() + e.at > opened
    ]
    assert lags, "no agent line was said while the call's page was open"
    assert max(lags) < LIVE_BOUND_S, lags
    # and its first words were there while it was spoken, before the line was final
    leads = [
        cdr.invite_at.timestamp()
        + e.at
        - min(t for x, t in seen.items() if x and e.text.startswith(x)) / 1000.0
        for e in cdr.transcript
        if e.speaker == "agent" and cdr.invite_at.timestamp() + e.at > opened
    ]
    assert max(leads) > 0.5, leads
    print(
        f"\nlive view: call shown {appear_s * 1000:.0f} ms after the INVITE; each agent "
        f"line whole on the page {min(lags) * 1000:+.0f}..{max(lags) * 1000:+.0f} ms from its "
        f"final text in the CDR, its first words {min(leads):.1f}..{max(leads):.1f} s before"
    )
    await _record_page(b, service, shots)
    await _edit_voice(b, shots)
    await step(b.hash, "#/overview")
    await step(b.wait, lambda: b.all("#overview section"), 10, "the overview")
    await step(b.shot, shots / "overview.png")
    await _tenant_view(b, url, globex, service, shots)
    # everything the pages loaded came from the agent itself
    loaded = await step(
        b.driver.execute_script,
        "return performance.getEntriesByType('resource').map((e) => e.name)",
    )
    assert loaded and all(u.startswith(url + "/") for u in loaded), loaded


async def _record_page(b: Browser, service: AgentService, shots: Path) -> None:
    await wait_until(lambda: service.finished, timeout=10, what="the CDR")
    cdr = service.finished[0]
    assert cdr.answer_at and cdr.end_at
    await step(b.hash, f"#/calls?tenant={TENANT}")
    await step(b.wait, lambda: b.all("#cdr-table tbody tr a"), 10, "the call in the records")
    await step(b.shot, shots / "calls.png")
    await step(lambda: b.css("#cdr-table tbody tr a").click())
    said = await step(b.wait, lambda: b.all("#transcript li"), 10, "the transcript")
    texts = [t.text for t in cdr.transcript]
    page = await step(lambda: b.text("#transcript"))
    assert all(t in page for t in texts) and len(said) >= len(texts)
    duration = await step(
        b.wait,
        lambda: b.driver.execute_script(
            "const a = document.getElementById('recording');"
            " return a && a.readyState >= 1 && isFinite(a.duration) ? a.duration : 0"
        ),
        15,
        "the recording to load",
    )
    call_s = (cdr.end_at - cdr.answer_at).total_seconds()
    assert abs(float(duration) - call_s) < 1.5, (duration, call_s)
    # it plays
    await step(b.driver.execute_script, "document.getElementById('recording').play()")
    await step(
        b.wait,
        lambda: (
            b.driver.execute_script("return document.getElementById('recording').currentTime") > 0.3
        ),
        10,
        "the recording to play",
    )
    await step(b.driver.execute_script, "document.getElementById('recording').pause()")
    # the recording is stereo and both sides carry sound (caller left, agent right)
    await step(b.driver.set_script_timeout, 15)
    levels = await step(b.driver.execute_async_script, CHANNELS, TENANT, cdr.call_id)
    assert isinstance(levels, list) and len(levels) == 2, levels
    assert min(levels) > 0.003, levels  # RMS of full scale: silence would be ~0
    await step(b.wait, lambda: b.css("#latency-chart"), 5, "the latency chart")
    await step(b.shot, shots / "call-record.png")
    # the search by words in the transcript finds it; words never said find nothing
    word = max(cdr.transcript[0].text.split(), key=len).strip(".,!?")
    await step(b.hash, f"#/calls?tenant={TENANT}&q={word}")
    await step(b.wait, lambda: "1 call" in b.text("main"), 10, f"the call found by {word!r}")
    await _exports(b, cdr)
    await _phone(b, cdr, shots)
    await step(b.hash, f"#/calls?tenant={TENANT}&q=zanzibar-quokka")
    await step(b.wait, lambda: "0 calls" in b.text("main"), 10, "nothing found")


async def _edit_voice(b: Browser, shots: Path) -> None:
    await step(b.hash, "#/tenants/globex/agents/support")
    voice = await step(b.wait, lambda: b.css("#e-voice"), 10, "the agent form")
    # a voice the API refuses: its message at the field, the field marked invalid
    await step(voice.clear)
    await step(voice.send_keys, "bob")
    await step(lambda: b.css("#save").click())
    err = await step(b.wait, lambda: b.text("#e-voice-error"), 10, "the error at the field")
    assert "marin" in err  # the allowed voices
    assert await step(voice.get_attribute, "aria-invalid") == "true"
    await step(b.shot, shots / "agent-field-error.png")
    await step(voice.clear)
    await step(voice.send_keys, "marin")
    await step(lambda: b.css("#save").click())
    await step(b.wait, lambda: "Saved" in b.text("#saved"), 10, "saved")
    await step(b.shot, shots / "agent-edit.png")
    await step(b.hash, "#/activity?tenant=globex")
    await step(
        b.wait, lambda: '"cedar" → "marin"' in b.text("#activity-table"), 10, "the change logged"
    )
    await step(b.shot, shots / "activity.png")
    await step(b.hash, "#/tenants/globex")
    await step(
        b.wait, lambda: b.all("#tenant-objects[aria-busy=false]"), 10, "the tenant's objects"
    )
    assert "voice marin" in await step(b.text, "main")  # the stored voice
    await step(b.shot, shots / "tenant.png")


async def _tenant_view(
    b: Browser, url: str, globex: str, service: AgentService, shots: Path
) -> None:
    await step(lambda: b.css("#logout").click())
    await _keyboard(b, globex)
    assert "tenant globex" in await step(b.text, "#who")
    await step(b.wait, lambda: "No call in progress" in b.text("#live"), 10, "globex's live view")
    cdr = service.finished[0]
    # URL tampering: another tenant's record, records list, tenant and activity
    for frag in (
        f"#/calls/{TENANT}/{cdr.call_id}",
        f"#/calls?tenant={TENANT}",
        f"#/tenants/{TENANT}",
        f"#/activity?tenant={TENANT}",
    ):
        await step(b.hash, frag)
        await step(b.wait, lambda: "Not found" in b.text("main"), 10, f"not found at {frag}")
        assert cdr.call_id not in await step(b.text, "main")
    await step(b.shot, shots / "tenant-token-denied.png")
    await step(b.hash, "#/tenants")
    items = await step(b.wait, lambda: b.text("#tenant-list"), 10, "the tenant list")
    assert "globex" in items and TENANT not in items
    await step(b.hash, "#/overview")
    await step(b.wait, lambda: b.all("#overview section"), 10, "globex's overview")
    sections = await step(
        lambda: [x.get_attribute("aria-label") for x in b.all("#overview section")]
    )
    assert sections == ["tenant globex"], sections


async def _keyboard(b: Browser, token: str) -> None:
    """Log in and move around with the keyboard alone."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def active() -> Any:
        return b.driver.switch_to.active_element

    def keys(*k: str) -> None:
        ActionChains(b.driver).send_keys(*k).perform()

    field = await step(b.wait, lambda: b.css("#token"), 10, "the login form")
    assert await step(lambda: active() == field)  # the form takes the focus
    await step(keys, token, Keys.ENTER)
    await step(b.wait, lambda: b.css("#nav").is_displayed(), 10, "logged in by Enter")
    await step(b.wait, lambda: b.all("#live p, #live table"), 10, "the live view")
    await step(b.driver.execute_script, "document.activeElement.blur()")
    await step(keys, Keys.TAB)  # the first stop: the skip link, shown when focused
    skip = await step(active)
    assert await step(skip.get_attribute, "class") == "skip"
    assert (await step(lambda: skip.location))["x"] >= 0
    await step(keys, Keys.ENTER)
    assert await step(lambda: active().get_attribute("id")) == "main"
    assert await step(b.driver.execute_script, "return location.hash") == "#/live"
    # the navigation by Tab and Enter, with a visible focus ring
    for _ in range(8):
        await step(keys, Keys.TAB)
        if await step(lambda: active().text) == "Call records":
            break
    ring = await step(lambda: active().value_of_css_property("outline-style"))
    assert ring == "solid", ring
    await step(keys, Keys.ENTER)
    await step(b.wait, lambda: b.css("#cdr-table, #f-tenant"), 10, "the records by keyboard")
    assert await step(b.driver.execute_script, "return location.hash") == "#/calls"
    await step(b.hash, "#/live")


async def _exports(b: Browser, cdr: Any) -> None:
    """The records found, exported as CSV and JSON files by the browser."""
    where = Path(tempfile.mkdtemp(prefix="w3-downloads-"))
    try:
        await step(
            b.driver.execute_cdp_cmd,
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(where)},
        )
        await step(lambda: b.css("#export-csv").click())
        await step(lambda: b.css("#export-json").click())
        csv_file, json_file = where / f"calls-{TENANT}.csv", where / f"calls-{TENANT}.json"
        await wait_until(
            lambda: csv_file.is_file() and json_file.is_file(), 10, what="the downloads"
        )
        rows = list(csv.DictReader(io.StringIO(csv_file.read_text())))
        assert [(r["call_id"], r["disposition"]) for r in rows] == [
            (cdr.call_id, cdr.disposition.value)
        ]
        doc = json.loads(json_file.read_text())
        assert [d["call_id"] for d in doc] == [cdr.call_id]
    finally:
        shutil.rmtree(where, ignore_errors=True)


async def _phone(b: Browser, cdr: Any, shots: Path) -> None:
    """On a phone's screen the records are cards and nothing is wider than the screen."""
    wide = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    await step(b.driver.set_window_size, 390, 844)
    try:
        await step(b.hash, f"#/calls?tenant={TENANT}")
        await step(b.wait, lambda: b.all("#cdr-table tbody tr"), 10, "the records on a phone")
        assert await step(b.driver.execute_script, wide) <= 0
        assert not await step(lambda: b.css("#cdr-table thead").is_displayed())  # cards
        inner = "const t = document.getElementById('cdr-table');"
        inner += " return t.scrollWidth - t.parentElement.clientWidth"
        assert await step(b.driver.execute_script, inner) <= 0  # no card cut off
        await step(b.shot, shots / "phone-calls.png")
        await step(b.hash, f"#/calls/{TENANT}/{cdr.call_id}")
        await step(b.wait, lambda: b.all("#transcript li"), 10, "the record on a phone")
        assert await step(b.driver.execute_script, wide) <= 0
    finally:
        await step(b.driver.set_window_size, 1280, 900)
