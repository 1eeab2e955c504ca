"""The control-plane API: provisioning, routing, records, errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.api.conftest import Api
from tests.api.provision import ok, provision, tenant_token
from w3sipagent.records.cdr import CallRecord, TranscriptEntry


async def test_openapi_document_lists_the_endpoints(api: Api) -> None:
    doc = await ok(api.client.get("/openapi.json"))
    paths = doc["paths"]
    for p in (
        "/api/tenants",
        "/api/tenants/{tenant_id}/dids/{key}",
        "/api/tenants/{tenant_id}/cdrs/{call_id}",
        "/api/voip/routes/inbound",
        "/api/freeswitch/dialplan",
    ):
        assert p in paths
    assert "AgentIn" in doc["components"]["schemas"]


async def test_provision_then_route(api: Api) -> None:
    await provision(api.client, api.admin)
    route = await ok(
        api.client.get(
            "/api/voip/routes/inbound", params={"did": "+39061234567"}, headers=api.admin
        )
    )
    assert route["route_target_type"] == "ai_agent"
    assert route["route_target_ref"] == "support"
    assert (route["tenant_id"], route["store_id"]) == ("acme", "rome")
    assert route["bridge"] == (
        "{absolute_codec_string='PCMA,PCMU',sip_h_X-Tenant=acme}"
        "sofia/external/support@acme.example;fs_path=sip:10.0.0.5:5090"
        "|sofia/external/support@acme.example;fs_path=sip:10.0.0.6:5090"
    )
    # the same call resolves at admission on the live table: tenant, store, agent, DID
    from w3sipagent.tenants.resolver import CallRequest, Resolution

    res = api.registry.table.resolve(
        CallRequest(
            request_uri_host="acme.example", source_ip="127.0.0.1", request_uri_user="+39061234567"
        )
    )
    assert isinstance(res, Resolution)
    assert (res.tenant.id, res.store_id, res.agent_name, res.did) == (
        "acme",
        "rome",
        "support",
        "+39061234567",
    )
    assert res.agent.voice == "cedar"
    # by gateway, by host, and nothing
    by_gw = await ok(
        api.client.get("/api/voip/routes/inbound", params={"gateway": "acme-gw"}, headers=api.admin)
    )
    assert (by_gw["matched_by"], by_gw["store_id"]) == ("gateway", "rome")
    by_host = await ok(
        api.client.get(
            "/api/voip/routes/inbound", params={"host": "ACME.example"}, headers=api.admin
        )
    )
    assert by_host["tenant_id"] == "acme"
    r = await api.client.get("/api/voip/routes/inbound", params={"did": "+3999"}, headers=api.admin)
    assert r.status_code == 404


async def test_changing_a_did_changes_the_next_route(api: Api) -> None:
    await provision(api.client, api.admin)
    old_table = api.registry.table
    await ok(
        api.client.put(
            "/api/tenants/acme/dids/%2B39061234567",
            json={"number": "+39 06 1234567", "target_type": "destination", "target_ref": "human"},
            headers=api.admin,
        )
    )
    route = await ok(
        api.client.get(
            "/api/voip/routes/inbound", params={"did": "0039061234567"}, headers=api.admin
        )
    )
    assert route["route_target_type"] == "destination"
    assert route["destination_uri"] == "sip:100@pbx.acme.example"
    # a call admitted before the change keeps its snapshot
    assert old_table.did_route("+39061234567").target_type == "ai_agent"  # type: ignore[union-attr]
    await ok(
        api.client.put(
            "/api/tenants/acme/dids/+39061234567",
            json={"number": "+39061234567", "target_type": "reject"},
            headers=api.admin,
        )
    )
    from w3sipagent.tenants.resolver import CallRequest, Rejection

    res = api.registry.table.resolve(
        CallRequest(
            request_uri_host="10.0.0.5", source_ip="127.0.0.1", request_uri_user="+39061234567"
        )
    )
    assert isinstance(res, Rejection) and res.status == 603


def _parse(xml: str) -> ET.Element:
    return ET.fromstring(xml.encode())


async def test_xml_curl_dialplan(api: Api) -> None:
    await provision(api.client, api.admin)
    form = {
        "section": "dialplan",
        "Caller-Context": "public",
        "Caller-Destination-Number": "+39061234567",
        "variable_sip_req_host": "203.0.113.7",
        "Caller-Caller-ID-Number": "+15550001",
    }
    r = await api.client.post("/api/freeswitch/dialplan", data=form, headers=api.admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    doc = _parse(r.text)
    assert doc.get("type") == "freeswitch/xml"
    ctx = doc.find("./section[@name='dialplan']/context[@name='public']")
    assert ctx is not None
    cond = ctx.find("./extension/condition")
    assert cond is not None and cond.get("field") == "destination_number"
    assert cond.get("expression") == r"^\+39061234567$"
    actions = [(a.get("application"), a.get("data")) for a in cond.findall("action")]
    bridge = [d for app, d in actions if app == "bridge"]
    # the same dial string the static generator emits for this tenant and agent
    from w3sipagent.freeswitch.dialplan import dial_string

    tenant = api.registry.table.tenants["acme"]
    first = dial_string(api.settings, tenant, "support", "10.0.0.5:5090")
    assert bridge == [first + "|sofia/external/support@acme.example;fs_path=sip:10.0.0.6:5090"]
    assert ("set", "w3_store=rome") in actions
    # the dialled number reaches the agent in To (its CDR's DID and store)
    assert ("export", "nolocal:sip_invite_to_uri=<sip:+39061234567@acme.example>") in actions

    # destination and rejection
    await ok(
        api.client.put(
            "/api/tenants/acme/dids/+39061234567",
            json={"number": "+39061234567", "target_type": "destination", "target_ref": "human"},
            headers=api.admin,
        )
    )
    r = await api.client.post("/api/freeswitch/dialplan", data=form, headers=api.admin)
    acts = [(a.get("application"), a.get("data")) for a in _parse(r.text).iter("action")]
    assert ("bridge", "sofia/external/100@pbx.acme.example") in acts
    await ok(
        api.client.put(
            "/api/tenants/acme/dids/+39061234567",
            json={"number": "+39061234567", "target_type": "reject"},
            headers=api.admin,
        )
    )
    r = await api.client.post("/api/freeswitch/dialplan", data=form, headers=api.admin)
    acts = [(a.get("application"), a.get("data")) for a in _parse(r.text).iter("action")]
    assert ("hangup", "CALL_REJECTED") in acts

    # unknown number: FreeSWITCH's "not found", its own dialplan continues
    r = await api.client.post(
        "/api/freeswitch/dialplan",
        data={
            **form,
            "Caller-Destination-Number": "+4420000",
            "variable_sip_req_host": "x.invalid",
        },
        headers=api.admin,
    )
    result = _parse(r.text).find("./section[@name='result']/result")
    assert result is not None and result.get("status") == "not found"


async def test_xml_curl_accepts_basic_credentials(api: Api) -> None:
    import base64

    await provision(api.client, api.admin)
    basic = base64.b64encode(f"freeswitch:{'admin-secret-token-1'}".encode()).decode()
    r = await api.client.post(
        "/api/freeswitch/dialplan",
        data={"section": "dialplan", "Caller-Destination-Number": "+39061234567"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200 and "bridge" in r.text
    bad = base64.b64encode(b"freeswitch:wrong").decode()
    r = await api.client.post(
        "/api/freeswitch/dialplan", data={}, headers={"Authorization": f"Basic {bad}"}
    )
    assert r.status_code == 401


async def test_bad_input_is_422_naming_the_field(api: Api) -> None:
    await provision(api.client, api.admin)
    cases = [
        ("/api/tenants", {"id": "Bad Id"}, ["body", "id"]),
        ("/api/tenants/acme/agents", {"name": "x", "voice": "bob"}, ["body", "voice"]),
        ("/api/tenants/acme/dids", {"number": "hello"}, ["body", "number"]),
        (
            "/api/tenants/acme/dids",
            {"number": "+3906555", "target_ref": "ghost"},
            ["body", "target_ref"],
        ),
        ("/api/tenants/acme/agents", {"name": "y", "store_id": "paris"}, ["body", "store_id"]),
        ("/api/tenants/acme/trunks", {"name": "t", "source": "not-a-net"}, ["body", "source"]),
        ("/api/tenants/acme/destinations", {"name": "d", "uri": "http://x"}, ["body", "uri"]),
    ]
    for path, body, loc in cases:
        r = await api.client.post(path, json=body, headers=api.admin)
        assert r.status_code == 422, (path, r.text)
        locs = [d["loc"] for d in r.json()["detail"]]  # a union may add its member's tag
        assert any(got[: len(loc)] == loc for got in locs), (path, r.json())
    r = await api.client.post(
        "/api/tenants",
        content=b"{not json",
        headers={**api.admin, "content-type": "application/json"},
    )
    assert r.status_code == 422
    # an inline key is refused, and not echoed back
    r = await api.client.put(
        "/api/tenants/acme", json={"api_key": "sk-live-verysecretvalue"}, headers=api.admin
    )
    assert r.status_code == 422 and "sk-live" not in r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", "api_key"]


async def test_conflicts_are_409(api: Api) -> None:
    await provision(api.client, api.admin)
    r = await api.client.post("/api/tenants", json={"id": "acme"}, headers=api.admin)
    assert r.status_code == 409
    r = await api.client.delete("/api/tenants/acme/agents/support", headers=api.admin)
    assert r.status_code == 409 and "target of DID" in r.text


async def test_cdrs_usage_calls_activity(api: Api) -> None:
    await provision(api.client, api.admin)
    from datetime import UTC, datetime, timedelta

    from w3sipagent.records.store import CdrStore

    store = CdrStore(api.settings.records.url())
    await store.open()
    now = datetime.now(UTC)
    cdr = CallRecord(
        call_id="c1",
        tenant="acme",
        agent="support",
        did="+39061234567",
        store_id="rome",
        invite_at=now - timedelta(seconds=90),
        answer_at=now - timedelta(seconds=60),
        end_at=now,
        transcript=[TranscriptEntry(speaker="caller", text="ciao", at=1.0)],
    )
    await store.call_ended(cdr)
    await store.flush()
    await store.close()
    found = await ok(
        api.client.get("/api/tenants/acme/cdrs", params={"store_id": "rome"}, headers=api.admin)
    )
    assert [c["call_id"] for c in found] == ["c1"]
    assert found[0]["agent"] == "support" and found[0]["did"] == "+39061234567"
    none = await ok(
        api.client.get("/api/tenants/acme/cdrs", params={"store_id": "milan"}, headers=api.admin)
    )
    assert none == []
    detail = await ok(api.client.get("/api/tenants/acme/cdrs/c1", headers=api.admin))
    assert detail["transcript"][0]["text"] == "ciao" and detail["store_id"] == "rome"
    usage = await ok(api.client.get("/api/tenants/acme/usage", headers=api.admin))
    assert usage["calls"] == 1 and abs(usage["minutes"] - 1.0) < 0.01

    from w3sipagent.agent.callrunner import LiveCall

    api.live.append(LiveCall("c2", "acme", "sip:a@b", "PCMA", 3.0, "talking", None))
    api.live.append(LiveCall("c3", "other", "sip:a@b", "PCMA", 3.0, "talking", None))
    calls = await ok(api.client.get("/api/tenants/acme/calls", headers=api.admin))
    assert [c["call_id"] for c in calls] == ["c2"]
    assert len(await ok(api.client.get("/api/calls", headers=api.admin))) == 2

    token = await tenant_token(api.client, api.admin, "acme")
    await ok(
        api.client.put(
            "/api/tenants/acme/agents/support",
            json={"name": "support", "store_id": "rome", "voice": "marin"},
            headers=api.auth(token),
        )
    )
    log = await ok(api.client.get("/api/tenants/acme/activity", headers=api.admin))
    last = log[0]
    assert last["entity"] == "agent" and last["action"] == "update"
    assert last["actor"].startswith("token w3t_") and "(ci)" in last["actor"]
    assert token not in str(log)
    assert (last["before"]["voice"], last["after"]["voice"]) == ("cedar", "marin")
    assert last["store_id"] == "rome" and last["agent_id"] == "support"


async def test_unauthenticated_is_401(api: Api) -> None:
    for path in ("/api/tenants", "/api/calls", "/api/voip/routes/inbound?did=+1555"):
        r = await api.client.get(path)
        assert r.status_code == 401
        r = await api.client.get(path, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401


async def test_client_secret_minted_with_the_tenants_key(api: Api) -> None:
    import json as jsonlib

    import httpx

    await provision(api.client, api.admin)
    await ok(
        api.client.put(
            "/api/tenants/acme",
            json={"hosts": ["acme.example"], "api_key": {"env": "ACME_KEY"}},
            headers=api.admin,
        )
    )
    seen: list[httpx.Request] = []

    def openai(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"value": "ek_test_123", "expires_at": 1900000000})

    api.ctx.http = httpx.AsyncClient(transport=httpx.MockTransport(openai))
    api.ctx.environ = {"ACME_KEY": "sk-acme-secret-key-42"}
    token = await tenant_token(api.client, api.admin, "acme")
    got = await ok(
        api.client.post("/api/openai/token", json={"ttl_seconds": 60}, headers=api.auth(token))
    )
    assert got == {
        "value": "ek_test_123",
        "expires_at": 1900000000,
        "tenant_id": "acme",
        "agent": "support",
        "model": "gpt-realtime",
    }
    sent = seen[0]
    assert str(sent.url) == "https://api.openai.com/v1/realtime/client_secrets"
    assert sent.headers["authorization"] == "Bearer sk-acme-secret-key-42"
    body = jsonlib.loads(sent.content)
    assert body["expires_after"] == {"anchor": "created_at", "seconds": 60}
    assert body["session"]["audio"]["output"]["voice"] == "cedar"
    assert body["session"]["instructions"] == "You are acme."
    # the admin names the tenant; a bad agent is a 422 naming the field
    r = await api.client.post("/api/openai/token", json={}, headers=api.admin)
    assert r.status_code == 422
    r = await api.client.post(
        "/api/tenants/acme/openai/token", json={"agent": "ghost"}, headers=api.admin
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "agent"]
    # the key is unreadable: refused without saying more
    api.ctx.environ = {}
    r = await api.client.post("/api/openai/token", json={}, headers=api.auth(token))
    assert r.status_code == 409 and "ACME_KEY" not in r.text
    await api.ctx.http.aclose()
