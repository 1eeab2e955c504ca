"""Routing extras of the tenant table: where each DID goes, and which trunk is whose.

File tenants only name an agent per DID (``dids = { "+1555..." = "sales" }``); the control
plane (:mod:`w3sipagent.control`) adds a store per DID, the other targets (a transfer
destination or a rejection) and trunks: a FreeSWITCH gateway name or a source network that
identifies the tenant (and store) of a call. Pure data, no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

__all__ = ["TARGET_TYPES", "DidRoute", "TargetType", "TrunkRoute"]

TargetType = Literal["ai_agent", "destination", "reject"]
TARGET_TYPES: tuple[TargetType, ...] = ("ai_agent", "destination", "reject")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class DidRoute:
    """Where one E.164 number goes."""

    number: str
    tenant_id: str
    target_type: TargetType = "ai_agent"
    target_ref: str | None = None
    """The agent name (None: the tenant's default agent), the destination name, or None."""
    store_id: str | None = None


@dataclass(frozen=True, slots=True)
class TrunkRoute:
    """A trunk: calls on FreeSWITCH gateway ``gateway`` or from ``source`` are the tenant's."""

    tenant_id: str
    name: str
    gateway: str | None = None
    source: Network | None = None
    store_id: str | None = None
