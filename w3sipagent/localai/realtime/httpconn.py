"""Plain HTTP next to WebSockets on one port, and OpenAI-style HTTP error responses.

websockets cannot read request bodies: :class:`HttpOrWebSocket` sniffs the request
line; GET goes to websockets, anything else is read whole (Content-Length) and handed
to the server's ``process_request`` hook with the body in ``http_body``.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = ["MAX_HTTP_BODY", "HttpOrWebSocket", "json_response", "openai_error"]

MAX_HTTP_BODY = 1 << 20
_MAX_HEAD = 64 * 1024


class HttpOrWebSocket(ServerConnection):
    """A websockets connection that also reads plain HTTP requests with a body."""

    http_body: bytes = b""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mode: str | None = None
        self._sniff = bytearray()
        self._head: tuple[str, str, Headers, int] | None = None

    def data_received(self, data: bytes) -> None:
        if self._mode == "ws":
            super().data_received(data)
            return
        self._sniff += data
        if self._mode is None:
            end = self._sniff.find(b"\r\n\r\n")
            if end < 0:
                if len(self._sniff) > _MAX_HEAD:
                    self.transport.close()
                return
            if self._sniff.startswith(b"GET "):
                self._mode = "ws"
                buf = bytes(self._sniff)
                self._sniff.clear()
                super().data_received(buf)
                return
            self._mode = "http"
            head = bytes(self._sniff[:end]).decode("latin-1")
            del self._sniff[: end + 4]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            headers = Headers()
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip()] = v.strip()
            try:
                length = int(headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            method = parts[0] if len(parts) == 3 else "INVALID"
            path = parts[1] if len(parts) == 3 else "/"
            self._head = (method, path, headers, length)
        if self._head is not None and self.request is None:
            method, path, headers, length = self._head
            if length < 0 or length > MAX_HTTP_BODY:
                self.http_body = b""
                headers["X-Body-Error"] = "bad or too large Content-Length"
            elif len(self._sniff) < length:
                return
            else:
                self.http_body = bytes(self._sniff[:length])
            self.request = Request(path, headers, method)
            self.request_rcvd.set_result(None)


def json_response(
    status: int, body: dict[str, Any], extra: dict[str, str] | None = None
) -> Response:
    data = json.dumps(body).encode()
    headers = Headers(
        {
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            "Connection": "close",
        }
    )
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(status, HTTPStatus(status).phrase, headers, data)


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> Response:
    """An HTTP error response shaped like the OpenAI API's."""
    return json_response(
        status, {"error": {"message": message, "type": type, "param": param, "code": code}}
    )
