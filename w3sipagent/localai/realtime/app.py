"""The local Realtime-compatible server: WebSocket and WebRTC on one port.

``GET /v1/realtime?model=...`` upgrades to a WebSocket session (a bad key, model or
the beta header are refused after the upgrade: ``error``, then close 3000 / 4000);
``POST /v1/realtime/calls`` answers a WebRTC offer, ``POST
/v1/realtime/client_secrets`` mints ephemeral keys, ``POST
/v1/realtime/calls/{id}/hangup`` ends a call. Keys: see :mod:`.auth`; HTTP failures
are OpenAI-style error JSON. websockets cannot read
request bodies, so a small connection subclass sniffs the request line: GET
goes to websockets, anything else is read whole (Content-Length) and answered
by :meth:`RealtimeServer._http` through websockets' ``process_request`` hook.

Usage in tests::

    async with RealtimeServer(port=0, scenario="demo") as srv:
        ws = await websockets.connect(srv.ws_url, additional_headers={"Authorization": "Bearer k"})

and from a command line: :func:`serve_realtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from w3sipagent.ai.redaction import wire_logger
from w3sipagent.ids import IdSource, SecureIdSource
from w3sipagent.localai.realtime.auth import (
    ClientSecrets,
    Refusal,
    bearer_key,
    beta_refusal,
    check_key,
    model_refusal,
)
from w3sipagent.localai.realtime.errors import RealtimeProtocolError
from w3sipagent.localai.realtime.httpconn import HttpOrWebSocket, json_response, openai_error
from w3sipagent.localai.realtime.ports import ServerOptions
from w3sipagent.localai.realtime.secrets_api import mint_secret
from w3sipagent.localai.realtime.session import ServerSession
from w3sipagent.localai.realtime.ws import WebSocketTransport, run_websocket_session
from w3sipagent.localai.recorder import SessionRecording
from w3sipagent.localai.scenario import Scenario, load_scenario
from w3sipagent.localai.server import LocalServer
from w3sipagent.localai.tts import Engine, Synthesizer

log = logging.getLogger(__name__)


class RealtimeServer(LocalServer):
    """A protocol-faithful stand-in for the OpenAI Realtime API (GA), on loopback.

    ``scenario``: a :class:`Scenario`, a bundled name (``"demo"``) or a TOML path.
    ``api_keys``: accepted keys (None = any non-empty key). Pacing: see
    :class:`ServerOptions` (``options`` overrides the individual keywords).
    ``record_dir``: when set, each session's received events (JSONL) and input
    audio (WAV) are written there when it ends (off the event loop). ``sessions``
    holds a :class:`SessionRecording` per session, in order; once more than
    ``keep_recordings`` sessions have ended the oldest ended ones are dropped, so a
    long-running server does not grow without bound.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        scenario: Scenario | str | Path | None = None,
        api_keys: Iterable[str] | None = None,
        realtime_pacing: bool = False,
        burst_speed: float | None = None,
        options: ServerOptions | None = None,
        tts_engine: Engine = "auto",
        synthesizer: Synthesizer | None = None,
        record_dir: str | Path | None = None,
        ids: IdSource | None = None,
        ice_host: str = "127.0.0.1",
        default_model: str = "gpt-realtime",
        keep_recordings: int = 100,
    ) -> None:
        self.host = host
        self._port = port
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.options = options or ServerOptions(
            realtime_pacing=realtime_pacing, burst_speed=burst_speed
        )
        self.synthesizer = synthesizer or Synthesizer(tts_engine)
        self.record_dir = Path(record_dir) if record_dir is not None else None
        self.ids: IdSource = ids or SecureIdSource()
        self.ice_host = ice_host
        self.default_model = default_model
        self.keep_recordings = keep_recordings
        self.sessions: list[SessionRecording] = []
        self.live: dict[str, ServerSession] = {}
        self.calls: dict[str, Any] = {}
        self.client_secrets = ClientSecrets()
        self.hangups: list[str] = []  # call ids hung up through the API, in order
        self.ephemeral_calls: set[str] = set()  # calls authorised by a client secret
        self._server: Server | None = None
        self._session_added = asyncio.Condition()
        self._bg: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        """The WebSocket URL with the default model."""
        return f"ws://{self.host}:{self.port}/v1/realtime?model={self.default_model}"

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await serve(
            self._ws_handler,
            self.host,
            self._port,
            process_request=self._process_request,
            create_connection=HttpOrWebSocket,
            select_subprotocol=self._select_subprotocol,
            max_size=16 * 1024 * 1024 * 4 // 3 + 4096,
            ping_interval=None,
            server_header="w3sipagent-realtime-server",
            logger=wire_logger("w3sipagent.localai.realtime.wire"),
        )
        log.info(
            "local Realtime server on %s (WebSocket) and %s/realtime/calls (WebRTC)",
            self.ws_url,
            self.http_url,
        )

    async def wait_for_sessions(self, n: int = 1, timeout: float = 5.0) -> list[SessionRecording]:
        """Wait until at least ``n`` sessions were opened; returns the recordings."""
        async with asyncio.timeout(timeout), self._session_added:
            await self._session_added.wait_for(lambda: len(self.sessions) >= n)
        return self.sessions

    # ------------------------------------------------------------ sessions

    def _new_session(self, transport: Any, model: str, player: Any = None) -> ServerSession:
        session = ServerSession(
            transport,
            scenario=self.scenario,
            synthesizer=self.synthesizer,
            options=self.options,
            model=model,
            ids=self.ids,
            player=player,
        )
        self.sessions.append(session.recording)
        self.live[session.id] = session
        task = asyncio.ensure_future(self._notify())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return session

    async def _notify(self) -> None:
        async with self._session_added:
            self._session_added.notify_all()

    async def _session_ended(self, session: ServerSession) -> None:
        if self.live.pop(session.id, None) is None:
            return  # already handled
        rec = session.recording
        if self.record_dir is not None:
            await asyncio.to_thread(self._write_recording, self.record_dir, session.id, rec)
        ended = [r for r in self.sessions if r.closed]
        for old in ended[: max(0, len(ended) - self.keep_recordings)]:
            self.sessions.remove(old)

    @staticmethod
    def _write_recording(directory: Path, session_id: str, rec: SessionRecording) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        rec.write_events(directory / f"{session_id}.events.jsonl")
        if rec.audio:
            rec.write_wav(directory / f"{session_id}.wav")

    async def _call_ended(self, call: Any) -> None:
        self.calls.pop(call.call_id, None)
        await self._session_ended(call.session)

    # ------------------------------------------------------------ HTTP / auth

    def _check_auth(
        self, headers: Headers, subprotocols: list[str], *, ephemeral_ok: bool = True
    ) -> Response | None:
        refused = self._auth_refusal(headers, subprotocols, ephemeral_ok=ephemeral_ok)
        return None if refused is None else _refusal_response(refused)

    def _auth_refusal(
        self, headers: Headers, subprotocols: list[str], *, ephemeral_ok: bool = True
    ) -> Refusal | None:
        key = bearer_key(headers, subprotocols)
        return check_key(key, self.api_keys, self.client_secrets, ephemeral_ok=ephemeral_ok)

    @staticmethod
    def _subprotocols(headers: Headers) -> list[str]:
        out: list[str] = []
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            out += [p.strip() for p in value.split(",") if p.strip()]
        return out

    def _select_subprotocol(self, connection: ServerConnection, offered: Any) -> Any:
        return "realtime" if "realtime" in offered else None

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        url = urlsplit(request.path)
        if request.method != "GET":
            return await self._http(connection, request, url.path)
        if url.path.rstrip("/") != "/v1/realtime":
            return openai_error(404, f"Invalid URL (GET {url.path})")
        query = parse_qs(url.query)
        if "call_id" in query:
            return openai_error(
                400,
                "Sideband connections (call_id) are not supported by the local server.",
                param="call_id",
            )
        return None

    async def _http(self, connection: ServerConnection, request: Request, path: str) -> Response:
        body = getattr(connection, "http_body", b"")
        if "X-Body-Error" in request.headers:
            return openai_error(413, "Request body missing, malformed or too large.")
        route = path.rstrip("/")
        if request.method == "POST" and route == "/v1/realtime/client_secrets":
            return self._client_secret(request, body)
        if request.method == "POST" and route.startswith("/v1/realtime/calls/"):
            return await self._call_action(request, route)
        if request.method != "POST" or route != "/v1/realtime/calls":
            return openai_error(404, f"Invalid URL ({request.method} {path})")
        denied = self._check_auth(request.headers, [])
        if denied is not None:
            return denied
        secret_session = self.client_secrets.session_of(bearer_key(request.headers, []))
        ctype = request.headers.get("Content-Type", "")
        session_cfg: Any = None
        if ctype.lower().startswith("application/sdp"):
            sdp = body.decode("utf-8", "replace")
        elif ctype.lower().startswith("multipart/form-data"):
            from w3sipagent.localai.realtime.webrtc import parse_multipart

            try:
                fields = parse_multipart(body, ctype)
            except ValueError as exc:
                return openai_error(400, str(exc))
            if "sdp" not in fields:
                return openai_error(
                    400,
                    "Missing required parameter: 'sdp'.",
                    code="missing_required_parameter",
                    param="sdp",
                )
            sdp = fields["sdp"].decode("utf-8", "replace")
            if "session" in fields:
                try:
                    session_cfg = json.loads(fields["session"])
                except json.JSONDecodeError:
                    return openai_error(
                        400,
                        "Invalid 'session': not valid JSON.",
                        code="invalid_value",
                        param="session",
                    )
        else:
            return openai_error(
                415,
                f"Unsupported Content-Type {ctype!r}: use application/sdp or multipart/form-data.",
            )
        if not sdp.startswith("v=0"):
            return openai_error(
                400, "Invalid 'sdp': not an SDP offer.", code="invalid_value", param="sdp"
            )
        return await self._answer_call(sdp, session_cfg, secret_session)

    def _client_secret(self, request: Request, body: bytes) -> Response:
        denied = self._check_auth(request.headers, [], ephemeral_ok=False)
        if denied is not None:
            return denied
        try:
            answer = mint_secret(
                body,
                self.client_secrets,
                token=self.ids.token(24),
                session_id="sess_" + self.ids.token(11),
                session_duration_s=self.options.session_duration_s,
                default_model=self.default_model,
            )
        except RealtimeProtocolError as err:
            return openai_error(400, err.message, code=err.code, param=err.param)
        return json_response(200, answer)

    async def _call_action(self, request: Request, route: str) -> Response:
        """``POST /v1/realtime/calls/{id}/hangup`` (a standard key, as for SIP calls)."""
        parts = route.split("/")
        if len(parts) != 6 or parts[5] != "hangup":
            return openai_error(404, f"Invalid URL (POST {route})")
        denied = self._check_auth(request.headers, [], ephemeral_ok=False)
        if denied is not None:
            return denied
        call = self.calls.get(parts[4])
        if call is None:
            return openai_error(404, f"Call with id '{parts[4]}' not found.", code="call_not_found")
        self.hangups.append(call.call_id)
        await call.close()
        return json_response(200, {})

    async def _answer_call(
        self, sdp: str, session_cfg: Any, secret_session: dict[str, Any] | None = None
    ) -> Response:
        from w3sipagent.localai.realtime.webrtc import DataChannelTransport, WebRtcCall

        call_id = "rtc_" + self.ids.token(16)
        base_model = str(secret_session["model"]) if secret_session else self.default_model
        model = (
            session_cfg.get("model", base_model) if isinstance(session_cfg, dict) else base_model
        )

        def factory(call: WebRtcCall) -> ServerSession:
            return self._new_session(DataChannelTransport(call), str(model), player=call.player)

        call = WebRtcCall(call_id, factory, on_closed=self._call_ended)
        if secret_session is not None:  # the session the ephemeral key was minted with
            call.session.adopt_config(secret_session)
        if session_cfg is not None:
            try:
                call.session.update_config(session_cfg)
            except RealtimeProtocolError as err:
                await call.close()
                return openai_error(400, err.message, code=err.code, param=err.param)
        try:
            answer = await call.answer(sdp, self.ice_host)
        except Exception as exc:  # aiortc raises plain exceptions on bad SDP
            await call.close()
            return openai_error(400, f"Invalid 'sdp': {exc}", code="invalid_offer", param="sdp")
        self.calls[call_id] = call
        if secret_session is not None:
            self.ephemeral_calls.add(call_id)
        data = answer.encode()
        headers = Headers(
            {
                "Content-Type": "application/sdp",
                "Content-Length": str(len(data)),
                "Location": f"/v1/realtime/calls/{call_id}",
                "Connection": "close",
            }
        )
        return Response(201, "Created", headers, data)

    async def _ws_handler(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        query = parse_qs(urlsplit(request.path).query)
        key = bearer_key(request.headers, self._subprotocols(request.headers))
        secret = self.client_secrets.session_of(key)  # an ek_ key brings its session
        model = query.get("model", [str(secret["model"]) if secret else ""])[0]
        refused = (
            self._auth_refusal(request.headers, self._subprotocols(request.headers))
            or beta_refusal(request.headers)
            or model_refusal(model)
        )
        if refused is not None:  # as the service: upgraded, then an error and a close
            await _refuse_websocket(connection, refused, self.ids.token(11))
            return
        session = self._new_session(WebSocketTransport(connection), model)
        if secret is not None:
            session.adopt_config(secret)
        try:
            await run_websocket_session(connection, session)
        finally:
            await self._session_ended(session)


def _refusal_response(refused: Refusal) -> Response:
    return openai_error(
        refused.status, refused.message, type=refused.type, code=refused.code, param=refused.param
    )


async def _refuse_websocket(connection: ServerConnection, refused: Refusal, token: str) -> None:
    event = {"type": "error", "event_id": f"event_{token}", "error": refused.error()}
    with contextlib.suppress(ConnectionClosed):
        await connection.send(json.dumps(event, separators=(",", ":")))
        await connection.close(refused.close_code, refused.code or "error")


async def serve_realtime(
    host: str = "127.0.0.1",
    port: int = 8765,
    scenario_path: str | Path | None = None,
    *,
    api_keys: Iterable[str] | None = None,
    realtime_pacing: bool = False,
    burst_speed: float | None = None,
    tts_engine: Engine = "auto",
    record_dir: str | Path | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run a :class:`RealtimeServer` until cancelled (for ``w3sipagent realtime-server``).

    ``scenario_path``: a TOML file or a bundled scenario name (None = ``demo``).
    ``ready`` is set once the port is bound.
    """
    server = RealtimeServer(
        host,
        port,
        scenario=scenario_path,
        api_keys=api_keys,
        realtime_pacing=realtime_pacing,
        burst_speed=burst_speed,
        tts_engine=tts_engine,
        record_dir=record_dir,
    )
    async with server:
        if ready is not None:
            ready.set()
        await server.serve_forever()
