"""An agent's ``policy``, set through the HTTP API, acted on by real SIP calls.

- ``handover_when_not_understood``: two caller turns in a row not understood (the
  transcription failed or came back empty; an understood turn in between resets the count)
  and the agent REFERs the caller to ``handover_to``.
- ``internal_fallback``: the AI cannot be reached, the caller hears the tenant's fallback
  WAV and the agent hangs up: no transfer, although the tenant has a ``fallback.transfer``.
- Re-set to ``always_answer`` through the API, the next call gets the tenant's fallback as
  configured: the WAV, then the REFER to the fallback destination.
"""

from __future__ import annotations

import importlib.util
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.agent.helpers import tone_pcm, tone_ulaw, wait_until
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISessionConfig, CallerTranscript
from w3sipagent.asyncio.refer import Transferer, allow_all
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.config import load_settings
from w3sipagent.control.repo import ControlRepo
from w3sipagent.records.cdr import CallRecord, Disposition

if importlib.util.find_spec("fastapi") is None:
    pytest.skip("the API's dependencies are not installed", allow_module_level=True)

from w3sipagent.api import ApiContext, create_app

ADMIN = "policy-admin-token-1"
HUMAN = "sip:human@pbx.acme.example"
SUPPORT_DID, DESK_DID = "+39061234567", "+39061234568"


@dataclass
class Ai:
    """Scripted sessions for ``support``; the ``desk`` agent's AI cannot be reached."""

    made: list[tuple[str, ScriptedSession]] = field(default_factory=list)

    def __call__(self, tenant: str, key: str, transport: str, cfg: AISessionConfig) -> Any:
        if "desk" in cfg.instructions:
            s = ScriptedSession(cfg, fail_start="HTTP 503: the AI is down")
        else:
            s = ScriptedSession(cfg, greeting=ScriptedReply(tone_ulaw(200, amp=9000), "Hi."))
        self.made.append((cfg.instructions, s))
        return s


@dataclass
class Rig:
    client: httpx.AsyncClient
    svc: AgentService
    caller: UserAgent
    refers: list[str]
    ai: Ai

    async def call(self, number: str) -> Any:
        return await self.caller.dial(
            f"sip:{number}@127.0.0.1", proxy=("127.0.0.1", self.svc.port), codecs=["PCMU/8000"]
        )

    async def cdr(self, call_id: str) -> CallRecord:
        await wait_until(
            lambda: any(c.call_id == call_id for c in self.svc.finished), timeout=10, what="cdr"
        )
        return next(c for c in self.svc.finished if c.call_id == call_id)


async def _ok(resp: Any, status: int = 200) -> Any:
    r = await resp
    assert r.status_code == status, r.text
    return r.json() if r.content else None


@pytest.fixture
async def rig(db_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    settings = load_settings(
        None,
        {
            "records.database_url": db_url,
            "records.recordings_dir": str(tmp_path / "rec"),
            "control.source": "database",
        },
        environ={},
        discover=False,
    )
    repo = await ControlRepo.open(db_url)
    registry = TenantRegistry(settings, lambda: settings)
    registry.attach_control(repo)
    await registry.refresh_control(force=True)
    ctx = ApiContext(
        repo=repo,
        settings=settings,
        tables=lambda: registry.table,
        admin_token=SecretStr(ADMIN),
        on_change=lambda: registry.refresh_control(force=True),
    )
    ai = Ai()
    svc = AgentService(
        settings,
        tenants=lambda: registry.table,
        ai_factory=ai,
        ua_config=fast_config(),
        environ={"ACME_KEY": "sk-acme-0123456789"},
    )
    await svc.start()
    caller = UserAgent(fast_config())
    refers: list[str] = []

    async def attempt(call: Any, refer: Any) -> tuple[int, str]:
        refers.append(refer.target)
        return 200, "OK"

    Transferer(caller, policy=allow_all, attempt=attempt).install(caller)
    await caller.start()
    transport = httpx.ASGITransport(app=create_app(ctx))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as client:
            yield Rig(client, svc, caller, refers, ai)
    finally:
        await caller.close(timeout=0)
        await svc.close(timeout=0)
        await repo.close()


async def provision(client: httpx.AsyncClient, wav: Path) -> None:
    await _ok(
        client.post(
            "/api/tenants",
            json={
                "id": "acme",
                "hosts": ["acme.example"],
                "codecs": ["PCMU"],
                "api_key": {"env": "ACME_KEY"},
            },
        ),
        201,
    )
    await _ok(
        client.post("/api/tenants/acme/destinations", json={"name": "human", "uri": HUMAN}), 201
    )
    await _ok(
        client.put(
            "/api/tenants/acme",
            json={
                "hosts": ["acme.example"],
                "codecs": ["PCMU"],
                "api_key": {"env": "ACME_KEY"},
                "fallback": {"wav": str(wav), "transfer": "human"},
            },
        )
    )
    support = {
        "name": "support",
        "instructions": "You are acme support.",
        "policy": "handover_when_not_understood",
        "handover_to": "human",
        "handover_after": 2,
    }
    desk = {"name": "desk", "instructions": "You are the desk.", "policy": "internal_fallback"}
    for body in (support, desk):
        await _ok(client.post("/api/tenants/acme/agents", json=body), 201)
    for number, agent in ((SUPPORT_DID, "support"), (DESK_DID, "desk")):
        did = {"number": number, "target_type": "ai_agent", "target_ref": agent}
        await _ok(client.post("/api/tenants/acme/dids", json=did), 201)


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone_pcm(300, 8000, 8000))
    return path


async def test_policies_acted_on(rig: Rig, tmp_path: Path) -> None:
    await provision(rig.client, _wav(tmp_path / "sorry.wav"))
    got = await _ok(rig.client.get("/api/tenants/acme/agents/support"))
    assert (got["policy"], got["handover_to"], got["handover_after"]) == (
        "handover_when_not_understood",
        "human",
        2,
    )

    # handover_when_not_understood: not understood, understood, then twice not understood
    call = await rig.call(SUPPORT_DID)
    await wait_until(lambda: rig.ai.made, timeout=10, what="AI session")
    session = rig.ai.made[-1][1]
    await wait_until(lambda: call.call_id in rig.svc.bridges, timeout=10, what="bridged")
    for item, text in (("u1", ""), ("u2", "I want to know my balance."), ("u3", "")):
        session.emit(CallerTranscript(item, text, True))
    live = rig.svc.bridges[call.call_id].cdr

    def misses() -> list[int]:
        return [e["in_a_row"] for e in live.events if e["kind"] == "not_understood"]

    await wait_until(lambda: len(misses()) == 2, what="two turns not understood")
    assert rig.refers == []  # one not understood since the last understood turn: not yet
    session.emit(CallerTranscript("u4", "", True))
    await wait_until(lambda: rig.refers, timeout=10, what="REFER to the human")
    assert rig.refers == [HUMAN]
    cdr = await rig.cdr(call.call_id)
    counts = [e["in_a_row"] for e in cdr.events if e["kind"] == "not_understood"]
    assert counts == [1, 1, 2]
    assert cdr.transfer is not None and cdr.transfer.destination == "handover"
    assert cdr.transfer.uri == HUMAN and cdr.transfer.outcome == "succeeded"
    assert cdr.disposition is Disposition.TRANSFERRED and cdr.agent == "support"
    assert any(e.get("reason") == "caller not understood" for e in cdr.events)

    # internal_fallback: the AI is down; the WAV, then the agent hangs up (no REFER)
    call = await rig.call(DESK_DID)
    cdr = await rig.cdr(call.call_id)
    assert cdr.agent == "desk" and cdr.disposition is Disposition.FALLBACK
    assert cdr.transfer is None and rig.refers == [HUMAN]
    assert any(e["kind"] == "fallback" for e in cdr.events)
    assert cdr.rtp["packets_sent"] >= 10  # the 300 ms fallback WAV was played

    # the same agent set to always_answer through the API: the tenant's fallback as configured
    desk = await _ok(rig.client.get("/api/tenants/acme/agents/desk"))
    desk = {k: v for k, v in desk.items() if k != "tenant_id"} | {"policy": "always_answer"}
    await _ok(rig.client.put("/api/tenants/acme/agents/desk", json=desk))
    call = await rig.call(DESK_DID)
    cdr = await rig.cdr(call.call_id)
    assert cdr.disposition is Disposition.FALLBACK and rig.refers == [HUMAN, HUMAN]
    assert cdr.transfer is not None and cdr.transfer.destination == "fallback"


async def test_policy_needs_its_target(rig: Rig) -> None:
    """handover_when_not_understood without handover_to nor a fallback transfer: 422 naming
    the field; an unknown handover_to: 422."""
    await _ok(rig.client.post("/api/tenants", json={"id": "acme", "hosts": ["acme.example"]}), 201)
    body = {"name": "support", "policy": "handover_when_not_understood"}
    r = await rig.client.post("/api/tenants/acme/agents", json=body)
    assert r.status_code == 422 and "handover_to" in r.text, r.text
    r = await rig.client.post(
        "/api/tenants/acme/agents", json={**body, "handover_to": "nobody-here"}
    )
    assert r.status_code == 422 and "handover_to" in r.text, r.text
    r = await rig.client.post("/api/tenants/acme/agents", json={**body, "policy": "sometimes"})
    assert r.status_code == 422 and "policy" in r.text, r.text


def test_failed_transcription_is_a_turn_not_understood() -> None:
    """The Realtime API's ``input_audio_transcription.failed`` reaches the bridge as an empty
    final caller transcript (what the handover policy counts)."""
    from w3sipagent.realtime import events as ev
    from w3sipagent.realtime.protocol import RealtimeProtocol

    proto = RealtimeProtocol(AISessionConfig())
    failed = ev.InputAudioTranscriptionFailed(
        event_id="e1", item_id="item_9", error=ev.ErrorInfo(code="bad_audio", message="noise")
    )
    assert CallerTranscript("item_9", "", True) in proto.receive(failed)


def test_policy_in_a_toml_tenant() -> None:
    """The same keys in the TOML file: the handover target resolved (a destination's URI, a
    URI, else the tenant's fallback transfer), a missing one refused naming the key."""
    from pydantic import ValidationError

    from w3sipagent.tenants import TenantConfig

    base: dict[str, Any] = {
        "id": "acme",
        "hosts": ["acme.example"],
        "transfers": {"human": HUMAN},
        "fallback": {"transfer": "sip:op@pbx.acme.example"},
    }
    t = TenantConfig.model_validate(
        {
            **base,
            "agents": {
                "a": {"policy": "handover_when_not_understood", "handover_to": "human"},
                "b": {"policy": "handover_when_not_understood"},
                "c": {"policy": "handover_when_not_understood", "handover_to": "tel:+3906"},
                "d": {"policy": "internal_fallback"},
            },
        }
    )
    assert [t.handover_uri(t.agents[n]) for n in "abcd"] == [
        HUMAN,
        "sip:op@pbx.acme.example",
        "tel:+3906",
        None,
    ]
    with pytest.raises(ValidationError, match=r"agents\.a\.policy: .* needs handover_to"):
        TenantConfig.model_validate(
            {**base, "fallback": {}, "agents": {"a": {"policy": "handover_when_not_understood"}}}
        )
    with pytest.raises(ValidationError, match=r"agents\.a\.policy: .* not available with backend"):
        TenantConfig.model_validate(
            {
                **base,
                "agents": {
                    "a": {
                        "backend": "live",
                        "policy": "handover_when_not_understood",
                        "handover_to": "human",
                    }
                },
            }
        )
    with pytest.raises(ValidationError, match=r"handover_after"):
        TenantConfig.model_validate({**base, "agents": {"a": {"handover_after": 0}}})
