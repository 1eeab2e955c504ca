"""A real SIP call to an agent with ``knowledge = true``: the model's search_knowledge call
is answered from the tenant's own base (synced by the service at start) and lands in the
CDR; an agent of another tenant without knowledge is not offered the tool."""

from __future__ import annotations

import json
from pathlib import Path

from tests.agent.helpers import tone_ulaw, wait_until
from tests.asyncio.helpers import fast_config
from tests.knowledge.conftest import FILES, KEY, tenant, write_files
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISessionConfig
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.config import Settings
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.tenants import TenantConfig, TenantTable


async def test_call_searches_its_tenants_knowledge(tmp_path: Path, server: CascadeServer) -> None:
    acme = tenant("acme", write_files(tmp_path / "acme", FILES["acme"]), server.base_url)
    acme.agents["front"].greeting = "Greet the caller."  # the scripted greeting calls the tool
    globex = tenant("globex", write_files(tmp_path / "globex", FILES["globex"]), server.base_url)
    plain = TenantConfig.model_validate(
        {"id": "plain", "hosts": ["plain.example"], "agents": {"desk": {"greeting": "Hi."}}}
    )
    made: list[tuple[str, AISessionConfig, ScriptedSession]] = []

    def ai(tid: str, key: str, transport: str, cfg: AISessionConfig) -> ScriptedSession:
        greeting = ScriptedReply(
            tone_ulaw(200), "Let me look.", tool=("search_knowledge", '{"query": "park my car"}')
        )
        s = ScriptedSession(cfg, greeting=greeting)
        made.append((tid, cfg, s))
        return s

    settings = Settings(
        records={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},  # type: ignore[arg-type]
        realtime={"api_key": "sk-realtime-test"},  # type: ignore[arg-type]
    )
    svc = AgentService(
        settings,
        tenants=TenantTable({"acme": acme, "globex": globex, "plain": plain}),
        ai_factory=ai,
        ua_config=fast_config(),
        environ={"KB_KEY": KEY},
    )
    caller = UserAgent(fast_config())
    await svc.start()
    await caller.start()
    try:
        bases = svc.knowledge.bases
        assert bases is not None
        await wait_until(
            lambda: sum(1 for r in server.requests if r.path == "/v1/embeddings") >= 2,
            timeout=10,
            what="the start-up sync of both tenants",
        )
        call = await caller.dial(
            "sip:front@acme.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
        )
        await wait_until(lambda: bool(made and made[0][2].tool_results), 15, "tool result")
        tid, cfg, session = made[0]
        assert tid == "acme"
        assert "search_knowledge" in [t.name for t in cfg.tools]
        _, output, respond = session.tool_results[0]
        passages = json.loads(output)["passages"]
        assert respond is True
        assert passages[0]["source"] == "menu/parking.md"
        assert all("Globex" not in p["text"] for p in passages)
        bridge = svc.bridges[call.call_id]
        (record,) = bridge.cdr.tool_calls
        assert record.name == "search_knowledge" and record.error is None
        assert record.result["passages"][0]["source"] == "menu/parking.md"
        await call.hangup()
        await wait_until(lambda: not svc.bridges, what="bridge ended")
        plain_call = await caller.dial(
            "sip:desk@plain.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
        )
        await wait_until(lambda: len(made) == 2, 15, "second session")
        assert "search_knowledge" not in [t.name for t in made[1][1].tools]
        await plain_call.hangup()
    finally:
        await caller.close(timeout=0)
        await svc.close(timeout=0)
    assert svc.knowledge.bases is None
