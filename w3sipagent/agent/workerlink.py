"""The link between the supervisor and one worker process (``serve --workers N``).

One Unix stream socket pair per worker, made by the supervisor and inherited by the worker
(its descriptor number in ``W3SIPAGENT_WORKER``). Frames are a 4-byte length, a kind byte
and the payload:

- ``S``: a SIP message and its peer, ``"HOST PORT TRANSPORT\\n" + message``: from the
  supervisor, one that arrived on the public address (``HOST PORT`` its real source); from the
  worker, one to send from the public address to ``HOST PORT``;
- ``J``: a JSON control message (``op``): ``ready``, ``acquire`` / ``granted`` (the slots
  of the limits shared by every worker), ``release``, ``metrics`` (the worker's exposition).

:class:`WorkerLink` is the worker's side: the user agent's sender and receive path, and the
:class:`~w3sipagent.agent.admission.SharedSlots` of its admission. The end of the stream
(the supervisor is gone) stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from w3sipagent.records.cdr import CallRecord

__all__ = [
    "KIND_JSON",
    "KIND_SIP",
    "WORKER_ENV",
    "WorkerLink",
    "pack",
    "read_frame",
    "sip_frame",
    "split_sip",
]

log = logging.getLogger("w3sipagent.worker")

WORKER_ENV = "W3SIPAGENT_WORKER"
"""The environment variable telling a process it is worker ``index`` (JSON)."""

KIND_SIP = ord("S")
KIND_JSON = ord("J")
_HEAD = struct.Struct("!IB")
MAX_FRAME = 1 << 20

Address = tuple[str, int]


def pack(kind: int, payload: bytes) -> bytes:
    """One frame."""
    return _HEAD.pack(len(payload), kind) + payload


def sip_frame(data: bytes, addr: Address, transport: str = "UDP") -> bytes:
    """A SIP message frame with its peer address."""
    return pack(KIND_SIP, f"{addr[0]} {addr[1]} {transport}\n".encode() + data)


def split_sip(payload: bytes) -> tuple[bytes, Address, str]:
    """(message, peer, transport) of a SIP frame's payload. Raises ValueError."""
    head, _, data = payload.partition(b"\n")
    host, port, transport = head.decode("ascii").split(" ")
    return data, (host, int(port)), transport


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame (kind, payload). Raises IncompleteReadError at the end of the stream."""
    length, kind = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    if length > MAX_FRAME:
        raise ValueError(f"worker link frame of {length} bytes")
    return kind, await reader.readexactly(length)


class WorkerLink:
    """The worker's end of the link (see the module docstring)."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.index = index
        self.count = 1
        """How many workers the supervisor runs."""
        self.public: Address = ("127.0.0.1", 0)
        """The supervisor's public SIP address (Via, Contact)."""
        self.reader = reader
        self.writer = writer
        self.feed: Callable[[bytes, Address, str], None] | None = None
        """Where SIP messages from the public address go (the user agent's receive path)."""
        self.render_metrics: Callable[[], bytes] | None = None
        self.closed = asyncio.Event()
        """Set when the supervisor is gone (the worker drains and stops)."""
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[int]] = {}

    @classmethod
    async def from_fd(cls, index: int, fd: int) -> WorkerLink:
        """The link on the inherited socket ``fd``."""
        sock = socket.socket(fileno=fd)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(index, reader, writer)

    # -- SIP ----------------------------------------------------------------------------------

    def send_sip(self, data: bytes, addr: Address, transport: str) -> None:
        """The user agent's sender: out through the supervisor's public address."""
        if not self.writer.is_closing():
            self.writer.write(sip_frame(data, (str(addr[0]), int(addr[1])), transport.upper()))

    # -- control ------------------------------------------------------------------------------

    def send_json(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(pack(KIND_JSON, json.dumps(message).encode()))

    def ready(self) -> None:
        """Tell the supervisor this worker takes calls."""
        self.send_json({"op": "ready", "pid": os.getpid()})

    async def acquire(self, cdr: CallRecord, limit: int | None) -> int:
        """A slot of the machine-wide limits for an admitted call: 0 granted, else the SIP
        status to refuse it with (503 over ``sip.max_calls``, 486 over the tenant's limit).

        The CDR goes with the request: if this worker dies, the supervisor writes it as
        failed. The CDR gets a ``worker`` event (which process had the call)."""
        cdr.add_event("worker", worker=self.index, pid=os.getpid())
        n = next(self._ids)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[n] = fut
        self.send_json(
            {
                "op": "acquire",
                "id": n,
                "call_id": cdr.call_id,
                "tenant": cdr.tenant,
                "limit": limit,
                "cdr": cdr.model_dump(mode="json"),
            }
        )
        try:
            return await fut
        finally:
            self._waiting.pop(n, None)

    def release(self, call_id: str) -> None:
        """The call's CDR is written: its slots are free again."""
        self.send_json({"op": "release", "call_id": call_id})

    # -- receive loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Read frames until the supervisor closes the link."""
        try:
            while True:
                kind, payload = await read_frame(self.reader)
                if kind == KIND_SIP:
                    data, addr, transport = split_sip(payload)
                    if self.feed is not None:
                        self.feed(data, addr, transport)
                elif kind == KIND_JSON:
                    self._control(json.loads(payload))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                log.error("worker %d: link to the supervisor broken: %r", self.index, exc)
        finally:
            self.closed.set()
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_result(503)

    def _control(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "granted":
            fut = self._waiting.get(int(msg["id"]))
            if fut is not None and not fut.done():
                fut.set_result(int(msg["code"]))
        elif op == "metrics":
            text = self.render_metrics() if self.render_metrics is not None else b""
            self.send_json({"op": "metrics", "id": msg.get("id"), "text": text.decode()})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
