"""Which tenant and agent an incoming INVITE belongs to: pure, no I/O, table-tested.

The default order (``tenancy.resolution_order``) is:

1. ``request_uri_host`` — ``sip:support@acme.example`` → the tenant owning ``acme.example``
   (``*.acme.example`` in ``hosts`` matches any sub-domain; exact hosts win);
2. ``to_host`` — the To URI host, kept when a proxy rewrote the Request-URI;
3. ``registration`` — the REGISTER binding the call arrived through;
4. ``did`` — the Request-URI user, then the To user, normalized to E.164;
5. ``trunk`` — the trunk the call came in on: the gateway name FreeSWITCH puts in
   ``tenancy.trunk_header`` (honoured only from ``trusted_sources``), or the source address;
6. ``trusted_header`` — e.g. ``X-Tenant: acme``, honoured only from ``trusted_sources``.

The first step that names a tenant decides; later steps are not consulted, so a call can
never mix tenant A's host with tenant B's DID. No tenant → 404 (before answering). A source
outside ``sip.allowed_sources`` or the tenant's ``allowed_sources`` → 403.

The agent is the one the matching DID or registration names, else the agent named by the
Request-URI (then To) user, else the tenant's default agent — always one of *that*
tenant's agents.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from w3sipagent.tenants.models import (
    AgentConfig,
    RegistrationConfig,
    TenancySettings,
    TenantConfig,
    normalize_e164,
    normalize_host,
    source_allowed,
)
from w3sipagent.tenants.routing import DidRoute, TrunkRoute

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _no_header(name: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What the resolver needs to know about an incoming INVITE."""

    request_uri_host: str
    """Host of the Request-URI (a port or IPv6 brackets are tolerated)."""
    source_ip: str
    """Address the INVITE came from (the transport peer, not a header)."""
    request_uri_user: str | None = None
    to_host: str | None = None
    to_user: str | None = None
    registration: str | None = None
    """Id of the registration the call arrived through (:func:`registration_id`), or None."""
    header: Callable[[str], str | None] = field(default=_no_header)
    """Returns the value of a header by name (case-insensitive), or None."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The call belongs to ``tenant`` and goes to ``agent``."""

    tenant: TenantConfig
    agent_name: str
    agent: AgentConfig
    matched_by: str
    """The resolution step that found the tenant (``request_uri_host``, ``did``...)."""
    did: str | None = None
    """The dialled number in E.164, when the Request-URI or To user is one."""
    store_id: str | None = None
    """The tenant's store the DID or trunk belongs to (control plane), or None."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Refuse the call with ``status`` / ``reason`` (the SIP response line)."""

    status: int
    reason: str
    detail: str
    """Why, for the activity log (not sent on the wire)."""
    tenant_id: str | None = None


def registration_id(tenant_id: str, name: str) -> str:
    """The id of a tenant's registration, as passed in :attr:`CallRequest.registration`."""
    return f"{tenant_id}/{name}"


class TenantTable:
    """An immutable snapshot of the tenants with their lookup indices.

    Calls keep the table they were admitted with; a reload builds a new one. ``routes`` (DID →
    :class:`DidRoute`, from the control plane) add a store or a non-agent target to a DID,
    ``trunks`` map a gateway name or a source network to a tenant.
    """

    def __init__(
        self,
        tenants: Mapping[str, TenantConfig],
        tenancy: TenancySettings | None = None,
        allowed_sources: list[Network] | None = None,
        *,
        routes: Mapping[str, DidRoute] | None = None,
        trunks: Sequence[TrunkRoute] = (),
    ) -> None:
        self.tenants: dict[str, TenantConfig] = dict(tenants)
        self.tenancy = tenancy or TenancySettings()
        self.allowed_sources = allowed_sources
        """Deployment-wide allowed sources (None: no deployment-wide check)."""
        self._hosts: dict[str, str] = {}
        self._wildcards: list[tuple[str, str]] = []
        self._dids: dict[str, tuple[str, str | None]] = {}
        self._regs: dict[str, tuple[str, str | None]] = {}
        for tid, t in self.tenants.items():
            for h in t.hosts:
                if h.startswith("*."):
                    self._wildcards.append((h[1:], tid))
                else:
                    self._hosts.setdefault(h, tid)
            for number, agent in t.dids.items():
                self._dids.setdefault(number, (tid, agent))
            for name, reg in t.registrations.items():
                self._regs[registration_id(tid, name)] = (tid, reg.agent)
        self._wildcards.sort(key=lambda w: len(w[0]), reverse=True)
        self.routes: dict[str, DidRoute] = {}
        for number, route in (routes or {}).items():
            owner = self._dids.get(number)
            if route.tenant_id in self.tenants and (owner is None or owner[0] == route.tenant_id):
                self.routes.setdefault(number, route)
                if route.target_type == "ai_agent":
                    self._dids.setdefault(number, (route.tenant_id, route.target_ref))
        self._gateways: dict[str, TrunkRoute] = {}
        self._trunk_nets: list[TrunkRoute] = []
        for trunk in trunks:
            if trunk.tenant_id not in self.tenants:
                continue
            if trunk.gateway:
                self._gateways.setdefault(trunk.gateway.lower(), trunk)
            if trunk.source is not None:
                self._trunk_nets.append(trunk)
        self._trunk_nets.sort(key=lambda t: t.source.prefixlen if t.source else 0, reverse=True)

    def __len__(self) -> int:
        return len(self.tenants)

    def get(self, tenant_id: str) -> TenantConfig | None:
        """The tenant with this id, or None."""
        return self.tenants.get(tenant_id)

    def registrations(self) -> Iterator[tuple[str, TenantConfig, RegistrationConfig]]:
        """(registration id, tenant, registration) for every REGISTER binding to keep."""
        for tid, t in self.tenants.items():
            for name, reg in t.registrations.items():
                yield registration_id(tid, name), t, reg

    # -------------------------------------------------------------- lookups

    def tenant_for_host(self, host: str | None) -> str | None:
        """The tenant owning ``host`` (exact first, then the longest ``*.`` wildcard)."""
        if not host:
            return None
        h = normalize_host(host)
        tid = self._hosts.get(h)
        if tid is not None:
            return tid
        for suffix, wid in self._wildcards:
            if h.endswith(suffix) and len(h) > len(suffix):
                return wid
        return None

    def normalize_number(self, user: str | None) -> str | None:
        """``user`` as E.164 under this deployment's numbering settings, or None."""
        if not user:
            return None
        t = self.tenancy
        return normalize_e164(
            user,
            country_code=t.country_code,
            international_prefix=t.international_prefix,
            national_prefix=t.national_prefix,
        )

    def did_route(self, number: str) -> DidRoute | None:
        """Where the E.164 ``number`` goes (a file tenant's DID is an agent target), or None."""
        route = self.routes.get(number)
        if route is not None:
            return route
        hit = self._dids.get(number)
        return None if hit is None else DidRoute(number, hit[0], "ai_agent", hit[1])

    def trunk_for(self, gateway: str | None, source_ip: str | None) -> TrunkRoute | None:
        """The trunk named ``gateway``, else the most specific one whose network holds
        ``source_ip``, else None."""
        if gateway:
            hit = self._gateways.get(gateway.strip().lower())
            if hit is not None:
                return hit
        if source_ip:
            for trunk in self._trunk_nets:
                if trunk.source is not None and source_allowed(source_ip, [trunk.source]):
                    return trunk
        return None

    # -------------------------------------------------------------- resolve

    def resolve(self, req: CallRequest) -> Resolution | Rejection:
        """The tenant and agent of ``req``, or the rejection to answer with."""
        if self.allowed_sources is not None and not source_allowed(
            req.source_ip, self.allowed_sources
        ):
            return Rejection(403, "Forbidden", f"source {req.source_ip} is not allowed")
        did = self.normalize_number(req.request_uri_user) or self.normalize_number(req.to_user)
        found: tuple[str, str | None, str, str | None] | None = None
        for step_name in self.tenancy.resolution_order:
            found = self._step(step_name, req)
            if found is not None:
                break
        if found is None:
            return Rejection(
                404,
                "Not Found",
                f"no tenant for {req.request_uri_user or ''}@{req.request_uri_host}",
            )
        tid, agent_name, step, store_id = found
        tenant = self.tenants[tid]
        if tenant.allowed_sources and not source_allowed(req.source_ip, tenant.allowed_sources):
            return Rejection(
                403, "Forbidden", f"source {req.source_ip} is not allowed for tenant {tid}", tid
            )
        if store_id is None and did is not None:
            same = self.routes.get(did)
            if same is not None and same.tenant_id == tid:
                store_id = same.store_id  # the dialled number's store, whatever found the tenant
        if store_id is None and step != "trunk":
            trunk = self._step("trunk", req)  # else the store of the trunk it came in on
            if trunk is not None and trunk[0] == tid:
                store_id = trunk[3]
        route = self.routes.get(did) if did is not None and step == "did" else None
        if route is not None and route.target_type == "reject":
            return Rejection(603, "Decline", f"DID {did} is set to reject", tid)
        if route is not None and route.target_type == "destination":
            return Rejection(
                404, "Not Found", f"DID {did} goes to destination {route.target_ref}", tid
            )
        chosen = agent_name or _agent_by_user(tenant, req.request_uri_user, req.to_user)
        if chosen is None:
            assert tenant.default_agent is not None
            chosen = tenant.default_agent
        return Resolution(tenant, chosen, tenant.agents[chosen], step, did, store_id)

    def _step(self, step: str, req: CallRequest) -> tuple[str, str | None, str, str | None] | None:
        tid: str | None = None
        agent: str | None = None
        store: str | None = None
        if step == "request_uri_host":
            tid = self.tenant_for_host(req.request_uri_host)
        elif step == "to_host":
            tid = self.tenant_for_host(req.to_host)
        elif step == "registration":
            if req.registration is not None and req.registration in self._regs:
                tid, agent = self._regs[req.registration]
        elif step == "did":
            for user in (req.request_uri_user, req.to_user):
                number = self.normalize_number(user)
                route = self.routes.get(number) if number is not None else None
                if route is not None:
                    tid, store = route.tenant_id, route.store_id
                    agent = route.target_ref if route.target_type == "ai_agent" else None
                    break
                if number is not None and number in self._dids:
                    tid, agent = self._dids[number]
                    break
        elif step == "trunk":
            gateway = None
            if source_allowed(req.source_ip, self.tenancy.trusted_sources):
                gateway = req.header(self.tenancy.trunk_header)
            trunk = self.trunk_for(gateway, req.source_ip)
            if trunk is not None:
                tid, store = trunk.tenant_id, trunk.store_id
        elif step == "trusted_header":
            name = self.tenancy.trusted_header
            if name and source_allowed(req.source_ip, self.tenancy.trusted_sources):
                value = req.header(name)
                if value:
                    candidate = value.strip().lower()
                    tid = candidate if candidate in self.tenants else None
        return (tid, agent, step, store) if tid is not None else None


def _agent_by_user(tenant: TenantConfig, *users: str | None) -> str | None:
    names = {n.lower(): n for n in tenant.agents}
    for user in users:
        if user:
            hit = names.get(user.strip().lower())
            if hit is not None:
                return hit
    return None
