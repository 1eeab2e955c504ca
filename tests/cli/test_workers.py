"""``serve --workers 2`` in a subprocess on real sockets: calls spread over both workers (the
CDR rows say which), a killed worker's calls get failed CDRs while the other worker's calls
go on with audio, the worker comes back, the limits hold across workers, drain ends them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.agentleaks import assert_agent_released, assert_released_at_shutdown
from tests.cli.test_serve import LogLines, http_get, poll
from tests.ports import free_port, rtp_block
from w3sipagent.cli.call import CallSummary, place_call
from w3sipagent.config import load_settings
from w3sipagent.localai import RealtimeServer
from w3sipagent.localai.scenario import Scenario
from w3sipagent.records.cdr import CallRecord
from w3sipagent.records.store import CdrStore

# long enough (tone speech: one burst per word) to still be speaking when the test ends
GREETING = " ".join(["Thank you for calling the support line of the example company."] * 6)


def write_config(tmp_path: Path, sip: int, metrics: int, rt: int, extra: str = "") -> Path:
    lo, hi = rtp_block(200)
    cfg = tmp_path / "w3sipagent.toml"
    cfg.write_text(f"""
[sip]
listen = "127.0.0.1:{sip}"
transports = ["udp", "tcp"]
drain_timeout = "8s"
max_calls = 3
[rtp]
port_min = {lo}
port_max = {hi}
[realtime]
base_url = "ws://127.0.0.1:{rt}/v1"
api_key = "sk-local-test"
[records]
database_url = "sqlite+aiosqlite:///{tmp_path}/cdr.db"
[metrics]
listen = "127.0.0.1:{metrics}"
[logging]
json = true
[tenancy]
reload_interval = 0
[server]
worker_restart_delay = "0.2s"
[tenants.acme]
hosts = ["acme.example"]
codecs = ["PCMU"]
max_concurrent_calls = 2
[tenants.acme.agents.support]
greeting = "Greet the caller."
[tenants.globex]
hosts = ["globex.example"]
codecs = ["PCMU"]
[tenants.globex.agents.main]
greeting = "Greet the caller."
{extra}""")
    return cfg


async def start_pool(cfg: Path, mport: int) -> tuple[asyncio.subprocess.Process, LogLines]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3SIPAGENT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "w3sipagent", "serve", "-c", str(cfg), "--no-live",
        "--workers", "2",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    logs = LogLines(proc.stderr)

    async def ready() -> bool:
        if proc.returncode is not None:
            raise AssertionError("serve exited: " + "".join(logs.raw))
        try:
            status, body = await http_get(mport, "/readyz")
        except OSError:
            return False
        return status == 200 and "ready 2/2" in body

    await poll(ready, 120, "both workers ready")
    return proc, logs


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def rows(cfg: Path) -> dict[str, CallRecord]:
    settings = load_settings(cfg, environ={}, discover=False)
    async with CdrStore.from_settings(settings.records) as store:
        return {r.call_id: r for r in await store.list_cdrs(limit=100)}


def worker_of(cdr: CallRecord) -> dict[str, Any]:
    (event,) = [e for e in cdr.events if e.get("kind") == "worker"]
    return event


async def test_calls_spread_a_killed_worker_fails_only_its_calls_and_drain(
    tmp_path: Path,
) -> None:
    sip, mport = free_port(), free_port()
    scenario = Scenario(greeting=GREETING)
    async with RealtimeServer(port=0, tts_engine="tone", scenario=scenario) as rt:
        cfg = write_config(tmp_path, sip, mport, rt.port)
        proc, logs = await start_pool(cfg, mport)
        try:
            caller_rtp = rtp_block(40)

            def call(tenant: str, seconds: float) -> asyncio.Task[CallSummary]:
                user = "support" if tenant == "acme" else "main"
                return asyncio.create_task(
                    place_call(
                        f"sip:{user}@{tenant}.example",
                        proxy=("127.0.0.1", sip),
                        duration=seconds,
                        rtp_ports=caller_rtp,
                    )
                )

            # two calls per tenant: four calls, both workers (the CDR rows say which)
            tasks = [call("acme", 9.0), call("globex", 9.0), call("acme", 9.0)]
            seen: dict[str, CallRecord] = {}

            async def three_up() -> bool:
                seen.update(await rows(cfg))
                return len(seen) >= 3

            await poll(three_up, 30, "three calls in progress")
            workers = {worker_of(r)["worker"] for r in seen.values()}
            assert workers == {0, 1}, seen
            pids = {worker_of(r)["worker"]: worker_of(r)["pid"] for r in seen.values()}
            doomed = {cid for cid, r in seen.items() if worker_of(r)["worker"] == 1}
            os.kill(pids[1], signal.SIGKILL)
            summaries = await asyncio.gather(*tasks)
            by_id = {s.call_id: s for s in summaries}
            assert all(s.answered for s in summaries)
            survivors = [s for cid, s in by_id.items() if cid not in doomed]
            lost = [s for cid, s in by_id.items() if cid in doomed]
            assert survivors and lost
            for s in survivors:  # the other worker's calls went on speaking to the end
                assert s.ended_by == "us" and s.heard_speech_s > 4.0, s
            for s in lost:  # the killed worker's audio stopped with it
                assert s.heard_speech_s < min(x.heard_speech_s for x in survivors) - 2.0, s

            async def recorded() -> bool:
                seen.update(await rows(cfg))
                return all(seen[c].disposition.value != "in_progress" for c in by_id)

            await poll(recorded, 30, "every CDR written")
            for cid in by_id:
                cdr = seen[cid]
                if cid in doomed:
                    assert cdr.disposition.value == "failed", cdr
                    assert cdr.reason is not None and "worker 1 died" in cdr.reason
                else:
                    assert cdr.disposition.value == "caller_hangup", cdr

            # the supervisor started worker 1 again; the metrics of both, labelled
            async def back() -> bool:
                status, body = await http_get(mport, "/metrics")
                return status == 200 and "w3sipagent_worker_restarts_total 1" in body

            await poll(back, 60, "worker 1 restarted")
            await poll(lambda: _ready2(mport), 60, "both workers ready again")
            _, body = await http_get(mport, "/metrics")
            assert 'worker="0"' in body and 'worker="1"' in body
            assert "w3sipagent_worker_failed_cdrs_total 1" in body or len(doomed) != 1
            # the survivor released its calls; rows: its CDRs and the dead worker's
            await assert_agent_released(mport, cfg, workers=2)

            # drain: a call up on each worker; SIGTERM; new calls 503; both finish; exit 0
            active = [call("acme", 4.0), call("globex", 4.0)]
            before = set(seen)

            async def two_more() -> bool:
                seen.update(await rows(cfg))
                return len(set(seen) - before) >= 2

            await poll(two_more, 30, "two more calls up")
            fresh = [seen[c] for c in set(seen) - before]
            assert {worker_of(r)["worker"] for r in fresh} == {0, 1}
            proc.send_signal(signal.SIGTERM)
            await logs.wait("draining 2 worker(s)")
            refused = await place_call(
                "sip:main@globex.example",
                proxy=("127.0.0.1", sip),
                duration=1,
                rtp_ports=caller_rtp,
            )
            assert refused.status == 503
            done = await asyncio.gather(*active)
            assert all(d.answered and d.ended_by == "us" for d in done)
            rc = await asyncio.wait_for(proc.wait(), 40)
        finally:
            await stop(proc)
        err = await logs.end()
    assert rc == 0, err
    assert logs.count("stopped after") == 2  # both workers drained and exited
    assert_released_at_shutdown(err, processes=2)
    final = await rows(cfg)
    assert all(r.disposition.value != "in_progress" for r in final.values())
    assert "sk-local-test" not in err


async def _ready2(mport: int) -> bool:
    try:
        status, body = await http_get(mport, "/readyz")
    except OSError:
        return False
    return status == 200 and "ready 2/2" in body


async def test_limits_hold_across_workers(tmp_path: Path) -> None:
    """acme may have 2 calls, the machine 3 (sip.max_calls): each worker alone would let
    every one of these calls in (round robin puts at most 2 on a worker)."""
    sip, mport = free_port(), free_port()
    async with RealtimeServer(port=0, tts_engine="tone") as rt:
        cfg = write_config(tmp_path, sip, mport, rt.port)
        proc, logs = await start_pool(cfg, mport)
        try:
            caller_rtp = rtp_block(40)

            async def burst(uri: str, n: int) -> list[CallSummary]:
                return await asyncio.gather(
                    *[
                        place_call(
                            uri, proxy=("127.0.0.1", sip), duration=2.5, rtp_ports=caller_rtp
                        )
                        for _ in range(n)
                    ]
                )

            acme = await burst("sip:support@acme.example", 3)
            assert sorted(s.status or 0 for s in acme) == [200, 200, 486], acme
            answered: dict[str, CallRecord] = {}

            async def ended() -> bool:
                answered.update(await rows(cfg))
                return len(answered) == 2 and all(
                    r.disposition.value != "in_progress" for r in answered.values()
                )

            await poll(ended, 30, "both acme CDRs written (their slots free)")
            globex = await burst("sip:main@globex.example", 4)
            assert sorted(s.status or 0 for s in globex) == [200, 200, 200, 503], globex
            await assert_agent_released(mport, cfg, workers=2, min_calls=5)
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 40)
        finally:
            await stop(proc)
        err = await logs.end()
    assert rc == 0, err
    final = await rows(cfg)
    assert len(final) == 5  # the refused INVITEs left no CDR row
    assert_released_at_shutdown(err, processes=2)


def test_worker_count_flag_and_tls(tmp_path: Path) -> None:
    """``--workers`` takes a number or ``auto``; TLS keeps one process (auto) or is refused
    (an explicit count above 1) with the fix named."""
    from typer.testing import CliRunner

    from tests.cli.conftest import TWO_TENANTS, invoke
    from tests.cli.conftest import write_config as plain_config
    from w3sipagent.cli.common import CliError
    from w3sipagent.cli.workers import usable_cores, worker_count

    runner = CliRunner()
    cfg = plain_config(tmp_path, TWO_TENANTS)
    result = invoke(runner, "serve", "-c", str(cfg), "--workers", "many")
    assert result.exit_code == 2, result.output
    assert "--workers: 'many' is not a number of processes or 'auto'" in result.output
    assert "Traceback" not in result.output
    settings = load_settings(cfg, environ={}, discover=False)
    assert worker_count(settings, None) == usable_cores()  # the default: auto
    assert worker_count(settings, "3") == 3 and worker_count(settings, "auto") == usable_cores()
    (tmp_path / "c.pem").write_text("x")
    tls = settings.model_copy(
        update={
            "sip": settings.sip.model_copy(
                update={
                    "transports": ["udp", "tls"],
                    "tls_cert": tmp_path / "c.pem",
                    "tls_key": tmp_path / "c.pem",
                }
            )
        }
    )
    assert worker_count(tls, "auto") == 1
    assert worker_count(tls, "1") == 1
    # the API's console sees its own process's live calls: auto keeps one process, an
    # explicit count is obeyed
    api = settings.model_copy(
        update={"api": settings.api.model_copy(update={"listen": "127.0.0.1:8080"})}
    )
    assert worker_count(api, None) == 1 and worker_count(api, "auto") == 1
    assert worker_count(api, "2") == 2
    with pytest.raises(CliError, match="TLS is served by a single process") as refused:
        worker_count(tls, "2")
    assert refused.value.code == 2 and refused.value.hint is not None
    assert "--workers 1" in refused.value.hint
