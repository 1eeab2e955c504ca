"""REGISTER client (RFC 3261 §10): keep one or more registrations alive at registrars.

For agents behind NAT, or deployments that prefer registration to bridging by address,
the agent registers a contact per registration (e.g. one per tenant) at a registrar
(a FreeSWITCH directory user, Kamailio...):

- digest authentication on 401/407 with :class:`~w3sipagent.sip.auth.DigestClient`
  (a wrong password stops after one answered challenge instead of looping);
- refresh before expiry: at ``refresh_ratio`` of the granted interval, but at least
  ``refresh_margin`` seconds before it runs out (never earlier than half of it);
- 423 Interval Too Brief: retry at once with the registrar's ``Min-Expires``;
- after a failure (4xx-6xx, no answer) retry with exponential backoff
  (``backoff_initial`` doubling up to ``backoff_max``, with ``backoff_jitter``);
- on shutdown, unregister (``Expires: 0``) what is registered;
- the Contact user is per registration (``contact_user``, default ``reg-<id>``) and is
  announced to the user agent with ``add_local_contact(user, registration_id)``, so a
  call arriving through the registration carries ``CallInfo.registration``.

Each registration's :class:`RegistrationStatus` (registered / failed with the reason,
expiry, failures in a row) is observable for the CLI and metrics, also through an
``on_change`` callback. The password is never logged nor shown in a repr. What a registration is, its timers and
status live in :mod:`.registration` (re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from w3sipagent.asyncio.registration import (
    Address,
    OutOfDialogRequester,
    RegisterConfig,
    Registration,
    RegistrationState,
    RegistrationStatus,
    backoff_delay,
    refresh_delay,
)
from w3sipagent.errors import AuthError, ConfigError, SipParseError, W3SipError
from w3sipagent.ids import SecureIdSource
from w3sipagent.sip.auth import DigestClient
from w3sipagent.sip.headers import NameAddr
from w3sipagent.sip.ids import IdSource
from w3sipagent.sip.message import SipRequest, SipResponse
from w3sipagent.sip.uri import SipUri

__all__ = [
    "Address",
    "OutOfDialogRequester",
    "RegisterConfig",
    "Registration",
    "RegistrationClient",
    "RegistrationManager",
    "RegistrationState",
    "RegistrationStatus",
    "backoff_delay",
    "refresh_delay",
]

log = logging.getLogger(__name__)


class RegistrationClient:
    """Keeps one :class:`Registration` alive (a task), and unregisters on :meth:`stop`."""

    def __init__(
        self,
        ua: OutOfDialogRequester,
        registration: Registration,
        contact: str,
        config: RegisterConfig | None = None,
        *,
        ids: IdSource | None = None,
        on_change: Callable[[RegistrationStatus], None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.ua = ua
        self.registration = registration
        self.contact = contact
        """Our Contact URI for this registration (``sip:reg-acme@203.0.113.5:5060``)."""
        self.config = config or RegisterConfig()
        self.ids = ids or SecureIdSource()
        self.on_change = on_change
        self._rand = rand
        self._auth = DigestClient()
        self._call_id = f"{self.ids.token(12)}"
        self._from_tag = self.ids.token(6)
        self._cseq = 0
        self._expires = registration.expires
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self.status = RegistrationStatus(registration.id)
        self.registered = asyncio.Event()
        """Set while the registration is registered."""

    def __repr__(self) -> str:
        return f"<RegistrationClient {self.registration.id} {self.status.state}>"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start registering (and refreshing) in the background."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.ensure_future(self._run())

    def refresh_now(self) -> None:
        """Re-register at once (e.g. after a network change)."""
        self._wake.set()

    async def stop(self, *, unregister: bool = True) -> None:
        """Stop refreshing; unregister (``Expires: 0``) when registered."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            # The flag ends the loop whatever the loop was doing; cancel() interrupts a
            # REGISTER in flight.
            self._wake.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if unregister and self.status.state in ("registered", "registering"):
            try:
                async with asyncio.timeout(self.config.unregister_timeout):
                    resp = await self._transaction(0)
                ok = 200 <= resp.status < 300
                self._set("unregistered" if ok else "failed", resp.status, resp.reason)
            except (TimeoutError, W3SipError) as exc:
                self._set("failed", None, f"unregister failed: {_brief(exc)}")
        elif self.status.state != "failed":
            self._set("unregistered", None, "stopped")
        self.registered.clear()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        # asyncio.timeout(), not wait_for(): on Python 3.11 wait_for() returns normally when
        # the task is cancelled just as the awaited thing completes (CPython gh-86296), and
        # this loop would then go on for ever, hanging whoever cancelled it (a test's event
        # loop teardown after a failure, a service shutting down without stop()).
        while not self._stopping:
            # cleared before the REGISTER, not after: a refresh_now() while one is in flight
            # is not lost
            self._wake.clear()
            if self.status.state != "registered":
                self._set("registering", self.status.code, self.status.reason)
            delay = await self._register_once()
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _register_once(self) -> float:
        """One REGISTER (with auth / 423 handling); returns the delay until the next."""
        cfg = self.config
        try:
            resp = await self._transaction(self._expires)
        except (TimeoutError, W3SipError) as exc:
            return self._failed(408 if isinstance(exc, TimeoutError) else None, _brief(exc))
        if 200 <= resp.status < 300:
            granted = self._granted(resp)
            if granted is None or granted <= 0:
                return self._failed(resp.status, "registrar did not keep our contact")
            loop = asyncio.get_running_loop()
            self.status = replace(
                self.status,
                state="registered",
                code=resp.status,
                reason=resp.reason,
                expires=granted,
                expires_at=loop.time() + granted,
                failures=0,
                changed_at=loop.time(),
            )
            self.registered.set()
            self._notify()
            log.info("registration %s: registered for %d s", self.registration.id, granted)
            return refresh_delay(granted, cfg)
        return self._failed(resp.status, resp.reason)

    def _failed(self, code: int | None, reason: str) -> float:
        failures = self.status.failures + 1
        loop = asyncio.get_running_loop()
        self.status = replace(
            self.status,
            state="failed",
            code=code,
            reason=reason,
            expires=None,
            expires_at=None,
            failures=failures,
            changed_at=loop.time(),
        )
        self.registered.clear()
        self._notify()
        delay = backoff_delay(failures, self.config, self._rand())
        log.warning(
            "registration %s failed (%s %s); retry in %.1f s",
            self.registration.id,
            code,
            reason,
            delay,
        )
        return delay

    async def _transaction(self, expires: int) -> SipResponse:
        """REGISTER, answering challenges and one 423; the final response."""
        reg = self.registration
        dest, transport = reg.destination
        auth: tuple[str, str] | None = None
        min_expires_tried = False
        self._auth.reset()  # every attempt may answer one challenge per realm again
        for _ in range(4):
            req = self._build(expires, auth)
            async with asyncio.timeout(self.config.request_timeout):
                resp = await self.ua.request(req, dest, transport)
            if resp.status in (401, 407) and reg.password is not None:
                proxy = resp.status == 407
                name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
                values = resp.headers.get_all(name)
                if not values or not self._auth.should_retry(values):
                    return resp
                try:
                    auth = self._auth.build_authorization(
                        values,
                        method="REGISTER",
                        uri=req.uri,
                        username=reg.auth_username,
                        password=reg.password,
                        ids=self.ids,
                        proxy=proxy,
                    )
                except AuthError as exc:
                    return SipResponse(resp.status, f"cannot authenticate: {exc}"[:80])
                continue
            if resp.status == 423 and expires and not min_expires_tried:
                min_expires_tried = True
                raw = resp.headers.get("Min-Expires")
                if raw is not None and raw.strip().isdigit():
                    expires = max(expires, int(raw.strip()))
                    self._expires = expires
                    auth = self._fresh_auth(auth, req)
                    continue
            if 200 <= resp.status < 300:
                self._auth.reset()
            return resp
        return SipResponse(500, "too many authentication rounds")

    def _fresh_auth(self, auth: tuple[str, str] | None, req: SipRequest) -> tuple[str, str] | None:
        """Credentials for the next request on the last challenge (nc + 1), never a replay."""
        reg = self.registration
        if auth is None or reg.password is None:
            return None
        return self._auth.authorization_for(
            method="REGISTER",
            uri=req.uri,
            username=reg.auth_username,
            password=reg.password,
            ids=self.ids,
            proxy=auth[0] == "Proxy-Authorization",
        )

    def _build(self, expires: int, auth: tuple[str, str] | None) -> SipRequest:
        reg = self.registration
        self._cseq += 1
        aor = SipUri.parse(reg.aor)
        to = str(NameAddr(aor))
        headers: list[tuple[str, str]] = [
            ("Max-Forwards", "70"),
            ("From", f"{to};tag={self._from_tag}"),
            ("To", to),
            ("Call-ID", self._call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", f"<{self.contact}>;expires={expires}"),
            ("Expires", str(expires)),
            ("User-Agent", self.config.user_agent),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"),
        ]
        if auth is not None:
            headers.append(auth)
        return SipRequest("REGISTER", reg.request_uri, headers)

    def _granted(self, resp: SipResponse) -> int | None:
        """The interval granted to our contact (its ``expires`` param, else Expires)."""
        ours = SipUri.parse(self.contact)
        try:
            contacts = resp.contact
        except SipParseError:
            contacts = []
        for c in contacts:
            if isinstance(c.uri, SipUri) and c.uri.equivalent(ours):
                value = c.params.get("expires")
                if value is not None and value.strip().isdigit():
                    return int(value)
                break
        else:
            if contacts:
                return None  # the registrar listed contacts, but not ours
        raw = resp.headers.get("Expires")
        if raw is not None and raw.strip().isdigit():
            return int(raw.strip())
        return self._expires

    def _set(self, state: RegistrationState, code: int | None, reason: str) -> None:
        loop = asyncio.get_running_loop()
        self.status = replace(
            self.status, state=state, code=code, reason=reason, changed_at=loop.time()
        )
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.status)
            except Exception:
                log.warning("registration on_change callback raised", exc_info=True)


def _brief(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class RegistrationManager:
    """Several registrations at once (one per tenant, say), sharing one user agent.

    ``contact_host`` / ``contact_port`` are the advertised address our Contact names;
    without them the user agent's ``contact(user, transport)`` gives the Contact URI.
    ``ua`` may offer ``add_local_contact(user, registration_id)``, which is called for
    each registration so that calls to its Contact user are tagged with it.
    """

    def __init__(
        self,
        ua: OutOfDialogRequester,
        *,
        contact_host: str | None = None,
        contact_port: int | None = None,
        config: RegisterConfig | None = None,
        ids: IdSource | None = None,
        on_change: Callable[[RegistrationStatus], None] | None = None,
    ) -> None:
        self.ua = ua
        self.contact_host = contact_host
        self.contact_port = contact_port
        self.config = config or RegisterConfig()
        self.ids = ids or SecureIdSource()
        self.on_change = on_change
        self._clients: dict[str, RegistrationClient] = {}

    def add(self, registration: Registration, *, start: bool = True) -> RegistrationClient:
        """Add (and by default start) a registration; ids must be unique."""
        if registration.id in self._clients:
            raise ConfigError(f"registration {registration.id!r} is configured twice")
        user = registration.contact_user_part
        if any(c.registration.contact_user_part == user for c in self._clients.values()):
            raise ConfigError(f"registration {registration.id!r}: contact user {user!r} in use")
        contact = self._contact(user, registration.destination[1])
        add_contact = getattr(self.ua, "add_local_contact", None)
        if add_contact is not None:
            add_contact(user, registration.id)
        client = RegistrationClient(
            self.ua,
            registration,
            contact,
            self.config,
            ids=self.ids,
            on_change=self.on_change,
        )
        self._clients[registration.id] = client
        if start:
            client.start()
        return client

    def _contact(self, user: str, transport: str) -> str:
        if self.contact_host is None or self.contact_port is None:
            make = getattr(self.ua, "contact", None)
            if make is None:
                raise ConfigError("RegistrationManager needs contact_host and contact_port")
            return str(make(user, transport))
        host = self.contact_host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        tparam = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"sip:{user}@{host}:{self.contact_port}{tparam}"

    def add_all(self, registrations: Iterable[Registration]) -> list[RegistrationClient]:
        """Add and start several registrations."""
        return [self.add(r) for r in registrations]

    def get(self, registration_id: str) -> RegistrationClient | None:
        """The client of a registration id."""
        return self._clients.get(registration_id)

    def statuses(self) -> dict[str, RegistrationStatus]:
        """Every registration's status, by id."""
        return {k: c.status for k, c in self._clients.items()}

    async def remove(self, registration_id: str, *, unregister: bool = True) -> None:
        """Stop one registration (unregistering it)."""
        client = self._clients.pop(registration_id, None)
        if client is not None:
            await client.stop(unregister=unregister)

    async def wait_registered(
        self, ids: Sequence[str] | None = None, timeout: float = 10.0
    ) -> bool:
        """Wait until the given (default: all) registrations are registered."""
        clients = (
            [self._clients[i] for i in ids] if ids is not None else list(self._clients.values())
        )
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(c.registered.wait() for c in clients))
        except TimeoutError:
            return False
        return True

    async def aclose(self, *, unregister: bool = True) -> None:
        """Stop every registration, unregistering them concurrently."""
        clients = list(self._clients.values())
        self._clients.clear()
        await asyncio.gather(*(c.stop(unregister=unregister) for c in clients))

    async def __aenter__(self) -> RegistrationManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
