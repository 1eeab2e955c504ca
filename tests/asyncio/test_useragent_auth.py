"""Digest challenge of incoming INVITEs (UserAgentConfig.auth_*): good, wrong, stale, 407, HA1."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.asyncio.conftest import UaFactory
from tests.asyncio.helpers import RawUac, sdp
from w3sipagent.asyncio.useragent import Accept, AdmissionRequest, CallRejected
from w3sipagent.ids import SecureIdSource
from w3sipagent.sip.auth import DigestClient
from w3sipagent.sip.message import SipResponse

USERS = {"bob": "secret-pw"}


def _password(user: str, realm: str) -> str | None:
    return USERS.get(user) if realm == "acme.example" else None


async def test_dial_with_good_credentials_is_admitted_as_that_user(make_ua: UaFactory) -> None:
    seen: list[AdmissionRequest] = []

    def admission(req: AdmissionRequest) -> Accept:
        seen.append(req)
        return Accept()

    server = await make_ua(
        handler=lambda call: call.wait_ended(), admission=admission, auth_password=_password
    )
    client = await make_ua()
    call = await client.dial(
        "sip:support@acme.example",
        proxy=("127.0.0.1", server.port),
        credentials=("bob", "secret-pw"),
    )
    assert call.state == "active"
    assert [r.auth_user for r in seen] == ["bob"]  # admission ran once, after the digest
    assert all(n.lower() != "authorization" for n, _ in server.calls[0].info.headers)
    await call.hangup()


async def test_no_or_wrong_credentials_get_401_and_no_call(make_ua: UaFactory) -> None:
    admitted: list[AdmissionRequest] = []

    def admission(req: AdmissionRequest) -> Accept:
        admitted.append(req)
        return Accept()

    server = await make_ua(
        handler=lambda call: call.wait_ended(), admission=admission, auth_password=_password
    )
    client = await make_ua()
    with pytest.raises(CallRejected) as none:
        await client.dial("sip:support@acme.example", proxy=("127.0.0.1", server.port))
    assert none.value.status == 401
    challenges = none.value.response.headers.get_all("WWW-Authenticate")
    assert [c.split("algorithm=")[1].split(",")[0] for c in challenges] == ["SHA-256", "MD5"]
    assert all('realm="acme.example"' in c and "stale" not in c for c in challenges)
    for creds in (("bob", "wrong"), ("mallory", "secret-pw")):
        with pytest.raises(CallRejected) as wrong:
            await client.dial(
                "sip:support@acme.example", proxy=("127.0.0.1", server.port), credentials=creds
            )
        assert wrong.value.status == 401
    # another tenant is another realm: bob's password for acme does not open it
    with pytest.raises(CallRejected):
        await client.dial(
            "sip:support@other.example",
            proxy=("127.0.0.1", server.port),
            credentials=("bob", "secret-pw"),
        )
    assert admitted == [] and server.calls == []
    assert server.ports.in_use == 0 and client.ports.in_use == 0


async def test_proxy_auth_407_with_ha1_lookup(make_ua: UaFactory) -> None:
    def ha1(user: str, realm: str, algorithm: str) -> str | None:
        if user != "bob":
            return None
        h = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5
        return h(f"bob:{realm}:secret-pw".encode()).hexdigest()

    server = await make_ua(
        handler=lambda call: call.wait_ended(),
        auth_ha1=ha1,
        auth_proxy=True,
        auth_realm="agents",
        auth_algorithms=("MD5",),
    )
    client = await make_ua()
    with pytest.raises(CallRejected) as info:
        await client.dial(f"sip:a@127.0.0.1:{server.port}")
    assert info.value.status == 407
    assert 'realm="agents"' in (info.value.response.headers.get("Proxy-Authenticate") or "")
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}", credentials=("bob", "secret-pw"))
    assert call.state == "active"
    await call.hangup()


def _authorize(challenge: SipResponse, uri: str, password: str = "secret-pw") -> str:
    _, value = DigestClient().build_authorization(
        challenge.headers.get_all("WWW-Authenticate"),
        method="INVITE",
        uri=uri,
        username="bob",
        password=password,
        body=b"",
        ids=SecureIdSource(),
        proxy=False,
    )
    return value


async def test_stale_nonce_is_challenged_again_with_stale_true(make_ua: UaFactory) -> None:
    server = await make_ua(
        handler=lambda call: call.wait_ended(), auth_password=_password, auth_nonce_lifetime=0.2
    )
    uac = RawUac(server.port)
    uri = f"sip:support@acme.example;fs_path=sip:127.0.0.1:{server.port}"
    try:
        uac.send(uac.request("INVITE", uri=uri, branch="z9hG4bKauth1"))
        first = await uac.recv_response()
        assert first.status == 401
        uac.send(uac.request("ACK", uri=uri, branch="z9hG4bKauth1", to_tag=first.to.tag, cseq=1))
        await asyncio.sleep(0.3)  # the nonce goes stale
        uac.cseq = 2
        stale_auth = _authorize(first, uri)
        uac.send(uac.request("INVITE", uri=uri, extra=[f"Authorization: {stale_auth}"]))
        second = await uac.recv_response()
        assert second.status == 401
        assert all("stale=true" in v for v in second.headers.get_all("WWW-Authenticate"))
        uac.send(uac.request("ACK", uri=uri, branch=None, to_tag=second.to.tag, cseq=2))
        uac.cseq = 3
        fresh = _authorize(second, uri)
        uac.send(uac.request("INVITE", uri=uri, body=sdp(40020), extra=[f"Authorization: {fresh}"]))
        ok = await uac.recv_response()
        assert ok.status == 200
        uac.send(uac.ack(ok))
        # a replayed answer (same nonce, same nc) is refused
        uac.call_id += "-replay"
        uac.send(uac.request("INVITE", uri=uri, body=sdp(40022), extra=[f"Authorization: {fresh}"]))
        replay = await uac.recv_response()
        assert replay.status == 401
        assert "stale" not in (replay.headers.get("WWW-Authenticate") or "")
    finally:
        uac.close()
