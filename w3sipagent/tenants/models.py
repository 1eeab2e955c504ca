"""The tenant configuration model (pydantic), validated from the TOML config.

A tenant is one customer of the agent: the SIP hosts and DIDs that reach it, its agents
(prompt, voice, tools...), a *reference* to its API key (never the key itself), limits,
fallback, recording, records and transfer destinations. Field names are the TOML keys::

    [tenants.acme]
    hosts = ["acme.example"]
    dids = ["+1 555 123 0000"]
    api_key = { env = "ACME_OPENAI_KEY" }
    [tenants.acme.agents.support]
    voice = "marin"
    instructions = "You are the front desk of Acme."

Durations accept seconds (``90``, ``1.5``) or a string with a unit (``"500ms"``, ``"30s"``,
``"5m"``, ``"2h"``, ``"30d"``); these field types live in :mod:`w3sipagent.tenants.fields`
(re-exported here), the agent part (prompt, voice, tools) in :mod:`w3sipagent.tenants.agents`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from w3sipagent.tenants.agents import (
    BUILTIN_TOOLS,
    AgentConfig,
    TranscriptionConfig,
    TurnDetectionConfig,
    WebhookToolConfig,
)
from w3sipagent.tenants.fields import (
    CODECS,
    VOICES,
    Duration,
    NetworkList,
    StrictModel,
    StrList,
    Voice,
    check_env_name,
    check_host,
    check_http_url,
    check_target_uri,
    normalize_e164,
    normalize_host,
    parse_duration,
    parse_network,
    source_allowed,
    split_list,
)

__all__ = [
    "BUILTIN_TOOLS",
    "CODECS",
    "DTMF_DIGITS",
    "RESOLUTION_STEPS",
    "VOICES",
    "AgentConfig",
    "CdrWebhookConfig",
    "Duration",
    "EslConfig",
    "FallbackConfig",
    "KnowledgeConfig",
    "NetworkList",
    "RecordingConfig",
    "RegistrationConfig",
    "RetentionConfig",
    "SecretRef",
    "StrList",
    "TenancySettings",
    "TenantConfig",
    "TranscriptionConfig",
    "TurnDetectionConfig",
    "UsageCaps",
    "Voice",
    "WebhookToolConfig",
    "normalize_e164",
    "normalize_host",
    "parse_duration",
    "parse_network",
    "source_allowed",
]


# ---------------------------------------------------------------- secrets


class SecretRef(StrictModel):
    """Where a secret lives: an environment variable NAME or a file PATH, never the value.

    TOML: ``{ env = "ACME_OPENAI_KEY" }`` or ``{ file = "/run/secrets/acme" }``; the short
    strings ``"env:NAME"`` and ``"file:PATH"`` are accepted too (handy in environment
    variables). Resolved at call time by :func:`w3sipagent.tenants.secrets.resolve_secret`.
    """

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data.startswith("env:"):
                return {"env": data[4:]}
            if data.startswith("file:"):
                return {"file": data[5:]}
            raise ValueError(
                'must be a reference { env = "NAME" } or { file = "PATH" } '
                "(or 'env:NAME' / 'file:PATH'), never the secret itself"
            )
        return data

    @field_validator("env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        return None if v is None else check_env_name(v)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("set exactly one of env (a variable NAME) or file (a PATH)")
        return self

    def describe(self) -> str:
        """``env ACME_KEY`` or ``file /run/secrets/acme``: safe to log."""
        return f"env {self.env}" if self.env is not None else f"file {self.file}"


# ---------------------------------------------------------------- tenant parts


class FallbackConfig(StrictModel):
    """What a caller gets when the AI is unavailable or the tenant is over its cap."""

    wav: Path | None = None
    transfer: str | None = None
    """A transfer destination name of this tenant, or a sip:/tel: URI."""


class RecordingConfig(StrictModel):
    """Stereo WAV recording (caller left, agent right), announced first when set."""

    enabled: bool = False
    announcement: Path | None = None


class CdrWebhookConfig(StrictModel):
    """POST the CDR JSON to ``url`` at call end, with retries and exponential backoff."""

    url: str
    attempts: int = Field(default=5, ge=1, le=20)
    timeout: Duration = 5.0
    backoff: Duration = 1.0
    backoff_max: Duration = 60.0
    auth_header: str = "Authorization"
    auth_env: str | None = None
    auth_prefix: str = "Bearer "

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, data: Any) -> Any:
        return {"url": data} if isinstance(data, str) else data

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_http_url(v)

    @field_validator("auth_env")
    @classmethod
    def _auth_env(cls, v: str | None) -> str | None:
        return None if v is None else check_env_name(v)


class RetentionConfig(StrictModel):
    """How long transcripts and recordings are kept (None = forever)."""

    transcripts: Duration | None = None
    recordings: Duration | None = None


class UsageCaps(StrictModel):
    """Daily caps (UTC day); over a cap the caller gets the fallback instead of the AI."""

    minutes_per_day: float | None = Field(default=None, gt=0)
    tokens_per_day: int | None = Field(default=None, gt=0)


class RegistrationConfig(StrictModel):
    """REGISTER mode: the agent registers to ``registrar`` as ``user``; calls arriving
    through this registration belong to the tenant (and to ``agent`` when set)."""

    registrar: str
    """Where REGISTERs go: ``sip:HOST[:PORT][;transport=tcp]`` (a host name is resolved when
    the agent starts registering; ``.example`` / ``.invalid`` names never are)."""
    user: str
    """The user of the address of record (``sip:USER@DOMAIN``): FreeSWITCH's directory user."""
    domain: str | None = None
    """The AOR domain (FreeSWITCH: the directory domain); default the registrar's host."""
    auth_user: str | None = None
    password: SecretRef | None = None
    expires: int = Field(default=300, ge=60, le=86400)
    agent: str | None = None

    @field_validator("registrar")
    @classmethod
    def _registrar(cls, v: str) -> str:
        v = check_target_uri(v)
        if v.lower().startswith("tel:"):
            raise ValueError("must be a sip: or sips: URI of the registrar (got a tel: URI)")
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not v or any(c in v for c in " \t\r\n@:;<>\"'"):
            raise ValueError(f"must be a SIP user part without spaces, @, :, ; or quotes ({v!r})")
        return v

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        return None if v is None else check_host(v)


class EslConfig(StrictModel):
    """FreeSWITCH's event socket, for ``transfer_method = "esl"`` (docs/freeswitch.md)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8021, ge=1, le=65535)
    password: SecretRef
    profile: str = Field(default="external", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """The sofia profile that dials ``sip:`` destinations (``sofia/PROFILE/USER@HOST``)."""


class KnowledgeConfig(StrictModel):
    """The tenant's knowledge base: files chunked, embedded and searched by the agents that
    set ``knowledge = true`` (tool ``search_knowledge``). See docs/knowledge.md."""

    paths: list[Path] = Field(min_length=1)
    """Files or folders (searched recursively for ``extensions``), relative to the config file."""
    extensions: StrList = Field(default_factory=lambda: [".txt", ".md", ".markdown", ".pdf"])
    embedding_model: str = Field(default="text-embedding-3-small", min_length=1)
    dimensions: int | None = Field(default=None, ge=1, le=8192)
    base_url: str = "https://api.openai.com/v1"
    """Any OpenAI-compatible endpoint serving ``POST {base_url}/embeddings``."""
    api_key: SecretRef | None = None
    """None: the tenant's ``api_key`` (else the deployment's)."""
    chunk_size: int = Field(default=800, ge=100, le=8000)
    """Characters per passage."""
    chunk_overlap: int = Field(default=100, ge=0, le=2000)
    top_k: int = Field(default=4, ge=1, le=20)
    timeout: Duration = 10.0

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        return check_http_url(v).rstrip("/")

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, v: list[str]) -> list[str]:
        out = [e.lower() if e.startswith(".") else "." + e.lower() for e in v]
        unknown = sorted(set(out) - {".txt", ".md", ".markdown", ".pdf"})
        if unknown:
            raise ValueError(f"{unknown[0]!r}: only .txt, .md, .markdown and .pdf are read")
        return out

    @model_validator(mode="after")
    def _overlap(self) -> KnowledgeConfig:
        if self.chunk_overlap >= self.chunk_size // 2:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be under half of chunk_size "
                f"({self.chunk_size})"
            )
        return self


DTMF_DIGITS = frozenset("0123456789*#ABCD")


class TenantConfig(StrictModel):
    """One tenant. ``id`` comes from the TOML table name (``[tenants.acme]``)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    hosts: StrList = Field(default_factory=list)
    dids: dict[str, str | None] = Field(default_factory=dict)
    """DID (E.164) → agent name or None (default agent). A list of DIDs is accepted."""
    agents: dict[str, AgentConfig]
    default_agent: str | None = None
    api_key: SecretRef | None = None
    realtime_transport: Literal["websocket", "webrtc"] = "websocket"
    codecs: StrList = Field(default_factory=lambda: list(CODECS))
    allowed_sources: NetworkList = Field(default_factory=list)
    """Empty: any source the deployment accepts (sip.allowed_sources)."""
    max_concurrent_calls: int | None = Field(default=None, ge=1)
    max_call_duration: Duration = 3600.0
    caller_silence_timeout: Duration = 60.0
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    cdr_webhook: CdrWebhookConfig | None = None
    transfers: dict[str, str] = Field(default_factory=dict)
    """Named destinations (name → URI; with ESL also a FreeSWITCH dial string). The model
    may only pick a name."""
    transfer_method: Literal["refer", "esl"] = "refer"
    """How the caller is transferred: REFER on the agent's leg, or FreeSWITCH's event
    socket (``esl``: the outcome is always known, the caller stays on failure)."""
    esl: EslConfig | None = None
    dtmf: dict[str, str] = Field(default_factory=dict)
    """Digit → action: ``transfer:NAME``, ``hangup`` or ``message:TEXT``."""
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    usage_caps: UsageCaps = Field(default_factory=UsageCaps)
    registrations: dict[str, RegistrationConfig] = Field(default_factory=dict)
    knowledge: KnowledgeConfig | None = None

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        out = [check_host(h) for h in v]
        if len(set(out)) != len(out):
            raise ValueError("a host is listed twice")
        return out

    @field_validator("dids", mode="before")
    @classmethod
    def _dids(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = split_list(v)
        if isinstance(v, list):
            v = dict.fromkeys(v)
        if not isinstance(v, dict):
            raise ValueError("must be a list of numbers or a table number → agent")
        out: dict[str, Any] = {}
        for number, agent in v.items():
            e164 = normalize_e164(str(number), international_prefix="00")
            if e164 is None:
                raise ValueError(f"{number!r} is not an E.164 number (write +CC...)")
            if e164 in out:
                raise ValueError(f"{number!r} is listed twice (as {e164})")
            out[e164] = agent
        return out

    @field_validator("codecs")
    @classmethod
    def _codecs(cls, v: list[str]) -> list[str]:
        canon = {c.lower(): c for c in CODECS}
        out = []
        for name in v:
            c = canon.get(name.strip().lower().replace(".", ""))
            if c is None:
                raise ValueError(f"must be among {', '.join(CODECS)} (got {name!r})")
            out.append(c)
        if not out:
            raise ValueError("at least one codec is needed")
        return out

    @field_validator("transfers")
    @classmethod
    def _transfers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, uri in v.items():
            if not re.match(r"^[A-Za-z0-9_-]{1,64}$", name):
                raise ValueError(f"destination name {name!r} may hold letters, digits, _ and -")
            if not _is_dial_string(uri):
                check_target_uri(uri)
        return {k: u.strip() for k, u in v.items()}

    @model_validator(mode="after")
    def _cross_checks(self) -> TenantConfig:
        if not self.agents:
            raise ValueError("agents: at least one agent is needed")
        if self.default_agent is None:
            self.default_agent = next(iter(self.agents))
        elif self.default_agent not in self.agents:
            raise ValueError(f"default_agent: no agent named {self.default_agent!r}")
        for number, agent in self.dids.items():
            if agent is not None and agent not in self.agents:
                raise ValueError(f"dids: {number} names unknown agent {agent!r}")
        for name, reg in self.registrations.items():
            if reg.agent is not None and reg.agent not in self.agents:
                raise ValueError(f"registrations.{name}.agent: no agent named {reg.agent!r}")
        for name, agent_cfg in self.agents.items():
            if agent_cfg.knowledge and self.knowledge is None:
                raise ValueError(f"agents.{name}.knowledge: the tenant has no [knowledge] table")
        for digit, action in self.dtmf.items():
            if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
                raise ValueError(f"dtmf: {digit!r} is not a DTMF digit (0-9 * # A-D)")
            kind, _, arg = action.partition(":")
            if kind == "transfer":
                if arg not in self.transfers:
                    raise ValueError(f"dtmf.{digit}: no transfer destination named {arg!r}")
            elif kind == "message":
                if not arg:
                    raise ValueError(f"dtmf.{digit}: message:TEXT needs a text")
            elif action != "hangup":
                raise ValueError(
                    f"dtmf.{digit}: action must be transfer:NAME, hangup or message:TEXT "
                    f"(got {action!r})"
                )
        self.dtmf = {d.upper(): a for d, a in self.dtmf.items()}
        if self.transfer_method == "esl" and self.esl is None:
            raise ValueError('transfer_method = "esl" needs an [esl] table (host, password)')
        if self.transfer_method == "refer":
            for name, uri in self.transfers.items():
                if _is_dial_string(uri):
                    raise ValueError(
                        f"transfers.{name}: {uri!r} is a FreeSWITCH dial string, usable "
                        'only with transfer_method = "esl"'
                    )
        fb = self.fallback.transfer
        if fb is not None and fb not in self.transfers:
            try:
                check_target_uri(fb)
            except ValueError:
                raise ValueError(
                    f"fallback.transfer: {fb!r} is neither a transfer destination nor a URI"
                ) from None
        for agent_name, agent_cfg in self.agents.items():
            agent_cfg.check_policy(agent_name, self.transfers, self.fallback.transfer)
        return self

    @property
    def default(self) -> AgentConfig:
        """The default agent."""
        assert self.default_agent is not None
        return self.agents[self.default_agent]

    def handover_uri(self, agent: AgentConfig) -> str | None:
        """Where ``agent`` hands a caller it does not understand over to (a URI), or None."""
        if agent.policy != "handover_when_not_understood":
            return None
        target = agent.handover_to
        if target is None:
            return self.fallback_uri()
        return self.transfers.get(target, target)

    def fallback_uri(self) -> str | None:
        """The fallback transfer target as a URI (a destination name is looked up)."""
        fb = self.fallback.transfer
        if fb is None:
            return None
        return self.transfers.get(fb, fb)

    def dtmf_action(self, digit: str) -> str | None:
        """The action mapped to ``digit`` (``transfer:human``, ``hangup``...), or None."""
        return self.dtmf.get(digit.upper())


def _is_dial_string(value: str) -> bool:
    """A FreeSWITCH dial string (``user/1001@host``, ``loopback/1000/default``), not a URI."""
    v = value.strip()
    head = v.split("/", 1)[0]
    return "/" in v and ":" not in head and not any(c.isspace() for c in v)


RESOLUTION_STEPS = ("request_uri_host", "to_host", "registration", "did", "trunk", "trusted_header")
ResolutionStep = Literal[
    "request_uri_host", "to_host", "registration", "did", "trunk", "trusted_header"
]


class TenancySettings(StrictModel):
    """How an incoming call finds its tenant, and how tenants are reloaded."""

    resolution_order: Annotated[list[ResolutionStep], BeforeValidator(split_list)] = Field(
        default_factory=lambda: list(RESOLUTION_STEPS)  # type: ignore[arg-type]
    )
    trusted_header: str | None = None
    """A header set by FreeSWITCH naming the tenant id (e.g. ``X-Tenant``)."""
    trusted_sources: NetworkList = Field(default_factory=list)
    """Sources whose ``trusted_header`` is honoured (empty: the header is never trusted)."""
    trunk_header: str = "X-W3-Gateway"
    """The header FreeSWITCH sets to the gateway (trunk) a call came in on; honoured only
    from ``trusted_sources`` (the ``trunk`` step; a trunk's source address needs no header)."""
    country_code: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,2}$")
    """For national numbers in Request-URI / To users (e.g. ``"44"``); None: bare digits are
    taken as international."""
    international_prefix: str = "00"
    national_prefix: str = "0"
    reload_interval: Duration = 2.0
    """Seconds between checks of the config files' mtimes (0 = no polling)."""

    @field_validator("resolution_order")
    @classmethod
    def _order(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one resolution step is needed")
        if len(set(v)) != len(v):
            raise ValueError("a resolution step is listed twice")
        return v
