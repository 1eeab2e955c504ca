"""The local GPT-Live server: ``/v1/live/sessions`` over WebSocket and WebRTC, scenario driven.

``GET`` upgrades to a WebSocket session; ``POST`` with the JSON create body
(``{session, transport: {type: "webrtc", sdp}}``) answers a WebRTC offer
(:mod:`.webrtc`, needs aiortc). The request sniffing connection that lets websockets read
a POST body is the local Realtime server's.

Usage in tests::

    async with LiveServer(scenario="demo", tts_engine="tone") as srv:
        client = LiveClient(config, api_key="k", base_url=srv.base_url)

It checks ``Authorization: Bearer <key>`` (any non-empty key, or one of ``api_keys``)
before the upgrade or the answer; everything after is :class:`LiveServerSession`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from w3sipagent.ai.redaction import wire_logger
from w3sipagent.ids import IdSource, SecureIdSource
from w3sipagent.localai.live.ports import LiveServerOptions, LiveTransport, Player
from w3sipagent.localai.live.session import LiveServerSession
from w3sipagent.localai.live.validate import LiveRequestError
from w3sipagent.localai.realtime.httpconn import MAX_HTTP_BODY, HttpOrWebSocket
from w3sipagent.localai.recorder import SessionRecording
from w3sipagent.localai.scenario import Scenario, load_scenario
from w3sipagent.localai.server import LocalServer
from w3sipagent.localai.tts import Engine, Synthesizer

__all__ = ["LiveServer"]

log = logging.getLogger(__name__)


def _json(status: int, data: dict[str, Any]) -> Response:
    body = json.dumps(data).encode()
    headers = Headers(
        {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
    )
    return Response(status, HTTPStatus(status).phrase, headers, body)


def _error(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> Response:
    err = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return _json(status, {"error": err})


class LiveServer(LocalServer):
    """A stand-in for the GPT-Live WebSocket API on loopback (see the module docstring).

    ``scenario``: a :class:`Scenario`, a bundled name or a TOML path — the same files the
    local Realtime server plays. ``sessions`` keeps a :class:`SessionRecording` per
    session, in order; ``live`` the sessions still connected.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        scenario: Scenario | str | Path | None = None,
        api_keys: Iterable[str] | None = None,
        options: LiveServerOptions | None = None,
        tts_engine: Engine = "auto",
        synthesizer: Synthesizer | None = None,
        ids: IdSource | None = None,
        ice_host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.ice_host = ice_host
        self._port = port
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.options = options or LiveServerOptions()
        self.synthesizer = synthesizer or Synthesizer(tts_engine)
        self.ids: IdSource = ids or SecureIdSource()
        self.sessions: list[SessionRecording] = []
        self.live: dict[str, LiveServerSession] = {}
        self.calls: dict[str, Any] = {}
        self._server: Server | None = None

    @property
    def base_url(self) -> str:
        """``ws://HOST:PORT/v1`` (the client adds ``/live/sessions``)."""
        return f"ws://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await serve(
            self._handler,
            self.host,
            self._port,
            process_request=self._process_request,
            create_connection=HttpOrWebSocket,
            max_size=16 * 1024 * 1024,
            ping_interval=None,
            server_header="w3sipagent-live-server",
            logger=wire_logger("w3sipagent.localai.live.wire"),
        )
        log.info("local GPT-Live server on %s/live/sessions", self.base_url)

    def _auth(self, request: Request) -> Response | None:
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not key:
            return _error(401, "You didn't provide an API key.")
        if self.api_keys is not None and key not in self.api_keys:
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        return None

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = urlsplit(request.path).path.rstrip("/")
        if path != "/v1/live/sessions":
            return _error(404, f"Invalid URL ({request.method} {path})")
        if request.method == "POST":
            return await self._create(connection, request)
        if request.method != "GET":
            return _error(405, f"{request.method} is not allowed here.")
        return self._auth(request)

    def _session(self, transport: LiveTransport, player: Player | None = None) -> LiveServerSession:
        session = LiveServerSession(
            transport,
            scenario=self.scenario,
            synthesizer=self.synthesizer,
            options=self.options,
            ids=self.ids,
            player=player,
        )
        self.sessions.append(session.recording)
        self.live[session.id] = session
        return session

    async def _create(self, connection: ServerConnection, request: Request) -> Response:
        """A WebRTC session: validate, answer the offer, 201 with the session."""
        denied = self._auth(request)
        if denied is not None:
            return denied
        body = getattr(connection, "http_body", b"")
        if "X-Body-Error" in request.headers or len(body) > MAX_HTTP_BODY:
            return _error(413, "Request body missing, malformed or too large.")
        from w3sipagent.localai.live.webrtc import LiveWebRtcCall, parse_create

        parsed = parse_create(body)
        if isinstance(parsed, str):
            return _error(400, parsed, "invalid_value")
        session_cfg, sdp = parsed
        call = LiveWebRtcCall(self._session, on_closed=self._call_closed)
        try:
            created = call.session.create(session_cfg, webrtc=True)
        except LiveRequestError as err:
            await call.close()
            return _error(400, err.message, err.code, err.param)
        try:
            answer = await call.answer(sdp, self.ice_host)
        except Exception as exc:  # aiortc raises plain exceptions on a bad SDP
            await call.close()
            return _error(400, f"Invalid 'transport.sdp': {exc}", "invalid_offer")
        self.calls[call.session.id] = call
        return _json(201, {"session": created, "transport": {"type": "webrtc", "sdp": answer}})

    async def _call_closed(self, call: Any) -> None:
        self.calls.pop(call.session.id, None)
        self.live.pop(call.session.id, None)

    async def _handler(self, connection: ServerConnection) -> None:
        def abort() -> None:
            connection.transport.abort()

        async def send(text: str) -> None:
            try:
                await connection.send(text)
            except ConnectionClosed as exc:
                raise ConnectionError("WebSocket closed") from exc

        session = self._session(LiveTransport(send, connection.close, abort))
        reason = "client closed"
        try:
            async for message in connection:
                await session.handle_text(message)
        except ConnectionError:
            reason = "server ended the session"
        except ConnectionClosed:
            reason = "connection lost"
        finally:
            session.closed(reason)
            self.live.pop(session.id, None)

    async def wait_for_sessions(self, n: int = 1, timeout: float = 5.0) -> list[SessionRecording]:
        """Wait until at least ``n`` sessions were opened; returns the recordings."""
        async with asyncio.timeout(timeout):
            while len(self.sessions) < n:
                await asyncio.sleep(0.01)
        return self.sessions
