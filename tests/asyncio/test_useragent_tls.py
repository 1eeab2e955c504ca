"""SIP over TLS on 127.0.0.1 with a self-signed certificate made by the test."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path

import pytest

from tests.asyncio.conftest import UaFactory
from w3sipagent.asyncio.call import Call
from w3sipagent.errors import TransactionError

x509 = pytest.importorskip("cryptography.x509")


def _self_signed(tmp: Path) -> tuple[str, str]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def test_call_over_tls_verified_both_ways(make_ua: UaFactory, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        await asyncio.sleep(0.05)  # then BYE over the same TLS connection

    server = await make_ua(
        handler=handler, transports=("udp", "tls"), tls_cert=cert, tls_key=key, tls_port=0
    )
    assert server.transports.tls_address is not None
    tls_port = server.transports.tls_address[1]
    assert tls_port != server.port
    client = await make_ua(tls_ca=cert)
    call = await client.dial(f"sip:a@127.0.0.1:{tls_port};transport=tls", transport="TLS")
    assert call.state == "active" and call.transport == "TLS"
    end = await asyncio.wait_for(call.wait_ended(), 2)
    assert end.reason == "remote_bye"
    assert answered[0].info.transport == "TLS"
    contact = server.contact(transport="TLS")
    assert contact.endswith(f":{tls_port};transport=tls")
    assert len(server.transports.connections) == 1  # the BYE reused the connection
    assert server.ports.in_use == 0 and client.ports.in_use == 0


async def test_tls_peer_with_unknown_certificate_is_refused(
    make_ua: UaFactory, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    server = await make_ua(
        handler=lambda call: call.wait_ended(),
        transports=("udp", "tls"),
        tls_cert=cert,
        tls_key=key,
        tls_port=0,
    )
    assert server.transports.tls_address is not None
    client = await make_ua()  # verifies against the system CAs: the self-signed cert fails
    with pytest.raises(TransactionError):
        await client.dial(
            f"sip:a@127.0.0.1:{server.transports.tls_address[1]};transport=tls",
            transport="TLS",
            timeout=2.0,
        )
    assert server.calls == [] and client.ports.in_use == 0
