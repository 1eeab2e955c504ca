"""GPT-Live over WebRTC with aiortc: the same AISession API as the WebSocket client.

Set-up is one JSON request: ``POST {base}/live/sessions`` with
``{"session": {...}, "transport": {"type": "webrtc", "sdp": offer}}`` (Bearer key) →
``201 {"session": {"id": "live_…", …}, "transport": {"type": "webrtc", "sdp": answer}}``.
There is no ``session.start``: the session starts with the answer; events travel on the
``oai-events`` data channel (no audio events on it). Caller audio goes out on an Opus
track fed by :meth:`LiveWebRTCClient.send_audio`; the model's audio arrives on the remote
track, one continuous real-time stream, and is cut into utterances by the same
:class:`~w3sipagent.live.protocol.LiveProtocol` logic as WebSocket deltas.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from aiortc import MediaStreamTrack

from w3sipagent.ai import session as ai
from w3sipagent.ai import webrtc as rtc
from w3sipagent.ai.redaction import redact
from w3sipagent.ai.webrtc import CallerAudioTrack
from w3sipagent.errors import AIError
from w3sipagent.live.channel import Channel, Conn
from w3sipagent.live.client import LiveClient
from w3sipagent.live.start import session_start_object

__all__ = ["DEFAULT_HTTP_BASE_URL", "CallerAudioTrack", "LiveWebRTCClient"]

DEFAULT_HTTP_BASE_URL = "https://api.openai.com/v1"


class _Media:
    """A WebRTC session's media: the caller track, the session from the answer, tasks."""

    def __init__(self, track: CallerAudioTrack) -> None:
        self.track = track
        self.session: dict[str, Any] = {}
        self.tasks: list[asyncio.Task[None]] = []


class LiveWebRTCClient(LiveClient):
    """GPT-Live over WebRTC (aiortc); see the module docstring.

    ``base_url``: the HTTP API base (``https://api.openai.com/v1``; a ``ws``/``wss`` URL is
    converted). ``ice_servers``: STUN/TURN URLs. ``gap_s``: see :class:`CallerAudioTrack`.
    Other options as :class:`~w3sipagent.live.client.LiveClient`.
    """

    _wire_audio = False

    def __init__(
        self,
        config: ai.AISessionConfig,
        *,
        api_key: str,
        base_url: str = DEFAULT_HTTP_BASE_URL,
        ice_servers: list[str] | None = None,
        gap_s: float = 0.06,
        trust_env: bool = True,
        **options: Any,
    ) -> None:
        base = base_url.rstrip("/")
        if base.startswith(("ws://", "wss://")):
            base = "http" + base[2:]
        super().__init__(config, api_key=api_key, base_url=base, **options)
        self.ice_servers = list(ice_servers or [])
        self.gap_s = gap_s
        self.trust_env = trust_env

    def __repr__(self) -> str:
        return f"LiveWebRTCClient(url={self.url!r})"

    async def _post_offer(self, config: ai.AISessionConfig, sdp: str) -> dict[str, Any]:
        session = session_start_object(config)
        session["audio"].pop("format", None)  # WebSocket only: WebRTC negotiates Opus
        if not session["audio"]:
            del session["audio"]
        body = {"session": session, "transport": {"type": "webrtc", "sdp": sdp}}
        try:
            async with httpx.AsyncClient(
                timeout=self.connect_timeout, trust_env=self.trust_env
            ) as http:
                resp = await http.post(
                    self.url, json=body, headers={"Authorization": f"Bearer {self._api_key}"}
                )
        except httpx.HTTPError as exc:
            text = redact(f"{type(exc).__name__}: {exc}", self._api_key)
            raise AIError(f"cannot reach {self.url}: {text}") from None
        if resp.status_code not in (200, 201):
            detail = ""
            with contextlib.suppress(ValueError, KeyError, TypeError):
                err = resp.json()["error"]
                detail = f" ({err.get('code') or err.get('type')}"
                detail += f", {err['param']})" if err.get("param") else ")"
            hint = ": check the API key" if resp.status_code in (401, 403) else ""
            raise AIError(
                redact(
                    f"{self.url} refused the session: HTTP {resp.status_code}{detail}{hint}",
                    self._api_key,
                )
            )
        try:
            data = resp.json()
            answer = data["transport"]["sdp"]
        except (ValueError, KeyError, TypeError):
            raise AIError(f"{self.url}: the answer has no transport.sdp") from None
        if not isinstance(answer, str):
            raise AIError(f"{self.url}: the answer has no transport.sdp")
        sess = data.get("session")
        return {"sdp": answer, "session": sess if isinstance(sess, dict) else {}}

    async def _open_channel(self, conn: Conn) -> Channel:
        pc = rtc.peer_connection(self.ice_servers)
        media = _Media(CallerAudioTrack(self._config.input_format, gap_s=self.gap_s))
        conn.extra = media
        pc.addTrack(media.track)
        channel = rtc.DataChannel(pc, pc.createDataChannel("oai-events"))

        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                media.tasks.append(asyncio.create_task(self._pump(conn, track), name="live-rtc"))

        async def post_offer(offer_sdp: str) -> str:
            answer = await self._post_offer(conn.proto.config, offer_sdp)
            media.session = answer["session"]
            return str(answer["sdp"])

        pc.on("track", on_track)
        await rtc.negotiate(pc, channel, post_offer, self.connect_timeout)
        return channel

    def _channel_open(self, conn: Conn) -> None:
        """Started by the answer: no ``session.start`` on the data channel."""
        media: _Media = conn.extra
        out = conn.proto.receive({"type": "session.started", "session": media.session})
        self._dispatch(conn, out)

    async def _close_channel(self, conn: Conn) -> None:
        media = conn.extra
        if isinstance(media, _Media):
            for task in media.tasks:
                task.cancel()
            media.track.stop()
        await super()._close_channel(conn)

    def _feed(self, conn: Conn, audio: bytes) -> None:
        media = conn.extra
        if isinstance(media, _Media) and conn.proto.started:
            media.track.feed(audio)
        super()._feed(conn, audio)

    async def _pump(self, conn: Conn, track: MediaStreamTrack) -> None:
        """The model's track → utterances (AudioDelta …) in the session's format."""
        fmt = self._config.output_format
        async for pcm in rtc.remote_pcm(track, fmt.sample_rate):
            out = conn.proto.output_audio(rtc.from_pcm16(pcm, fmt))
            self._dispatch(conn, out)
