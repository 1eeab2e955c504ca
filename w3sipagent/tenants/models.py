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
``"5m"``, ``"2h"``, ``"30d"``).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from w3sipagent.ai.session import AISessionConfig, AudioFormat, ToolSpec, TurnDetection

# ---------------------------------------------------------------- small types

VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
"""The Realtime GA voices."""

Voice = Literal[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"
]

CODECS: tuple[str, ...] = ("PCMU", "PCMA", "G722", "opus")
"""Codec names a tenant may prefer, canonical spelling."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``1.5``, ``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"`` or ``"30d"``."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30, '30s', '5m', '2h' or '30d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError("must be a duration such as 30, '30s', '5m', '2h' or '30d'")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError("must be a duration such as 30, '30s', '5m', '2h' or '30d'")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A non-negative number of seconds, written as a number or with a unit."""


def _split_list(value: object) -> object:
    """Accept ``"a, b"`` (environment variables) where a list is expected."""
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


def parse_network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR (``10.0.0.5``, ``10.0.0.0/8``, ``::1``) as a network."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an IP address or CIDR such as 10.0.0.0/8")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR: {value!r}") from None


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(parse_network)]
NetworkList = Annotated[list[Network], BeforeValidator(_split_list)]
StrList = Annotated[list[str], BeforeValidator(_split_list)]


def source_allowed(ip: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """True when ``ip`` lies in one of ``networks`` (IPv4-mapped IPv6 counts as IPv4)."""
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in n for n in networks if n.version == addr.version)


_HOST_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def normalize_host(value: str) -> str:
    """Lower-case host, no trailing dot, no port, IPv6 without brackets."""
    h = value.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def _check_host(value: str) -> str:
    h = normalize_host(value)
    try:
        ipaddress.ip_address(h)
        return h
    except ValueError:
        pass
    if not h or len(h) > 253 or not _HOST_RE.match(h):
        raise ValueError(f"not a host name or IP address: {value!r}")
    return h


_VISUAL = re.compile(r"[\s\-.()/]")


def normalize_e164(
    number: str,
    *,
    country_code: str | None = None,
    international_prefix: str = "00",
    national_prefix: str = "0",
) -> str | None:
    """Normalize a dialled number or URI user part to E.164 (``+15551230000``), or None.

    Visual separators and URI parameters (``;npdi``) are dropped and ``%2B`` means ``+``.
    ``+D`` stays; ``00D`` (the international prefix) becomes ``+D``; with a
    ``country_code`` a national number loses its trunk prefix (``0``) and gains ``+CC``;
    without one, bare digits are taken as international. Anything that is not 1 to 15
    digits after that (``support``, ``*97``) gives None.
    """
    s = number.strip().split(";", 1)[0]
    s = s.replace("%2B", "+").replace("%2b", "+")
    s = _VISUAL.sub("", s)
    if s.startswith("+"):
        digits = s[1:]
    elif international_prefix and s.startswith(international_prefix):
        digits = s[len(international_prefix) :]
    elif country_code:
        rest = s[len(national_prefix) :] if national_prefix and s.startswith(national_prefix) else s
        digits = country_code + rest if rest.isdigit() else ""
    else:
        digits = s
    if not digits.isdigit() or not 1 <= len(digits) <= 15:
        return None
    return "+" + digits


_SIP_URI_RE = re.compile(r"^(sips?:[^\s@]+(@[^\s]+)?|tel:\+?[0-9A-Fa-f*#().\-;=]+)$")


def _check_target_uri(value: str) -> str:
    v = value.strip()
    if not _SIP_URI_RE.match(v):
        raise ValueError(f"must be a sip:, sips: or tel: URI (got {v!r})")
    return v


_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_name(value: str) -> str:
    if not _ENV_NAME_RE.match(value):
        raise ValueError("must be an environment variable NAME (letters, digits, _)")
    return value


def _check_http_url(value: str) -> str:
    v = value.strip()
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
        raise ValueError("must be an http:// or https:// URL")
    return v


class _Model(BaseModel):
    """Strict about unknown keys: a typo is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)


# ---------------------------------------------------------------- secrets


class SecretRef(_Model):
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
        return None if v is None else _check_env_name(v)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("set exactly one of env (a variable NAME) or file (a PATH)")
        return self

    def describe(self) -> str:
        """``env ACME_KEY`` or ``file /run/secrets/acme``: safe to log."""
        return f"env {self.env}" if self.env is not None else f"file {self.file}"


# ---------------------------------------------------------------- agents


class TurnDetectionConfig(_Model):
    """Turn detection: ``server_vad`` (silence based), ``semantic_vad`` or ``none`` (manual)."""

    type: Literal["server_vad", "semantic_vad", "none"] = "server_vad"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=5000)
    silence_duration_ms: int = Field(default=500, ge=0, le=10000)
    idle_timeout_ms: int | None = Field(default=None, ge=5000, le=30000)
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    min_interrupt_ms: int = Field(default=0, ge=0, le=2000)
    """Guard against false interruptions: the caller must speak this long before the agent
    is cut (0 = off; when on, the bridge decides barge-in itself)."""

    def to_session(self) -> TurnDetection | None:
        """The :class:`TurnDetection` for the AI session (None for ``none``)."""
        if self.type == "none":
            return None
        return TurnDetection(
            type=self.type,
            threshold=self.threshold,
            prefix_padding_ms=self.prefix_padding_ms,
            silence_duration_ms=self.silence_duration_ms,
            create_response=self.create_response,
            interrupt_response=self.interrupt_response and self.min_interrupt_ms == 0,
            idle_timeout_ms=self.idle_timeout_ms if self.type == "server_vad" else None,
            eagerness=self.eagerness,
        )


class TranscriptionConfig(_Model):
    """Input (caller) transcription: on by default, needed for the caller side of CDRs."""

    enabled: bool = True
    model: str = "gpt-4o-mini-transcribe"
    language: str | None = None


class WebhookToolConfig(_Model):
    """A tool the model may call, run as an HTTP POST of its JSON arguments to ``url``.

    The auth header value is read from the environment variable ``auth_env`` at call
    time (``auth_prefix`` + value, e.g. ``Bearer …``) and never logged.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    url: str
    timeout: Duration = 5.0
    auth_header: str = "Authorization"
    auth_env: str | None = None
    auth_prefix: str = "Bearer "

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_http_url(v)

    @field_validator("auth_env")
    @classmethod
    def _auth_env(cls, v: str | None) -> str | None:
        return None if v is None else _check_env_name(v)

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object":
            raise ValueError('must be a JSON schema with type = "object"')
        props = v.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError("properties must be a table of JSON schemas")
        return v

    def spec(self) -> ToolSpec:
        """The tool as the AI session sees it."""
        return ToolSpec(self.name, self.description, dict(self.parameters))


BUILTIN_TOOLS = frozenset({"transfer_call", "end_call", "send_dtmf"})


class AgentConfig(_Model):
    """One agent of a tenant: model, voice, prompt, greeting, turn detection, tools."""

    model: str = "gpt-realtime"
    voice: Voice = "marin"
    instructions: str = ""
    instructions_file: Path | None = None
    language: str | None = None
    greeting: str | None = None
    """Instructions for the first response; the agent speaks first when set."""
    turn_detection: TurnDetectionConfig = Field(default_factory=TurnDetectionConfig)
    transcription: TranscriptionConfig = Field(default_factory=TranscriptionConfig)
    noise_reduction: Literal["near_field", "far_field"] | None = None
    speed: float | None = Field(default=None, ge=0.25, le=1.5)
    max_output_tokens: int | None = Field(default=None, ge=1, le=4096)
    tools: list[WebhookToolConfig] = Field(default_factory=list)

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, v: list[WebhookToolConfig]) -> list[WebhookToolConfig]:
        seen: set[str] = set()
        for t in v:
            if t.name in BUILTIN_TOOLS:
                raise ValueError(f"tool name {t.name!r} is reserved for a built-in tool")
            if t.name in seen:
                raise ValueError(f"tool {t.name!r} is defined twice")
            seen.add(t.name)
        return v

    def prompt(self) -> str:
        """The instructions: ``instructions`` followed by the file's text when set."""
        text = self.instructions
        if self.instructions_file is not None:
            extra = self.instructions_file.read_text(encoding="utf-8")
            text = f"{text}\n\n{extra}" if text else extra
        return text

    def session_config(
        self,
        audio_format: AudioFormat,
        *,
        extra_tools: tuple[ToolSpec, ...] = (),
        instructions: str | None = None,
    ) -> AISessionConfig:
        """The AI session configuration for one call of this agent."""
        lang = self.transcription.language or self.language
        return AISessionConfig(
            instructions=self.prompt() if instructions is None else instructions,
            model=self.model,
            voice=self.voice,
            input_format=audio_format,
            output_format=audio_format,
            turn_detection=self.turn_detection.to_session(),
            transcription_model=self.transcription.model if self.transcription.enabled else None,
            transcription_language=lang,
            noise_reduction=self.noise_reduction,
            tools=extra_tools + tuple(t.spec() for t in self.tools),
            max_output_tokens=self.max_output_tokens,
            speed=self.speed,
        )


# ---------------------------------------------------------------- tenant parts


class FallbackConfig(_Model):
    """What a caller gets when the AI is unavailable or the tenant is over its cap."""

    wav: Path | None = None
    transfer: str | None = None
    """A transfer destination name of this tenant, or a sip:/tel: URI."""


class RecordingConfig(_Model):
    """Stereo WAV recording (caller left, agent right), announced first when set."""

    enabled: bool = False
    announcement: Path | None = None


class CdrWebhookConfig(_Model):
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
        return _check_http_url(v)

    @field_validator("auth_env")
    @classmethod
    def _auth_env(cls, v: str | None) -> str | None:
        return None if v is None else _check_env_name(v)


class RetentionConfig(_Model):
    """How long transcripts and recordings are kept (None = forever)."""

    transcripts: Duration | None = None
    recordings: Duration | None = None


class UsageCaps(_Model):
    """Daily caps (UTC day); over a cap the caller gets the fallback instead of the AI."""

    minutes_per_day: float | None = Field(default=None, gt=0)
    tokens_per_day: int | None = Field(default=None, gt=0)


class RegistrationConfig(_Model):
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
        v = _check_target_uri(v)
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
        return None if v is None else _check_host(v)


DTMF_DIGITS = frozenset("0123456789*#ABCD")


class TenantConfig(_Model):
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
    """Named destinations (name → URI). The model may only pick a name."""
    dtmf: dict[str, str] = Field(default_factory=dict)
    """Digit → action: ``transfer:NAME``, ``hangup`` or ``message:TEXT``."""
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    usage_caps: UsageCaps = Field(default_factory=UsageCaps)
    registrations: dict[str, RegistrationConfig] = Field(default_factory=dict)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        out = [_check_host(h) for h in v]
        if len(set(out)) != len(out):
            raise ValueError("a host is listed twice")
        return out

    @field_validator("dids", mode="before")
    @classmethod
    def _dids(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = _split_list(v)
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
            _check_target_uri(uri)
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
        fb = self.fallback.transfer
        if fb is not None and fb not in self.transfers:
            try:
                _check_target_uri(fb)
            except ValueError:
                raise ValueError(
                    f"fallback.transfer: {fb!r} is neither a transfer destination nor a URI"
                ) from None
        return self

    @property
    def default(self) -> AgentConfig:
        """The default agent."""
        assert self.default_agent is not None
        return self.agents[self.default_agent]

    def fallback_uri(self) -> str | None:
        """The fallback transfer target as a URI (a destination name is looked up)."""
        fb = self.fallback.transfer
        if fb is None:
            return None
        return self.transfers.get(fb, fb)

    def dtmf_action(self, digit: str) -> str | None:
        """The action mapped to ``digit`` (``transfer:human``, ``hangup``...), or None."""
        return self.dtmf.get(digit.upper())


RESOLUTION_STEPS = ("request_uri_host", "to_host", "registration", "did", "trusted_header")
ResolutionStep = Literal["request_uri_host", "to_host", "registration", "did", "trusted_header"]


class TenancySettings(_Model):
    """How an incoming call finds its tenant, and how tenants are reloaded."""

    resolution_order: Annotated[list[ResolutionStep], BeforeValidator(_split_list)] = Field(
        default_factory=lambda: list(RESOLUTION_STEPS)  # type: ignore[arg-type]
    )
    trusted_header: str | None = None
    """A header set by FreeSWITCH naming the tenant id (e.g. ``X-Tenant``)."""
    trusted_sources: NetworkList = Field(default_factory=list)
    """Sources whose ``trusted_header`` is honoured (empty: the header is never trusted)."""
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
