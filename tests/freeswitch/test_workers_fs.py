"""``serve --workers 2`` behind the real FreeSWITCH: FreeSWITCH bridges every call to the one
agent address (the generated dialplan), the calls land on both worker processes (their CDR
rows say which), and FreeSWITCH hears the agent on each of them."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.agentleaks import assert_agent_released, assert_released_at_shutdown
from tests.cli.conftest import invoke
from tests.cli.test_serve import poll
from tests.cli.test_workers import rows, start_pool, stop, worker_of
from tests.freeswitch.conftest import FreeSwitch
from tests.freeswitch.helpers import originate_to, read_stereo, rms, wait_file
from tests.ports import free_port, rtp_block
from w3sipagent.freeswitch.esl import EslClient
from w3sipagent.localai import RealtimeServer
from w3sipagent.localai.scenario import Scenario

GREETING = " ".join(["Thank you for calling the support line of the example company."] * 3)


async def test_freeswitch_calls_spread_over_two_workers(
    freeswitch: FreeSwitch,
    esl: EslClient,
    runner,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    interop_log: list[str],
) -> None:
    sip, mport = free_port(), free_port()
    lo, hi = rtp_block(200)
    async with RealtimeServer(
        port=0, tts_engine="tone", scenario=Scenario(greeting=GREETING)
    ) as rt:
        cfg = tmp_path / "w3sipagent.toml"
        cfg.write_text(f"""
[sip]
listen = "127.0.0.1:{sip}"
transports = ["udp"]
drain_timeout = "8s"
[rtp]
port_min = {lo}
port_max = {hi}
[realtime]
base_url = "ws://127.0.0.1:{rt.port}/v1"
api_key = "sk-local-test"
[records]
database_url = "sqlite+aiosqlite:///{tmp_path}/cdr.db"
[metrics]
listen = "127.0.0.1:{mport}"
[logging]
json = true
[tenants.acme]
hosts = ["acme.example"]
dids = {{ "+1 555 123 0000" = "support" }}
codecs = ["PCMU"]
[tenants.acme.agents.support]
greeting = "Greet the caller."
# FreeSWITCH plays a steady tone, which the local server's VAD takes for speech: without
# turn detection the greeting is not cut by it (the test is about where calls land, not
# barge-in; with server_vad the tone barged in 80 ms into each greeting, leaving a random
# share of the four recordings silent)
[tenants.acme.agents.support.turn_detection]
type = "none"
""")
        result = invoke(runner, "freeswitch", "dialplan", "-c", str(cfg))
        assert result.exit_code == 0, result.output
        assert f"127.0.0.1:{sip}" in result.stdout  # one address for every call
        freeswitch.put("dialplan/public/10_w3sipagent.xml", result.stdout)
        assert freeswitch.reloadxml() == []
        proc, logs = await start_pool(cfg, mport)
        try:
            records = [tmp_path / f"fs-{i}.wav" for i in range(4)]
            await asyncio.gather(
                *[originate_to(esl, "15551230000", "public", r, seconds=8) for r in records]
            )
            for r in records:
                await wait_file(r, timeout=30)

            async def written() -> bool:
                got = await rows(cfg)
                return len(got) == 4 and all(
                    c.disposition.value != "in_progress" for c in got.values()
                )

            await poll(written, 30, "four CDRs")
            cdrs = await rows(cfg)
            workers = sorted(worker_of(c)["worker"] for c in cdrs.values())
            assert workers == [0, 0, 1, 1], workers  # two by two: the fewest calls first
            for c in cdrs.values():
                assert c.tenant == "acme" and c.codec == "PCMU" and c.answer_at is not None
            heard = [rms(read_stereo(r)[0]) for r in records]
            stats = [(worker_of(c)["worker"], c.rtp) for c in cdrs.values()]
            assert all(h > 300 for h in heard), (heard, stats)  # the greeting on every call
            interop_log.append(
                f"FreeSWITCH → serve --workers 2: workers {workers}, heard rms "
                + ", ".join(f"{h:.0f}" for h in heard)
            )
            await assert_agent_released(mport, cfg, workers=2, min_calls=4)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 40) == 0
        finally:
            await stop(proc)
        assert_released_at_shutdown(await logs.end(), processes=2)
