"""The user agent's configuration: :class:`UserAgentConfig` (addresses, timers, limits)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from w3sipagent.asyncio.media import MediaConfig
from w3sipagent.errors import (
    ConfigError,
)
from w3sipagent.sip.timers import TimerConfig


@dataclass(frozen=True)
class UserAgentConfig:
    """Every address, timer and limit of a :class:`UserAgent` (seconds unless said otherwise).

    ``advertised_host``/``advertised_port``: what goes in Via, Contact and SDP ``c=`` (NAT,
    containers); default the bind address. ``allowed_sources``: IPs / CIDRs that may send
    requests at all (others get 403). ``max_calls``: global capacity (503 beyond).
    ``retry_after``: the Retry-After of every 503. ``session_expires``/``min_se``: RFC 4028.

    Digest challenge of incoming INVITEs (optional, RFC 3261 §22, RFC 8760): set
    ``auth_password(user, realm) -> password | None`` or ``auth_ha1(user, realm, algorithm)
    -> HA1 hex | None``. The realm is ``auth_realm``, or the Request-URI host (the tenant)
    when None. ``auth_proxy`` answers 407 / Proxy-Authenticate instead of 401 /
    WWW-Authenticate; a nonce is stale ``auth_nonce_lifetime`` seconds after it was issued
    (challenged again with ``stale=true``). ``send_ringing`` sends 180 before the 200;
    ``early_media`` sends 183 Session Progress with the SDP answer before the 200.
    """

    host: str = "127.0.0.1"
    port: int = 5090
    transports: tuple[str, ...] = ("udp", "tcp")
    advertised_host: str | None = None
    advertised_port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_port: int | None = None
    tls_verify: bool = True
    tls_ca: str | None = None
    # SIP timers (RFC 3261)
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    transaction_timeout: float | None = None
    ack_wait: float | None = None
    timer_c: float | None = 180.0
    timer_d: float = 32.0
    tcp_idle_timeout: float = 300.0
    tcp_message_timeout: float = 10.0
    tcp_max_connections: int = 1024
    tcp_max_per_source: int = 64
    tcp_connect_timeout: float = 5.0
    # media
    rtp_host: str | None = None
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    codecs: tuple[str, ...] = ("PCMU/8000", "PCMA/8000", "G722/8000", "opus/48000/2")
    telephone_event: bool = True
    ptime: int | None = None
    media: MediaConfig = field(default_factory=MediaConfig)
    hangup_on_media_timeout: bool = True
    audio_queue: int = 50
    # admission and limits
    allowed_sources: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    max_calls: int = 200
    retry_after: int = 5
    send_ringing: bool = False
    early_media: bool = False
    # digest challenge of incoming INVITEs
    auth_realm: str | None = None
    auth_password: Callable[[str, str], str | None] | None = None
    auth_ha1: Callable[[str, str, str], str | None] | None = None
    auth_proxy: bool = False
    auth_nonce_lifetime: float = 300.0
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    # session timers (RFC 4028)
    session_timers: bool = True
    session_expires: int = 1800
    min_se: int = 90
    # timeouts
    drain_timeout: float = 30.0
    bye_timeout: float = 2.0
    dial_timeout: float = 60.0
    request_timeout: float | None = None
    merge_window: float = 32.0
    # identity
    user_agent: str = "w3sipagent"
    contact_user: str = "w3sipagent"
    outbound_proxy: tuple[str, int] | None = None
    credentials: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        for name in ("drain_timeout", "bye_timeout", "dial_timeout", "tcp_idle_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"UserAgentConfig.{name}: must be >= 0")
        if self.tcp_message_timeout <= 0:
            raise ConfigError("UserAgentConfig.tcp_message_timeout: must be > 0")
        if not 1 <= self.tcp_max_per_source <= self.tcp_max_connections:
            raise ConfigError(
                "UserAgentConfig: need 1 <= tcp_max_per_source <= tcp_max_connections"
            )
        bad = {t.lower() for t in self.transports} - {"udp", "tcp", "tls"}
        if bad:
            raise ConfigError(f"UserAgentConfig.transports: unknown {sorted(bad)}")
        if "tls" in {t.lower() for t in self.transports} and not (self.tls_cert and self.tls_key):
            raise ConfigError("UserAgentConfig.transports: tls needs tls_cert and tls_key")
        if self.auth_password is not None and self.auth_ha1 is not None:
            raise ConfigError("UserAgentConfig: set auth_password or auth_ha1, not both")
        if self.auth_nonce_lifetime <= 0:
            raise ConfigError("UserAgentConfig.auth_nonce_lifetime: must be > 0")
        if self.max_calls < 0 or self.min_se < 1 or self.session_expires < self.min_se:
            raise ConfigError(
                "UserAgentConfig: need max_calls >= 0, 1 <= min_se <= session_expires"
            )
        for net in self.allowed_sources:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"UserAgentConfig.allowed_sources: {net!r}: {exc}") from exc

    @property
    def timers(self) -> TimerConfig:
        """The core's timer settings."""
        return TimerConfig(
            t1=self.t1,
            t2=self.t2,
            t4=self.t4,
            timeout=self.transaction_timeout,
            ack_wait=self.ack_wait,
            timer_c=self.timer_c,
            timer_d=self.timer_d,
            trying_delay=None,  # the user agent sends 100 Trying itself, at once
        )
