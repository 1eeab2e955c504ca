"""The release check of agent processes (tests/agentleaks.py) fails when an agent leaks.

A ``sitecustomize`` module on the agent's ``PYTHONPATH`` (so the supervisor of ``serve
--workers 2`` and each of its workers load it) injects one leak into a real ``serve``:
the bridge ends without closing its AI session, or the end of a call's CDR is never
written. After one real call the check of the running agent, and for the session its
``resources at shutdown`` line, must fail and say what is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.agentleaks import assert_agent_released, assert_released_at_shutdown
from tests.cli.test_serve import LogLines, wait_ready, write_config
from tests.cli.test_workers import stop
from tests.ports import free_port, rtp_block
from w3sipagent.cli.call import place_call
from w3sipagent.localai import RealtimeServer

ROOT = Path(__file__).resolve().parents[2]

LEAKS = {
    "ai_session": """
from w3sipagent.agent.supervisor import SessionSupervisor


async def close_all(self):  # injected leak: the bridge ends, its AI sessions stay open
    return None


SessionSupervisor.close_all = close_all
""",
    "cdr": """
from w3sipagent.records.store import CdrStore


async def call_ended(self, cdr):  # injected leak: the end of a call is never recorded
    return None


CdrStore.call_ended = call_ended
""",
}


@pytest.mark.parametrize(
    ("leak", "workers", "says"),
    [
        ("ai_session", 1, "worker -: 1 realtime AI sessions open"),
        ("ai_session", 2, "1 realtime AI sessions open"),
        ("cdr", 1, "0 CDR rows for 1 admitted + dialed calls"),
    ],
)
async def test_the_check_fails_on_an_injected_leak(
    tmp_path: Path, leak: str, workers: int, says: str
) -> None:
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(LEAKS[leak])
    sip, mport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(inject), str(ROOT)])
    async with RealtimeServer(port=0, tts_engine="tone") as rt:
        cfg = write_config(tmp_path, sip, mport, rt.port)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "w3sipagent", "serve", "-c", str(cfg), "--no-live",
            "--workers", str(workers),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert proc.stderr is not None
        logs = LogLines(proc.stderr)
        try:
            await wait_ready(mport, timeout=120)
            s = await place_call(
                "sip:support@acme.example",
                proxy=("127.0.0.1", sip),
                duration=1.5,
                rtp_ports=rtp_block(20),
            )
            assert s.answered and s.heard_speech_s > 0.3, s  # a real call, then the leak
            with pytest.raises(AssertionError, match="agent resources not released") as failed:
                await assert_agent_released(mport, cfg, workers=workers, timeout=3.0)
            assert says in str(failed.value)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 40) == 0
        finally:
            await stop(proc)
        err = await logs.end()
    if leak == "ai_session":  # the stopped agent says so too
        with pytest.raises(AssertionError, match="resources left at shutdown") as left:
            assert_released_at_shutdown(err, processes=workers)
        assert "left open: " in str(left.value) and "realtime AI sessions" in str(left.value)
