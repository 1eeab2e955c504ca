"""A small asyncio HTTP/1.1 server for the cascade imitation: requests in, fixed or streamed
responses out (``Transfer-Encoding: chunked``), keep-alive, and the OpenAI error body.

Only what the OpenAI HTTP API and its clients need: a request line, headers, a body of
known ``Content-Length`` (or chunked), ``multipart/form-data`` fields with their file
names, JSON and Server-Sent Events. No dependency beyond the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "FormField",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "Upgrade",
    "api_error",
    "json_response",
    "parse_multipart",
    "sse",
]

log = logging.getLogger(__name__)

MAX_BODY = 26 * 1024 * 1024
"""The services refuse audio files above 25 MB; a little room for the multipart framing."""
_MAX_HEAD = 64 * 1024


@dataclass(slots=True)
class HttpRequest:
    """One request: method, path, query, headers (lower-case names) and body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError)."""
        return json.loads(self.body.decode("utf-8"))


@dataclass(slots=True)
class HttpResponse:
    """A response: ``body`` bytes, or ``stream`` (sent chunked as it is produced)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    upgrade: Upgrade | None = None
    """Takes the connection over instead of a response being written (a WebSocket)."""


Upgrade = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    """``body`` as JSON."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return HttpResponse(status, h, json.dumps(body).encode())


def api_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """An error as the OpenAI API sends it: ``{"error": {message, type, param, code}}``."""
    return json_response(
        status,
        {"error": {"message": message, "type": type, "param": param, "code": code}},
        headers,
    )


def sse(event: dict[str, Any], *, named: bool = True) -> bytes:
    """One Server-Sent Event: ``event: TYPE`` (the Responses API names its events) and
    ``data: JSON``; ``named=False`` for Chat Completions, which sends data lines only."""
    data = json.dumps(event, separators=(",", ":"))
    if named:
        return f"event: {event['type']}\ndata: {data}\n\n".encode()
    return f"data: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class FormField:
    """One ``multipart/form-data`` field: its value, and for a file its name and type."""

    value: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


def parse_multipart(body: bytes, content_type: str) -> dict[str, FormField]:
    """The fields of a ``multipart/form-data`` body (raises ValueError when malformed)."""
    boundary = None
    for part in content_type.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip('"')
    if not boundary:
        raise ValueError("multipart/form-data without a boundary")
    delim = b"--" + boundary.encode("latin-1")
    if delim not in body:
        raise ValueError("multipart body without its boundary")
    fields: dict[str, FormField] = {}
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, value = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = filename = ctype = None
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, rest = line.partition(":")
            key = key.strip().lower()
            if key == "content-type":
                ctype = rest.strip()
            elif key == "content-disposition":
                for p in rest.split(";"):
                    pk, _, pv = p.strip().partition("=")
                    if pk == "name":
                        name = pv.strip('"')
                    elif pk == "filename":
                        filename = pv.strip('"')
        if name is not None:
            fields[name] = FormField(value.removesuffix(b"\r\n"), filename, ctype)
    return fields


class HttpServer:
    """Serves ``handler`` on ``host:port`` (0: any free port)."""

    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *, name: str = "http"
    ) -> None:
        self.handler = handler
        self.host = host
        self._port = port
        self.name = name
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._closing = False
        self._server = await asyncio.start_server(self._connection, self.host, self._port)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    break
                if isinstance(req, HttpResponse):
                    await _write(writer, req, keep_alive=False)
                    break
                try:
                    resp = await self.handler(req)
                except Exception:
                    log.exception("%s: handler failed for %s %s", self.name, req.method, req.path)
                    resp = api_error(
                        500,
                        "The server had an error while processing your request.",
                        type="server_error",
                    )
                if resp.upgrade is not None:
                    await resp.upgrade(reader, writer)
                    break
                keep = req.headers.get("connection", "").lower() != "close"
                await _write(writer, resp, keep_alive=keep)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # our own close() cancels the connections: end quietly (asyncio's start_server
            # callback on Python 3.11 logs a cancelled connection task as an error)
            if not self._closing:
                raise
        finally:
            self._conns.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except asyncio.CancelledError:
                if not self._closing:
                    raise
            except Exception:
                pass


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | HttpResponse | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        return api_error(431, "Request header fields too large.")
    if len(head) > _MAX_HEAD:
        return api_error(431, "Request header fields too large.")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return api_error(400, "Malformed request line.")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                return api_error(400, "Malformed chunked body.")
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
            if len(body) > MAX_BODY:
                return api_error(413, "Request body too large.")
        data = bytes(body)
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return api_error(400, "Malformed Content-Length.")
        if length < 0 or length > MAX_BODY:
            return api_error(413, "Request body too large.")
        data = await reader.readexactly(length) if length else b""
    url = urlsplit(parts[1])
    return HttpRequest(parts[0].upper(), url.path, parse_qs(url.query), headers, data)


async def _write(writer: asyncio.StreamWriter, resp: HttpResponse, *, keep_alive: bool) -> None:
    phrase = HTTPStatus(resp.status).phrase
    headers = dict(resp.headers)
    headers["Connection"] = "keep-alive" if keep_alive else "close"
    headers.setdefault("Server", "w3sipagent-localai")
    if resp.stream is None:
        headers["Content-Length"] = str(len(resp.body))
    else:
        headers["Transfer-Encoding"] = "chunked"
    head = f"HTTP/1.1 {resp.status} {phrase}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    writer.write(head.encode("latin-1") + b"\r\n")
    if resp.stream is None:
        writer.write(resp.body)
        await writer.drain()
        return
    await writer.drain()
    try:
        async for chunk in resp.stream:
            if chunk:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await writer.drain()
    finally:
        aclose = getattr(resp.stream, "aclose", None)
        if aclose is not None:
            await aclose()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
