"""``python -m w3sipagent.faults``: the relay as a command relays (here duplicating every SIP
datagram), stops on Ctrl-C with its counters as JSON; bad values are named, not a traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def command(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "w3sipagent.faults", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_the_relay_command_relays_impaired_and_reports_on_ctrl_c() -> None:
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    peer.bind(("127.0.0.1", 0))
    agent.settimeout(5)
    port = agent.getsockname()[1]
    proc = command("relay", "--agent", f"127.0.0.1:{port}", "--sip", "duplicate=100%")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("relay: point the peer at 127.0.0.1:"), line
        relay = ("127.0.0.1", int(line.rsplit(":", 1)[1]))
        msg = b"OPTIONS sip:desk@shop.example SIP/2.0\r\nCall-ID: c1\r\nContent-Length: 0\r\n\r\n"
        peer.sendto(msg, relay)
        assert agent.recvfrom(4096)[0] == msg
        assert agent.recvfrom(4096)[0] == msg  # the duplicate
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        stats = json.loads(out.strip().splitlines()[-1])
        assert stats["sip_to_agent"] == {
            "seen": 1,
            "lost": 0,
            "delivered": 2,
            "reordered": 0,
            "duplicated": 1,
            "truncated": 0,
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        agent.close()
        peer.close()


def test_a_bad_impairment_is_named() -> None:
    proc = command("relay", "--agent", "127.0.0.1:5090", "--rtp", "loss=150%")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert "loss=1.5: a probability from 0 to 1" in err and "Traceback" not in err
