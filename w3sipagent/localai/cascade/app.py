"""The local cascade server: the OpenAI HTTP endpoints a speech-to-text → model →
text-to-speech pipeline uses, on one loopback port.

Routes (``POST``): ``/v1/embeddings``, ``/v1/audio/transcriptions``, ``/v1/audio/speech``,
``/v1/responses``, ``/v1/chat/completions``; ``GET /v1/models``. Every route checks
``Authorization: Bearer <key>`` (any non-empty key, or one of ``api_keys``) and answers
failures as the service does: the status code and ``{"error": {"message", "type",
"param", "code"}}``: 401 (``invalid_api_key``), 400 (``invalid_request_error``), 404,
and 429 with ``retry-after`` and ``x-ratelimit-*`` headers when ``requests_per_minute``
is exceeded for a key (or when a test queued one with :meth:`CascadeServer.fail_next`).

Usage in tests::

    async with CascadeServer(scenario="demo") as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as client: ...
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w3sipagent.ids import IdSource, SecureIdSource
from w3sipagent.localai.cascade.audio import AudioApi
from w3sipagent.localai.cascade.embeddings import (
    DEFAULT_DIMS,
    MODEL_DIMS,
    embed,
    encode_base64,
    token_count,
)
from w3sipagent.localai.cascade.http import (
    HttpRequest,
    HttpResponse,
    HttpServer,
    api_error,
    json_response,
    parse_multipart,
)
from w3sipagent.localai.cascade.model import ModelApi, Pacing
from w3sipagent.localai.cascade.transcription import TRANSCRIBE_MODELS, TranscriptionSocket
from w3sipagent.localai.scenario import Scenario, load_scenario
from w3sipagent.localai.tts import Engine, Synthesizer

__all__ = ["CascadeServer", "InjectedError", "serve_cascade"]

log = logging.getLogger(__name__)

MAX_EMBEDDING_INPUTS = 2048
ROUTES = (
    "/v1/embeddings",
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/responses",
    "/v1/chat/completions",
)


@dataclass(frozen=True, slots=True)
class InjectedError:
    """An error the next request to ``path`` gets (see :meth:`CascadeServer.fail_next`)."""

    path: str
    status: int
    message: str
    type: str
    code: str | None
    retry_after: float | None


class CascadeServer:
    """A stand-in for the OpenAI HTTP API of the cascade backend, on loopback.

    ``scenario``: a :class:`Scenario`, a bundled name or a TOML path (the same files as
    the Realtime imitation). ``requests_per_minute``: per key, None = unlimited.
    ``pacing``: delays before the first and between text deltas and audio chunks.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        scenario: Scenario | str | Path | None = None,
        api_keys: Iterable[str] | None = None,
        requests_per_minute: int | None = None,
        pacing: Pacing | None = None,
        tts_engine: Engine = "auto",
        synthesizer: Synthesizer | None = None,
        ids: IdSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.requests_per_minute = requests_per_minute
        self.pacing = pacing or Pacing()
        self.synthesizer = synthesizer or Synthesizer(tts_engine)
        self.ids: IdSource = ids or SecureIdSource()
        self._clock = clock
        self.model = ModelApi(self.scenario, self.ids, self.pacing)
        self.audio = AudioApi(self.scenario, self.synthesizer, self.pacing)
        self.requests: list[HttpRequest] = []
        """Every request received, in order (bodies included), for tests to inspect."""
        self._window: dict[str, deque[float]] = {}
        self._injected: list[InjectedError] = []
        self._stt_failures: list[tuple[str, str]] = []
        self.transcription_sockets: list[TranscriptionSocket] = []
        """Every transcription session opened (``GET /v1/realtime?intent=transcription``)."""
        self._http = HttpServer(self._handle, host, port, name="cascade")

    # ------------------------------------------------------------ lifecycle

    @property
    def host(self) -> str:
        return self._http.host

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` of an OpenAI client."""
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        await self._http.start()
        log.info("local cascade server on %s", self.base_url)

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> CascadeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        await self._http.serve_forever()

    # ------------------------------------------------------------ test hooks

    def fail_next(
        self,
        path: str,
        status: int = 429,
        *,
        message: str | None = None,
        type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next request to ``path`` (``/v1/responses``…) with this error."""
        if status == 429:
            message = message or "Rate limit reached for requests. Please try again later."
            type = type or "requests"
            code = code or "rate_limit_exceeded"
            retry_after = 1.0 if retry_after is None else retry_after
        self._injected.append(
            InjectedError(
                path,
                status,
                message or "The server had an error while processing your request.",
                type or "server_error",
                code,
                retry_after,
            )
        )

    def fail_next_transcription(
        self, code: str = "server_error", message: str = "Transcription failed."
    ) -> None:
        """The next item committed in a transcription session gets
        ``conversation.item.input_audio_transcription.failed`` with this error."""
        self._stt_failures.append((code, message))

    # ------------------------------------------------------------ requests

    def _key(self, req: HttpRequest) -> tuple[str, HttpResponse | None]:
        auth = req.headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not key:
            return "", api_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.api_keys is not None and key not in self.api_keys:
            shown = key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "*" * len(key)
            return "", api_error(
                401, f"Incorrect API key provided: {shown}.", code="invalid_api_key"
            )
        return key, None

    def _rate_limited(self, key: str) -> HttpResponse | None:
        limit = self.requests_per_minute
        if limit is None:
            return None
        now = self._clock()
        window = self._window.setdefault(key, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= limit:
            wait = max(0.001, window[0] + 60.0 - now)
            return api_error(
                429,
                f"Rate limit reached for requests per min (RPM): Limit {limit}, Used "
                f"{len(window)}, Requested 1. Please try again in {wait:.3f}s.",
                type="requests",
                code="rate_limit_exceeded",
                headers={
                    "retry-after": str(math.ceil(wait)),
                    "retry-after-ms": str(math.ceil(wait * 1000)),
                    "x-ratelimit-limit-requests": str(limit),
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{wait:.3f}s",
                },
            )
        window.append(now)
        return None

    def _injected_error(self, path: str) -> HttpResponse | None:
        for i, inj in enumerate(self._injected):
            if inj.path == path:
                del self._injected[i]
                headers = {}
                if inj.retry_after is not None:
                    headers["retry-after"] = str(math.ceil(inj.retry_after))
                    headers["retry-after-ms"] = str(math.ceil(inj.retry_after * 1000))
                return api_error(
                    inj.status, inj.message, type=inj.type, code=inj.code, headers=headers
                )
        return None

    async def _handle(self, req: HttpRequest) -> HttpResponse:
        self.requests.append(req)
        path = req.path.rstrip("/")
        if path == "/v1/realtime" and req.method == "GET":
            return self._realtime(req)
        known = path in ROUTES or path == "/v1/models"
        if not known or (path == "/v1/models") != (req.method == "GET"):
            return api_error(404, f"Invalid URL ({req.method} {req.path})")
        key, denied = self._key(req)
        if denied is not None:
            return denied
        failure = self._injected_error(path) or self._rate_limited(key)
        if failure is not None:
            return failure
        if path == "/v1/models":
            return self._models()
        if path == "/v1/audio/transcriptions":
            ctype = req.headers.get("content-type", "")
            if not ctype.lower().startswith("multipart/form-data"):
                return api_error(
                    400,
                    "Invalid Content-Type header "
                    f"({ctype or 'none'}), expected multipart/form-data.",
                )
            try:
                fields = parse_multipart(req.body, ctype)
            except ValueError as exc:
                return api_error(400, f"Could not parse multipart form: {exc}")
            return self.audio.transcribe(key, fields)
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            return api_error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload, but what was sent was not valid JSON.)",
            )
        if not isinstance(body, dict):
            return api_error(400, "The request body must be a JSON object.")
        if path == "/v1/embeddings":
            return self._embeddings(body)
        if path == "/v1/responses":
            return self.model.responses(body)
        if path == "/v1/chat/completions":
            return self.model.chat(body)
        params, error = self.audio.speech_request(body)
        return error if error is not None else self.audio.speech(params)

    def _realtime(self, req: HttpRequest) -> HttpResponse:
        """A transcription session over a WebSocket (transcription.py)."""
        if req.headers.get("upgrade", "").lower() != "websocket":
            return api_error(400, "Expected a WebSocket upgrade request.")
        if req.query.get("intent") != ["transcription"]:
            return api_error(
                400,
                "The local cascade server serves transcription sessions only "
                "(?intent=transcription); realtime sessions: the local Realtime server.",
                param="intent",
            )
        key, denied = self._key(req)
        if denied is not None:
            return denied
        failure = self._injected_error("/v1/realtime") or self._rate_limited(key)
        if failure is not None:
            return failure
        sock = TranscriptionSocket(
            req,
            self.ids,
            lambda: self.audio.next_caller_line(key),
            lambda: self._stt_failures.pop(0) if self._stt_failures else None,
            delta_delay=self.pacing.token_delay,
            commit_delay=self.pacing.transcript_delay,
        )
        self.transcription_sockets.append(sock)
        return HttpResponse(101, upgrade=sock.run)

    def _models(self) -> HttpResponse:
        names = [*MODEL_DIMS, *TRANSCRIBE_MODELS]
        names += ["gpt-4o-mini-tts", "tts-1", "gpt-4.1-mini", "gpt-4o-mini"]
        return json_response(
            200,
            {
                "object": "list",
                "data": [
                    {"id": n, "object": "model", "created": 0, "owned_by": "w3sipagent"}
                    for n in names
                ],
            },
        )

    def _embeddings(self, body: dict[str, Any]) -> HttpResponse:
        model = body.get("model")
        if model is None:
            return api_error(
                400,
                "Missing required parameter: 'model'.",
                code="missing_required_parameter",
                param="model",
            )
        raw = body.get("input")
        if raw is None:
            return api_error(
                400,
                "Missing required parameter: 'input'.",
                code="missing_required_parameter",
                param="input",
            )
        inputs = _embedding_inputs(raw)
        if inputs is None:
            return api_error(
                400, "'$.input' is invalid. Please check the API reference.", param="input"
            )
        if len(inputs) > MAX_EMBEDDING_INPUTS:
            return api_error(
                400,
                f"'$.input' is invalid: at most {MAX_EMBEDDING_INPUTS} inputs per request.",
                param="input",
            )
        native = MODEL_DIMS.get(str(model), DEFAULT_DIMS)
        dims = body.get("dimensions", native)
        if "dimensions" in body and str(model) == "text-embedding-ada-002":
            return api_error(
                400, "This model does not support specifying dimensions.", param="dimensions"
            )
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= native:
            return api_error(
                400,
                f"Invalid 'dimensions': expected an integer between 1 and {native}.",
                code="invalid_value",
                param="dimensions",
            )
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            return api_error(
                400,
                f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.",
                code="invalid_value",
                param="encoding_format",
            )
        data = []
        for i, text in enumerate(inputs):
            vec = embed(text, dims)
            value: Any = encode_base64(vec) if fmt == "base64" else [float(x) for x in vec]
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(token_count(t) for t in inputs)
        return json_response(
            200,
            {
                "object": "list",
                "data": data,
                "model": str(model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def _embedding_inputs(raw: Any) -> list[str] | None:
    """Strings to embed (token arrays become their numbers as words); None when invalid."""
    if isinstance(raw, str):
        return [raw] if raw else None
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
        return [" ".join(f"t{t}" for t in raw)]
    out: list[str] = []
    for item in raw:
        if isinstance(item, str) and item:
            out.append(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            out.append(" ".join(f"t{t}" for t in item))
        else:
            return None
    return out


async def serve_cascade(
    host: str = "127.0.0.1",
    port: int = 8766,
    scenario_path: str | Path | None = None,
    *,
    api_keys: Iterable[str] | None = None,
    tts_engine: Engine = "auto",
    ready: asyncio.Event | None = None,
) -> None:
    """Run a :class:`CascadeServer` until cancelled."""
    server = CascadeServer(
        host, port, scenario=scenario_path, api_keys=api_keys, tts_engine=tts_engine
    )
    async with server:
        if ready is not None:
            ready.set()
        await server.serve_forever()
