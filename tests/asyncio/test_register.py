"""REGISTER client against an in-process registrar with real digest verification.

The fake user agent answers ``request()`` as a registrar would (DigestServer challenges
and checks, binding table with expiry, scripted failures). A real registrar (Kamailio)
is used in tests/interop.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import pytest

from w3sipagent.asyncio.register import (
    RegisterConfig,
    Registration,
    RegistrationClient,
    RegistrationManager,
    RegistrationStatus,
    backoff_delay,
    refresh_delay,
)
from w3sipagent.errors import ConfigError, TransactionError
from w3sipagent.sip.auth import DigestServer
from w3sipagent.sip.headers import NameAddr
from w3sipagent.sip.ids import CountingIdSource
from w3sipagent.sip.message import SipRequest, SipResponse, make_response, parse_message

REALM = "pbx.example.com"
PASSWORDS = {"1000": "s3cret-pw", "2000": "other-pw"}
FAST = RegisterConfig(
    refresh_ratio=0.8,
    refresh_margin=0.05,
    request_timeout=0.3,
    backoff_initial=0.05,
    backoff_max=0.2,
    backoff_jitter=0.0,
    unregister_timeout=0.3,
)


@dataclass
class FakeRegistrar:
    """A registrar behind ``request()``: digest auth, bindings, scripted faults."""

    granted: int | None = None  # grant this instead of the asked interval
    min_expires: int | None = None
    fail_next: list[int] = field(default_factory=list)  # statuses to answer first (0 = no answer)
    stale_next: bool = False
    echo_contact: bool = True
    requests: list[SipRequest] = field(default_factory=list)
    destinations: list[tuple[tuple[str, int], str]] = field(default_factory=list)
    bindings: dict[str, tuple[str, float]] = field(
        default_factory=dict
    )  # aor user -> (contact, expiry)
    local_contacts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server = DigestServer(b"0123456789abcdef-secret", ids=CountingIdSource("n"))

    def add_local_contact(self, user: str, registration_id: str) -> None:
        self.local_contacts[user] = registration_id

    async def request(
        self, request: SipRequest, destination: tuple[str, int], transport: str = "UDP"
    ) -> SipResponse:
        # what goes on the wire must parse back
        wire = bytes(request).replace(
            b"\r\n", b"\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKx\r\n", 1
        )
        parsed = parse_message(wire)
        assert isinstance(parsed, SipRequest)
        self.requests.append(parsed)
        self.destinations.append((destination, transport))
        await asyncio.sleep(0.005)
        if self.fail_next:
            status = self.fail_next.pop(0)
            if status == 0:
                raise TransactionError("REGISTER timed out (timer F)")
            return make_response(parsed, status, to_tag="r1")
        now = asyncio.get_running_loop().time()
        authz = parsed.headers.get("Authorization")
        if authz is None:
            return make_response(
                parsed, 401, to_tag="r1",
                headers=[("WWW-Authenticate", v) for v in self.server.challenges(REALM, now=now)],
            )  # fmt: skip
        if self.stale_next:
            self.stale_next = False
            return make_response(
                parsed, 401, to_tag="r1",
                headers=[("WWW-Authenticate", self.server.challenge(REALM, now=now, stale=True))],
            )  # fmt: skip
        result = self.server.verify(
            authz, method="REGISTER", realm=REALM, now=now, request_uri=parsed.uri,
            lookup_password=lambda u, r: PASSWORDS.get(u),
        )  # fmt: skip
        if not result.ok:
            return make_response(
                parsed, 401, to_tag="r1",
                headers=[("WWW-Authenticate", self.server.challenge(REALM, now=now))],
            )  # fmt: skip
        expires = int(parsed.headers.get("Expires") or "3600")
        if expires and self.min_expires and expires < self.min_expires:
            return make_response(
                parsed, 423, to_tag="r1", headers=[("Min-Expires", str(self.min_expires))]
            )
        contact = NameAddr.parse(parsed.headers.get("Contact") or "")
        user = parsed.to.uri.user  # type: ignore[union-attr]
        assert user is not None
        if expires == 0:
            self.bindings.pop(user, None)
            return make_response(parsed, 200, to_tag="r1")
        grant = self.granted if self.granted is not None else expires
        self.bindings[user] = (str(contact.uri), now + grant)
        hdrs = [("Contact", f"<{contact.uri}>;expires={grant}")] if self.echo_contact else []
        return make_response(parsed, 200, to_tag="r1", headers=hdrs)


def reg(
    id_: str = "acme", user: str = "1000", password: str | None = "s3cret-pw", expires: int = 600
) -> Registration:
    return Registration(
        id=id_,
        registrar="sip:127.0.0.1:25060",
        aor=f"sip:{user}@{REALM}",
        password=password,
        expires=expires,
    )


def client(
    ua: FakeRegistrar, registration: Registration, config: RegisterConfig = FAST
) -> RegistrationClient:
    return RegistrationClient(
        ua, registration, f"sip:{registration.contact_user_part}@127.0.0.1:5090", config,
        ids=CountingIdSource("c"), rand=lambda: 0.5,
    )  # fmt: skip


async def wait_for(predicate: object, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


# ----------------------------------------------------------------- basic registration


async def test_register_with_digest_and_unregister() -> None:
    ua = FakeRegistrar()
    c = client(ua, reg())
    c.start()
    await asyncio.wait_for(c.registered.wait(), 2)
    assert c.status.state == "registered" and c.status.code == 200 and c.status.expires == 600
    assert ua.bindings["1000"][0] == "sip:reg-acme@127.0.0.1:5090"
    first, second = ua.requests
    # Request-URI: the AOR's domain; the registrar address is only where it is sent
    assert first.method == "REGISTER" and first.uri == f"sip:{REALM}"
    assert 'uri="sip:pbx.example.com"' in (second.headers.get("Authorization") or "")
    assert "Authorization" not in first.headers and "Authorization" in second.headers
    assert "SHA-256" in (second.headers.get("Authorization") or "")  # strongest offered
    assert first.call_id == second.call_id  # one Call-ID per registration
    assert second.cseq.seq == first.cseq.seq + 1
    assert first.from_.tag and first.to.tag is None
    assert str(first.to.uri) == f"sip:1000@{REALM}"
    assert first.headers.get("Contact") == "<sip:reg-acme@127.0.0.1:5090>;expires=600"
    assert ua.destinations[0] == (("127.0.0.1", 25060), "UDP")
    await c.stop()
    after = c.status
    assert after.state == "unregistered"
    last = ua.requests[-1]
    assert last.headers.get("Expires") == "0"
    assert last.headers.get("Contact") == "<sip:reg-acme@127.0.0.1:5090>;expires=0"
    assert "Authorization" in last.headers  # the unregister answered its challenge too
    assert "1000" not in ua.bindings


async def test_refresh_before_expiry() -> None:
    ua = FakeRegistrar(granted=1)  # registrar grants only 1 s
    c = client(ua, reg(expires=600))
    c.start()
    await asyncio.wait_for(c.registered.wait(), 2)
    loop = asyncio.get_running_loop()
    t_first = loop.time()
    n = len(ua.requests)
    await wait_for(lambda: len(ua.requests) > n, 2.0)
    # refresh at 0.8 * 1 s, i.e. before the binding ran out
    assert 0.7 <= loop.time() - t_first <= 0.95
    await wait_for(
        lambda: c.status.state == "registered" and ua.bindings["1000"][1] > t_first + 1.5
    )
    assert ua.bindings["1000"][1] > loop.time()  # never lapsed
    await c.stop()


def test_refresh_delay_rules() -> None:
    cfg = RegisterConfig(refresh_ratio=0.8, refresh_margin=30)
    assert refresh_delay(3600, cfg) == pytest.approx(2880)
    assert refresh_delay(120, cfg) == pytest.approx(90)  # margin wins over ratio
    assert refresh_delay(40, cfg) == pytest.approx(20)  # never before half
    assert refresh_delay(4, cfg) == pytest.approx(2)


def test_backoff_doubles_up_to_max_with_jitter() -> None:
    cfg = RegisterConfig(backoff_initial=2, backoff_max=30, backoff_jitter=0.1)
    assert [backoff_delay(n, cfg) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    assert backoff_delay(1, cfg, rand=0.0) == pytest.approx(1.8)
    assert backoff_delay(1, cfg, rand=0.999999) == pytest.approx(2.2, abs=1e-4)


# ----------------------------------------------------------------- failures


async def test_wrong_password_fails_without_looping_then_backs_off() -> None:
    ua = FakeRegistrar()
    statuses: list[RegistrationStatus] = []
    c = RegistrationClient(
        ua, reg(password="wrong"), "sip:reg-acme@127.0.0.1:5090", FAST,
        ids=CountingIdSource(), on_change=statuses.append, rand=lambda: 0.5,
    )  # fmt: skip
    c.start()
    await wait_for(lambda: c.status.failures >= 2)
    assert c.status.state == "failed" and c.status.code == 401
    # each attempt: one unauthenticated REGISTER, one answer to the challenge, no more
    assert len(ua.requests) in (4, 5)
    assert "wrong" not in repr(c) and "wrong" not in repr(c.registration)
    assert any(s.state == "failed" for s in statuses)
    await c.stop()
    assert c.status.state == "failed"  # never registered: nothing to unregister


async def test_backoff_then_recovery() -> None:
    ua = FakeRegistrar(fail_next=[503, 0, 500])
    c = client(ua, reg())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    c.start()
    await asyncio.wait_for(c.registered.wait(), 3)
    elapsed = loop.time() - t0
    # waits 0.05 + 0.1 + 0.2 (capped) between the failures
    assert 0.33 <= elapsed < 0.8
    assert c.status.failures == 0 and c.status.state == "registered"
    await c.stop()


async def test_no_answer_reports_reason() -> None:
    ua = FakeRegistrar(fail_next=[0] * 50)
    c = client(ua, reg())
    c.start()
    await wait_for(lambda: c.status.failures >= 1)
    assert c.status.state == "failed"
    assert "timed out" in c.status.reason
    await c.stop()


async def test_interval_too_brief_uses_min_expires() -> None:
    ua = FakeRegistrar(min_expires=900)
    c = client(ua, reg(expires=60))
    c.start()
    await asyncio.wait_for(c.registered.wait(), 2)
    assert c.status.expires == 900
    assert ua.requests[-1].headers.get("Expires") == "900"
    await c.stop()


async def test_stale_nonce_is_answered_again() -> None:
    ua = FakeRegistrar(granted=60)
    c = client(ua, reg())
    try:
        c.start()
        await asyncio.wait_for(c.registered.wait(), 2)
        first_expiry = c.status.expires_at
        ua.stale_next = True
        n = len(ua.requests)
        c.refresh_now()
        # registered again after the refresh: not before the stale challenge was answered
        await wait_for(lambda: c.status.expires_at != first_expiry)
        assert c.status.state == "registered" and c.status.failures == 0
        unauthenticated, stale, again = ua.requests[n:]
        assert "Authorization" not in unauthenticated.headers
        # the retry answers the new nonce the stale challenge carried (the registrar took it)
        nonces = [
            re.search(r'nonce="([^"]+)"', r.headers.get("Authorization") or "")
            for r in (stale, again)
        ]
        assert nonces[0] and nonces[1] and nonces[0].group(1) != nonces[1].group(1)
        assert [r.cseq.seq for r in (unauthenticated, stale, again)] == [
            unauthenticated.cseq.seq + k for k in range(3)
        ]
    finally:
        await c.stop()


async def test_refresh_asked_while_a_register_is_in_flight_is_not_lost() -> None:
    ua = FakeRegistrar()
    c = client(ua, reg())
    real = ua.request

    async def request_asking_refresh(
        request: SipRequest, destination: tuple[str, int], transport: str = "UDP"
    ) -> SipResponse:
        if len(ua.requests) == 1:  # the answer to the first challenge is on its way
            c.refresh_now()
        return await real(request, destination, transport)

    ua.request = request_asking_refresh  # type: ignore[method-assign]
    try:
        c.start()
        # the first registration (2 requests) and, at once, the asked refresh (2 more)
        await wait_for(lambda: len(ua.requests) >= 4 and c.status.state == "registered")
        assert [r.headers.get("Expires") for r in ua.requests[:4]] == ["600"] * 4
    finally:
        await c.stop()


async def test_cancelled_as_a_response_completes_the_client_still_ends() -> None:
    """A cancellation arriving in the loop iteration a REGISTER's response completes must
    end the client's task (asyncio.wait_for() on 3.11 returned the response instead, and the
    registration loop ran on for ever: a test failure became a 120 s hang at teardown)."""
    ua = FakeRegistrar()
    c = client(ua, reg())
    real = ua.request

    async def request_then_cancelled(
        request: SipRequest, destination: tuple[str, int], transport: str = "UDP"
    ) -> SipResponse:
        resp = await real(request, destination, transport)
        if len(ua.requests) == 1:
            assert c._task is not None
            asyncio.get_running_loop().call_soon(c._task.cancel)
        return resp

    ua.request = request_then_cancelled  # type: ignore[method-assign]
    c.start()
    task = c._task
    assert task is not None
    try:
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done and task.cancelled()
        assert len(ua.requests) <= 2 and "1000" not in ua.bindings
    finally:
        await c.stop(unregister=False)


async def test_registrar_without_our_contact_is_failure() -> None:
    ua = FakeRegistrar(echo_contact=False)
    ua.granted = 0  # "200 OK" but Expires 0 via the header path

    async def strip(
        request: SipRequest, destination: tuple[str, int], transport: str = "UDP"
    ) -> SipResponse:
        resp = await FakeRegistrar.request(ua, request, destination, transport)
        if resp.status == 200:
            resp.headers.add("Contact", "<sip:someone-else@127.0.0.1:5999>;expires=600")
        return resp

    ua.request = strip  # type: ignore[method-assign]
    c = client(ua, reg())
    c.start()
    await wait_for(lambda: c.status.failures >= 1)
    assert c.status.state == "failed" and "did not keep" in c.status.reason
    await c.stop(unregister=False)


# ----------------------------------------------------------------- several at once


async def test_manager_registers_several_with_own_contacts() -> None:
    ua = FakeRegistrar()
    seen: list[tuple[str, str]] = []
    mgr = RegistrationManager(
        ua, contact_host="127.0.0.1", contact_port=5090, config=FAST, ids=CountingIdSource(),
        on_change=lambda s: seen.append((s.id, s.state)),
    )  # fmt: skip
    mgr.add(reg("acme", "1000", "s3cret-pw"))
    mgr.add(reg("globex", "2000", "other-pw"))
    assert await mgr.wait_registered(timeout=2)
    assert {k: s.state for k, s in mgr.statuses().items()} == {
        "acme": "registered",
        "globex": "registered",
    }
    assert ua.bindings["1000"][0] == "sip:reg-acme@127.0.0.1:5090"
    assert ua.bindings["2000"][0] == "sip:reg-globex@127.0.0.1:5090"
    assert ua.local_contacts == {"reg-acme": "acme", "reg-globex": "globex"}
    call_ids = {r.call_id for r in ua.requests}
    assert len(call_ids) == 2
    with pytest.raises(ConfigError, match="twice"):
        mgr.add(reg("acme"))
    await mgr.aclose()
    assert ua.bindings == {}
    assert ("acme", "unregistered") in seen and ("globex", "unregistered") in seen


async def test_manager_tcp_contact_and_destination() -> None:
    ua = FakeRegistrar()
    mgr = RegistrationManager(ua, contact_host="127.0.0.1", contact_port=5090, config=FAST)
    r = Registration(
        id="t",
        registrar="sip:127.0.0.1:25060;transport=tcp",
        aor="sip:1000@x.example",
        password="s3cret-pw",
    )
    c = mgr.add(r)
    assert c.contact == "sip:reg-t@127.0.0.1:5090;transport=tcp"
    assert await mgr.wait_registered(timeout=2)
    assert ua.destinations[0] == (("127.0.0.1", 25060), "TCP")
    await mgr.aclose()


async def test_manager_takes_the_contact_from_the_user_agent() -> None:
    ua = FakeRegistrar()
    made: list[tuple[str, str]] = []

    def contact(user: str, transport: str = "UDP") -> str:
        made.append((user, transport))
        return f"sip:{user}@192.0.2.7:5099"  # an advertised (NAT) address

    ua.contact = contact  # type: ignore[attr-defined]
    mgr = RegistrationManager(ua, config=FAST)
    c = mgr.add(reg())
    assert made == [("reg-acme", "UDP")]
    assert await mgr.wait_registered(timeout=2)
    assert ua.bindings["1000"][0] == "sip:reg-acme@192.0.2.7:5099"
    await mgr.aclose()
    assert c.status.state == "unregistered"
    bare = FakeRegistrar()  # no contact() and no address given: nothing to register
    with pytest.raises(ConfigError, match="contact_host"):
        RegistrationManager(bare, config=FAST).add(reg("x"))
    assert bare.local_contacts == {}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"registrar": "sip:pbx.example.com"}, "not an IP address"),
        ({"registrar": "http://x"}, "bad URI"),
        ({"aor": "sip:example.com"}, "no user part"),
        ({"id": "a b"}, "separators"),
        ({"expires": -1}, "negative"),
    ],
)
def test_bad_registration_config(kwargs: dict[str, object], needle: str) -> None:
    base: dict[str, object] = {"id": "x", "registrar": "sip:127.0.0.1", "aor": "sip:1@a.example"}
    base.update(kwargs)
    with pytest.raises(ConfigError, match=needle):
        Registration(**base)  # type: ignore[arg-type]


def test_bad_register_config() -> None:
    with pytest.raises(ConfigError, match="refresh_ratio"):
        RegisterConfig(refresh_ratio=1.5)
    with pytest.raises(ConfigError, match="backoff_max"):
        RegisterConfig(backoff_max=-1)
