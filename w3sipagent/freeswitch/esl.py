"""A small asyncio client for FreeSWITCH's event socket (ESL, inbound mode).

Why our own: the maintained asyncio library on PyPI (``genesis``) pins ``typer<0.13`` and
``rich<14`` and pulls in FastAPI, Redis and OpenTelemetry; the others are unmaintained since
2016-2017 (``aioesl``, ``switchio``, ``python-ESL``) or use gevent (``greenswitch``). The
protocol is small: text headers ending with an empty line, a body when ``Content-Length``
says so (see docs/freeswitch.md, "The event socket").

- :class:`EslParser` is sans-IO: bytes in, :class:`EslMessage` out.
- :func:`parse_event` turns a ``text/event-plain`` body into an :class:`EslEvent`
  (header values are URL-decoded, as FreeSWITCH encodes them).
- :class:`EslClient` connects, authenticates, runs ``api`` / ``bgapi`` (a ``Job-UUID`` of
  ours, answered by the ``BACKGROUND_JOB`` event), subscribes to events (``event plain``),
  adds filters, hands events to :meth:`EslClient.subscribe` queues, and reconnects (with
  the same subscriptions and filters) when the socket drops, if asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = [
    "EslAuthError",
    "EslClient",
    "EslCommandError",
    "EslDisconnected",
    "EslError",
    "EslEvent",
    "EslMessage",
    "EslParser",
    "parse_event",
]

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


class EslError(Exception):
    """An event-socket failure."""


class EslAuthError(EslError):
    """FreeSWITCH refused the password."""


class EslDisconnected(EslError):
    """The socket closed (or was never open) while a command waited."""


class EslCommandError(EslError):
    """A command answered ``-ERR ...``."""


@dataclass(frozen=True, slots=True)
class EslMessage:
    """One framed message: its headers (in order, names as sent) and its body."""

    headers: dict[str, str]
    body: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")


@dataclass(frozen=True, slots=True)
class EslEvent:
    """A FreeSWITCH event: ``Event-Name`` and the other headers (URL-decoded), its body."""

    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def uuid(self) -> str:
        """The channel's ``Unique-ID`` (empty for events without a channel)."""
        return self.headers.get("Unique-ID", "")

    def get(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


def _headers(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


class EslParser:
    """Frames the byte stream into messages (sans-IO).

    A message is header lines ending with an empty line; when a ``Content-Length`` header is
    present, exactly that many bytes of body follow.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: dict[str, str] | None = None
        self._need = 0

    def feed(self, data: bytes) -> list[EslMessage]:
        """Add bytes; return the messages they complete."""
        self._buf += data
        out: list[EslMessage] = []
        while True:
            if self._pending is None:
                end = self._buf.find(b"\n\n")
                if end < 0:
                    if len(self._buf) > MAX_HEADER_BYTES:
                        raise EslError("event socket: header block too long")
                    return out
                block = bytes(self._buf[:end]).decode("utf-8", "replace")
                del self._buf[: end + 2]
                headers = _headers(block)
                if not headers:
                    continue  # stray blank lines between messages
                length = headers.get("Content-Length", "0")
                if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                    raise EslError(f"event socket: bad Content-Length {length!r}")
                self._pending, self._need = headers, int(length)
            if len(self._buf) < self._need:
                return out
            body = bytes(self._buf[: self._need]).decode("utf-8", "replace")
            del self._buf[: self._need]
            out.append(EslMessage(self._pending, body))
            self._pending, self._need = None, 0


def parse_event(body: str) -> EslEvent:
    """The event in a ``text/event-plain`` message body (headers URL-decoded)."""
    block, _, rest = body.partition("\n\n")
    headers = {k: unquote(v) for k, v in _headers(block).items()}
    length = headers.get("Content-Length", "")
    payload = rest[: int(length)] if length.isdigit() else rest
    return EslEvent(headers, payload)


class EslClient:
    """An inbound event-socket connection; see the module docstring.

    ``events``: subscribed at connect (``event plain ...``); ``BACKGROUND_JOB`` is always
    added, as :meth:`bgapi` needs it. ``reconnect``: re-open the socket after it drops
    (every ``reconnect_delay`` seconds until :meth:`close`), re-authenticate, re-subscribe
    and re-apply the filters; commands waiting when it dropped fail with
    :class:`EslDisconnected`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8021,
        password: str = "ClueCon",
        *,
        events: Iterable[str] = (),
        reconnect: bool = False,
        reconnect_delay: float = 0.5,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self._password = password
        self._events: list[str] = list(dict.fromkeys(["BACKGROUND_JOB", *events]))
        self._filters: list[tuple[str, str]] = []
        self._reconnect = reconnect
        self._reconnect_delay = reconnect_delay
        self.timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._stream: tuple[asyncio.StreamReader, EslParser, list[EslMessage]] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._replies: list[asyncio.Future[EslMessage]] = []
        self._jobs: dict[str, asyncio.Future[EslEvent]] = {}
        self._queues: list[asyncio.Queue[EslEvent | None]] = []
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._closing = False
        self.connects = 0  # how many times the socket was opened and authenticated

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> None:
        """Open, authenticate, subscribe; raises :class:`EslAuthError` / ``OSError``."""
        self._closing = False
        await self._open()
        self._reader_task = asyncio.ensure_future(self._run())

    async def _open(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout
        )
        parser = EslParser()
        pending: list[EslMessage] = []

        async def next_message() -> EslMessage:
            while not pending:
                data = await asyncio.wait_for(reader.read(65536), self.timeout)
                if not data:
                    raise EslDisconnected("event socket closed during login")
                pending.extend(parser.feed(data))
            return pending.pop(0)

        try:
            first = await next_message()
            if first.content_type != "auth/request":
                raise EslError(f"event socket: expected auth/request, got {first.content_type!r}")
            writer.write(f"auth {self._password}\n\n".encode())
            reply = await next_message()
            if not reply.reply_text.startswith("+OK"):
                raise EslAuthError(f"event socket refused the password: {reply.reply_text}")
            writer.write(f"event plain {' '.join(self._events)}\n\n".encode())
            for name, value in self._filters:
                writer.write(f"filter {name} {value}\n\n".encode())
            for _ in range(1 + len(self._filters)):
                reply = await next_message()
                if not reply.reply_text.startswith("+OK"):
                    raise EslCommandError(reply.reply_text)
        except BaseException:
            writer.close()
            raise
        self._writer = writer
        self._stream = (reader, parser, pending)
        self.connects += 1
        self._connected.set()

    async def _run(self) -> None:
        while True:
            assert self._stream is not None
            reader, parser, pending = self._stream
            try:
                for msg in pending:
                    self._dispatch(msg)
                pending.clear()
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    for msg in parser.feed(data):
                        self._dispatch(msg)
            except (OSError, EslError) as exc:
                log.warning("event socket %s:%s: %s", self.host, self.port, exc)
            self._drop()
            if self._closing or not self._reconnect:
                self._end_queues()
                return
            while not self._closing:
                await asyncio.sleep(self._reconnect_delay)
                try:
                    await self._open()
                    break
                except (OSError, EslError, TimeoutError) as exc:
                    log.info("event socket %s:%s: reconnect failed: %s", self.host, self.port, exc)
            if self._closing:
                self._end_queues()
                return

    def _drop(self) -> None:
        self._connected.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for fut in self._replies:
            if not fut.done():
                fut.set_exception(EslDisconnected("event socket closed"))
        self._replies.clear()
        for job in self._jobs.values():
            if not job.done():
                job.set_exception(EslDisconnected("event socket closed"))
        self._jobs.clear()

    def _end_queues(self) -> None:
        for q in self._queues:
            q.put_nowait(None)

    def _dispatch(self, msg: EslMessage) -> None:
        ctype = msg.content_type
        if ctype in ("command/reply", "api/response"):
            if self._replies:
                fut = self._replies.pop(0)
                if not fut.done():
                    fut.set_result(msg)
            return
        if ctype == "text/event-plain":
            event = parse_event(msg.body)
            if event.name == "BACKGROUND_JOB":
                job = self._jobs.pop(event.get("Job-UUID"), None)
                if job is not None and not job.done():
                    job.set_result(event)
            for q in self._queues:
                q.put_nowait(event)
            return
        if ctype == "text/disconnect-notice":
            log.info("event socket %s:%s: disconnect notice", self.host, self.port)

    async def command(self, line: str, *, check: bool = True) -> EslMessage:
        """Send one command (``api ...``, ``filter ...``, ...) and wait for its reply."""
        if "\n" in line:
            raise ValueError("one command line only")
        return await self._send(f"{line}\n\n", check=check)

    async def _send(self, text: str, *, check: bool) -> EslMessage:
        async with self._lock:
            if self._writer is None:
                raise EslDisconnected("event socket not connected")
            fut: asyncio.Future[EslMessage] = asyncio.get_running_loop().create_future()
            self._replies.append(fut)
            self._writer.write(text.encode())
        msg = await asyncio.wait_for(fut, self.timeout)
        if check and msg.reply_text.startswith("-ERR"):
            raise EslCommandError(msg.reply_text)
        return msg

    async def api(self, cmd: str, *, check: bool = False) -> str:
        """``api CMD``: its output. ``check``: raise :class:`EslCommandError` on ``-ERR``."""
        msg = await self.command(f"api {cmd}")
        if check and msg.body.startswith("-ERR"):
            raise EslCommandError(msg.body.strip())
        return msg.body

    async def bgapi(self, cmd: str, *, timeout: float | None = None) -> str:
        """``bgapi CMD`` with a Job-UUID of ours; the output of its ``BACKGROUND_JOB``."""
        job_id = str(uuid.uuid4())
        fut: asyncio.Future[EslEvent] = asyncio.get_running_loop().create_future()
        self._jobs[job_id] = fut
        try:
            if "\n" in cmd:
                raise ValueError("one command line only")
            await self._send(f"bgapi {cmd}\nJob-UUID: {job_id}\n\n", check=True)
            event = await asyncio.wait_for(fut, timeout if timeout is not None else self.timeout)
        finally:
            self._jobs.pop(job_id, None)
        return event.body

    async def add_events(self, *names: str) -> None:
        """Subscribe to more events (kept across reconnects)."""
        new = [n for n in names if n not in self._events]
        self._events += new
        if new:
            await self.command(f"event plain {' '.join(self._events)}")

    async def add_filter(self, name: str, value: str) -> None:
        """``filter NAME VALUE``: only matching events are delivered (kept across reconnects).

        ``BACKGROUND_JOB`` stays deliverable: the first filter also adds ``Event-Name
        BACKGROUND_JOB``, or :meth:`bgapi` could never finish.
        """
        todo = []
        if not self._filters:
            todo.append(("Event-Name", "BACKGROUND_JOB"))
        todo.append((name, value))
        for n, v in todo:
            await self.command(f"filter {n} {v}")
            self._filters.append((n, v))

    def subscribe(self, maxsize: int = 0) -> asyncio.Queue[EslEvent | None]:
        """A queue receiving every event from now on (``None`` when the client ends)."""
        q: asyncio.Queue[EslEvent | None] = asyncio.Queue(maxsize)
        self._queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[EslEvent | None]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(q)

    async def events(self) -> AsyncIterator[EslEvent]:
        """Iterate over the events from now on, until the client ends."""
        q = self.subscribe()
        try:
            while (event := await q.get()) is not None:
                yield event
        finally:
            self.unsubscribe(q)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def close(self) -> None:
        """Say ``exit``, close the socket and stop reconnecting."""
        self._closing = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(b"exit\n\n")
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
            self._reader_task = None
        self._drop()
        self._end_queues()

    async def __aenter__(self) -> EslClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
