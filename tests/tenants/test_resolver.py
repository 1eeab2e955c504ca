"""Tenant resolution: table tests, rejections, isolation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from w3sipagent.tenants.models import TenancySettings, TenantConfig, parse_network
from w3sipagent.tenants.resolver import (
    CallRequest,
    Rejection,
    Resolution,
    TenantTable,
    registration_id,
)

ACME = {
    "id": "acme",
    "hosts": ["acme.example", "voice.acme.example", "*.acme.test"],
    "dids": {"+15551230000": None, "+15551230001": "sales"},
    "agents": {
        "support": {
            "instructions": "ACME SUPPORT PROMPT",
            "tools": [{"name": "acme_crm", "url": "https://crm.acme.example/t"}],
        },
        "sales": {"instructions": "ACME SALES PROMPT"},
    },
    "api_key": {"env": "ACME_KEY"},
    "cdr_webhook": "https://hooks.acme.example/cdr",
    "registrations": {
        "trunk": {"registrar": "sip:pbx.acme.example", "user": "agent", "agent": "sales"}
    },
}
GLOBEX = {
    "id": "globex",
    "hosts": ["globex.example"],
    "dids": ["+442071234567"],
    "agents": {
        "main": {"instructions": "GLOBEX PROMPT"},
        "support": {"instructions": "GLOBEX SUPPORT"},
    },
    "api_key": {"env": "GLOBEX_KEY"},
    "allowed_sources": ["10.1.0.0/16"],
    "cdr_webhook": "https://hooks.globex.example/cdr",
}


def table(order: list[str] | None = None, **tenancy: object) -> TenantTable:
    tenants = {str(t["id"]): TenantConfig.model_validate(t) for t in (ACME, GLOBEX)}
    ts = TenancySettings.model_validate(
        {**({"resolution_order": order} if order else {}), **tenancy}
    )
    return TenantTable(tenants, ts, [parse_network("127.0.0.0/8"), parse_network("10.0.0.0/8")])


def headers(**h: str) -> Callable[[str], str | None]:
    low = {k.lower().replace("_", "-"): v for k, v in h.items()}
    return lambda name: low.get(name.lower())


CASES = [
    # (request, expected tenant, agent, matched_by) or (request, status)
    (CallRequest("acme.example", "127.0.0.1", "support"), ("acme", "support", "request_uri_host")),
    (CallRequest("ACME.Example.", "127.0.0.1", "sales"), ("acme", "sales", "request_uri_host")),
    (
        CallRequest("acme.example:5090", "127.0.0.1", "nobody"),
        ("acme", "support", "request_uri_host"),
    ),
    (CallRequest("voice.acme.example", "127.0.0.1"), ("acme", "support", "request_uri_host")),
    (CallRequest("pbx1.acme.test", "127.0.0.1"), ("acme", "support", "request_uri_host")),
    (CallRequest("acme.test", "127.0.0.1"), 404),  # wildcard needs a sub-domain
    (
        CallRequest("10.0.0.5", "10.1.0.7", "x", to_host="globex.example"),
        ("globex", "main", "to_host"),
    ),
    (CallRequest("10.0.0.5", "127.0.0.1", "+1 (555) 123-0001"), ("acme", "sales", "did")),
    (CallRequest("10.0.0.5", "127.0.0.1", "0015551230000"), ("acme", "support", "did")),
    (CallRequest("10.0.0.5", "127.0.0.1", "15551230000"), ("acme", "support", "did")),
    (CallRequest("10.0.0.5", "127.0.0.1", "%2B15551230000;npdi"), ("acme", "support", "did")),
    (
        CallRequest("10.0.0.5", "127.0.0.1", "agent", to_user="+15551230001"),
        ("acme", "sales", "did"),
    ),
    (
        CallRequest("10.0.0.5", "127.0.0.1", "agent", registration="acme/trunk"),
        ("acme", "sales", "registration"),
    ),
    (CallRequest("10.0.0.5", "127.0.0.1", "agent", registration="globex/trunk"), 404),
    (CallRequest("unknown.example", "127.0.0.1", "support"), 404),
    (CallRequest("acme.example", "192.0.2.66", "support"), 403),  # outside sip.allowed_sources
    (CallRequest("globex.example", "127.0.0.1"), 403),  # outside the tenant's allowed_sources
    (
        CallRequest("globex.example", "10.1.2.3", "support"),
        ("globex", "support", "request_uri_host"),
    ),
    (CallRequest("globex.example", "::ffff:10.1.2.3"), ("globex", "main", "request_uri_host")),
]


@pytest.mark.parametrize(("req", "expected"), CASES)
def test_resolution_table(req: CallRequest, expected: object) -> None:
    got = table().resolve(req)
    if isinstance(expected, int):
        assert isinstance(got, Rejection), got
        assert got.status == expected
        assert got.reason == {403: "Forbidden", 404: "Not Found"}[expected]
    else:
        assert isinstance(got, Resolution), got
        assert (got.tenant.id, got.agent_name, got.matched_by) == expected
        assert got.agent is got.tenant.agents[got.agent_name]


def test_did_is_reported_in_e164() -> None:
    got = table().resolve(CallRequest("acme.example", "127.0.0.1", "+1-555-123-0000"))
    assert isinstance(got, Resolution) and got.did == "+15551230000"


def test_national_numbers_with_country_code() -> None:
    t = table(country_code="44")
    got = t.resolve(CallRequest("10.0.0.5", "10.1.0.9", "020 7123 4567"))
    assert isinstance(got, Resolution) and got.tenant.id == "globex" and got.did == "+442071234567"
    assert isinstance(
        table().resolve(CallRequest("10.0.0.5", "10.1.0.9", "020 7123 4567")), Rejection
    )


def test_trusted_header_only_from_trusted_sources() -> None:
    t = table(["trusted_header"], trusted_header="X-Tenant", trusted_sources=["127.0.0.2/32"])
    req = CallRequest("10.0.0.5", "127.0.0.2", header=headers(X_Tenant="acme"))
    got = t.resolve(req)
    assert (
        isinstance(got, Resolution)
        and got.tenant.id == "acme"
        and got.matched_by == "trusted_header"
    )
    untrusted = CallRequest("10.0.0.5", "127.0.0.3", header=headers(X_Tenant="acme"))
    assert isinstance(t.resolve(untrusted), Rejection)
    bogus = CallRequest("10.0.0.5", "127.0.0.2", header=headers(X_Tenant="initech"))
    assert isinstance(t.resolve(bogus), Rejection)
    # header ignored entirely when no trusted header is configured
    assert isinstance(table(["trusted_header"]).resolve(req), Rejection)


def test_order_is_configurable() -> None:
    # Request-URI host says acme, the DID belongs to globex
    req = CallRequest("acme.example", "10.1.0.1", "+442071234567")
    a = table().resolve(req)
    assert isinstance(a, Resolution) and a.tenant.id == "acme"
    g = table(["did", "request_uri_host"]).resolve(req)
    assert isinstance(g, Resolution) and g.tenant.id == "globex" and g.matched_by == "did"
    # with only DID resolution, the host does not matter
    assert isinstance(
        table(["did"]).resolve(CallRequest("acme.example", "127.0.0.1", "support")), Rejection
    )


def test_rejection_detail_names_the_cause() -> None:
    r = table().resolve(CallRequest("nope.example", "127.0.0.1", "bob"))
    assert (
        isinstance(r, Rejection)
        and r.detail == "no tenant for bob@nope.example"
        and r.tenant_id is None
    )
    r = table().resolve(CallRequest("globex.example", "127.0.0.1"))
    assert isinstance(r, Rejection) and r.tenant_id == "globex" and "127.0.0.1" in r.detail


def test_isolation_never_mixes_tenants() -> None:
    """Every request resolving to a tenant yields only that tenant's agents, key, tools, hooks."""
    t = table()
    seen = 0
    for req, _ in CASES:
        for variant in (
            req,
            CallRequest(
                req.request_uri_host,
                "10.1.0.1",
                "support",
                to_host="globex.example",
                to_user="+442071234567",
                registration="acme/trunk",
            ),
        ):
            got = t.resolve(variant)
            if not isinstance(got, Resolution):
                continue
            seen += 1
            mine = t.tenants[got.tenant.id]
            other = next(x for tid, x in t.tenants.items() if tid != got.tenant.id)
            assert got.agent in mine.agents.values()
            assert all(got.agent is not a for a in other.agents.values())
            assert got.tenant.api_key == mine.api_key and got.tenant.api_key != other.api_key
            assert got.tenant.cdr_webhook == mine.cdr_webhook != other.cdr_webhook
            prompt = got.agent.instructions
            assert prompt.startswith(got.tenant.id.upper())
            for a in other.agents.values():
                assert a.instructions != prompt
            tools = {tl.url for tl in got.agent.tools}
            assert not tools & {tl.url for a in other.agents.values() for tl in a.tools}
    assert seen >= 15


def test_agent_named_by_user_only_within_tenant() -> None:
    # "main" exists only at globex: an acme call asking for it gets acme's default agent
    got = table().resolve(CallRequest("acme.example", "127.0.0.1", "main"))
    assert isinstance(got, Resolution) and got.tenant.id == "acme" and got.agent_name == "support"


def test_registrations_listing() -> None:
    regs = list(table().registrations())
    assert [(rid, t.id, r.user) for rid, t, r in regs] == [
        (registration_id("acme", "trunk"), "acme", "agent")
    ]


def test_no_deployment_source_check_when_none() -> None:
    tenants = {"acme": TenantConfig.model_validate(ACME)}
    got = TenantTable(tenants).resolve(CallRequest("acme.example", "198.51.100.1"))
    assert isinstance(got, Resolution)
