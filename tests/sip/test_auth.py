"""Digest authentication (RFC 7616 / RFC 8760 / RFC 2617): published vectors, client logic, server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from w3sipagent.errors import AuthError
from w3sipagent.sip.auth import (
    AuthParseError,
    AuthStatus,
    DigestChallenge,
    DigestClient,
    DigestServer,
    best_challenge,
    compute_ha1,
    compute_response,
    parse_auth_params,
    parse_challenges,
)
from w3sipagent.sip.ids import CountingIdSource

SECRET = b"0123456789abcdef-server-secret"
PASSWORD = "hunter2-Secret!"


class FixedIds:
    """An IdSource that returns given tokens (the cnonce of a published example)."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)

    def token(self, nbytes: int = 8) -> str:
        return self.tokens.pop(0)

    def randbits(self, k: int) -> int:
        return 1


def params(value: str) -> dict[str, str]:
    ((scheme, p),) = parse_auth_params(value)
    assert scheme == "Digest"
    return p


# ----------------------------------------------------------------- published vectors

RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_section_3_5_example() -> None:
    name, value = DigestClient().build_authorization(
        [RFC2617_CHALLENGE],
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        ids=FixedIds("0a4f113b"),
    )
    p = params(value)
    assert name == "Authorization"
    assert p["response"] == "6629fae49393a05397450978507c4ef1"
    assert (p["qop"], p["nc"], p["cnonce"]) == ("auth", "00000001", "0a4f113b")
    assert p["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41" and p["algorithm"] == "MD5"
    assert (p["username"], p["realm"], p["uri"]) == (
        "Mufasa",
        "testrealm@host.com",
        "/dir/index.html",
    )
    assert "qop=auth, nc=00000001" in value  # qop and nc are tokens, not quoted


RFC7616_COMMON = (
    'realm="http-auth@example.org", qop="auth, auth-int", '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def _rfc7616(values: list[str]) -> dict[str, str]:
    _, value = DigestClient().build_authorization(
        values,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        ids=FixedIds(RFC7616_CNONCE),
    )
    return params(value)


def test_rfc7616_3_9_1_prefers_sha256_of_two_challenges() -> None:
    p = _rfc7616(
        [f"Digest {RFC7616_COMMON}, algorithm=MD5", f"Digest {RFC7616_COMMON}, algorithm=SHA-256"]
    )
    assert p["algorithm"] == "SHA-256"
    assert p["response"] == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert p["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_rfc7616_3_9_1_md5_and_both_challenges_in_one_value() -> None:
    p = _rfc7616([f"Digest {RFC7616_COMMON}, algorithm=MD5"])
    assert p["algorithm"] == "MD5" and p["response"] == "8ca523f5e9506fed4657c9700eebdbec"
    both = _rfc7616(
        [f"Digest {RFC7616_COMMON}, algorithm=MD5, Digest {RFC7616_COMMON}, algorithm=SHA-256"]
    )
    assert both["algorithm"] == "SHA-256"


def test_rfc7616_3_9_2_sha512_256_with_userhash() -> None:
    challenge = (
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, '
        'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
        'opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true'
    )
    _, value = DigestClient().build_authorization(
        [challenge],
        method="GET",
        uri="/doe.json",
        username="J\u00e4s\u00f8n Doe",
        password="Secret, or not?",
        ids=FixedIds("NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v"),
    )
    p = params(value)
    assert p["userhash"] == "true" and p["algorithm"] == "SHA-512-256"
    # The RFC's printed values were computed with SHA-512 cut to 256 bits, not with FIPS 180-4
    # SHA-512/256 (RFC 7616 errata; Kamailio, the SIP server, uses the real SHA-512/256 too).
    # Prove that is the only difference: the RFC's numbers come out of the same formula with
    # truncated SHA-512, and ours with SHA-512/256.
    user = "J\u00e4s\u00f8n Doe"

    def trunc512(s: str) -> str:
        return hashlib.sha512(s.encode()).hexdigest()[:64]

    def sha512_256(s: str) -> str:
        return hashlib.new("sha512_256", s.encode()).hexdigest()

    nonce, cnonce = (
        "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK",
        "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    )
    for h, username, response in (
        (
            trunc512,
            "488869477bf257147b804c45308cd62ac4e25eb717b12b298c79e62dcea254ec",
            "ae66e67d6b427bd3f120414a82e4acff38e8ecd9101d6c861229025f607a79dd",
        ),
        (sha512_256, p["username"], p["response"]),
    ):
        assert h(f"{user}:api@example.org") == username
        ha1 = h(f"{user}:api@example.org:Secret, or not?")
        assert h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{h('GET:/doe.json')}") == response
    assert p["username"] == "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"


def test_freeswitch_register_authorization_vector_parses(vectors: Path) -> None:
    raw = (
        (vectors / "freeswitch/sip3-freeswitch-gateway_REGISTER_unregister_with_auth.sip")
        .read_bytes()
        .decode()
    )
    line = next(v for v in raw.split("\r\n") if v.startswith("Authorization:"))
    p = params(line.split(":", 1)[1])
    assert p == {
        "username": "26101986",
        "realm": "192.168.10.5",
        "nonce": "02305a0082903a108000000c290b59cf@vs.krsk.info",
        "algorithm": "MD5",
        "uri": "sip:192.168.10.5:5060;transport=udp",
        "response": "62d03a51b79827db20ef40ff02c3eb15",
    }


# ----------------------------------------------------------------- client behaviour


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def test_md5_sess_auth_int_and_legacy_forms() -> None:
    ids = FixedIds("cn1", "cn2", "cn3")
    client = DigestClient()
    _, v = client.build_authorization(
        ['Digest realm="r", nonce="n1", algorithm=MD5-sess, qop="auth-int"'],
        method="INVITE",
        uri="sip:bob@b.example",
        username="alice",
        password=PASSWORD,
        body=b"v=0\r\n",
        ids=ids,
    )
    p = params(v)
    ha1 = _md5(f"{_md5(f'alice:r:{PASSWORD}')}:n1:cn1")
    ha2 = _md5(f"INVITE:sip:bob@b.example:{_md5('v=0' + chr(13) + chr(10))}")
    assert p["qop"] == "auth-int" and p["algorithm"] == "MD5-sess"
    assert p["response"] == _md5(f"{ha1}:n1:00000001:cn1:auth-int:{ha2}")
    # RFC 2069 style challenge without qop: no cnonce, no nc
    _, legacy = DigestClient().build_authorization(
        ['Digest realm="r", nonce="n2"'],
        method="BYE",
        uri="sip:b",
        username="alice",
        password=PASSWORD,
        ids=ids,
    )
    lp = params(legacy)
    assert "cnonce" not in lp and "nc" not in lp and "qop" not in lp
    assert lp["response"] == _md5(f"{_md5(f'alice:r:{PASSWORD}')}:n2:{_md5('BYE:sip:b')}")


def test_nc_counts_per_nonce_and_preemptive_reuse() -> None:
    ids = CountingIdSource("c")
    client = DigestClient()
    assert (
        client.authorization_for(method="BYE", uri="sip:x", username="u", password="p", ids=ids)
        is None
    )
    ch = ['Digest realm="r", nonce="n1", qop="auth"']
    first = params(
        client.build_authorization(
            ch, method="REGISTER", uri="sip:r", username="u", password="p", ids=ids
        )[1]
    )
    again = client.authorization_for(
        method="REGISTER", uri="sip:r", username="u", password="p", ids=ids
    )
    assert again is not None and again[0] == "Authorization"
    second = params(again[1])
    assert (first["nc"], second["nc"]) == ("00000001", "00000002")
    assert first["cnonce"] != second["cnonce"]
    other = ['Digest realm="r", nonce="n2", qop="auth"']
    third = params(
        client.build_authorization(
            other, method="REGISTER", uri="sip:r", username="u", password="p", ids=ids
        )[1]
    )
    assert third["nc"] == "00000001"
    for i in range(70):  # counters are bounded
        client.build_authorization(
            [f'Digest realm="r", nonce="x{i}", qop="auth"'],
            method="M",
            uri="u",
            username="u",
            password="p",
            ids=ids,
        )
    fourth = params(
        client.build_authorization(
            ch, method="REGISTER", uri="sip:r", username="u", password="p", ids=ids
        )[1]
    )
    assert fourth["nc"] == "00000001"  # n1's counter was evicted: a fresh start, never a reuse


def test_proxy_authorization_header_name() -> None:
    name, _ = DigestClient().build_authorization(
        ['Digest realm="proxy", nonce="n", qop="auth"'],
        method="INVITE",
        uri="sip:b",
        username="u",
        password="p",
        ids=CountingIdSource(),
        proxy=True,
    )
    assert name == "Proxy-Authorization"


def test_retry_policy_stale_once_never_wrong_password_forever() -> None:
    ids = CountingIdSource()
    client = DigestClient()
    first = ['Digest realm="r", nonce="n1", qop="auth"']
    assert client.should_retry(first) and not DigestClient.is_stale(first)
    client.build_authorization(
        first, method="REGISTER", uri="sip:r", username="u", password="bad", ids=ids
    )
    rejected = ['Digest realm="r", nonce="n2", qop="auth"']
    assert not client.should_retry(rejected)  # same realm, not stale: the password is wrong
    stale = ['Digest realm="r", nonce="n3", qop="auth", stale=TRUE']
    assert DigestClient.is_stale(stale)
    assert client.should_retry(stale)
    client.build_authorization(
        stale, method="REGISTER", uri="sip:r", username="u", password="p", ids=ids
    )
    assert not client.should_retry(
        ['Digest realm="r", nonce="n4", qop="auth", stale=true']
    )  # only once
    assert client.should_retry(
        ['Digest realm="other", nonce="n5", qop="auth"']
    )  # a different realm (proxy)
    client.reset()
    assert client.should_retry(rejected)  # after a success, a new challenge is answered again
    assert not client.should_retry(['Basic realm="r"'])


def test_challenge_parsing_edge_cases() -> None:
    (c,) = parse_challenges(
        [
            'Basic realm="b", Digest realm="a, \\"quoted\\" b", nonce=abc, qop="auth-int , auth", stale=false, '
            'domain="sip:a sip:b", algorithm=sha-256'
        ]
    )
    assert c == DigestChallenge(
        realm='a, "quoted" b',
        nonce="abc",
        algorithm="SHA-256",
        qop=("auth-int", "auth"),
        domain="sip:a sip:b",
    )
    assert c.strength == 2
    assert (
        parse_challenges(['Digest realm="r", nonce="n", algorithm=SHA3-256']) == []
    )  # unsupported: skipped
    assert parse_auth_params('  Digest   realm = "r" ,nonce="n"  ') == [
        ("Digest", {"realm": "r", "nonce": "n"})
    ]
    with pytest.raises(AuthError, match="no Digest challenge"):
        best_challenge([])
    with pytest.raises(AuthError, match="no Digest challenge"):
        best_challenge(parse_challenges(['Digest realm="r", nonce="n", qop="auth-conf"']))


@pytest.mark.parametrize(
    ("value", "defect"),
    [
        ('Digest realm="r', "unterminated quoted string"),
        ('Digest realm="r\\', "unterminated quoted string"),
        ('realm="r"', "before the scheme"),
        ('Digest realm="r", realm="s"', "duplicate"),
        ('Digest realm="r" nonce="n"', "expected ','"),
        ("Digest a=1, =x", "unexpected character"),
        ("", "empty"),
        ("Digest " + "a" * 9000, "longer than"),
        ('Digest nonce="n"', "without realm or nonce"),
    ],
)
def test_malformed_challenges_raise_auth_error(value: str, defect: str) -> None:
    with pytest.raises(AuthError, match=defect):
        parse_challenges([value])


def test_password_never_in_errors_or_reprs() -> None:
    client = DigestClient()
    with pytest.raises(AuthError) as exc:
        client.build_authorization(
            ['Digest realm="r", nonce="n", algorithm=SHA3-256'],
            method="REGISTER",
            uri="sip:r",
            username="u",
            password=PASSWORD,
            ids=CountingIdSource(),
        )
    assert PASSWORD not in str(exc.value) and PASSWORD not in repr(exc.value)
    _, value = client.build_authorization(
        ['Digest realm="r", nonce="n", qop="auth"'],
        method="REGISTER",
        uri="sip:r",
        username="u",
        password=PASSWORD,
        ids=CountingIdSource(),
    )
    assert PASSWORD not in value and PASSWORD not in repr(client)
    server = DigestServer(SECRET, ids=CountingIdSource())
    assert SECRET.decode() not in repr(server)


def test_compute_helpers_reject_unknown_algorithms() -> None:
    assert compute_ha1("md5", "Mufasa", "testrealm@host.com", "Circle Of Life") == _md5(
        "Mufasa:testrealm@host.com:Circle Of Life"
    )
    with pytest.raises(AuthError, match="unsupported digest algorithm"):
        compute_ha1("SHA-1", "u", "r", "p")
    with pytest.raises(AuthError, match="unsupported digest algorithm"):
        compute_response(algorithm="SHA-1", ha1="x", nonce="n", method="M", uri="u")


# ----------------------------------------------------------------- server


def _server(**kw: object) -> DigestServer:
    return DigestServer(SECRET, ids=CountingIdSource("s"), **kw)  # type: ignore[arg-type]


def _answer(
    challenge: str,
    *,
    password: str = PASSWORD,
    method: str = "REGISTER",
    body: bytes = b"",
    client: DigestClient | None = None,
) -> str:
    _, value = (client or DigestClient()).build_authorization(
        [challenge],
        method=method,
        uri="sip:acme.example",
        username="1000",
        password=password,
        body=body,
        ids=CountingIdSource("c"),
    )
    return value


def _pw(user: str, realm: str) -> str | None:
    return PASSWORD if (user, realm) == ("1000", "acme.example") else None


def test_server_challenge_and_verify_round_trip_for_every_algorithm() -> None:
    for algo in ("SHA-512-256", "SHA-512-256-sess", "SHA-256", "SHA-256-sess", "MD5", "MD5-sess"):
        for qop in (("auth",), ("auth-int",)):
            server = _server(algorithms=[algo], qop=qop)
            ch = server.challenge("acme.example", now=10.0)
            (parsed,) = parse_challenges([ch])
            assert parsed.algorithm == algo and parsed.qop == qop and not parsed.stale
            auth = _answer(ch, body=b"v=0\r\n")
            res = server.verify(
                auth,
                method="REGISTER",
                realm="acme.example",
                now=11.0,
                lookup_password=_pw,
                body=b"v=0\r\n",
            )
            assert (
                res.ok
                and res.status is AuthStatus.OK
                and res.username == "1000"
                and res.algorithm == algo
            )
            if qop == ("auth-int",):  # the body is covered
                other = server.verify(
                    _answer(ch, body=b"v=0\r\n"),
                    method="REGISTER",
                    realm="acme.example",
                    now=11.0,
                    lookup_password=_pw,
                    body=b"v=1\r\n",
                )
                assert other.status is AuthStatus.BAD


def test_server_offers_several_challenges_and_client_picks_sha256() -> None:
    server = _server()
    values = server.challenges("acme.example", now=0.0)
    assert [c.algorithm for c in parse_challenges(values)] == ["SHA-256", "MD5"]
    _, auth = DigestClient().build_authorization(
        values,
        method="INVITE",
        uri="sip:bot@acme.example",
        username="1000",
        password=PASSWORD,
        ids=CountingIdSource(),
    )
    assert params(auth)["algorithm"] == "SHA-256"
    assert server.verify(
        auth, method="INVITE", realm="acme.example", now=1.0, lookup_password=_pw
    ).ok
    assert not server.verify(
        auth, method="BYE", realm="acme.example", now=1.0, lookup_password=_pw
    ).ok


def test_server_rejects_wrong_password_replay_and_forgery() -> None:
    server = _server()
    ch = server.challenge("acme.example", now=0.0)
    wrong = server.verify(
        _answer(ch, password="nope"),
        method="REGISTER",
        realm="acme.example",
        now=1.0,
        lookup_password=_pw,
    )
    assert wrong.status is AuthStatus.BAD and wrong.reason == "wrong response (credentials)"
    assert PASSWORD not in repr(wrong)
    client = DigestClient()
    auth1 = _answer(ch, client=client)
    assert server.verify(
        auth1, method="REGISTER", realm="acme.example", now=1.0, lookup_password=_pw
    ).ok
    replay = server.verify(
        auth1, method="REGISTER", realm="acme.example", now=1.5, lookup_password=_pw
    )
    assert replay.status is AuthStatus.BAD and replay.reason == "nonce count replayed"
    auth2 = client.authorization_for(
        method="REGISTER",
        uri="sip:acme.example",
        username="1000",
        password=PASSWORD,
        ids=CountingIdSource("z"),
    )
    assert auth2 is not None and params(auth2[1])["nc"] == "00000002"
    assert server.verify(
        auth2[1], method="REGISTER", realm="acme.example", now=2.0, lookup_password=_pw
    ).ok
    nonce = parse_challenges([ch])[0].nonce
    forged = ch.replace(nonce, nonce[:-1] + ("0" if nonce[-1] != "0" else "1"))
    bad = server.verify(
        _answer(forged), method="REGISTER", realm="acme.example", now=1.0, lookup_password=_pw
    )
    assert bad.reason == "unknown nonce"
    other_secret = DigestServer(b"another-secret-of-16+bytes", ids=CountingIdSource())
    assert (
        other_secret.verify(
            _answer(ch), method="REGISTER", realm="acme.example", now=1.0, lookup_password=_pw
        ).reason
        == "unknown nonce"
    )
    other_realm = (
        _server().challenge("other.example", now=0.0).replace("other.example", "acme.example")
    )
    assert (
        server.verify(
            _answer(other_realm),
            method="REGISTER",
            realm="acme.example",
            now=1.0,
            lookup_password=_pw,
        ).reason
        == "unknown nonce"
    )
    assert (
        server.verify(
            _answer(ch), method="REGISTER", realm="other.example", now=1.0, lookup_password=_pw
        ).reason
        == "wrong realm"
    )
    garbage = server.verify(
        'Digest username="1000", realm="acme.example", nonce="zz", uri="sip:x", response="00"',
        method="REGISTER",
        realm="acme.example",
        now=1.0,
        lookup_password=_pw,
    )
    assert garbage.reason == "unknown nonce"


def test_server_nonce_expiry_is_stale_only_for_right_credentials() -> None:
    server = _server(nonce_lifetime=30.0)
    ch = server.challenge("acme.example", now=100.0)
    stale = server.verify(
        _answer(ch), method="REGISTER", realm="acme.example", now=131.0, lookup_password=_pw
    )
    assert stale.status is AuthStatus.STALE and stale.username == "1000"
    wrong = server.verify(
        _answer(ch, password="x"),
        method="REGISTER",
        realm="acme.example",
        now=131.0,
        lookup_password=_pw,
    )
    assert wrong.status is AuthStatus.BAD
    fresh = server.challenge("acme.example", now=131.0, stale=True)
    assert parse_challenges([fresh])[0].stale
    client = DigestClient()
    client.build_authorization(
        [ch],
        method="REGISTER",
        uri="sip:acme.example",
        username="1000",
        password=PASSWORD,
        ids=CountingIdSource(),
    )
    assert client.should_retry([fresh])
    assert server.verify(
        _answer(fresh), method="REGISTER", realm="acme.example", now=132.0, lookup_password=_pw
    ).ok
    # a nonce "from the future" (clock went back / forged time) is not accepted as fresh
    later = server.challenge("acme.example", now=500.0)
    assert (
        server.verify(
            _answer(later), method="REGISTER", realm="acme.example", now=400.0, lookup_password=_pw
        ).status
        is AuthStatus.STALE
    )


def test_server_ha1_lookup_and_unknown_user() -> None:
    server = _server(algorithms=["SHA-256", "MD5"])
    ha1s = {
        algo: compute_ha1(algo, "1000", "acme.example", PASSWORD) for algo in ("SHA-256", "MD5")
    }
    seen: list[tuple[str, str, str]] = []

    def lookup(user: str, realm: str, algo: str) -> str | None:
        seen.append((user, realm, algo))
        return ha1s.get(algo) if user == "1000" else None

    for algo in ("SHA-256", "MD5"):
        ch = server.challenge("acme.example", now=0.0, algorithm=algo)
        assert server.verify(
            _answer(ch), method="REGISTER", realm="acme.example", now=1.0, lookup_ha1=lookup
        ).ok
    assert seen == [("1000", "acme.example", "SHA-256"), ("1000", "acme.example", "MD5")]
    ch = server.challenge("acme.example", now=0.0)
    _, auth = DigestClient().build_authorization(
        [ch],
        method="REGISTER",
        uri="sip:acme.example",
        username="2000",
        password="x",
        ids=CountingIdSource(),
    )
    assert (
        server.verify(
            auth, method="REGISTER", realm="acme.example", now=1.0, lookup_ha1=lookup
        ).reason
        == "unknown user"
    )
    with pytest.raises(AuthError, match="exactly one"):
        server.verify(auth, method="REGISTER", realm="acme.example", now=1.0)
    with pytest.raises(AuthError, match="not enabled"):
        server.challenge("acme.example", now=0.0, algorithm="SHA-512-256")


def test_server_rejects_malformed_and_policy_violations() -> None:
    server = _server(opaque="op4que")
    ch = server.challenge("acme.example", now=0.0)
    assert 'opaque="op4que"' in ch
    good = _answer(ch)
    p = params(good)

    def verify(value: str, request_uri: str | None = None) -> str:
        res = server.verify(
            value,
            method="REGISTER",
            realm="acme.example",
            now=1.0,
            lookup_password=_pw,
            request_uri=request_uri,
        )
        assert res.status is AuthStatus.BAD
        return res.reason

    def rebuild(**changes: str | None) -> str:
        q = {**p, **changes}
        return "Digest " + ", ".join(f'{k}="{v}"' for k, v in q.items() if v is not None)

    assert verify('Digest realm="x') == "unterminated quoted string in authentication header"
    # RFC 3261 §25.1: other-response = auth-scheme LWS auth-param *(COMMA auth-param); SIP
    # has no token68 form, so HTTP Basic's "Basic <token>" is malformed here
    assert verify("Basic dXNlcjpwYXNz") == (
        "expected parameters after authentication scheme 'Basic'"
    )
    assert verify('Basic realm="x"') == "not a single Digest credential"
    assert verify(good + ", Digest foo=bar") == "not a single Digest credential"
    assert verify(rebuild(response=None)) == "missing parameter response"
    assert verify(rebuild(userhash="true")) == "userhash is not supported"
    assert verify(rebuild(algorithm="SHA-512-256")) == "algorithm not enabled"
    assert verify(rebuild(algorithm="SHA3")) == "algorithm not enabled"
    assert verify(good, request_uri="sip:other.example") == "uri does not match the request"
    assert verify(rebuild(opaque="forged")) == "wrong opaque"
    assert verify(rebuild(qop="auth-int")) == "qop not offered"
    assert verify(rebuild(nc="1")) == "qop without a valid nc and cnonce"
    assert verify(rebuild(cnonce=None)) == "qop without a valid nc and cnonce"
    assert verify(rebuild(nc="0000000g")) == "nc is not hexadecimal"
    assert verify(rebuild(qop=None, nc=None, cnonce=None)) == "qop missing"
    assert server.verify(
        good,
        method="REGISTER",
        realm="acme.example",
        now=1.0,
        lookup_password=_pw,
        request_uri="sip:acme.example",
    ).ok


def test_server_without_qop_accepts_rfc2069_answers_once() -> None:
    server = _server(qop=(), require_qop=False)
    ch = server.challenge("acme.example", now=0.0)
    assert "qop" not in ch
    auth = _answer(ch)
    assert "cnonce" not in params(auth)
    assert server.verify(
        auth, method="REGISTER", realm="acme.example", now=1.0, lookup_password=_pw
    ).ok
    replay = server.verify(
        auth, method="REGISTER", realm="acme.example", now=2.0, lookup_password=_pw
    )
    assert replay.reason == "nonce count replayed"


def test_server_nonce_tracking_is_bounded() -> None:
    server = _server(nonce_lifetime=10.0, max_tracked_nonces=3)
    for i in range(6):
        ch = server.challenge("acme.example", now=float(i))
        assert server.verify(
            _answer(ch), method="REGISTER", realm="acme.example", now=float(i), lookup_password=_pw
        ).ok
    assert len(server._nonces) <= 3
    late = server.challenge("acme.example", now=100.0)
    assert server.verify(
        _answer(late), method="REGISTER", realm="acme.example", now=100.0, lookup_password=_pw
    ).ok
    assert len(server._nonces) == 1  # the expired ones were dropped


def test_server_configuration_errors() -> None:
    with pytest.raises(AuthError, match="at least 16 bytes"):
        DigestServer(b"short", ids=CountingIdSource())
    with pytest.raises(AuthError, match="unsupported digest algorithm"):
        _server(algorithms=["SHA-1"])
    with pytest.raises(AuthError, match="at least one algorithm"):
        _server(algorithms=[])
    with pytest.raises(AuthError, match="unsupported qop"):
        _server(qop=["auth-conf"])


def test_407_from_two_proxies_gets_one_credential_per_realm() -> None:
    """RFC 3261 §22.3: a 407 that crossed two proxies carries a challenge per realm; the
    retry carries a Proxy-Authorization for each, and each proxy's check passes."""
    outer = DigestServer(SECRET, ids=CountingIdSource("o"), algorithms=["SHA-256", "MD5"])
    inner = DigestServer(SECRET + b"2", ids=CountingIdSource("i"), algorithms=["MD5"])
    values = [
        *outer.challenges("outer.example", now=0.0),  # SHA-256 and MD5 for one realm
        inner.challenge("inner.example", now=0.0),
    ]
    client = DigestClient()
    assert client.should_retry(values)
    passwords = {"outer.example": ("alice", "pw-outer"), "inner.example": ("al", "pw-inner")}
    auths = client.build_authorizations(
        values,
        method="INVITE",
        uri="sip:bob@b.example",
        username="unused",
        password="unused",
        ids=CountingIdSource("c"),
        proxy=True,
        credentials=passwords.get,
    )
    assert [name for name, _ in auths] == ["Proxy-Authorization"] * 2
    realms = [params(v)["realm"] for _, v in auths]
    assert realms == ["outer.example", "inner.example"]
    assert params(auths[0][1])["algorithm"] == "SHA-256"  # strongest of its realm
    assert params(auths[1][1])["algorithm"] == "MD5"

    def lookup(user: str, realm: str) -> str | None:
        found = passwords.get(realm)
        return found[1] if found is not None and found[0] == user else None

    for server, realm, (_, value) in zip((outer, inner), realms, auths, strict=True):
        res = server.verify(value, method="INVITE", realm=realm, now=1.0, lookup_password=lookup)
        assert res.ok, res.reason
        # The other proxy's credential is not for this realm.
        other = auths[1 - realms.index(realm)][1]
        assert not server.verify(
            other, method="INVITE", realm=realm, now=1.0, lookup_password=lookup
        ).ok

    # Both realms answered: the same challenges again mean rejected credentials.
    assert not client.should_retry(values)
    # A third proxy appearing later is a new realm: retry.
    assert client.should_retry([*values, 'Digest realm="third", nonce="n"'])
    # Pre-emptive credentials for the next request cover both realms, nc counting on.
    again = client.authorizations_for(
        method="BYE",
        uri="sip:bob@b.example",
        username="unused",
        password="unused",
        ids=CountingIdSource("d"),
        proxy=True,
        credentials=passwords.get,
    )
    assert [params(v)["realm"] for _, v in again] == realms
    assert [params(v)["nc"] for _, v in again] == ["00000002", "00000002"]


def test_build_authorizations_defaults_and_errors() -> None:
    client = DigestClient()
    ids = CountingIdSource()
    values = ['Digest realm="a", nonce="n1", qop="auth"', 'Digest realm="b", nonce="n2"']
    auths = client.build_authorizations(
        values, method="REGISTER", uri="sip:r", username="u", password="p", ids=ids
    )
    assert [(n, params(v)["username"], params(v)["realm"]) for n, v in auths] == [
        ("Authorization", "u", "a"),
        ("Authorization", "u", "b"),
    ]
    assert "qop" not in params(auths[1][1])  # RFC 2069 form where no qop is offered
    with pytest.raises(AuthError, match="no credentials"):
        DigestClient().build_authorizations(
            values,
            method="REGISTER",
            uri="sip:r",
            username="u",
            password="p",
            ids=ids,
            credentials=lambda realm: None,
        )
    with pytest.raises(AuthError, match="no Digest challenge"):
        DigestClient().build_authorizations(
            ['Digest realm="a", nonce="n", qop="auth-conf"'],
            method="REGISTER",
            uri="sip:r",
            username="u",
            password="p",
            ids=ids,
        )
    assert (
        DigestClient().authorizations_for(
            method="BYE", uri="sip:r", username="u", password="p", ids=ids
        )
        == []
    )
    # One realm skipped for lack of credentials, the other answered.
    only_b = DigestClient().build_authorizations(
        values,
        method="REGISTER",
        uri="sip:r",
        username="u",
        password="p",
        ids=ids,
        credentials=lambda realm: ("u", "p") if realm == "b" else None,
    )
    assert [params(v)["realm"] for _, v in only_b] == ["b"]


@pytest.mark.parametrize(
    "value", ['Digest realm="x', "Digest realm=a realm=b", 'Digest realm="r"', "=x"]
)
def test_malformed_challenges_are_value_errors(value: str) -> None:
    # Bad input from the network: a ValueError (and still an AuthError for old callers).
    with pytest.raises(ValueError) as ei:
        DigestClient().build_authorization(
            [value],
            method="INVITE",
            uri="sip:b",
            username="u",
            password="p",
            ids=CountingIdSource(),
        )
    assert isinstance(ei.value, AuthError) and isinstance(ei.value, AuthParseError)
