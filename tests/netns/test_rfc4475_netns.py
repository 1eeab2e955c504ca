"""RFC 4475 torture messages over UDP and TCP to a *running* agent, in a network namespace.

The agent (``tests.netns.agent_main``: ``serve()`` with an echo handler, admitting every
call) runs as its own process inside a loopback-only namespace; the driver
(``tests.netns.torture_driver``) sends each message over UDP and over TCP from inside the
same namespace and captures the replies where RFC 3261 §18.2.2 sends them (the Via port at
the source IP). The owed replies come from ``rfc4475/ENDPOINT.md``; each message and
transport is one test. Afterwards the agent must still answer OPTIONS (UDP, TCP) and echo
a normal call, and its log must hold no traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VECTORS

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
AGENT_PORT = 5090
AGENT_T1 = 0.02  # Timer J = 64 * T1 = 1.28 s: how long a UDP server transaction lives
# Over TCP a framing defect (RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9), or a body without
# Content-Length (inv2543, RFC 3261 §18.3: mandatory on streams), may end in a 400 and / or
# a closed connection, or in silence while the agent waits for the promised bytes.
TCP_FRAMING = {"clerr.dat", "ncl.dat", "mcl01.dat", "inv2543.dat"}
# Known defects of the agent, reported to the owners; strict: the test fails once fixed.
KNOWN: dict[str, str] = {}


def owed_replies(endpoint_md: Path) -> dict[str, str]:
    """file -> the 'reply owed' text of ENDPOINT.md."""
    rows: dict[str, str] = {}
    for line in endpoint_md.read_text().splitlines():
        m = re.match(r"\|\s*(\S+\.dat)\s*\|\s*[\d.]+\s*\|\s*(.+?)\s*\|\s*$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


OWED = owed_replies(VECTORS / "rfc4475" / "ENDPOINT.md")


def check(rule: str, result: dict[str, Any]) -> str | None:
    """None when ``result`` satisfies ``rule``, else what is wrong."""
    final, finals = result["final"], result["finals"]
    if len(finals) > 1:
        return f"several different final responses {finals}"
    codes = re.fullmatch(r"(\d{3})((?: or \d{3})*)", rule)
    if codes:
        allowed = {int(c) for c in re.findall(r"\d{3}", rule)}
        return None if final in allowed else f"got {final}, owed {sorted(allowed)}"
    if rule.startswith("a response: dropped"):
        return None if not result["statuses"] else f"replied {result['statuses']} to a response"
    if rule.startswith("either rejected (400) or read liberally"):
        return None if final is not None and final != 500 else f"got {final}"
    if rule.startswith("processed normally"):
        return None if final is not None and final not in (400, 500) else f"got {final}"
    raise AssertionError(f"ENDPOINT.md rule not understood: {rule!r}")


def check_tcp_framing(result: dict[str, Any]) -> str | None:
    """A stream framing defect: 400 and/or close, or silence (waiting for bytes)."""
    if result["final"] in (None, 400) and len(result["finals"]) <= 1:
        return None
    return f"framing defect answered {result['statuses']}"


def _r(final: int | None, statuses: list[int] | None = None) -> dict[str, Any]:
    return {
        "final": final,
        "finals": [final] if final else [],
        "statuses": statuses if statuses is not None else ([final] if final else []),
    }


def test_rule_checker() -> None:
    """The checker itself: rules accept what they say and refuse the rest."""
    assert check("400", _r(400)) is None and check("400", _r(404)) is not None
    assert check("404 or 420", _r(420)) is None and check("404 or 420", _r(None)) is not None
    assert check("a response: dropped, nothing sent", _r(None)) is None
    assert check("a response: dropped, nothing sent", _r(400)) is not None
    assert check("either rejected (400) or read liberally and processed", _r(400)) is None
    assert check("either rejected (400) or read liberally and processed", _r(500)) is not None
    assert check("processed normally: any reply but 400 / 500", _r(200, [100, 200])) is None
    assert check("processed normally: any reply but 400 / 500", _r(400)) is not None
    assert check("processed normally: any reply but 400 / 500", _r(None)) is not None
    two = {"final": 404, "finals": [404, 486], "statuses": [404, 486]}
    assert check("404 or 486", two) is not None
    assert check_tcp_framing(_r(None)) is None and check_tcp_framing(_r(400)) is None
    assert check_tcp_framing(_r(200)) is not None
    with pytest.raises(AssertionError, match="not understood"):
        check("something new", _r(200))


@pytest.fixture(scope="module")
def torture_report(netns: str, vectors: Path) -> dict[str, Any]:
    """Run the agent and the driver in the namespace once; the driver's JSON report."""
    rfc = vectors / "rfc4475"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log_path = Path(f"/tmp/{netns}-agent.log")
    with open(log_path, "wb") as log:
        agent = subprocess.Popen(
            ["ip", "netns", "exec", netns, PYTHON, "-m", "tests.netns.agent_main",
             "--port", str(AGENT_PORT), "--t1", str(AGENT_T1)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline().decode()
        assert line.startswith("READY"), log_path.read_text()
        t0 = time.monotonic()
        driver = subprocess.run(
            ["ip", "netns", "exec", netns, PYTHON, "-m", "tests.netns.torture_driver",
             "--agent-port", str(AGENT_PORT), "--vectors", str(rfc),
             "--gap", str(64 * AGENT_T1 + 0.3)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=150,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
        assert driver.returncode == 0, driver.stderr[-3000:]
        report: dict[str, Any] = json.loads(driver.stdout)
        report["agent_alive"] = agent.poll() is None
        report["elapsed"] = elapsed
    finally:
        agent.terminate()
        try:
            agent.wait(5)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        report_log = log_path.read_text(errors="replace")
        log_path.unlink(missing_ok=True)
    report["agent_log"] = report_log
    return report


def _cases() -> list[Any]:
    out = []
    for transport in ("udp", "tcp"):
        for name in sorted(OWED):
            marks = []
            if name in KNOWN and not (transport == "tcp" and name in TCP_FRAMING):
                marks.append(pytest.mark.xfail(reason=KNOWN[name], strict=True))
            out.append(pytest.param(transport, name, id=f"{transport}-{name}", marks=marks))
    return out


@pytest.mark.parametrize(("transport", "name"), _cases())
def test_torture_message_reply(torture_report: dict[str, Any], transport: str, name: str) -> None:
    res = torture_report[transport][name]
    rule = OWED[name]
    if transport == "tcp" and name in TCP_FRAMING:
        problem = check_tcp_framing(res)
    else:
        problem = check(rule, res)
    assert problem is None, f"{name} over {transport}: {problem} ({res['reasons']}; owed: {rule})"


def test_all_messages_sent(torture_report: dict[str, Any]) -> None:
    assert len(OWED) >= 49
    for transport in ("udp", "tcp"):
        assert set(torture_report[transport]) == set(OWED)


def test_agent_still_serves_after_torture(torture_report: dict[str, Any]) -> None:
    after = torture_report["after"]
    print(f"\nRFC 4475 over UDP+TCP took {torture_report['elapsed']:.1f} s; after: {after}")
    assert torture_report["agent_alive"], torture_report["agent_log"][-3000:]
    assert after["options_udp"] == 200 and after["options_tcp"] == 200
    assert after["echo_seconds"] >= 1.0 and after["echo_rms"] > 1000, after
    assert "Traceback" not in torture_report["agent_log"], torture_report["agent_log"][-3000:]
    # a TLS Via must not make the agent open TLS (we would see a ClientHello on 5061)
    assert not [o for o in torture_report["other"] if "\\x16\\x03" in o], torture_report["other"]


pytestmark = pytest.mark.slow
