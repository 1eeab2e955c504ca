"""The endpoints the console adds: live calls and their event stream (tickets), an admin's
hang-up and transfer (audited), a call's recording, the overview, CDR text search, and the
static files with their CSP; each tried across tenants (404) and with a tenant token (403)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import wave
from pathlib import Path
from typing import Any

import httpx

from tests.agent.helpers import wait_until
from tests.api.conftest import Api
from tests.api.provision import ok, provision
from w3sipagent.api import create_app
from w3sipagent.api.console import percentile
from w3sipagent.api.context import Principal
from w3sipagent.api.live import TicketSigner
from w3sipagent.api.server import ApiServer
from w3sipagent.records.cdr import CallRecord, Disposition, TranscriptEntry
from w3sipagent.records.store import CdrStore


class FakeBridge:
    def __init__(self, cdr: CallRecord) -> None:
        self.cdr = cdr
        self.hung_up: list[str] = []
        self.session: object | None = object()
        self.transfers: list[tuple[str, str]] = []

    def hang_up(self, reason: str) -> None:
        self.hung_up.append(reason)

    async def transfer_to(self, destination: str, uri: str, reason: str, **_: Any) -> None:
        self.transfers.append((destination, uri))


async def _tenant_token(api: Api, tid: str) -> dict[str, str]:
    body = await ok(api.client.post("/api/tokens", json={"tenant_id": tid}, headers=api.admin), 201)
    return api.auth(body["token"])


async def _setup(api: Api) -> tuple[dict[str, str], dict[str, str], dict[str, FakeBridge]]:
    await provision(api.client, api.admin, "acme", "+39061234567")
    await provision(api.client, api.admin, "globex", "+39069999999")
    bridges = {
        "c-acme": FakeBridge(CallRecord(call_id="c-acme", tenant="acme", agent="support")),
        "c-globex": FakeBridge(CallRecord(call_id="c-globex", tenant="globex")),
    }
    bridges["c-acme"].cdr.transcript.append(TranscriptEntry(speaker="caller", text="hello", at=1.0))
    bridges["c-acme"].cdr.turn_latencies_ms.append(420.0)
    api.ctx.live_bridges = lambda: bridges
    return await _tenant_token(api, "acme"), await _tenant_token(api, "globex"), bridges


async def test_live_calls_are_tenant_filtered(api: Api) -> None:
    acme, _, _ = await _setup(api)
    every = await ok(api.client.get("/api/live/calls", headers=api.admin))
    assert {r["call_id"] for r in every} == {"c-acme", "c-globex"}
    mine = await ok(api.client.get("/api/live/calls", headers=acme))
    assert [r["call_id"] for r in mine] == ["c-acme"]
    assert mine[0]["last_turn_ms"] == 420.0 and mine[0]["agent"] == "support"
    one = await ok(api.client.get("/api/live/calls/c-acme", headers=acme))
    assert one["transcript"][0]["text"] == "hello"
    r = await api.client.get("/api/live/calls/c-globex", headers=acme)
    assert r.status_code == 404
    assert (await api.client.get("/api/live/calls")).status_code == 401


async def test_hangup_and_transfer_admin_only_and_audited(api: Api) -> None:
    acme, _, bridges = await _setup(api)
    r = await api.client.post("/api/live/calls/c-acme/hangup", headers=acme)
    assert r.status_code == 403
    assert (
        await api.client.post("/api/live/calls/nope/hangup", headers=api.admin)
    ).status_code == 404
    await ok(api.client.post("/api/live/calls/c-acme/hangup", headers=api.admin), 202)
    assert bridges["c-acme"].hung_up == ["operator hang-up (admin)"]
    assert [e["kind"] for e in bridges["c-acme"].cdr.events] == ["operator_hangup"]
    dests = await ok(api.client.get("/api/live/destinations/c-acme", headers=api.admin))
    assert dests == ["human"]
    bad = await api.client.post(
        "/api/live/calls/c-acme/transfer", json={"destination": "nobody"}, headers=api.admin
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "destination"]
    await ok(
        api.client.post(
            "/api/live/calls/c-acme/transfer", json={"destination": "human"}, headers=api.admin
        ),
        202,
    )
    await wait_until(lambda: bridges["c-acme"].transfers, what="the transfer")
    assert bridges["c-acme"].transfers == [("human", "sip:100@pbx.acme.example")]
    log = await ok(api.client.get("/api/tenants/acme/activity", headers=acme))
    calls = [e for e in log if e["entity"] == "call"]
    assert {e["after"]["action"] for e in calls} == {"hangup", "transfer"}
    assert all(e["actor"] == "admin" for e in calls)


def test_tickets_expire_and_cannot_be_forged() -> None:
    s = TicketSigner(key=b"k" * 32, ttl=60)
    t = s.issue(Principal("token w3t_ab…", "acme"), now=1000.0)
    assert s.check(t, now=1059.0) == Principal("token w3t_ab…", "acme")
    assert s.check(t, now=1061.0) is None
    body, _, sig = t.partition(".")
    forged = TicketSigner(key=b"x" * 32).issue(Principal("admin", None), now=1000.0)
    assert s.check(forged.partition(".")[0] + "." + sig, now=1001.0) is None
    assert s.check(body + "." + forged.partition(".")[2], now=1001.0) is None
    assert s.check("garbage", now=1001.0) is None


async def _events(client: httpx.AsyncClient, url: str, n: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    async with client.stream("GET", url) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((str(event), json.loads(line[6:])))
                if len(out) >= n or event == "ended":
                    break
    return out


async def test_stream_by_ticket_tenant_filtered(api: Api) -> None:
    """Over real HTTP (the in-process transport buffers whole responses)."""
    acme, _, bridges = await _setup(api)
    server = ApiServer(create_app(api.ctx), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            await _stream_checks(c, acme, bridges)
            # a stream still open does not hold the server's close
            ticket = (await ok(c.post("/api/live/ticket", headers=acme)))["ticket"]
            up = asyncio.Event()
            reader = asyncio.create_task(_stream_open(c, ticket, up))
            await asyncio.wait_for(up.wait(), 10)
            await asyncio.wait_for(server.close(), 10)
            with contextlib.suppress(httpx.HTTPError):
                await asyncio.wait_for(reader, 10)
    finally:
        await asyncio.wait_for(server.close(), 10)


async def _stream_checks(
    c: httpx.AsyncClient, acme: dict[str, str], bridges: dict[str, FakeBridge]
) -> None:
    assert (await c.get("/api/live/stream", params={"ticket": "x.y"})).status_code == 401
    ticket = (await ok(c.post("/api/live/ticket", headers=acme)))["ticket"]
    assert (await c.post("/api/live/ticket")).status_code == 401
    [(ev, rows)] = await _events(c, f"/api/live/stream?ticket={ticket}", 1)
    assert ev == "calls" and [r["call_id"] for r in rows] == ["c-acme"]
    # another tenant's call through the stream: 404, before any event
    r = await c.get("/api/live/stream", params={"ticket": ticket, "call": "c-globex"})
    assert r.status_code == 404

    # the call's stream: the transcript grows as it is spoken, then the call ends
    said: list[list[str]] = []
    kinds: list[str] = []
    async with c.stream("GET", f"/api/live/stream?ticket={ticket}&call=c-acme") as r:
        event = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            if not line.startswith("data: "):
                continue
            kinds.append(event)
            if event == "ended":
                break
            said.append([t["text"] for t in json.loads(line[6:])["transcript"]])
            if said[-1] == ["hello"]:
                bridges["c-acme"].cdr.transcript.append(
                    TranscriptEntry(speaker="agent", text="how can I help", at=2.0)
                )
            elif "c-acme" in bridges:
                del bridges["c-acme"]
    assert kinds[-1] == "ended" and set(kinds[:-1]) == {"call"}
    assert said[0] == ["hello"] and said[-1] == ["hello", "how can I help"]


async def _stream_open(c: httpx.AsyncClient, ticket: str, up: asyncio.Event) -> None:
    async with c.stream("GET", f"/api/live/stream?ticket={ticket}") as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                up.set()


async def test_recording_served_with_tenant_check(api: Api, tmp_path: Path) -> None:
    acme, globex, _ = await _setup(api)
    rec_dir = tmp_path / "rec"
    api.settings.records.recordings_dir = rec_dir
    wav = rec_dir / "acme" / "c1.wav"
    wav.parent.mkdir(parents=True)
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(8000 * 4))
    outside = tmp_path / "secret.wav"
    outside.write_bytes(wav.read_bytes())
    store = CdrStore(api.settings.records.database_url)
    async with store:
        for cid, path in (("c1", wav), ("c2", outside)):
            cdr = CallRecord(call_id=cid, tenant="acme", recording_path=str(path))
            cdr.answered()
            cdr.finish(Disposition.CALLER_HANGUP, hangup_by="caller")
            await store.call_ended(cdr)
    r = await api.client.get("/api/tenants/acme/cdrs/c1/recording", headers=acme)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content == wav.read_bytes()
    assert (
        await api.client.get("/api/tenants/acme/cdrs/c1/recording", headers=globex)
    ).status_code == 404
    assert (
        await api.client.get("/api/tenants/globex/cdrs/c1/recording", headers=globex)
    ).status_code == 404
    # a path outside recordings_dir is never served
    assert (
        await api.client.get("/api/tenants/acme/cdrs/c2/recording", headers=api.admin)
    ).status_code == 404


async def test_search_text_number_and_overview(api: Api) -> None:
    acme, globex, _ = await _setup(api)
    store = CdrStore(api.settings.records.database_url)
    async with store:
        for i, words in enumerate(["table for two", "cancel my booking"]):
            cdr = CallRecord(
                call_id=f"s{i}", tenant="acme", caller=f"sip:+3955500{i}@x", did="+39061234567"
            )
            cdr.answered()
            cdr.transcript.append(TranscriptEntry(speaker="caller", text=words, at=1.0))
            cdr.turn_latencies_ms.extend([100.0 * (i + 1), 900.0])
            cdr.add_event("ai_lost")
            cdr.finish(Disposition.CALLER_HANGUP, hangup_by="caller")
            await store.call_ended(cdr)
    hits = await ok(api.client.get("/api/tenants/acme/cdrs", params={"q": "BOOKING"}, headers=acme))
    assert [h["call_id"] for h in hits] == ["s1"]
    hits = await ok(
        api.client.get("/api/tenants/acme/cdrs", params={"number": "555000"}, headers=acme)
    )
    assert [h["call_id"] for h in hits] == ["s0"]
    assert (
        await api.client.get("/api/tenants/acme/cdrs", params={"q": "x"}, headers=globex)
    ).status_code == 404
    o = await ok(api.client.get("/api/overview", headers=acme))
    assert [t["tenant"] for t in o["tenants"]] == ["acme"]
    t = o["tenants"][0]
    assert t["calls"] == 2 and sum(t["calls_per_hour"]) == 2 and t["calls_per_hour"][-1] == 2
    assert t["dispositions"] == {"caller_hangup": 2} and t["ai_errors"] == 2
    assert t["p50_ms"] == 200.0 and t["p99_ms"] == 900.0
    every = await ok(api.client.get("/api/overview", headers=api.admin))
    assert [t["tenant"] for t in every["tenants"]] == ["acme", "globex"]


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


async def test_console_static_with_csp(api: Api) -> None:
    r = await api.client.get("/console/")
    assert r.status_code == 200 and "<title>w3sipagent console</title>" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    js = await api.client.get("/console/app.js")
    assert js.status_code == 200 and "EventSource" in js.text
    assert "http://" not in r.text and "https://" not in r.text  # nothing from the internet
    root = await api.client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/console/"
