"""The supervisor of ``serve --workers N``: worker processes behind one SIP address.

:class:`WorkerPool` runs in the supervisor process. It owns the public SIP socket (a
:class:`~w3sipagent.asyncio.sipfront.SipFront` routing by Call-ID), starts N worker
processes (each a whole :class:`~w3sipagent.agent.service.AgentService` on a slice of the
RTP port range, talking SIP through the supervisor over a
:mod:`~w3sipagent.agent.workerlink`), and keeps the machine-wide limits in one
:class:`SlotLedger` (``sip.max_calls`` and every tenant's ``max_concurrent_calls`` hold
across the workers: each admission asks the ledger before the 200 OK).

A worker that dies loses its own calls only: the ledger knows them (each admission sent its
CDR), the supervisor writes each as ``failed`` (reason ``worker N died``), answers later
requests of those dialogs with 481 (the peer ends its leg), frees their slots and starts the
worker again after ``server.worker_restart_delay`` seconds (doubled, up to 30 s, for each
death in a row before it became ready). The other workers go on.

Drain and reload go to every worker (SIGTERM, SIGHUP, SIGUSR1 forwarded); the supervisor
exits when every worker has finished draining. ``/metrics`` is the workers' expositions
merged, each sample with a ``worker`` label, plus the supervisor's own gauges.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from w3sipagent.agent.poolmetrics import merge_expositions
from w3sipagent.agent.workerlink import (
    KIND_JSON,
    KIND_SIP,
    WORKER_ENV,
    pack,
    read_frame,
    sip_frame,
    split_sip,
)
from w3sipagent.asyncio.sipfront import SipFront
from w3sipagent.asyncio.transport import TransportConfig
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.sink import RecordsSink

__all__ = ["SlotLedger", "WorkerPool", "rtp_slice"]

log = logging.getLogger("w3sipagent.pool")

PENDING_WINDOW = 2.0
"""Seconds a new request routed to a worker counts as its call until admitted."""


def rtp_slice(port_min: int, port_max: int, index: int, count: int) -> tuple[int, int]:
    """Worker ``index``'s share of the RTP port range (even-aligned, disjoint)."""
    span = (port_max - port_min + 1) // count
    span -= span % 2
    if span < 2:
        raise ValueError(f"RTP range {port_min}-{port_max} too small for {count} workers")
    lo = port_min + index * span
    return lo, lo + span - 1


@dataclass
class _Held:
    worker: int
    tenant: str | None
    cdr: dict[str, Any]


class SlotLedger:
    """Calls admitted on this machine, for the limits every worker shares."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.calls: dict[str, _Held] = {}
        self._per_tenant: dict[str, int] = {}

    def held(self, tenant: str) -> int:
        return self._per_tenant.get(tenant, 0)

    def acquire(
        self, worker: int, call_id: str, tenant: str | None, limit: int | None, cdr: dict[str, Any]
    ) -> int:
        """0 granted; 503 over ``max_calls``; 486 over the tenant's limit."""
        if call_id in self.calls:
            return 0
        if len(self.calls) >= self.max_calls:
            return 503
        if tenant is not None and limit is not None and self.held(tenant) >= limit:
            return 486
        self.calls[call_id] = _Held(worker, tenant, cdr)
        if tenant is not None:
            self._per_tenant[tenant] = self.held(tenant) + 1
        return 0

    def release(self, call_id: str) -> _Held | None:
        held = self.calls.pop(call_id, None)
        if held is not None and held.tenant is not None:
            n = self.held(held.tenant) - 1
            if n > 0:
                self._per_tenant[held.tenant] = n
            else:
                self._per_tenant.pop(held.tenant, None)
        return held

    def of_worker(self, worker: int) -> list[str]:
        return [cid for cid, h in self.calls.items() if h.worker == worker]


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    ready: bool = False
    pid: int | None = None
    calls: int = 0
    restarts: int = 0
    reader_task: asyncio.Task[None] | None = None
    metrics_waits: dict[int, asyncio.Future[str]] = field(default_factory=dict)
    was_ready: bool = False
    quick_deaths: int = 0
    """Deaths in a row before becoming ready (each doubles the restart delay, to 30 s)."""
    pending: collections.deque[float] = field(default_factory=collections.deque)
    """When new requests were routed here and not admitted yet."""


class WorkerPool:
    """N worker processes behind one public SIP address (see the module docstring).

    ``command``: the worker's argv (``python -m w3sipagent _worker``); ``worker_env``: what
    every worker gets in ``W3SIPAGENT_WORKER`` besides its index and link descriptor.
    ``store``: where the CDRs of a dead worker's calls go.
    """

    def __init__(
        self,
        count: int,
        command: Sequence[str],
        *,
        worker_env: Mapping[str, Any],
        max_calls: int,
        store: RecordsSink | None = None,
        restart_delay: float = 1.0,
        start_timeout: float = 60.0,
        linger: float = 32.0,
        retry_after: int = 5,
    ) -> None:
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        self.count = count
        self.command = list(command)
        self.worker_env = dict(worker_env)
        self.store = store
        self.restart_delay = restart_delay
        self.start_timeout = start_timeout
        self.ledger = SlotLedger(max_calls)
        self.front = SipFront(self._deliver, self._pick, linger=linger, retry_after=retry_after)
        self.workers = [_Worker(i) for i in range(count)]
        self.draining = False
        self.failed_cdrs = 0
        """CDRs the supervisor wrote for calls of workers that died."""
        self._ids = itertools.count(1)
        self._turns = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._all_ready = asyncio.Event()
        self._stopped = asyncio.Event()

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, listen: TransportConfig) -> tuple[str, int]:
        """Bind the public address, start every worker, wait until all are ready."""
        address = await self.front.start(listen)
        self.worker_env["public"] = list(address)
        for w in self.workers:
            await self._spawn(w)
        try:
            async with asyncio.timeout(self.start_timeout):
                await self._all_ready.wait()
        except TimeoutError:
            await self.close()
            raise RuntimeError(
                f"workers not ready within {self.start_timeout:g} s "
                f"({sum(w.ready for w in self.workers)}/{self.count})"
            ) from None
        return address

    @property
    def address(self) -> tuple[str, int]:
        assert self.front.address is not None
        return self.front.address

    def signal_all(self, sig: int) -> None:
        """Forward a signal to every running worker (SIGHUP reload, SIGUSR1 trace)."""
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    def reload(self) -> None:
        """Every worker reloads its tenants."""
        self.signal_all(signal.SIGHUP)

    async def drain(self, timeout: float | None = None) -> None:
        """Every worker drains (new INVITEs 503, calls finish); returns when all have exited
        (``timeout``: then the rest are killed)."""
        self.draining = True
        self.signal_all(signal.SIGTERM)
        procs = [w.proc for w in self.workers if w.proc is not None]
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        await self._settle()

    async def close(self) -> None:
        """Stop at once: kill the workers still running, close the public socket."""
        self.draining = True
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
        for w in self.workers:
            if w.proc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w.proc.wait(), 5.0)
        await self._settle()
        self.front.close()

    async def _settle(self) -> None:
        """Wait for the workers' link readers (their exits handled, CDRs queued)."""
        readers = [w.reader_task for w in self.workers if w.reader_task is not None]
        if readers:
            await asyncio.wait(readers, timeout=5.0)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    # -- workers ------------------------------------------------------------------------------

    async def _spawn(self, w: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env[WORKER_ENV] = json.dumps({**self.worker_env, "index": w.index, "fd": theirs.fileno()})
        try:
            w.proc = await asyncio.create_subprocess_exec(
                *self.command, env=env, pass_fds=(theirs.fileno(),)
            )
        finally:
            theirs.close()
        w.pid = w.proc.pid
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        w.writer = writer
        w.ready = w.was_ready = False
        w.calls = 0
        w.pending.clear()
        w.reader_task = asyncio.get_running_loop().create_task(
            self._read(w, reader, w.proc), name=f"worker-{w.index}"
        )
        log.info("worker %d started (pid %d)", w.index, w.pid)

    async def _read(
        self, w: _Worker, reader: asyncio.StreamReader, proc: asyncio.subprocess.Process
    ) -> None:
        try:
            while True:
                kind, payload = await read_frame(reader)
                if kind == KIND_SIP:
                    data, addr, transport = split_sip(payload)
                    self.front.send(data, addr, transport, worker=w.index)
                elif kind == KIND_JSON:
                    self._control(w, json.loads(payload))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                log.error("worker %d: link broken: %r", w.index, exc)
        code = await proc.wait()
        await self._exited(w, code)

    def _control(self, w: _Worker, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "acquire":
            if w.pending:
                w.pending.popleft()
            call_id = str(msg["call_id"])
            code = 503 if self.draining else 0
            if not code:
                code = self.ledger.acquire(
                    w.index, call_id, msg.get("tenant"), msg.get("limit"), msg.get("cdr") or {}
                )
            if not code:
                w.calls += 1
                self.front.hold(call_id, w.index)
            self._send(
                w,
                pack(
                    KIND_JSON, json.dumps({"op": "granted", "id": msg["id"], "code": code}).encode()
                ),
            )
        elif op == "release":
            call_id = str(msg["call_id"])
            if self.ledger.release(call_id) is not None:
                w.calls = max(0, w.calls - 1)
            self.front.release(call_id)
        elif op == "ready":
            w.ready = w.was_ready = True
            log.info("worker %d ready (pid %s)", w.index, msg.get("pid"))
            if all(x.ready for x in self.workers):
                self._all_ready.set()
        elif op == "metrics":
            fut = w.metrics_waits.pop(int(msg.get("id") or 0), None)
            if fut is not None and not fut.done():
                fut.set_result(str(msg.get("text", "")))

    def _send(self, w: _Worker, frame: bytes) -> bool:
        if w.writer is None or w.writer.is_closing():
            return False
        w.writer.write(frame)
        return True

    def _deliver(self, index: int, data: bytes, source: tuple[str, int], transport: str) -> bool:
        w = self.workers[index]
        if w.proc is None or w.proc.returncode is not None:
            return False
        return self._send(w, sip_frame(data, source, transport))

    def _pick(self) -> int | None:
        """The ready worker with the fewest calls, counting the INVITEs sent to it in the last
        ``PENDING_WINDOW`` seconds and not admitted yet (a burst arrives before any is);
        ties taken in turn."""
        ready = [w for w in self.workers if w.ready and w.writer is not None]
        if not ready:
            return None
        turn = next(self._turns)
        n = self.count
        now = asyncio.get_running_loop().time()
        for w in ready:
            while w.pending and w.pending[0] < now - PENDING_WINDOW:
                w.pending.popleft()
        chosen = min(ready, key=lambda w: (w.calls + len(w.pending), (w.index - turn) % n))
        chosen.pending.append(now)
        return chosen.index

    async def _exited(self, w: _Worker, code: int) -> None:
        w.ready = False
        if w.writer is not None:
            w.writer.close()
            w.writer = None
        self.front.worker_gone(w.index)
        lost = self.ledger.of_worker(w.index)
        if lost or not self.draining:
            log.error(
                "worker %d (pid %s) exited with %s: %d call(s) lost",
                w.index,
                w.pid,
                code,
                len(lost),
            )
        for call_id in lost:
            held = self.ledger.release(call_id)
            if held is not None:
                await self._write_failed(held, w.index, code)
        await self._reconcile(w, code, set(lost))
        w.calls = 0
        if self.draining:
            if all(x.proc is None or x.proc.returncode is not None for x in self.workers):
                self._stopped.set()
            return
        w.restarts += 1
        w.quick_deaths = 0 if w.was_ready else w.quick_deaths + 1
        delay = min(30.0, self.restart_delay * 2**w.quick_deaths)
        await asyncio.sleep(delay)
        if not self.draining:
            await self._spawn(w)

    async def _reconcile(self, w: _Worker, code: int, done: set[str]) -> None:
        """In-progress CDR rows of the dead process not in the ledger any more (it said the
        call was over but died before its final row was written): written as failed."""
        rows = getattr(self.store, "list_cdrs", None)
        if rows is None or w.pid is None:
            return
        try:
            found = await rows(disposition="in_progress", limit=10000)
        except Exception as exc:
            log.warning("in-progress CDRs of worker %d not checked: %r", w.index, exc)
            return
        for cdr in found:
            mark = [e for e in cdr.events if e.get("kind") == "worker"]
            if cdr.call_id in done or not mark or mark[0].get("pid") != w.pid:
                continue
            held = _Held(w.index, cdr.tenant, cdr.model_dump(mode="json"))
            await self._write_failed(held, w.index, code)

    async def _write_failed(self, held: _Held, index: int, code: int) -> None:
        """The CDR of a call whose worker died: failed, by the system."""
        self.failed_cdrs += 1
        if self.store is None:
            return
        try:
            cdr = CallRecord.model_validate(held.cdr)
            cdr.add_event("worker_died", worker=index, exit_code=code)
            cdr.finish(
                Disposition.FAILED,
                hangup_by="system",
                reason=f"worker {index} died (exit code {code})",
            )
            await self.store.call_started(cdr)
            await self.store.call_ended(cdr)
        except Exception as exc:
            log.error(
                "CDR of %s (worker %d died) not written: %r", held.cdr.get("call_id"), index, exc
            )

    # -- metrics ------------------------------------------------------------------------------

    async def metrics_text(self, timeout: float = 2.0) -> str:
        """Every ready worker's exposition, merged with a ``worker`` label, and ours."""
        waits: dict[int, asyncio.Future[str]] = {}
        loop = asyncio.get_running_loop()
        for w in self.workers:
            if not w.ready:
                continue
            n = next(self._ids)
            fut: asyncio.Future[str] = loop.create_future()
            w.metrics_waits[n] = fut
            if self._send(w, pack(KIND_JSON, json.dumps({"op": "metrics", "id": n}).encode())):
                waits[w.index] = fut
        texts: dict[int, str] = {}
        if waits:
            await asyncio.wait(list(waits.values()), timeout=timeout)
        for index, fut in waits.items():
            if fut.done() and not fut.cancelled():
                texts[index] = fut.result()
            else:
                fut.cancel()
        own = [
            "# HELP w3sipagent_workers Worker processes by state.",
            "# TYPE w3sipagent_workers gauge",
            f'w3sipagent_workers{{state="ready"}} {sum(w.ready for w in self.workers)}',
            f'w3sipagent_workers{{state="configured"}} {self.count}',
            "# HELP w3sipagent_worker_restarts_total Workers started again after dying.",
            "# TYPE w3sipagent_worker_restarts_total counter",
            f"w3sipagent_worker_restarts_total {sum(w.restarts for w in self.workers)}",
            "# HELP w3sipagent_worker_failed_cdrs_total CDRs written for calls of dead workers.",
            "# TYPE w3sipagent_worker_failed_cdrs_total counter",
            f"w3sipagent_worker_failed_cdrs_total {self.failed_cdrs}",
            "# HELP w3sipagent_pool_slots_held Calls the machine's ledger holds for the workers.",
            "# TYPE w3sipagent_pool_slots_held gauge",
            f"w3sipagent_pool_slots_held {len(self.ledger.calls)}",
        ]
        return merge_expositions(texts) + "\n".join(own) + "\n"
