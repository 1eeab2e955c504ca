"""Routing by the control plane through the real FreeSWITCH and ``mod_xml_curl``.

A tenant, a store, two agents and the numbers are provisioned through the HTTP API only
(over real HTTP, ``serve``'s control plane with the database as the tenant source);
FreeSWITCH loads ``mod_xml_curl`` with the binding ``w3sipagent freeswitch xml-curl``
prints, pointed at that API. A call to a number that exists only in the database reaches
the tenant's agent (audio both ways; CDR row: tenant, store, agent, DID); re-pointing the
number through the API changes the next call's agent without restarting anything; a number
set to ``reject`` is hung up with CALL_REJECTED; a number the agent does not know gets the
"not found" answer and FreeSWITCH's own dialplan goes on (9196, the echo of the loopback
config; a number in neither is never answered). With the first agent draining, FreeSWITCH's
failover through the bridge string's ``|`` reaches the second agent address. A SIP call
entering FreeSWITCH from a trunk (``X-W3-Gateway``) to a number that is no DID goes to the
tenant's default agent with the trunk's store.
"""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from tests.agent.helpers import wait_until
from tests.asyncio.helpers import fast_config
from tests.cli.conftest import invoke
from tests.freeswitch.conftest import FreeSwitch
from tests.freeswitch.helpers import (
    AGENT_HZ,
    ENV,
    FS_HZ,
    Ai,
    ai_pcm,
    dominant_hz,
    originate_to,
    read_stereo,
    rms,
    wait_file,
)
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.agent.service import AgentService
from w3sipagent.asyncio.register import RegisterConfig
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.config import Settings, load_settings
from w3sipagent.freeswitch.esl import EslClient
from w3sipagent.records.store import CdrStore

if importlib.util.find_spec("fastapi") is None:
    pytest.skip("the API's dependencies are not installed", allow_module_level=True)

from w3sipagent.cli.controlplane import ControlPlane

ADMIN = "fs-xml-curl-admin-token-7"
DID = "+39061234567"
REJECTED = "+39061234568"


@dataclass
class Rig:
    svc: AgentService
    spare: AgentService
    plane: ControlPlane
    store: CdrStore
    ai: Ai
    client: httpx.AsyncClient


def _settings(tmp_path: Path) -> Settings:
    return load_settings(
        None,
        {
            "records.database_url": f"sqlite+aiosqlite:///{tmp_path / 'control.db'}",
            "records.recordings_dir": str(tmp_path / "rec"),
            "control.source": "database",
            "api.listen": "127.0.0.1:0",
            # FreeSWITCH's trunk header (X-W3-Gateway) is honoured from it
            "tenancy.trusted_sources": "127.0.0.1/32",
        },
        environ={},
        discover=False,
    )


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The agent service fed by the database, and ``serve``'s API on a free port."""
    settings = _settings(tmp_path)
    settings.api.admin_token = SecretStr(ADMIN)
    registry = TenantRegistry(settings, lambda: settings)
    store = CdrStore(settings.records.url(), retry_delay=0.01)
    await store.open()
    ai = Ai()

    def agent(cdrs: CdrStore | None) -> AgentService:
        return AgentService(
            settings,
            tenants=lambda: registry.table,
            store=cdrs,
            ai_factory=ai,
            ua_config=fast_config(dial_timeout=10.0, t1=0.5, t2=4.0, t4=5.0, timer_d=1.0),
            environ=dict(ENV),
            register_config=RegisterConfig(
                request_timeout=3, backoff_initial=0.2, backoff_jitter=0
            ),
            bridge_defaults=BridgeOptions(housekeeping_interval=0.02),
        )

    svc, spare = agent(store), agent(None)  # a second agent machine, for the failover
    await svc.start()
    await spare.start()
    settings.api.agent_addresses = [f"127.0.0.1:{svc.port}", f"127.0.0.1:{spare.port}"]
    plane = await ControlPlane.start(settings, registry, svc)
    assert plane.api is not None
    try:
        async with httpx.AsyncClient(
            base_url=plane.api.url, headers={"Authorization": f"Bearer {ADMIN}"}
        ) as client:
            yield Rig(svc, spare, plane, store, ai, client)
    finally:
        await svc.close(timeout=0)
        await spare.close(timeout=0)
        await plane.close()
        await store.close()


async def _ok(resp: object, status: int = 200) -> object:
    r = await resp  # type: ignore[misc]
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def provision(client: httpx.AsyncClient) -> None:
    """Tenant, store, agents and numbers, through the HTTP API only."""
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
    await _ok(client.post("/api/tenants/acme/stores", json={"id": "rome", "name": "Rome"}), 201)
    for name in ("support", "sales"):
        body = {
            "name": name,
            "store_id": "rome",
            "instructions": f"Acme {name}.",
            "greeting": "Greet the caller.",
        }
        await _ok(client.post("/api/tenants/acme/agents", json=body), 201)
    for number, kind, ref in ((DID, "ai_agent", "support"), (REJECTED, "reject", None)):
        did: dict[str, str | None] = {
            "number": number,
            "store_id": "rome",
            "target_type": kind,
            "target_ref": ref,
        }
        await _ok(client.post("/api/tenants/acme/dids", json=did), 201)


async def originate_result(esl: EslClient, dest: str) -> tuple[str, str]:
    """FreeSWITCH calls ``dest`` in ``public`` and parks; (originate's answer, A-leg UUID)."""
    uid = str(uuid.uuid4())
    out = await esl.bgapi(
        f"originate {{origination_uuid={uid},originate_timeout=10}}loopback/{dest}/public &park()",
        timeout=20,
    )
    return out.strip(), uid


def agent_tone_seconds(heard: np.ndarray, played: np.ndarray, rate: int) -> float:
    """How long (s, in 250 ms windows) FreeSWITCH's recording holds the agent's 600 Hz tone,
    loud. Either channel: FreeSWITCH itself plays only 1 kHz, so 600 Hz anywhere came from
    the agent, and its stereo recording swaps the channels when a frame of one side is
    missing (seen on the loaded machine)."""
    step = rate // 4
    hits = 0
    for i in range(0, min(heard.size, played.size) - step + 1, step):
        for w in (heard[i : i + step], played[i : i + step]):
            if abs(dominant_hz(w, rate) - AGENT_HZ) < 20 and rms(w) > 1000:
                hits += 1
                break
    return hits / 4


async def routed_call(rig: Rig, esl: EslClient, tmp_path: Path, agent: str) -> list[str]:
    """A call to DID through mod_xml_curl: audio both ways, the CDR row. Log lines."""
    before = len(rig.svc.finished)
    record = tmp_path / f"xml-curl-{agent}.wav"
    await originate_to(esl, DID, "public", record, seconds=3)
    await wait_until(lambda: len(rig.svc.finished) > before, timeout=15, what="cdr")
    cdr = rig.svc.finished[-1]
    await wait_file(record)
    heard, played, rate = read_stereo(record)
    tenant_seen, session = rig.ai.made[-1]
    fmt = session.config.input_format
    to_ai = ai_pcm(fmt, bytes(session.audio))
    await rig.store.flush()
    row = await rig.store.get_cdr(cdr.call_id)
    assert row is not None
    line = (
        f"xml_curl {DID} -> {agent}: FreeSWITCH heard 600 Hz for "
        f"{agent_tone_seconds(heard, played, rate):.2f} s; "
        f"AI got {dominant_hz(to_ai, fmt.sample_rate):.0f} Hz; CDR row tenant={row.tenant} "
        f"store={row.store_id} agent={row.agent} did={row.did} codec={row.codec} "
        f"{row.disposition.value} {row.duration_s:.1f} s"
    )
    assert tenant_seen == "acme", line
    assert (row.tenant, row.store_id, row.agent, row.did) == ("acme", "rome", agent, DID), line
    assert (row.codec or "").upper() == "PCMU", line
    assert session.config.instructions == f"Acme {agent}.", line
    # the agent's 600 Hz greeting reached FreeSWITCH for most of the call
    assert agent_tone_seconds(heard, played, rate) >= 1.5, line
    assert abs(dominant_hz(to_ai, fmt.sample_rate) - FS_HZ) < 20 and rms(to_ai) > 1000, line
    return [line]


async def test_xml_curl_routes_by_the_database(
    freeswitch: FreeSwitch,
    esl: EslClient,
    runner,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    interop_log: list[str],
) -> None:
    async with rig(tmp_path) as r:
        await provision(r.client)
        assert r.plane.api is not None
        conf = invoke(runner, "freeswitch", "xml-curl", "--url", r.plane.api.url, "--token", ADMIN)
        assert conf.exit_code == 0, conf.output
        freeswitch.put("autoload_configs/xml_curl.conf.xml", conf.stdout)
        assert freeswitch.reloadxml() == []
        mark = freeswitch.mark()
        loaded = await esl.api("load mod_xml_curl")
        try:
            assert "+OK" in loaded, loaded
            assert freeswitch.new_problems(mark, "load mod_xml_curl") == []

            # 1. a number known only to the database reaches the tenant's agent
            interop_log += await routed_call(r, esl, tmp_path, "support")

            # 2. re-pointed through the API: the next call goes to the other agent
            await _ok(
                r.client.put(
                    f"/api/tenants/acme/dids/{DID}",
                    json={"number": DID, "store_id": "rome", "target_ref": "sales"},
                )
            )
            interop_log += await routed_call(r, esl, tmp_path, "sales")
            made = len(r.ai.made)

            # 3. a number set to reject: FreeSWITCH hangs up with CALL_REJECTED (603)
            out, _ = await originate_result(esl, REJECTED)
            assert out.startswith("-ERR") and "CALL_REJECTED" in out, out
            interop_log.append(f"xml_curl {REJECTED} (reject): originate {out}")

            # 4. unknown to the agent: "not found", and FreeSWITCH's own dialplan goes on
            q = esl.subscribe()
            out, uid = await originate_result(esl, "9196")
            assert out.startswith("+OK"), out
            apps: list[str] = []
            while "echo" not in apps:
                ev = await asyncio.wait_for(q.get(), 10)
                assert ev is not None
                if ev.name == "CHANNEL_EXECUTE":
                    apps.append(str(ev.get("Application")))
            esl.unsubscribe(q)
            await esl.api(f"uuid_kill {uid}")
            interop_log.append(f"xml_curl 9196 (unknown to the agent): FreeSWITCH ran {apps}")
            out, _ = await originate_result(esl, "+15550009999")
            # the loopback config's public context has no extension for it: never answered
            assert out.startswith("-ERR"), out
            interop_log.append(f"xml_curl +15550009999 (unknown anywhere): originate {out}")
            assert len(r.ai.made) == made  # no AI session for any of these

            # 5. a call entering FreeSWITCH from a trunk (the gateway named in X-W3-Gateway,
            # as a gateway's <variables> set it), to a number that is no DID: the agent finds
            # the trunk, the call goes to the tenant's default agent with the trunk's store
            await _ok(
                r.client.post(
                    "/api/tenants/acme/trunks",
                    json={"name": "main", "gateway": "acme-gw", "store_id": "rome"},
                ),
                201,
            )
            route = await _ok(
                r.client.get("/api/voip/routes/inbound", params={"gateway": "acme-gw"})
            )
            assert isinstance(route, dict) and route["matched_by"] == "gateway"
            trunk_caller = UserAgent(fast_config(dial_timeout=10.0, t1=0.5, t2=4.0, t4=5.0))
            await trunk_caller.start()
            try:
                before = len(r.svc.finished)
                call = await trunk_caller.dial(
                    "sip:0612345678@127.0.0.1:5080",
                    proxy=("127.0.0.1", 5080),
                    codecs=["PCMU/8000"],
                    headers=[("X-W3-Gateway", "acme-gw")],
                )
                await wait_until(lambda: r.svc.bridges, timeout=10, what="bridged to the agent")
                await call.hangup()
                await wait_until(lambda: len(r.svc.finished) > before, timeout=15, what="cdr")
            finally:
                await trunk_caller.close(timeout=0)
            cdr = r.svc.finished[-1]
            assert (cdr.tenant, cdr.store_id, cdr.agent) == (
                "acme", "rome", route["route_target_ref"],
            ), cdr  # fmt: skip
            interop_log.append(
                f"xml_curl gateway acme-gw, number 0612345678: agent={cdr.agent} "
                f"store={cdr.store_id} (the trunk's)"
            )

            # 6. the first agent drains (503 to new calls): FreeSWITCH's failover through
            # the bridge string's "|" takes the next agent address
            r.svc.drain()
            record = tmp_path / "xml-curl-failover.wav"
            await originate_to(esl, DID, "public", record, seconds=2)
            await wait_until(lambda: r.spare.finished, timeout=15, what="the spare's CDR")
            cdr = r.spare.finished[-1]
            await wait_file(record)
            heard, played, rate = read_stereo(record)
            assert (cdr.tenant, cdr.agent, cdr.did, cdr.store_id) == ("acme", "sales", DID, "rome")
            assert agent_tone_seconds(heard, played, rate) >= 1.0
            assert not any(c.call_id == cdr.call_id for c in r.svc.finished)
            interop_log.append(
                f"xml_curl {DID} with the first agent draining: answered by the second "
                f"(agent={cdr.agent}), FreeSWITCH heard it for "
                f"{agent_tone_seconds(heard, played, rate):.2f} s"
            )
        finally:
            await esl.api("unload mod_xml_curl")
