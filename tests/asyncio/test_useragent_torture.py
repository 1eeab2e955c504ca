"""RFC 4475 torture messages through the user agent's receive path, in process (no network).

Every message of ENDPOINT.md is fed to :meth:`UserAgent.feed`; a capturing sender takes
what the agent would send. The reply code is checked against the table, and the agent must
still answer an OPTIONS afterwards. Nothing leaves the process: the replies name TEST-NET
addresses and would otherwise go to them.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.asyncio.helpers import fast_config
from w3sipagent.asyncio.gate import RequestGate
from w3sipagent.asyncio.useragent import Accept, AdmissionRequest, Reject, UserAgent
from w3sipagent.sip.events import RequestReceived
from w3sipagent.sip.message import SipRequest, SipResponse, parse_message
from w3sipagent.sip.requestcheck import Refusal

SOURCE = ("127.0.0.1", 5070)
# No ACK ever comes for the INVITEs' error responses: with the fast T1 their Timer G
# retransmissions (from 20 ms on) land among the next message's replies whenever the loop
# is slow. With these timers nothing is retransmitted while a test looks.
NO_RETRANSMISSION = {"t1": 2.0, "t2": 8.0}


def _table(vectors: Path) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in (vectors / "rfc4475" / "ENDPOINT.md").read_text().splitlines():
        m = re.match(r"\| (\w+\.dat) \| [\d.]+ \| (.+) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def _check(rule: str, codes: list[int]) -> None:
    final = [c for c in codes if c >= 200]
    if rule.startswith("a response: dropped"):
        assert codes == [], f"sent {codes} for a response"
        return
    assert len(final) == 1, f"expected one final response, got {codes}"
    code = final[0]
    if rule.startswith("either rejected"):
        assert code != 500
    elif rule.startswith("processed normally"):
        assert code not in (400, 500)
    else:
        allowed = {int(x) for x in re.findall(r"\d{3}", rule)}
        assert code in allowed, f"{code} not in {sorted(allowed)}"


def _admission(req: AdmissionRequest) -> Accept | Reject:
    # the torture messages name example domains, not a tenant of this agent
    return Accept() if req.host == "tenant.test" else Reject(404, "Unknown tenant")


async def test_torture_replies_in_process(vectors: Path) -> None:
    table = _table(vectors)
    assert len(table) == 49
    sent: list[tuple[bytes, tuple[str, int], str]] = []
    ua = UserAgent(
        fast_config(**NO_RETRANSMISSION),
        admission=_admission,
        sender=lambda data, addr, transport: sent.append((data, addr, transport)),
    )
    failures = []
    try:
        for name, rule in sorted(table.items()):
            sent.clear()
            data = (vectors / "rfc4475" / name).read_bytes()
            ua.feed(data, SOURCE, "UDP")
            for _ in range(5):
                await asyncio.sleep(0)
            codes = [int(d[8:11]) for d, _, _ in sent if d.startswith(b"SIP/2.0 ")]
            assert all(not d.startswith(b"SIP/2.0") or a[0] == SOURCE[0] for d, a, _ in sent)
            try:
                _check(rule, codes)
            except AssertionError as exc:
                failures.append(f"{name}: {exc}")
        assert not failures, "\n".join(failures)
        # still serving
        sent.clear()
        options = (
            b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKafter\r\n"
            b"From: <sip:p@127.0.0.1>;tag=a\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: after-torture\r\n"
            b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        ua.feed(options, SOURCE)
        reply = parse_message(sent[-1][0])
        assert isinstance(reply, SipResponse) and reply.status == 200
        assert sent[-1][1] == SOURCE
    finally:
        await ua.close(timeout=0)
    assert ua.ports.in_use == 0


@pytest.mark.parametrize(
    ("request_line", "extra", "code"),
    [
        ("FOOBAR sip:a@tenant.test SIP/2.0", "", 501),
        ("REGISTER sip:tenant.test SIP/2.0", "", 405),
        ("MESSAGE sip:a@tenant.test SIP/2.0", "", 405),
        ("OPTIONS sip:a@tenant.test SIP/2.0", "Require: nosuchext\r\n", 420),
        ("OPTIONS sip:a@tenant.test SIP/3.0", "", 505),
        ("OPTIONS mailto:a@tenant.test SIP/2.0", "", 416),
        ("INVITE sip:a@tenant.test SIP/2.0", "Content-Type: text/plain\r\n", 415),
        (
            "INVITE sip:a@tenant.test SIP/2.0",
            "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n",
            415,
        ),
        (
            "INVITE sip:a@tenant.test SIP/2.0",
            "Session-Expires: 30\r\nContent-Type: application/sdp\r\n",
            422,
        ),
        ("OPTIONS sip:a@tenant.test SIP/2.0", "", 200),
    ],
)
async def test_request_checks(request_line: str, extra: str, code: int) -> None:
    sent: list[bytes] = []
    ua = UserAgent(
        fast_config(**NO_RETRANSMISSION),
        admission=_admission,
        sender=lambda d, a, t: sent.append(d),
    )
    method = request_line.split()[0]
    body = b"x" if "Content-Type" in extra else b""
    msg = (
        f"{request_line}\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKchk\r\n"
        f"From: <sip:p@127.0.0.1>;tag=a\r\nTo: <sip:a@tenant.test>\r\nCall-ID: chk-{code}\r\n"
        f"CSeq: 1 {method}\r\nMax-Forwards: 0\r\nContact: <sip:p@127.0.0.1:5070>\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        ua.feed(msg, SOURCE)
        await asyncio.sleep(0)
        finals = [
            r for r in map(parse_message, sent) if isinstance(r, SipResponse) and r.status >= 200
        ]
        assert [r.status for r in finals] == [code]
        r = finals[0]
        if code in (405, 501):
            assert "INVITE" in r.allow
        if code == 420:
            assert r.headers.get("Unsupported") == "nosuchext"
        if code == 422:
            assert r.headers.get("Min-SE") == "90"
        if code == 415:
            assert r.headers.get("Accept") or r.headers.get("Accept-Encoding")
    finally:
        await ua.close(timeout=0)


async def test_merged_request_482() -> None:
    sent: list[bytes] = []
    ua = UserAgent(fast_config(), sender=lambda d, a, t: sent.append(d))

    def options(branch: str) -> bytes:
        return (
            f"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
            "From: <sip:p@127.0.0.1>;tag=same\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: merged\r\n"
            "CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    try:
        ua.feed(options("z9hG4bKpath1"), SOURCE)
        ua.feed(options("z9hG4bKpath1"), SOURCE)  # retransmission: absorbed
        ua.feed(options("z9hG4bKpath2"), SOURCE)  # same request by another path
        codes = [parse_message(d).status for d in sent]  # type: ignore[union-attr]
        assert codes == [200, 200, 482]
    finally:
        await ua.close(timeout=0)


def test_merge_table_prunes_expired_entries_on_a_fake_clock() -> None:
    now = [100.0]
    gate = RequestGate(fast_config(merge_window=0.05), lambda: now[0])

    def options(branch: str, call_id: str = "merged") -> RequestReceived:
        data = (
            f"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
            f"From: <sip:p@127.0.0.1>;tag=same\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            "CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        request = parse_message(data)
        assert isinstance(request, SipRequest)
        return RequestReceived(request, SOURCE, "UDP", 1)

    assert gate.check(options("z9hG4bKw1")) is None
    assert gate.check(options("z9hG4bKw2")) == Refusal(482, "Loop Detected (merged request)")
    for n in range(50):
        assert gate.check(options(f"z9hG4bKfill{n}", f"fill-{n}")) is None
    assert len(gate.merge) == 51
    now[0] += 0.08  # past the window: not a merge any more, the expired entries pruned
    assert gate.check(options("z9hG4bKw3")) is None
    assert len(gate.merge) == 1


async def test_response_to_nothing_is_dropped() -> None:
    sent: list[bytes] = []
    ua = UserAgent(fast_config(), sender=lambda d, a, t: sent.append(d))
    try:
        ua.feed(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKnothing\r\n"
            b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: stray\r\n"
            b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            SOURCE,
        )
        assert sent == []
    finally:
        await ua.close(timeout=0)


@pytest.mark.parametrize(
    ("via", "transport", "expected"),
    [
        ("SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKr1", "UDP", ("127.0.0.1", 5999)),
        ("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKr2", "UDP", ("127.0.0.1", 5060)),
        ("SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKr3;rport", "UDP", SOURCE),
        # sent-by names another host: the reply still goes to the source IP (received)
        ("SIP/2.0/UDP 192.0.2.1:5999;branch=z9hG4bKr4", "UDP", ("127.0.0.1", 5999)),
        (
            "SIP/2.0/UDP host.example.com:5999;branch=z9hG4bKr5;maddr=192.0.2.9",
            "UDP",
            ("127.0.0.1", 5999),
        ),
        ("SIP/2.0/TCP 192.0.2.1:5999;branch=z9hG4bKr6", "TCP", SOURCE),
    ],
)
async def test_responses_routed_per_18_2_2(
    via: str, transport: str, expected: tuple[str, int]
) -> None:
    sent: list[tuple[bytes, tuple[str, int], str]] = []
    ua = UserAgent(fast_config(), sender=lambda d, a, t: sent.append((d, a, t)))
    try:
        ua.feed(
            (
                f"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:p@127.0.0.1>;tag=r\r\n"
                f"To: <sip:a@127.0.0.1>\r\nCall-ID: route-{via[-2:]}\r\nCSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            SOURCE,
            transport,
        )
        assert [(a, t) for _, a, t in sent] == [(expected, transport)]
        reply = parse_message(sent[0][0])
        assert isinstance(reply, SipResponse) and reply.status == 200
    finally:
        await ua.close(timeout=0)
