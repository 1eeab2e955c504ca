"""REGISTER mode through AgentService, against an in-process UDP registrar with real digest.

The registrar (below) challenges every REGISTER (401, DigestServer), verifies the answer
with the tenant's password and keeps the bindings. The service registers each tenant
``registrations.NAME`` at start, re-applies a changed tenant table (keeping unchanged
registrations), and unregisters on drain and close. A call sent to the Contact the registrar
holds (what a registrar/proxy does with a call to the AOR) resolves to the tenant through the
registration and is bridged to the scripted AI. The same against a real Kamailio is in
tests/agent/test_service_register_kamailio.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import rms_pcm, tone_ulaw, wait_until
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import (
    AgentService,
    registration_contact_user,
    resolve_registrar_host,
)
from w3sipagent.ai.session import AISessionConfig
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.register import RegisterConfig
from w3sipagent.asyncio.useragent import CallRejected, UserAgent
from w3sipagent.config import Settings
from w3sipagent.errors import ConfigError
from w3sipagent.metrics import Metrics
from w3sipagent.records.cdr import Disposition
from w3sipagent.sip.auth import DigestServer
from w3sipagent.sip.headers import NameAddr
from w3sipagent.sip.ids import CountingIdSource
from w3sipagent.sip.message import SipRequest, SipResponse, make_response, parse_message
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable
from w3sipagent.tenants.models import RegistrationConfig

REALM = "pbx.example.com"
PASSWORD = "reg-pa55-0123456789"
ENV = {"ACME_KEY": "sk-acme-0123456789", "ACME_SIP_PW": PASSWORD, "WRONG_PW": "not-it-987654"}
FAST_REG = RegisterConfig(
    refresh_margin=0.05,
    request_timeout=0.5,
    backoff_initial=0.05,
    backoff_max=0.2,
    backoff_jitter=0.0,
    unregister_timeout=0.5,
)


class UdpRegistrar(asyncio.DatagramProtocol):
    """A registrar on 127.0.0.1: digest (401) on every REGISTER, bindings by AOR user."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.passwords = passwords
        self.digest = DigestServer(b"registrar-secret-0123456789", ids=CountingIdSource("n"))
        self.bindings: dict[str, str] = {}
        self.requests: list[SipRequest] = []
        self.verified: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def registers(self, user: str) -> list[SipRequest]:
        return [r for r in self.requests if r.to.uri.user == user]  # type: ignore[union-attr]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if not isinstance(msg, SipRequest) or msg.method != "REGISTER":
            return
        self.requests.append(msg)
        assert self.transport is not None
        self.transport.sendto(bytes(self.answer(msg)), addr)

    def answer(self, req: SipRequest) -> SipResponse:
        now = asyncio.get_running_loop().time()
        user = req.to.uri.user  # type: ignore[union-attr]
        assert user is not None
        authz = req.headers.get("Authorization")
        result = None
        if authz is not None:
            result = self.digest.verify(
                authz, method="REGISTER", realm=REALM, now=now, request_uri=req.uri,
                lookup_password=lambda u, r: self.passwords.get(u),
            )  # fmt: skip
        if result is None or not result.ok:
            challenges = self.digest.challenges(REALM, now=now)
            return make_response(
                req, 401, to_tag="r1", headers=[("WWW-Authenticate", c) for c in challenges]
            )
        self.verified.append(user)
        expires = int(req.headers.get("Expires") or "3600")
        contact = NameAddr.parse(req.headers.get("Contact") or "")
        if expires == 0:
            self.bindings.pop(user, None)
            return make_response(req, 200, to_tag="r1")
        self.bindings[user] = str(contact.uri)
        return make_response(
            req, 200, to_tag="r1", headers=[("Contact", f"<{contact.uri}>;expires={expires}")]
        )


@pytest.fixture
async def registrar() -> AsyncIterator[UdpRegistrar]:
    loop = asyncio.get_running_loop()
    proto = UdpRegistrar({"1000": PASSWORD, "2000": PASSWORD})
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    yield proto
    transport.close()


class AI:
    """Scripted sessions greeting with a tone; remembers the tenant of each."""

    def __init__(self) -> None:
        self.tenants: list[str] = []

    def __call__(self, tenant: str, key: str, transport: str, cfg: AISessionConfig) -> Any:
        self.tenants.append(tenant)
        greeting = ScriptedReply(tone_ulaw(400, amp=9000), f"Hi from {tenant}.")
        return ScriptedSession(cfg, greeting=greeting)


def acme(registrar_port: int, **regs: dict[str, Any]) -> TenantConfig:
    """Tenant acme, reachable only through its registrations (no hosts, no DIDs)."""
    return TenantConfig(
        id="acme",
        hosts=[],
        api_key=SecretRef(env="ACME_KEY"),
        agents={"main": AgentConfig(instructions="You are acme.", greeting="Greet.")},
        registrations={
            name: RegistrationConfig.model_validate(
                {
                    "registrar": f"sip:127.0.0.1:{registrar_port}",
                    "domain": REALM,
                    "password": {"env": "ACME_SIP_PW"},
                    "expires": 60,
                    **values,
                }
            )
            for name, values in regs.items()
        },
    )


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[tuple[AgentService, UserAgent]] = []

    async def build(table: TenantTable, **kw: Any) -> tuple[AgentService, UserAgent, AI]:
        ai = AI()
        settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
        svc = AgentService(
            settings,
            tenants=table,
            ai_factory=ai,
            ua_config=fast_config(),
            environ=ENV,
            register_config=FAST_REG,
            bridge_defaults=BridgeOptions(housekeeping_interval=0.02),
            **kw,
        )
        await svc.start()
        caller = UserAgent(fast_config())
        await caller.start()
        opened.append((svc, caller))
        return svc, caller, ai

    yield build
    for svc, caller in opened:
        await caller.close(timeout=0)
        await svc.close(timeout=0)


async def _listen(call: Call, into: list[bytes]) -> None:
    async for pcm in call.audio():
        into.append(pcm)


async def test_registers_with_digest_and_a_call_to_the_contact_is_the_tenants(
    make: Any, registrar: UdpRegistrar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    metrics = Metrics()
    table = TenantTable({"acme": acme(registrar.port, pbx={"user": "1000"})})
    svc, caller, ai = await make(table, metrics=metrics)
    await wait_until(
        lambda: (
            svc.registration_statuses().get("acme/pbx") is not None
            and svc.registration_statuses()["acme/pbx"].state == "registered"
        ),
        what="registered",
    )
    # the first REGISTER was challenged, the second carried a verified digest answer
    regs = registrar.registers("1000")
    assert len(regs) == 2
    assert regs[0].headers.get("Authorization") is None
    assert regs[1].headers.get("Authorization") is not None and registrar.verified == ["1000"]
    assert regs[1].uri == f"sip:{REALM}"  # RFC 3261 §10.2: the AOR's domain
    assert str(regs[1].to.uri) == f"sip:1000@{REALM}"
    contact = registrar.bindings["1000"]
    assert contact == f"sip:{registration_contact_user('acme', 'pbx')}@127.0.0.1:{svc.port}"
    text = metrics.render().decode()
    assert 'w3sipagent_registration_up{registration="pbx",tenant="acme"} 1.0' in text

    # the registrar/proxy sends a call to the AOR to the bound Contact
    call = await caller.dial(contact, proxy=("127.0.0.1", svc.port))
    heard: list[bytes] = []
    listener = asyncio.create_task(_listen(call, heard))
    await wait_until(lambda: len(heard) >= 10, timeout=15, what="greeting heard")
    assert max(rms_pcm(f) for f in heard) > 2000
    assert ai.tenants == ["acme"]
    await call.hangup()
    await asyncio.wait_for(listener, 5)
    await wait_until(lambda: any(c.call_id == call.call_id for c in svc.finished), what="cdr")
    cdr = next(c for c in svc.finished if c.call_id == call.call_id)
    assert cdr.tenant == "acme" and cdr.agent == "main"
    assert cdr.disposition is Disposition.CALLER_HANGUP
    # a call to our address but not through a registration is nobody's
    with pytest.raises(CallRejected) as unknown:
        await caller.dial("sip:someone@127.0.0.1", proxy=("127.0.0.1", svc.port))
    assert unknown.value.status == 404

    await svc.close(timeout=0)
    assert registrar.bindings == {}  # unregistered: Expires 0
    assert registrar.registers("1000")[-1].headers.get("Expires") == "0"
    assert svc.registration_statuses() == {}
    assert PASSWORD not in caplog.text


async def test_reload_keeps_unchanged_adds_new_and_unregisters_removed(
    make: Any, registrar: UdpRegistrar
) -> None:
    port = registrar.port
    svc, caller, _ = await make(TenantTable({"acme": acme(port, pbx={"user": "1000"})}))
    assert svc.registrations is not None
    await wait_until(lambda: "1000" in registrar.bindings, what="1000 registered")
    first = svc.registrations.get("acme/pbx")
    sent = len(registrar.registers("1000"))

    # the same registration plus a new one: the first keeps running, untouched
    both = TenantTable(
        {"acme": acme(port, pbx={"user": "1000"}, second={"user": "2000", "agent": "main"})}
    )
    await svc.sync_registrations(both)
    await wait_until(lambda: "2000" in registrar.bindings, what="2000 registered")
    assert svc.registrations.get("acme/pbx") is first
    assert len(registrar.registers("1000")) == sent
    assert set(svc.registration_statuses()) == {"acme/pbx", "acme/second"}

    # a changed registration (new expires) is re-registered; a removed one unregistered
    changed = TenantTable({"acme": acme(port, second={"user": "2000", "expires": 120})})
    await svc.sync_registrations(changed)
    assert "1000" not in registrar.bindings
    assert registrar.registers("1000")[-1].headers.get("Expires") == "0"
    await wait_until(
        lambda: registrar.registers("2000")[-1].headers.get("Expires") == "120",
        what="2000 re-registered",
    )
    assert set(svc.registration_statuses()) == {"acme/second"}
    # the removed registration's Contact no longer names a tenant
    with pytest.raises(CallRejected) as gone:
        await caller.dial(
            f"sip:{registration_contact_user('acme', 'pbx')}@127.0.0.1",
            proxy=("127.0.0.1", svc.port),
        )
    assert gone.value.status == 404


async def test_drain_unregisters_while_a_call_goes_on(make: Any, registrar: UdpRegistrar) -> None:
    svc, caller, _ = await make(TenantTable({"acme": acme(registrar.port, pbx={"user": "1000"})}))
    await wait_until(lambda: "1000" in registrar.bindings, what="registered")
    call = await caller.dial(registrar.bindings["1000"], proxy=("127.0.0.1", svc.port))
    await wait_until(lambda: call.call_id in svc.bridges, what="bridged")
    svc.drain()
    await wait_until(lambda: "1000" not in registrar.bindings, what="unregistered on drain")
    assert not call.ended  # the active call is not touched
    with pytest.raises(CallRejected) as refused:  # new calls: 503 while draining
        await caller.dial(f"sip:x@127.0.0.1:{svc.port}", proxy=("127.0.0.1", svc.port))
    assert refused.value.status == 503
    await call.hangup()


async def test_wrong_password_and_missing_reference_fail_visibly_without_the_secret(
    make: Any, registrar: UdpRegistrar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    metrics = Metrics()
    table = TenantTable(
        {
            "acme": acme(
                registrar.port,
                wrong={"user": "1000", "password": {"env": "WRONG_PW"}},
                unset={"user": "2000", "password": {"env": "NO_SUCH_VAR"}},
                nowhere={"user": "3000", "registrar": "sip:pbx.acme.invalid"},
            )
        }
    )
    svc, _, _ = await make(table, metrics=metrics)
    await wait_until(
        lambda: svc.registration_statuses()["acme/wrong"].state == "failed", what="wrong failed"
    )
    statuses = svc.registration_statuses()
    assert statuses["acme/wrong"].code == 401
    # one challenge answered, then no loop on the same credentials
    assert len(registrar.registers("1000")) == 2 and registrar.verified == []
    assert statuses["acme/unset"].state == "failed"
    assert "NO_SUCH_VAR" in statuses["acme/unset"].reason
    assert "registrations.unset.password" in statuses["acme/unset"].reason
    assert registrar.registers("2000") == []
    assert "reserved name" in statuses["acme/nowhere"].reason
    text = metrics.render().decode()
    for name in ("wrong", "unset", "nowhere"):
        assert f'w3sipagent_registration_up{{registration="{name}",tenant="acme"}} 0.0' in text
    assert ENV["WRONG_PW"] not in caplog.text and ENV["WRONG_PW"] not in repr(statuses)


async def test_run_one_tenant_registers_only_that_tenants(
    make: Any, registrar: UdpRegistrar
) -> None:
    other = TenantConfig(
        id="globex",
        hosts=["globex.example"],
        agents={"main": AgentConfig(instructions="Globex.")},
        registrations={
            "pbx": RegistrationConfig(registrar=f"sip:127.0.0.1:{registrar.port}", user="2000"),
        },
    )
    table = TenantTable({"acme": acme(registrar.port, pbx={"user": "1000"}), "globex": other})
    svc, _, _ = await make(table, only_tenant="acme")
    await wait_until(lambda: "1000" in registrar.bindings, what="acme registered")
    assert set(svc.registration_statuses()) == {"acme/pbx"}
    assert registrar.registers("2000") == []


async def test_register_false_registers_nothing(make: Any, registrar: UdpRegistrar) -> None:
    svc, _, _ = await make(
        TenantTable({"acme": acme(registrar.port, pbx={"user": "1000"})}), register=False
    )
    assert svc.registrations is None  # no REGISTER client exists: nothing can be sent
    assert registrar.requests == [] and svc.registration_statuses() == {}


async def test_registrar_host_resolution_never_queries_reserved_names() -> None:
    assert await resolve_registrar_host("192.0.2.7") == "192.0.2.7"
    assert await resolve_registrar_host("[::1]") == "::1"
    assert await resolve_registrar_host("localhost") == "127.0.0.1"
    for name in ("pbx.example", "pbx.globex.example", "x.invalid"):
        with pytest.raises(ConfigError, match="reserved name"):
            await resolve_registrar_host(name)


def test_contact_user_is_per_tenant_registration() -> None:
    assert registration_contact_user("acme", "pbx") == "reg-acme-pbx"
    assert registration_contact_user("acme", "a b/c") == "reg-acme-a-b-c"
