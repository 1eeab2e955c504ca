"""The tenant table's routing extras (DID routes, trunks) and the answers for FreeSWITCH."""

from __future__ import annotations

import dataclasses
import ipaddress
import xml.etree.ElementTree as ET

from w3sipagent.config import Settings
from w3sipagent.control.routing import bridge_string, dialplan_xml, route_inbound
from w3sipagent.freeswitch.dialplan import dial_string
from w3sipagent.tenants import AgentConfig, TenancySettings, TenantConfig, TenantTable
from w3sipagent.tenants.resolver import CallRequest, Rejection, Resolution
from w3sipagent.tenants.routing import DidRoute, TrunkRoute

FS = "10.0.0.2"


def table(**tenancy: object) -> TenantTable:
    acme = TenantConfig(
        id="acme",
        hosts=["*.acme.example"],
        agents={"desk": AgentConfig(), "sales": AgentConfig()},
        transfers={"human": "sip:100@pbx.acme.example", "mobile": "tel:+393331234567"},
        dids={"+15550001": "desk"},
    )
    globex = TenantConfig(id="globex", agents={"main": AgentConfig()}, codecs=["PCMA"])
    routes = {
        "+390600": DidRoute("+390600", "globex", "ai_agent", None, "rome"),
        "+390601": DidRoute("+390601", "acme", "destination", "human", None),
        "+390602": DidRoute("+390602", "acme", "reject"),
        "+15550001": DidRoute("+15550001", "globex", "ai_agent", None),  # a file DID: not taken
    }
    trunks = [
        TrunkRoute("globex", "gw1", gateway="globex-gw", store_id="milan"),
        TrunkRoute("acme", "net", source=ipaddress.ip_network("192.0.2.0/24")),
    ]
    settings = TenancySettings.model_validate(
        {"trusted_sources": [FS], "trusted_header": "X-Tenant", **tenancy}
    )
    return TenantTable(
        {"acme": acme, "globex": globex}, settings, None, routes=routes, trunks=trunks
    )


def req(user: str = "x", host: str = "10.0.0.5", source: str = FS, **headers: str) -> CallRequest:
    return CallRequest(
        request_uri_host=host,
        source_ip=source,
        request_uri_user=user,
        header=lambda name: headers.get(name.replace("-", "_")),
    )


def test_did_routes_and_file_dids_win() -> None:
    t = table()
    res = t.resolve(req("+390600"))
    assert isinstance(res, Resolution)
    assert (res.tenant.id, res.agent_name, res.store_id) == ("globex", "main", "rome")
    dest = t.resolve(req("+390601"))
    assert isinstance(dest, Rejection) and dest.status == 404 and "human" in dest.detail
    rej = t.resolve(req("+390602"))
    assert isinstance(rej, Rejection) and rej.status == 603 and rej.tenant_id == "acme"
    owned = t.resolve(req("+15550001"))
    assert isinstance(owned, Resolution) and owned.tenant.id == "acme"  # not globex


def test_trunk_by_gateway_only_from_trusted_sources() -> None:
    t = table()
    res = t.resolve(req("unknown", X_W3_Gateway="globex-gw"))
    assert isinstance(res, Resolution)
    assert (res.tenant.id, res.store_id, res.matched_by) == ("globex", "milan", "trunk")
    spoofed = t.resolve(req("unknown", source="198.51.100.9", X_W3_Gateway="globex-gw"))
    assert isinstance(spoofed, Rejection) and spoofed.status == 404
    by_net = t.resolve(req("unknown", source="192.0.2.77"))
    assert isinstance(by_net, Resolution) and by_net.tenant.id == "acme"
    # the DID step comes first in the default order
    first = t.resolve(req("+390600", source="192.0.2.77"))
    assert isinstance(first, Resolution) and first.tenant.id == "globex"


def test_route_inbound_answers() -> None:
    t = table()
    a = route_inbound(t, did="0039 0600")
    assert a is not None and (a.tenant_id, a.route_target_ref, a.store_id) == (
        "globex",
        "main",
        "rome",
    )
    d = route_inbound(t, did="+390601")
    assert d is not None and d.destination_uri == "sip:100@pbx.acme.example"
    g = route_inbound(t, gateway="GLOBEX-GW")
    assert g is not None and (g.matched_by, g.gateway) == ("gateway", "globex-gw")
    h = route_inbound(t, host="shop.acme.example")
    assert h is not None and h.tenant_id == "acme" and h.route_target_ref == "desk"
    assert route_inbound(t, did="+4400", host="nowhere.example", gateway="nope") is None


def _actions(xml: str) -> list[tuple[str | None, str | None]]:
    return [(a.get("application"), a.get("data")) for a in ET.fromstring(xml).iter("action")]


def test_dialplan_documents() -> None:
    settings = Settings()
    t = table()
    one = route_inbound(t, did="+390600")
    assert one is not None
    # one address: exactly the static generator's dial string
    assert bridge_string(settings, t, one, ["10.0.0.5:5090"]) == dial_string(
        settings, t.tenants["globex"], "main", "10.0.0.5:5090"
    )
    gw = route_inbound(t, gateway="globex-gw")
    assert gw is not None
    xml = dialplan_xml(
        settings, t, gw, destination_number="0612", context="public", addresses=["a:1", "b:2"]
    )
    acts = _actions(xml)
    assert ("set", "sip_h_X-W3-Gateway=globex-gw") in acts
    # a DID goes in the agent leg's To (the agent's CDR and store); globex has no host
    by_did = dialplan_xml(
        settings, t, one, destination_number="+390600", context="public", addresses=["a:1"]
    )
    assert not any(app == "export" for app, _ in _actions(by_did))
    bridge = next(d for app, d in acts if app == "bridge")
    assert bridge is not None and bridge.count("sofia/external/") == 2 and "|" in bridge
    tel = route_inbound(t, did="+390601")
    assert tel is not None
    sip_dest = _actions(
        dialplan_xml(settings, t, tel, destination_number="x", context="c", addresses=[])
    )
    assert ("bridge", "sofia/external/100@pbx.acme.example") in sip_dest
    mobile = dataclasses.replace(
        tel, route_target_ref="mobile", destination_uri="tel:+393331234567"
    )
    acts = _actions(
        dialplan_xml(settings, t, mobile, destination_number="x", context="c", addresses=[])
    )
    assert ("transfer", "+393331234567 XML default") in acts
    rej = route_inbound(t, did="+390602")
    assert rej is not None
    xml = dialplan_xml(settings, t, rej, destination_number="+390602", context="c", addresses=[])
    assert ("hangup", "CALL_REJECTED") in _actions(xml)
    assert not any(app == "bridge" for app, _ in _actions(xml))
    # acme has only a wildcard host: no host to put in the Request-URI, the agent finds the
    # tenant by the dialled number (never "desk@*.acme.example")
    to_desk = dataclasses.replace(rej, route_target_type="ai_agent", route_target_ref="desk")
    acts = _actions(
        dialplan_xml(
            settings, t, to_desk, destination_number="+390602", context="c", addresses=["a:1"]
        )
    )
    bridge = next(d for app, d in acts if app == "bridge")
    assert bridge is not None and bridge.endswith("sofia/external/${destination_number}@a:1")
    assert "*" not in bridge and not any(app == "export" for app, _ in acts)


def test_host_found_tenant_takes_its_trunks_store() -> None:
    """A call the Request-URI host assigns (FreeSWITCH's bridge names the tenant's host)
    still gets the store of the trunk it came in on, when that trunk is the same tenant's;
    another tenant's trunk gives nothing away."""
    acme = TenantConfig(id="acme", hosts=["acme.example"], agents={"desk": AgentConfig()})
    globex = TenantConfig(id="globex", hosts=["globex.example"], agents={"main": AgentConfig()})
    trunks = [
        TrunkRoute("acme", "gw", gateway="acme-gw", store_id="rome"),
        TrunkRoute("globex", "gw", gateway="globex-gw", store_id="milan"),
    ]
    settings = TenancySettings.model_validate({"trusted_sources": [FS]})
    t = TenantTable({"acme": acme, "globex": globex}, settings, None, trunks=trunks)
    own = t.resolve(req("desk", host="acme.example", X_W3_Gateway="acme-gw"))
    assert isinstance(own, Resolution)
    assert (own.tenant.id, own.matched_by, own.store_id) == ("acme", "request_uri_host", "rome")
    other = t.resolve(req("desk", host="acme.example", X_W3_Gateway="globex-gw"))
    assert isinstance(other, Resolution) and (other.tenant.id, other.store_id) == ("acme", None)
    untrusted = t.resolve(
        req("desk", host="acme.example", source="198.51.100.9", X_W3_Gateway="acme-gw")
    )
    assert isinstance(untrusted, Resolution) and untrusted.store_id is None
