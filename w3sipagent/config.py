"""Process settings: a TOML file, ``W3SIPAGENT_…`` environment variables and CLI flags.

Precedence: flag > environment > file > default. Environment variables nest with ``__``
(``W3SIPAGENT_SIP__LISTEN=0.0.0.0:5090``, ``W3SIPAGENT_TENANTS__ACME__MAX_CONCURRENT_CALLS=5``);
a value starting with ``[`` or ``{`` is read as JSON, and lists also take ``a,b,c``.
CLI flags arrive as a dict (nested, or dotted keys such as ``{"sip.listen": "0.0.0.0:5090"}``;
None values are ignored: an unset flag; ``"off"`` switches ``metrics.listen`` off).

:func:`load_settings` returns a validated :class:`Settings` that remembers where each value
came from (:meth:`Settings.source_of`: ``default``, ``file:PATH``, ``env:NAME`` or ``flag``).
A bad configuration raises :class:`ConfigError` with a one-line message naming the file,
the tenant and the key, e.g.::

    w3sipagent.toml: tenant 'acme': agents.support.voice: must be one of alloy, ash, … (got 'bob')

Secrets (API keys, passwords) are :class:`pydantic.SecretStr` or references to an environment
variable / file; their values never appear in messages.

The file is longer than most: it holds every section's model together, so that the whole
settings schema (and each key's validation) reads in one place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from w3sipagent.configsources import (
    CONFIG_PATH_ENV,
    ENV_PREFIX,
    anchor_paths,
    anchor_sqlite_url,
    deep_set,
    env_layer,
    flag_layer,
    format_validation_error,
    leaves,
    origin_of,
    problem_line,
)
from w3sipagent.errors import ConfigError
from w3sipagent.tenants.fields import check_env_name
from w3sipagent.tenants.loader import (
    ConfigDocument,
    Origins,
    ownership_conflicts,
    read_config_file,
    record_origins,
)
from w3sipagent.tenants.models import (
    Duration,
    NetworkList,
    SecretRef,
    StrList,
    TenancySettings,
    TenantConfig,
    parse_network,
)

DEFAULT_CONFIG_NAME = "w3sipagent.toml"
"""Names the config file when no path is given (not a setting itself)."""


class ConfigProblems(ConfigError):
    """A :class:`ConfigError` carrying every problem found (``problems``), one line each."""

    def __init__(self, problems: list[str]) -> None:
        shown = "; ".join(problems[:3])
        if len(problems) > 3:
            shown += f" (+{len(problems) - 3} more)"
        super().__init__(shown)
        self.problems = problems


def parse_hostport(value: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` → (host, port). Raises ValueError naming the defect."""
    v = value.strip()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {value!r}")
        host, rest = v[1:end], v[end + 1 :]
        port_s = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected HOST:PORT (got {value!r})")
    elif v.count(":") == 1:
        host, port_s = v.split(":")
    elif v.count(":") > 1:
        raise ValueError(f"write an IPv6 address as [ADDR]:PORT (got {value!r})")
    else:
        host, port_s = v, ""
    if not host:
        raise ValueError(f"expected HOST:PORT (got {value!r})")
    if not port_s:
        if default_port is None:
            raise ValueError(f"expected HOST:PORT, the port is missing (got {value!r})")
        return host, default_port
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"port must be 0-65535 (got {value!r})")
    return host, int(port_s)


def _check_hostport(value: object) -> object:
    if isinstance(value, str):
        parse_hostport(value)
    return value


HostPort = Annotated[str, BeforeValidator(_check_hostport)]
"""``host:port`` (``[::1]:5090`` for IPv6); port 0 picks a free one."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


LOOPBACK = ["127.0.0.0/8", "::1/128"]


DigestAlgorithm = Literal["SHA-512-256", "SHA-256", "MD5"]


def _default_algorithms() -> list[DigestAlgorithm]:
    return ["SHA-256", "MD5"]


class SipAuthSettings(_Section):
    """Digest authentication of incoming INVITEs (RFC 3261 §22, RFC 8760): on when ``users``
    is not empty. Each user's password is a reference (``{ env = "NAME" }`` or ``{ file =
    "PATH" }``), read once at start. ``realm``: the challenge realm (default: the
    Request-URI host, i.e. the tenant's domain). A nonce is stale ``nonce_lifetime`` after
    it was issued; a replayed nonce count is refused (401/407 again)."""

    users: dict[str, SecretRef] = Field(default_factory=dict)
    realm: str | None = None
    proxy: bool = False
    """Answer 407 / Proxy-Authenticate instead of 401 / WWW-Authenticate."""
    nonce_lifetime: Duration = 300.0
    algorithms: list[DigestAlgorithm] = Field(default_factory=_default_algorithms)

    @model_validator(mode="after")
    def _checks(self) -> SipAuthSettings:
        if self.nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime: must be > 0")
        if not self.algorithms:
            raise ValueError("algorithms: at least one")
        return self

    @property
    def enabled(self) -> bool:
        """Whether INVITEs are challenged."""
        return bool(self.users)


class SipSettings(_Section):
    """SIP listener, transports, timers and global admission limits."""

    listen: HostPort = "0.0.0.0:5090"
    transports: Annotated[
        list[Literal["udp", "tcp", "tls"]],
        BeforeValidator(lambda v: [p.strip() for p in v.split(",")] if isinstance(v, str) else v),
    ] = Field(default_factory=lambda: ["udp", "tcp"])  # type: ignore[arg-type]
    tls_listen: HostPort | None = None
    """TLS listener (default: the listen host, port + 1)."""
    advertised: str | None = None
    """Address put in Contact / Via / SDP when behind NAT (host or host:port)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_key_password: SecretStr | None = None
    t1: Duration = 0.5
    t2: Duration = 4.0
    t4: Duration = 5.0
    ack_wait: Duration = 32.0
    """How long a 2xx is retransmitted waiting for the ACK (64*T1)."""
    allowed_sources: NetworkList = Field(
        default_factory=lambda: [parse_network(n) for n in LOOPBACK]
    )
    """Who may send us INVITEs at all (default: loopback only)."""
    max_calls: int = Field(default=200, ge=1)
    drain_timeout: Duration = 30.0
    tcp_max_connections: int = Field(default=1024, ge=1, le=1_000_000)
    """TCP/TLS connections held at once (accepted and outgoing); one more accepted is closed."""
    tcp_max_per_source: int = Field(default=64, ge=1, le=1_000_000)
    """Accepted TCP/TLS connections from one IP address at once."""
    tcp_idle_timeout: Duration = 300.0
    """A TCP/TLS connection without traffic for this long is closed."""
    tcp_message_timeout: Duration = 10.0
    """A SIP message started on a TCP/TLS connection must be complete within this time."""
    user_agent: str = "w3sipagent"
    auth: SipAuthSettings = Field(default_factory=SipAuthSettings)
    """Digest authentication of incoming INVITEs (off unless ``auth.users`` is set)."""

    @model_validator(mode="after")
    def _checks(self) -> SipSettings:
        if "tls" in self.transports and (self.tls_cert is None or self.tls_key is None):
            raise ValueError("transports: tls needs tls_cert and tls_key")
        if not self.transports:
            raise ValueError("transports: at least one of udp, tcp, tls")
        if self.t1 <= 0 or self.t2 < self.t1:
            raise ValueError("t1/t2: need 0 < t1 <= t2")
        if self.tcp_idle_timeout <= 0 or self.tcp_message_timeout <= 0:
            raise ValueError("tcp_idle_timeout/tcp_message_timeout: must be above 0")
        if self.tcp_max_per_source > self.tcp_max_connections:
            raise ValueError("tcp_max_per_source: at most tcp_max_connections")
        return self

    @property
    def listen_address(self) -> tuple[str, int]:
        """The listen address as (host, port)."""
        return parse_hostport(self.listen)

    @property
    def tls_address(self) -> tuple[str, int]:
        """The TLS listen address: ``tls_listen``, else the listen host and port + 1."""
        if self.tls_listen is not None:
            return parse_hostport(self.tls_listen)
        host, port = self.listen_address
        return host, (port + 1 if port else 0)


class RtpSettings(_Section):
    """RTP port range and media policies."""

    port_min: int = Field(default=20000, ge=1024, le=65534)
    port_max: int = Field(default=20999, ge=1025, le=65535)
    inactivity_timeout: Duration = 30.0
    source_policy: Literal["latch", "strict", "latch-any"] = "latch"
    """``latch``: follow the first source seen from the SDP address' host; ``strict``: only
    the SDP address; ``latch-any``: latch onto whatever source sends first (NAT)."""
    send_silence: bool = True
    """Send silence frames while the agent is quiet (keeps NAT bindings and jitter buffers happy)."""
    talkspurt_kick: bool = True
    """Send the first agent frame of a turn as soon as it arrives instead of at the call's
    next 20 ms tick (marker bit set). Over continuous silence the turn then runs up to one
    frame ahead of its RTP timestamps; that lead absorbs a late frame from the model and is
    handed back at the end of the turn (or 2 ms per silence packet)."""
    receive_buffer: int | None = Field(default=16384, ge=1024, le=1 << 26)
    """SO_RCVBUF asked for on each RTP socket (bytes; Linux grants twice that). The default
    bounds what a CPU-starved agent can queue to ~0.8 s of 20 ms audio (the system default,
    208 KB, holds ~5 s). None: the system default."""
    relatch_packets: int = Field(default=5, ge=1, le=100)
    """Consecutive packets of the call's established stream (its SSRC, its sequence
    continued) from a new source before the audio follows it (a caller's NAT rebinding).
    Other packets from other sources are dropped and counted (``foreign``)."""
    max_packet_ms: int | None = Field(default=None, ge=10, le=1000)
    """The most audio one RTP packet may carry (ms); bigger ones are dropped and counted
    (``oversize``). Default: twice the negotiated ptime, at least 60 ms."""
    receive_batch: int = Field(default=32, ge=1, le=1024)
    """RTP datagrams read per socket wake-up (until the socket is empty): a backlog left by a
    pause drains in one event loop pass. 1: asyncio's one datagram per loop iteration."""
    receive_budget: int = Field(default=256, ge=0, le=1_000_000)
    """RTP datagrams all calls of a process may read in one event loop iteration beyond one
    per socket wake-up (the batches together): after a pause every call's backlog is read
    over several iterations, with the pacer running between them, not in one long one. 0:
    no bound."""

    @model_validator(mode="after")
    def _range(self) -> RtpSettings:
        if self.port_max <= self.port_min:
            raise ValueError(
                f"port_max: must be above port_min ({self.port_max} <= {self.port_min})"
            )
        return self


class RealtimeSettings(_Section):
    """The Realtime API endpoint and defaults."""

    base_url: str = "wss://api.openai.com/v1"
    """The API base (``…/v1``); the client adds ``/realtime`` (WebSocket) or
    ``/realtime/calls`` (WebRTC). A URL ending in ``/realtime`` is accepted and trimmed."""
    model: str = "gpt-realtime"
    connect_timeout: Duration = 10.0
    reconnect_timeout: Duration = 3.0
    ping_interval: Duration = 5.0
    """WebSocket keepalive ping of the Realtime and GPT-Live sessions every so often (0:
    none): a stalled or half-open connection is noticed within ``ping_interval +
    ping_timeout`` (+ the client's 2 s closing handshake)."""
    ping_timeout: Duration = 15.0
    """A pong later than this ends the session as lost (was 5 s: on an overloaded machine,
    where either process can wait seconds for a CPU, sessions were lost in bursts)."""
    append_ms: int = Field(default=0, ge=0, le=1000)
    """Caller audio is sent in ``input_audio_buffer.append`` events of at least this many
    ms (0: every RTP frame as it arrives). 40-60 halves or thirds the agent's per-call
    cost of the AI connection, for up to that much later speech detection."""
    api_key: SecretStr | None = None
    """Key for tenants without their own ``api_key`` reference (None: no default key)."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError("must start with ws://, wss://, http:// or https://")
        v = v.rstrip("/")
        return v[: -len("/realtime")] if v.endswith("/realtime") else v


class RecordsSettings(_Section):
    """CDR database, recordings and activity log."""

    database_url: str = "sqlite+aiosqlite:///./var/w3sipagent.db"
    """SQLAlchemy URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB."""
    database_password: SecretStr | None = None
    """Kept apart from the URL so that it can come from the environment."""
    recordings_dir: Path = Path("var/recordings")
    activity_window: Duration = 60.0
    """Admission decisions are counted per (source, tenant, code, reason) per window."""
    activity_retention: Duration = 30 * 86400.0
    retention_interval: Duration = 3600.0
    """How often expired transcripts and recordings are purged."""

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(v)
        except ArgumentError:
            raise ValueError("not a database URL such as sqlite+aiosqlite:///var/db") from None
        drivers = {
            "sqlite": "sqlite+aiosqlite",
            "sqlite+aiosqlite": "sqlite+aiosqlite",
            "postgresql": "postgresql+asyncpg",
            "postgres": "postgresql+asyncpg",
            "postgresql+asyncpg": "postgresql+asyncpg",
        }
        driver = drivers.get(url.drivername)
        if driver is None:
            raise ValueError(
                f"database {url.drivername!r} is not supported: use sqlite+aiosqlite or postgresql+asyncpg"
            )
        return url.set(drivername=driver).render_as_string(hide_password=False)

    def url(self) -> str:
        """The URL to connect with, the password added (do not log it)."""
        from sqlalchemy.engine import make_url

        u = make_url(self.database_url)
        if self.database_password is not None:
            u = u.set(password=self.database_password.get_secret_value())
        return u.render_as_string(hide_password=False)

    def display_url(self) -> str:
        """The URL with any password masked: safe to log and print."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)


OFF = "off"
"""The value that switches a listener off where a flag, a variable or TOML cannot say null."""


class MetricsSettings(_Section):
    """Prometheus metrics and the health endpoint (None or ``"off"``: off). With ``token``
    (best from the environment: ``W3SIPAGENT_METRICS__TOKEN``) or ``token_env`` (the name
    of the variable holding it) every request needs ``Authorization: Bearer <token>``."""

    listen: HostPort | None = "127.0.0.1:9464"
    token: SecretStr | None = None
    token_env: str | None = None
    loop_lag_interval: Duration = 0.1
    """How often the event loop lag monitor measures (0: no monitor)."""
    loop_stall_threshold: Duration = 0.1
    """A lag this long is a stall, logged with the loop's stack (0: no stack sampling)."""

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        return None if v is None else check_env_name(v)

    @model_validator(mode="after")
    def _one_token(self) -> MetricsSettings:
        if self.token is not None and self.token_env is not None:
            raise ValueError("token, token_env: set one, not both")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("token: at least 16 characters")
        return self

    def bearer_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The token the endpoints require (None: none). Raises :class:`ConfigError` when
        ``token_env`` names an unset or empty variable."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_env is None:
            return None
        env = os.environ if environ is None else environ
        value = env.get(self.token_env, "").strip()
        if not value:
            raise ConfigError(
                f"metrics.token_env: environment variable {self.token_env} is not set"
            )
        return value

    @field_validator("listen", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() == OFF else v


class LoggingSettings(_Section):
    """Log level and format, SIP message trace."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    json_logs: bool | None = Field(default=None, alias="json")
    """JSON lines (True), human text (False), or JSON unless on a terminal (None)."""
    sip_trace: bool = False
    sip_trace_path: Path = Path("var/sip-trace.jsonl")
    sip_trace_max_bytes: int = Field(default=50_000_000, ge=4096)
    """A trace file is rotated (``.1``, ``.2``...) when it reaches this size."""
    sip_trace_files: int = Field(default=3, ge=1)
    """How many trace files are kept (the current one and the rotated ones)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class ControlSettings(_Section):
    """Where tenants come from: the config file, the control-plane database, or both."""

    source: Literal["file", "database", "both"] = "file"
    """``file``: [tenants.*] only; ``database``: the records database only; ``both``: the
    file's tenants (read-only) plus the database's."""
    poll_interval: Duration = 1.0
    """Seconds between checks of the database's change counter (changes reach new calls
    within this time on every process sharing the database)."""


class ApiSettings(_Section):
    """The control-plane HTTP API (off unless ``listen`` is set)."""

    listen: HostPort | None = None
    admin_token: SecretStr | None = None
    """The admin bearer token (``W3SIPAGENT_API__ADMIN_TOKEN``); tenant tokens live in the
    database (``w3sipagent api-token create``)."""
    agent_addresses: StrList = Field(default_factory=list)
    """The agents' SIP addresses HOST:PORT for FreeSWITCH's bridge string, in failover order
    (default: sip.advertised, else sip.listen)."""
    profile: str = "external"
    """The Sofia profile the routing endpoints bridge on."""
    live_push_interval: Duration = Field(default=0.1, gt=0, le=5)
    """How often a console's live stream looks for a change to push (seconds): a new call
    or transcript line reaches the page within about this plus the network."""
    live_ticket_ttl: Duration = Field(default=60.0, gt=0, le=3600)
    """How long a live-stream ticket may be used to open a stream (seconds)."""
    token_cache_ttl: Duration = 5.0
    """How long a database token, once found, is trusted without asking the database again
    (0: every request asks). Keeps FreeSWITCH's route lookups off the database; a tenant
    deleted meanwhile still gets only 404s."""

    @field_validator("listen", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() == OFF else v


class TransferSettings(_Section):
    """Blind transfers (REFER) and how long their outcome is waited for (docs/freeswitch.md)."""

    timeout: Duration = 30.0
    """How long the agent waits for a transfer's final outcome before reporting it."""
    refer_timeout: Duration = 8.0
    """How long the answer to the REFER itself may take (then ``failed`` 408)."""
    after_bye_grace: Duration = 2.0
    """When the peer hangs up before a final NOTIFY, how long one may still come."""
    rtp_silence: Duration | None = None
    """When set: no final NOTIFY and no caller RTP this long after the 202 end the wait as
    ``unknown`` (keep it above the targets' ring time: FreeSWITCH mutes the caller while the
    target rings). Unset: the wait ends at ``timeout``."""
    rtp_gone: Duration = 1.0
    """At the timeout, caller RTP missing this long means the caller left our leg."""


class ClusterSettings(_Section):
    """Several agents sharing one PostgreSQL: tenant limits and usage caps for the whole
    cluster (docs/cluster.md)."""

    limits: Literal["auto", "local", "database"] = "auto"
    """Where ``max_concurrent_calls`` is counted: ``database`` (every agent on the records
    database, PostgreSQL only), ``local`` (this process only), ``auto``: database when
    ``records.database_url`` is PostgreSQL."""
    node_id: str | None = None
    """This agent's name in the database (default: host-pid-random, new at each start)."""
    lease: Duration = 30.0
    """How long an agent's calls keep their slots without a heartbeat (a crashed agent's
    slots are free after this)."""
    heartbeat: Duration = 10.0
    """How often each agent renews its lease (keep it well below ``lease``)."""
    acquire_timeout: Duration = 5.0
    """How long admission waits for the database's answer about a slot (the caller has its
    100 Trying meanwhile)."""
    fail_open: bool = False
    """When the database fails or does not answer in time: refuse with 503 (false: the
    limit is never exceeded) or admit under this agent's local limit (true)."""
    usage_refresh: Duration = 5.0
    """Usage caps: a tenant's usage is read from the database again when older than this."""

    @model_validator(mode="after")
    def _heartbeat_below_lease(self) -> ClusterSettings:
        if not 0 < self.heartbeat < self.lease:
            raise ValueError("cluster.heartbeat must be positive and shorter than cluster.lease")
        return self


class ServerSettings(_Section):
    """The processes of ``serve`` (docs/operations.md, "All cores behind one address")."""

    workers: int = Field(default=0, ge=0, le=256)
    """Worker processes behind the one SIP address: 0 (or ``"auto"``) one per CPU core,
    1 the single process of old. ``--workers`` overrides it."""
    worker_restart_delay: Duration = 1.0
    """Seconds before a worker that died is started again."""
    worker_start_timeout: Duration = 60.0
    """How long the workers may take to start."""

    @field_validator("workers", mode="before")
    @classmethod
    def _auto(cls, v: Any) -> Any:
        return 0 if isinstance(v, str) and v.strip().lower() == "auto" else v


class Settings(BaseSettings):
    """All settings of one w3sipagent process. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    sip: SipSettings = Field(default_factory=SipSettings)
    rtp: RtpSettings = Field(default_factory=RtpSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)
    records: RecordsSettings = Field(default_factory=RecordsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    tenancy: TenancySettings = Field(default_factory=TenancySettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    transfer: TransferSettings = Field(default_factory=TransferSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)

    _origins: Origins = PrivateAttr(default_factory=dict)
    _files: list[Path] = PrivateAttr(default_factory=list)
    _include_globs: list[str] = PrivateAttr(default_factory=list)

    def attach_sources(self, origins: Origins, files: list[Path], include_globs: list[str]) -> None:
        """Record where the values came from and which files were read (:func:`load_settings`)."""
        self._origins = origins
        self._files = list(files)
        self._include_globs = list(include_globs)

    @property
    def config_file(self) -> Path | None:
        """The main config file read (None when there was none)."""
        return self._files[0] if self._files else None

    @property
    def files(self) -> list[Path]:
        """Every config file read: the main file then the included ones."""
        return list(self._files)

    @property
    def include_globs(self) -> list[str]:
        """The absolute include patterns of the main file (for the reload watcher)."""
        return list(self._include_globs)

    def source_of(self, key: str) -> str:
        """Where ``key`` (dotted, e.g. ``sip.listen``) was set: default / file:PATH / env:NAME / flag."""
        return origin_of(tuple(key.split(".")), self._origins, tables=False) or "default"

    def describe(self) -> list[tuple[str, str, str]]:
        """Every leaf setting as (dotted key, display value, source); secrets masked."""
        rows: list[tuple[str, str, str]] = []
        for key, value in leaves(self.model_dump(mode="json", by_alias=True), ()):
            shown = "**********" if value == "**********" else json.dumps(value)
            if key == ("records", "database_url"):
                shown = json.dumps(self.records.display_url())
            dotted = ".".join(key)
            rows.append((dotted, shown, self.source_of(dotted)))
        return rows


def find_config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$W3SIPAGENT_CONFIG`` if set, else ``./w3sipagent.toml`` if it exists, else None."""
    env = os.environ if environ is None else environ
    named = env.get(CONFIG_PATH_ENV)
    if named:
        return Path(named)
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def load_settings(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    discover: bool = True,
) -> Settings:
    """Read the file (and its includes), the environment and the flags; validate.

    ``path`` None: :func:`find_config_file` when ``discover``, else defaults only.
    Relative paths inside a file are taken relative to that file's folder.
    Raises :class:`ConfigError` (a :class:`ConfigProblems`) with one line per problem.
    """
    env = os.environ if environ is None else environ
    if path is None and discover:
        path = find_config_file(env)
    doc = read_config_file(path) if path is not None else ConfigDocument()
    data = doc.data
    origins: Origins = dict(doc.origins)
    for key, value, name in env_layer(env, Settings.model_fields):
        deep_set(data, key, value)
        record_origins(value, key, f"env:{name}", origins)
    for key, value in flag_layer(overrides or {}):
        deep_set(data, key, value)
        record_origins(value, key, "flag", origins)
    main = str(path) if path is not None else "config"
    problems = _prepare_tenants(data, origins, main)
    if problems:
        raise ConfigProblems(problems)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigProblems(format_validation_error(e, origins, main)) from None
    anchor_paths(settings, (), origins)
    origin = origin_of(("records", "database_url"), origins, tables=False)
    settings.records.database_url = anchor_sqlite_url(settings.records.database_url, origin)
    conflicts = ownership_conflicts(settings.tenants)
    if conflicts:
        raise ConfigProblems(
            [
                problem_line(origins, ("tenants", tid, *key.split(".")), main, tid, key, msg)
                for tid, key, msg in conflicts
            ]
        )
    settings.attach_sources(origins, list(doc.files), list(doc.include_globs))
    return settings


def _prepare_tenants(data: dict[str, Any], origins: Origins, main: str) -> list[str]:
    tenants = data.get("tenants")
    if tenants is None:
        return []
    if not isinstance(tenants, dict):
        return [
            problem_line(
                origins, ("tenants",), main, None, "tenants", "must be tables [tenants.NAME]"
            )
        ]
    problems = []
    for tid, table in tenants.items():
        if not isinstance(table, dict):
            problems.append(
                problem_line(
                    origins, ("tenants", tid), main, tid, "", "must be a table [tenants.NAME]"
                )
            )
            continue
        given = table.get("id", tid)
        if given != tid:
            problems.append(
                problem_line(
                    origins,
                    ("tenants", tid, "id"),
                    main,
                    tid,
                    "id",
                    f"differs from the table name (got {given!r})",
                )
            )
        table["id"] = tid
    return problems


__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_NAME",
    "ENV_PREFIX",
    "OFF",
    "ApiSettings",
    "ConfigError",
    "ConfigProblems",
    "ControlSettings",
    "LoggingSettings",
    "MetricsSettings",
    "RealtimeSettings",
    "RecordsSettings",
    "RtpSettings",
    "Settings",
    "SipSettings",
    "StrList",
    "TenancySettings",
    "find_config_file",
    "load_settings",
    "parse_hostport",
]
