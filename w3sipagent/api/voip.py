"""Routing for FreeSWITCH: the JSON route lookup and the mod_xml_curl dialplan binding.

``GET /api/voip/routes/inbound?did=…&host=…&gateway=…`` answers where a call goes
(``route_target_type``, ``route_target_ref``, ``tenant_id``, ``store_id``, and the
``bridge`` string for an agent). ``POST /api/freeswitch/dialplan`` takes what mod_xml_curl
posts (the channel's variables, form-encoded) and answers the dialplan document, or the
``not found`` result so that FreeSWITCH's own dialplan carries on. Both need an admin token
(mod_xml_curl sends it as the password of ``gateway-credentials``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request, Response

from w3sipagent.api.context import (
    ApiContext,
    Principal,
    admin,
    admin_only,
    context,
)
from w3sipagent.control.routing import (
    NOT_FOUND_XML,
    bridge_string,
    dialplan_xml,
    route_inbound,
)

__all__ = ["GATEWAY_VARIABLES", "register"]

GATEWAY_VARIABLES = (
    "variable_sip_h_X-W3-Gateway",
    "variable_sip_gateway_name",
    "variable_sip_gateway",
)
"""Where the gateway (trunk) name is looked for in mod_xml_curl's POST, first found wins."""

XML = "text/xml"


def _first(form: dict[str, list[str]], *names: str) -> str | None:
    for n in names:
        values = form.get(n)
        if values and values[0]:
            return values[0]
    return None


def register(app: FastAPI) -> None:
    """Add the routing endpoints to ``app``."""

    @app.get("/api/voip/routes/inbound", tags=["routing"])
    async def inbound_route(
        did: str | None = None,
        host: str | None = None,
        gateway: str | None = None,
        who: Principal = Depends(admin),
        ctx: ApiContext = Depends(context),
    ) -> dict[str, Any]:
        """Where a call to ``did`` (or on ``gateway``, or to ``host``) goes (admin)."""
        admin_only(who)
        if not (did or host or gateway):
            raise HTTPException(
                422,
                [{"loc": ["query", "did"], "msg": "give did, host or gateway", "type": "missing"}],
            )
        table = ctx.tables()
        answer = route_inbound(table, did=did, host=host, gateway=gateway)
        if answer is None:
            raise HTTPException(404, "no route")
        out: dict[str, Any] = {
            "route_target_type": answer.route_target_type,
            "route_target_ref": answer.route_target_ref,
            "tenant_id": answer.tenant_id,
            "store_id": answer.store_id,
            "matched_by": answer.matched_by,
            "did": answer.did,
        }
        if answer.route_target_type == "ai_agent" and ctx.addresses:
            out["bridge"] = bridge_string(ctx.settings, table, answer, ctx.addresses)
        if answer.route_target_type == "destination":
            out["destination_uri"] = answer.destination_uri
        return out

    @app.post("/api/freeswitch/dialplan", tags=["routing"], response_class=Response)
    async def xml_curl_dialplan(
        request: Request,
        who: Principal = Depends(admin),
        ctx: ApiContext = Depends(context),
    ) -> Response:
        """mod_xml_curl's dialplan binding: the call's variables in, dialplan XML out."""
        admin_only(who)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if _first(form, "section") not in (None, "dialplan"):
            return Response(NOT_FOUND_XML, media_type=XML)
        number = _first(form, "Caller-Destination-Number", "variable_destination_number")
        host = _first(form, "variable_sip_req_host", "variable_sip_to_host")
        gateway = _first(form, *GATEWAY_VARIABLES)
        context_name = _first(form, "Hunt-Context", "Caller-Context") or "public"
        table = ctx.tables()
        answer = route_inbound(table, did=number, host=host, gateway=gateway)
        if answer is None or number is None or not ctx.addresses:
            return Response(NOT_FOUND_XML, media_type=XML)
        xml = dialplan_xml(
            ctx.settings,
            table,
            answer,
            destination_number=number,
            context=context_name,
            addresses=ctx.addresses,
        )
        return Response(xml, media_type=XML)
