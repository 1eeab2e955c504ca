"""The release property for agents the tests run as processes (``w3sipagent serve``, with or
without ``--workers``, and ``demo``): what :mod:`tests.leaks` checks in-process, read
from the agent's own report (:mod:`w3sipagent.agent.resources`).

- :func:`assert_agent_released`: once the test's calls are over, the agent's ``/metrics``
  (every worker's, ``serve --workers N``) shows nothing held — no call, bridge, RTP port,
  tenant slot, AI session of any back end, task, socket or file beyond its idle baseline —
  one CDR per admitted or dialed call, nothing waiting to be written; and, given the
  config, the CDR table holds as many rows as the agent admitted (``serve --workers``:
  plus the CDRs the supervisor wrote for the calls of a worker that died, whose counts died
  with it). Waited for (the last call's CDR takes a moment), failing with what is held.
- :func:`assert_released_at_shutdown`: the agent's (each worker's) ``resources at
  shutdown`` log line says nothing was left open (for agents without metrics, and ``demo``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from w3sipagent.agent.resources import HELD
from w3sipagent.config import load_settings
from w3sipagent.records.store import CdrStore

SHUTDOWN = "resources at shutdown:"
CLEAN = "resources at shutdown: nothing left open"


@dataclass
class WorkerResources:
    """One agent process' report, as its metrics say."""

    held: dict[str, float] = field(default_factory=dict)
    ai_sessions: dict[str, float] = field(default_factory=dict)
    admitted: float = 0
    dialed: float = 0
    cdrs: float = 0
    records_pending: float = 0
    records_dropped: float = 0

    def problems(self) -> list[str]:
        out = [f"{n:g} {name}" for name, n in self.held.items() if n]
        out += [f"{n:g} {b} AI sessions open" for b, n in self.ai_sessions.items() if n]
        if self.cdrs != self.admitted + self.dialed:
            out.append(
                f"{self.cdrs:g} CDRs for {self.admitted:g} admitted + {self.dialed:g} dialed"
            )
        if self.records_pending:
            out.append(f"{self.records_pending:g} records pending")
        if self.records_dropped:
            out.append(f"{self.records_dropped:g} records dropped")
        return out


def parse(text: str) -> dict[str, WorkerResources]:
    """The agent's report from a ``/metrics`` exposition, by ``worker`` label (``""``: a
    single process)."""
    out: dict[str, WorkerResources] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            w = out.setdefault(s.labels.get("worker", ""), WorkerResources())
            if s.name == "w3sipagent_open_resources":
                w.held[s.labels["resource"]] = s.value
            elif s.name == "w3sipagent_ai_sessions_open":
                w.ai_sessions[s.labels["backend"]] = s.value
            elif s.name == "w3sipagent_calls_admitted_total":
                if s.labels.get("direction") == "outbound":
                    w.dialed = s.value
                else:
                    w.admitted = s.value
            elif s.name == "w3sipagent_cdrs_total":
                w.cdrs = s.value
            elif s.name == "w3sipagent_records_pending":
                w.records_pending = s.value
            elif s.name == "w3sipagent_records_dropped_total":
                w.records_dropped = s.value
    return {k: v for k, v in out.items() if v.held}  # the processes that report


async def scrape(port: int, token: str | None = None, host: str = "127.0.0.1") -> str:
    """``GET /metrics`` (with the bearer ``token``)."""
    reader, writer = await asyncio.open_connection(host, port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.decode().partition("\r\n\r\n")
    if " 200 " not in head.split("\r\n", 1)[0] + " ":
        raise AssertionError(f"/metrics answered {head.splitlines()[0]!r}")
    return body


async def cdr_rows(config: Path, environ: Mapping[str, str] | None = None) -> int:
    """The finished CDR rows in the database of ``config`` (a call's row is written
    ``in_progress`` when it starts: only its end makes it a CDR)."""
    settings = load_settings(config, environ=dict(environ or {}), discover=False)
    async with CdrStore.from_settings(settings.records) as store, store.engine.connect() as c:
        q = "SELECT count(*) FROM cdrs WHERE disposition <> 'in_progress'"
        return int((await c.execute(sa.text(q))).scalar_one())


async def problems(
    port: int,
    config: Path | None = None,
    *,
    token: str | None = None,
    workers: int | None = None,
    environ: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
) -> list[str]:
    """What the agent on metrics ``port`` still holds (empty: everything released)."""
    text = await scrape(port, token, host)
    report = parse(text)
    out: list[str] = []
    dead = 0.0  # serve --workers: CDRs the supervisor wrote for the calls of a dead worker
    for family in text_string_to_metric_families(text):
        if family.name == "w3sipagent_pool_slots_held":  # serve --workers: the supervisor's
            held = sum(s.value for s in family.samples)
            if held:
                out.append(f"the supervisor's ledger holds {held:g} calls")
        elif family.name == "w3sipagent_worker_failed_cdrs":
            dead = sum(s.value for s in family.samples)
    if not report:
        return ["no resource report in /metrics"]
    if workers is not None and len(report) != workers:
        out.append(f"{len(report)} of {workers} workers reported")
    for worker, res in sorted(report.items()):
        missing = set(HELD) - set(res.held)
        if missing:
            out.append(f"worker {worker or '-'}: {sorted(missing)} not reported")
        out += [f"worker {worker or '-'}: {p}" for p in res.problems()]
    if config is not None and not out:
        calls = sum(r.admitted + r.dialed for r in report.values()) + dead
        rows = await cdr_rows(config, environ)
        if rows != calls:
            out.append(f"{rows} CDR rows for {calls:g} admitted + dialed calls")
    return out


async def assert_agent_released(
    port: int,
    config: Path | None = None,
    *,
    token: str | None = None,
    workers: int | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 15.0,
    min_calls: int = 1,
    host: str = "127.0.0.1",
) -> None:
    """Wait until the agent on metrics ``port`` holds nothing and wrote one CDR (``config``:
    one database row) per admitted call; fail with what it still holds after ``timeout``.
    ``min_calls``: the agents admitted at least that many calls (the check saw the calls)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        left = await problems(
            port, config, token=token, workers=workers, environ=environ, host=host
        )
        if not left:
            report = parse(await scrape(port, token, host))
            calls = sum(r.admitted + r.dialed for r in report.values())
            assert calls >= min_calls, f"the agent admitted {calls:g} calls, expected {min_calls}+"
            return
        if loop.time() > end:
            raise AssertionError("agent resources not released:\n  " + "\n  ".join(left))
        await asyncio.sleep(0.1)  # the polling interval of a condition only a request can see


def shutdown_lines(log: str) -> list[str]:
    """The ``resources at shutdown`` messages in a log (JSON lines or plain text)."""
    out: list[str] = []
    for line in log.splitlines():
        if SHUTDOWN not in line:
            continue
        if line.startswith("{"):
            try:
                out.append(str(json.loads(line)["msg"]))
                continue
            except (ValueError, KeyError):
                pass
        out.append(line[line.index(SHUTDOWN) :])
    return out


def assert_released_at_shutdown(log: str, processes: int = 1) -> None:
    """Each of ``processes`` agents logged, as it stopped, that nothing was left open."""
    lines = shutdown_lines(log)
    assert len(lines) == processes, f"{len(lines)} shutdown reports for {processes}: {lines}"
    bad = [ln for ln in lines if not ln.startswith(CLEAN)]
    assert not bad, "resources left at shutdown:\n  " + "\n  ".join(bad)
