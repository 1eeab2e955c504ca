"""What a registration is (RFC 3261 §10), for the REGISTER client in :mod:`.register`:
:class:`Registration` (where, as whom, credentials), :class:`RegisterConfig` (timers),
:class:`RegistrationStatus` (what it is doing), when to refresh and when to retry
(:func:`refresh_delay`, :func:`backoff_delay`) and what the client needs from the user
agent (:class:`OutOfDialogRequester`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from w3sipagent.errors import ConfigError, SipParseError
from w3sipagent.sip.dialog import uri_address
from w3sipagent.sip.message import SipRequest, SipResponse
from w3sipagent.sip.uri import SipUri

__all__ = [
    "Address",
    "OutOfDialogRequester",
    "RegisterConfig",
    "Registration",
    "RegistrationState",
    "RegistrationStatus",
    "backoff_delay",
    "refresh_delay",
]

Address = tuple[str, int]
RegistrationState = Literal["idle", "registering", "registered", "failed", "unregistered"]


class OutOfDialogRequester(Protocol):
    """What the client needs from the user agent: send a request, get its final response."""

    async def request(
        self, request: SipRequest, destination: Address, transport: str = "UDP"
    ) -> SipResponse:
        """Send ``request`` (the UA adds the Via) and return its final response."""
        ...


@dataclass(frozen=True, slots=True)
class Registration:
    """One registration: where, as whom, and the credentials.

    - ``id``: the registration id (e.g. the tenant), reported in ``CallInfo.registration``;
    - ``registrar``: where REGISTERs go, with an IP literal host (``sip:127.0.0.1:25060``);
      its ``transport`` parameter selects UDP / TCP / TLS;
    - ``aor``: the address of record (To / From), e.g. ``sip:1000@pbx.example.com``;
    - ``username`` / ``password``: digest credentials (username defaults to the AOR user);
    - ``contact_user``: the user part of our Contact (default ``reg-<id>``);
    - ``expires``: the interval asked for (seconds).
    """

    id: str
    registrar: str
    aor: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    contact_user: str | None = None
    expires: int = 600

    def __post_init__(self) -> None:
        if not self.id or any(c in self.id for c in " \t\r\n;<>"):
            raise ConfigError(f"registration id {self.id!r} is empty or has separators")
        try:
            reg = SipUri.parse(self.registrar)
            aor = SipUri.parse(self.aor)
        except SipParseError as exc:
            raise ConfigError(f"registration {self.id}: bad URI: {exc.reason}") from None
        if uri_address(reg) is None:
            raise ConfigError(
                f"registration {self.id}: registrar host {reg.host!r} is not an IP address"
            )
        if not aor.user:
            raise ConfigError(f"registration {self.id}: the AOR {self.aor!r} has no user part")
        if self.expires < 0:
            raise ConfigError(f"registration {self.id}: expires must not be negative")

    @property
    def contact_user_part(self) -> str:
        """The Contact user of this registration."""
        return self.contact_user or f"reg-{self.id}"

    @property
    def auth_username(self) -> str:
        """The digest username (the AOR user unless given)."""
        return self.username or (SipUri.parse(self.aor).user or "")

    @property
    def request_uri(self) -> str:
        """The REGISTER Request-URI: the AOR's domain, no user (RFC 3261 §10.2); the
        registrar URI only says where to send it (FreeSWITCH picks the directory domain
        from it)."""
        aor = SipUri.parse(self.aor)
        port = "" if aor.port is None else f":{aor.port}"
        return f"{aor.scheme}:{aor.host}{port}"

    @property
    def destination(self) -> tuple[Address, str]:
        """(registrar address, transport)."""
        uri = SipUri.parse(self.registrar)
        addr = uri_address(uri)
        assert addr is not None
        transport = (uri.transport or ("TLS" if uri.scheme == "sips" else "UDP")).upper()
        return addr, transport


@dataclass(frozen=True, slots=True)
class RegisterConfig:
    """Timers of the REGISTER client (seconds)."""

    refresh_ratio: float = 0.8
    refresh_margin: float = 30.0
    request_timeout: float = 32.0
    backoff_initial: float = 2.0
    backoff_max: float = 300.0
    backoff_jitter: float = 0.1
    unregister_timeout: float = 4.0
    user_agent: str = "w3sipagent"

    def __post_init__(self) -> None:
        if not 0.0 < self.refresh_ratio < 1.0:
            raise ConfigError("RegisterConfig.refresh_ratio must be between 0 and 1")
        for name in ("refresh_margin", "request_timeout", "backoff_initial", "backoff_max",
                     "backoff_jitter", "unregister_timeout"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigError(f"RegisterConfig.{name} must not be negative")


@dataclass(frozen=True, slots=True)
class RegistrationStatus:
    """What a registration is doing, for the CLI and metrics.

    ``expires_at`` / ``changed_at`` are on the event loop's clock (``loop.time()``).
    """

    id: str
    state: RegistrationState = "idle"
    code: int | None = None
    reason: str = ""
    expires: int | None = None
    expires_at: float | None = None
    failures: int = 0
    changed_at: float = 0.0


def refresh_delay(granted: float, config: RegisterConfig) -> float:
    """When to refresh a registration granted for ``granted`` seconds.

    ``refresh_ratio`` of it, at least ``refresh_margin`` before expiry, never before half.
    """
    return max(granted * 0.5, min(granted * config.refresh_ratio, granted - config.refresh_margin))


def backoff_delay(failures: int, config: RegisterConfig, rand: float = 0.5) -> float:
    """Delay before retry number ``failures`` (1, 2, ...); ``rand`` in [0, 1) spreads it."""
    base = min(config.backoff_max, config.backoff_initial * (2.0 ** max(0, failures - 1)))
    return max(0.0, base * (1.0 + config.backoff_jitter * (2.0 * rand - 1.0)))
