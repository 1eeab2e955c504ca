"""Provisioned through the HTTP API only, a call to the DID reaches that tenant's agent
(CDR: tenant, store, agent, DID); re-pointing the DID changes the next call, no restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.helpers import tone_ulaw, wait_until
from tests.api.conftest import Api
from tests.api.provision import ok, provision
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISessionConfig
from w3sipagent.asyncio.useragent import CallRejected, UserAgent
from w3sipagent.records.store import CdrStore

ENV = {"ACME_KEY": "sk-acme-0123456789"}


class Recorder:
    def __init__(self) -> None:
        self.made: list[tuple[str, AISessionConfig]] = []

    def __call__(
        self, tenant: str, key: str, transport: str, cfg: AISessionConfig
    ) -> ScriptedSession:
        self.made.append((tenant, cfg))
        return ScriptedSession(cfg, greeting=ScriptedReply(tone_ulaw(600, amp=9000), "Hi."))


async def _one_call(svc: AgentService, caller: UserAgent, number: str) -> str:
    call = await caller.dial(
        f"sip:{number}@127.0.0.1", proxy=("127.0.0.1", svc.port), codecs=["PCMA/8000"]
    )
    await wait_until(lambda: call.call_id in svc.bridges, timeout=10, what="bridged")
    await call.hangup()
    await wait_until(lambda: not svc.bridges, timeout=10, what="bridge ended")
    return call.call_id


async def test_api_provisioned_did_routes_calls(api: Api, tmp_path: Path) -> None:
    await provision(api.client, api.admin)
    await ok(
        api.client.put(
            "/api/tenants/acme",
            json={"hosts": ["acme.example"], "codecs": ["PCMA"], "api_key": {"env": "ACME_KEY"}},
            headers=api.admin,
        )
    )
    await ok(
        api.client.post(
            "/api/tenants/acme/agents",
            json={"name": "sales", "instructions": "You sell."},
            headers=api.admin,
        ),
        201,
    )
    store = CdrStore(api.settings.records.url(), retry_delay=0.01)
    await store.open()
    ai = Recorder()
    svc = AgentService(
        api.settings,
        tenants=lambda: api.registry.table,
        store=store,
        ai_factory=ai,
        ua_config=fast_config(),
        environ=dict(ENV),
    )
    await svc.start()
    caller = UserAgent(fast_config())
    await caller.start()
    try:
        first = await _one_call(svc, caller, "+39061234567")
        await ok(
            api.client.put(
                "/api/tenants/acme/dids/+39061234567",
                json={"number": "+39061234567", "store_id": "rome", "target_ref": "sales"},
                headers=api.admin,
            )
        )
        second = await _one_call(svc, caller, "0039061234567")
        await ok(
            api.client.put(
                "/api/tenants/acme/dids/+39061234567",
                json={"number": "+39061234567", "target_type": "reject"},
                headers=api.admin,
            )
        )
        with pytest.raises(CallRejected) as refused:
            await caller.dial(
                "sip:+39061234567@127.0.0.1", proxy=("127.0.0.1", svc.port), codecs=["PCMA/8000"]
            )
        assert refused.value.response.status == 603
        await store.flush()
        a = await store.get_cdr(first)
        b = await store.get_cdr(second)
        assert a is not None and b is not None
        assert (a.tenant, a.store_id, a.agent, a.did) == ("acme", "rome", "support", "+39061234567")
        assert (b.tenant, b.store_id, b.agent, b.did) == ("acme", "rome", "sales", "+39061234567")
        assert [t for t, _ in ai.made] == ["acme", "acme"]
        assert ai.made[0][1].instructions == "You are acme."
        assert ai.made[1][1].instructions == "You sell."
    finally:
        await caller.close(timeout=0)
        await svc.close(timeout=0)
        await store.close()
