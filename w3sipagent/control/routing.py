"""Where an inbound call goes, for FreeSWITCH: the JSON route lookup and the mod_xml_curl
dialplan document, both answered from the live tenant table (file and database tenants).

The lookup tries the DID, then the trunk (gateway name), then the SIP host. An agent target
gets the bridge string FreeSWITCH dials, built by the same code as the static dialplan
(:func:`w3sipagent.freeswitch.dialplan.dial_string`); several agent addresses are listed with
``|``, FreeSWITCH's sequential failover (the next one is tried when one fails or drains with
503). A destination target is bridged (``sip:``) or transferred (``tel:``); a rejection
hangs up with ``CALL_REJECTED`` (603). An unknown call gets the ``not found`` result, so
FreeSWITCH's own dialplan carries on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from w3sipagent.config import Settings
from w3sipagent.freeswitch.dialplan import CALLER_UUID_SET, bridge_host, dial_string
from w3sipagent.tenants.resolver import TenantTable
from w3sipagent.tenants.routing import TargetType

__all__ = [
    "NOT_FOUND_XML",
    "RouteAnswer",
    "bridge_string",
    "dialplan_xml",
    "route_inbound",
]

NOT_FOUND_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    '<document type="freeswitch/xml">\n'
    '  <section name="result">\n'
    '    <result status="not found"/>\n'
    "  </section>\n"
    "</document>\n"
)


@dataclass(frozen=True, slots=True)
class RouteAnswer:
    """Where one call goes."""

    route_target_type: TargetType
    route_target_ref: str | None
    """The agent's name, the destination's name, or None (reject)."""
    tenant_id: str
    store_id: str | None
    matched_by: str
    """``did``, ``gateway`` or ``host``."""
    did: str | None = None
    destination_uri: str | None = None
    gateway: str | None = None
    """The trunk's gateway name, when a trunk found the tenant."""


def route_inbound(
    table: TenantTable,
    *,
    did: str | None = None,
    host: str | None = None,
    gateway: str | None = None,
) -> RouteAnswer | None:
    """The route of a call to ``did`` (any E.164 spelling), on ``gateway``, to ``host``."""
    number = table.normalize_number(did) if did else None
    if number is not None:
        route = table.did_route(number)
        if route is not None:
            tenant = table.tenants[route.tenant_id]
            ref = route.target_ref
            if route.target_type == "ai_agent" and ref is None:
                ref = tenant.default_agent
            uri = tenant.transfers.get(ref or "") if route.target_type == "destination" else None
            return RouteAnswer(
                route.target_type, ref, tenant.id, route.store_id, "did", number, uri
            )
    trunk = table.trunk_for(gateway, None) if gateway else None
    if trunk is not None:
        tenant = table.tenants[trunk.tenant_id]
        return RouteAnswer(
            "ai_agent",
            tenant.default_agent,
            tenant.id,
            trunk.store_id,
            "gateway",
            number,
            gateway=trunk.gateway,
        )
    tid = table.tenant_for_host(host) if host else None
    if tid is not None:
        tenant = table.tenants[tid]
        return RouteAnswer("ai_agent", tenant.default_agent, tid, None, "host", number)
    return None


def bridge_string(
    settings: Settings, table: TenantTable, answer: RouteAnswer, addresses: list[str]
) -> str:
    """The ``bridge`` data for an agent target: one endpoint per agent address, ``|``-joined
    (the ``{...}`` variables, given once at the front, apply to every endpoint)."""
    tenant = table.tenants[answer.tenant_id]
    agent = answer.route_target_ref or tenant.default_agent or ""
    profile = settings.api.profile
    parts = [dial_string(settings, tenant, agent, a, profile=profile) for a in addresses]
    head = parts[0]
    rest = [p.split("}", 1)[1] if p.startswith("{") else p for p in parts[1:]]
    return "|".join([head, *rest])


def _action(app: str, data: str) -> str:
    return f"          <action application={quoteattr(app)} data={quoteattr(data)}/>"


def dialplan_xml(
    settings: Settings,
    table: TenantTable,
    answer: RouteAnswer,
    *,
    destination_number: str,
    context: str,
    addresses: list[str],
    call_timeout: int = 20,
) -> str:
    """The mod_xml_curl dialplan document that sends this call where ``answer`` says."""
    actions = [_action("set", f"w3_tenant={answer.tenant_id}")]
    if answer.store_id:
        actions.append(_action("set", f"w3_store={answer.store_id}"))
    name = f"w3sipagent-{answer.tenant_id}-{answer.route_target_ref or answer.route_target_type}"
    if answer.route_target_type == "ai_agent":
        if answer.gateway:  # the agent's `trunk` step finds the tenant by it
            actions.append(
                _action("set", f"sip_h_{settings.tenancy.trunk_header}={answer.gateway}")
            )
        host = bridge_host(table.tenants[answer.tenant_id])
        if answer.did and host:  # the agent's CDR and store find the number in To
            actions.append(
                _action("export", f"nolocal:sip_invite_to_uri=<sip:{answer.did}@{host}>")
            )
        actions += [
            _action("set", "hangup_after_bridge=true"),
            _action("set", f"call_timeout={call_timeout}"),
            _action("set", CALLER_UUID_SET),  # the ESL transfer finds the caller by it
            _action("bridge", bridge_string(settings, table, answer, addresses)),
        ]
    elif answer.route_target_type == "destination" and answer.destination_uri:
        uri = answer.destination_uri
        if uri.lower().startswith("tel:"):
            number = uri[4:].split(";", 1)[0]
            actions.append(_action("transfer", f"{number} XML default"))
        else:
            target = re.sub(r"^sips?:", "", uri, flags=re.IGNORECASE)
            actions += [
                _action("set", "hangup_after_bridge=true"),
                _action("bridge", f"sofia/{settings.api.profile}/{target}"),
            ]
    else:
        actions.append(_action("hangup", "CALL_REJECTED"))
    expression = "^" + re.escape(destination_number) + "$"
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
            '<document type="freeswitch/xml">',
            '  <section name="dialplan" description="w3sipagent">',
            f"    <context name={quoteattr(context)}>",
            f"      <extension name={quoteattr(name)}>",
            f'        <condition field="destination_number" expression={quoteattr(expression)}>',
            *actions,
            "        </condition>",
            "      </extension>",
            "    </context>",
            "  </section>",
            "</document>",
            "",
        ]
    )
