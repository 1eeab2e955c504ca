"""What the control plane reads and writes: pydantic models of tenants, stores, agents,
DIDs, trunks and destinations (the API's bodies and the database's JSON).

The tenant-level fields are those of :class:`~w3sipagent.tenants.models.TenantConfig` (same
types, same validation), so a tenant imported from TOML, stored in the database and served
by the API means the same thing everywhere.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from w3sipagent.tenants.agents import AGENT_POLICIES, AgentConfig, AgentPolicy
from w3sipagent.tenants.fields import (
    CODECS,
    Duration,
    NetworkList,
    StrictModel,
    StrList,
    check_host,
    check_target_uri,
    normalize_e164,
    parse_network,
)
from w3sipagent.tenants.models import (
    CdrWebhookConfig,
    EslConfig,
    FallbackConfig,
    KnowledgeConfig,
    RecordingConfig,
    RegistrationConfig,
    RetentionConfig,
    SecretRef,
    UsageCaps,
)
from w3sipagent.tenants.routing import TargetType

__all__ = [
    "ID_PATTERN",
    "POLICIES",
    "AgentIn",
    "AgentOut",
    "DestinationIn",
    "DestinationOut",
    "DidIn",
    "DidOut",
    "Policy",
    "StoreIn",
    "StoreOut",
    "TenantIn",
    "TenantOut",
    "TenantSettings",
    "TrunkIn",
    "TrunkOut",
    "parse_did",
]

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

Policy = AgentPolicy
POLICIES = AGENT_POLICIES


def parse_did(value: str) -> str:
    """``value`` as E.164 (``+CC…`` or ``00CC…``, spaces and dashes allowed) or ValueError."""
    e164 = normalize_e164(str(value), international_prefix="00")
    if e164 is None:
        raise ValueError(f"{value!r} is not an E.164 number (write +CC...)")
    return e164


class TenantSettings(StrictModel):
    """A tenant's own settings: everything of a TOML tenant but its agents, DIDs and
    destinations (which have their own endpoints)."""

    name: str = Field(default="", max_length=255)
    hosts: StrList = Field(default_factory=list)
    default_agent: str | None = None
    api_key: SecretRef | None = None
    realtime_transport: Literal["websocket", "webrtc"] = "websocket"
    codecs: StrList = Field(default_factory=lambda: list(CODECS))
    allowed_sources: NetworkList = Field(default_factory=list)
    max_concurrent_calls: int | None = Field(default=None, ge=1)
    max_call_duration: Duration = 3600.0
    caller_silence_timeout: Duration = 60.0
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    cdr_webhook: CdrWebhookConfig | None = None
    dtmf: dict[str, str] = Field(default_factory=dict)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    usage_caps: UsageCaps = Field(default_factory=UsageCaps)
    registrations: dict[str, RegistrationConfig] = Field(default_factory=dict)
    knowledge: KnowledgeConfig | None = None
    transfer_method: Literal["refer", "esl"] = "refer"
    esl: EslConfig | None = None

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        out = [check_host(h) for h in v]
        if len(set(out)) != len(out):
            raise ValueError("a host is listed twice")
        return out


class TenantIn(TenantSettings):
    """A new tenant."""

    id: str = Field(pattern=ID_PATTERN)


class TenantOut(TenantIn):
    """A tenant as stored, with where it comes from."""

    source: Literal["database", "file"] = "database"


class StoreIn(StrictModel):
    """A store (site, branch) of a tenant."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(default="", max_length=255)


class StoreOut(StoreIn):
    tenant_id: str


class AgentIn(AgentConfig):
    """An agent: the TOML agent's keys plus its name, store and policy."""

    name: str = Field(pattern=NAME_PATTERN)
    store_id: str | None = None


class AgentOut(AgentIn):
    tenant_id: str


class DidIn(StrictModel):
    """A number and where it goes: an agent (``target_ref`` its name, or None for the
    default agent), a transfer destination (its name) or a polite rejection."""

    number: str
    store_id: str | None = None
    target_type: TargetType = "ai_agent"
    target_ref: str | None = None

    @field_validator("number")
    @classmethod
    def _number(cls, v: str) -> str:
        return parse_did(v)

    @field_validator("target_type", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return "ai_agent" if v == "agent" else v

    @model_validator(mode="after")
    def _ref(self) -> DidIn:
        if self.target_type == "destination" and not self.target_ref:
            raise ValueError("target_ref: a destination target needs the destination's name")
        if self.target_type == "reject" and self.target_ref is not None:
            raise ValueError("target_ref: a reject target takes no target_ref")
        return self


class DidOut(DidIn):
    tenant_id: str


class TrunkIn(StrictModel):
    """A trunk: the FreeSWITCH gateway name and/or the source network of its calls."""

    name: str = Field(pattern=NAME_PATTERN)
    store_id: str | None = None
    gateway: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@:-]{1,128}$")
    source: str | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        return None if v is None else str(parse_network(v))

    @model_validator(mode="after")
    def _one(self) -> TrunkIn:
        if self.gateway is None and self.source is None:
            raise ValueError("gateway: set a gateway name, a source network, or both")
        return self


class TrunkOut(TrunkIn):
    tenant_id: str


class DestinationIn(StrictModel):
    """A named transfer destination (``sip:`` or ``tel:`` URI)."""

    name: str = Field(pattern=NAME_PATTERN)
    uri: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(NAME_PATTERN, v):
            raise ValueError("may hold letters, digits, _ and -")
        return v

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return check_target_uri(v).strip()


class DestinationOut(DestinationIn):
    tenant_id: str
