"""OpenAI Realtime (GA) over WebRTC with aiortc: the same AISession API as the WebSocket client.

Call set-up: a per-call ephemeral key is minted with the tenant's key and the GA
session object (:func:`~w3sipagent.realtime.secrets.mint_client_secret`), then the raw
SDP offer goes to ``POST {base}/realtime/calls`` with that key, so the tenant's key
never authorises the media path (``use_client_secret`` False: the "unified interface",
``multipart/form-data`` with ``sdp`` and ``session`` under the tenant's key). The answer
SDP comes back in the body (201) and ``Location: /v1/realtime/calls/rtc_...`` names the
call, which is hung up on the service when the session closes
(``POST /v1/realtime/calls/{id}/hangup``). Caller audio goes
out on an Opus track fed by :meth:`RealtimeWebRTCClient.send_audio`; the model's
audio arrives on the remote track and is yielded as
:class:`~w3sipagent.ai.session.AudioDelta` in the session's output format. Events
travel on the ``oai-events`` data channel. The server tracks playout: with
``interrupt_response`` on it cuts and truncates by itself (``truncates_itself``);
otherwise the bridge's cut (:meth:`RealtimeWebRTCClient.truncate`) sends
``output_audio_buffer.clear``, which stops the playout and truncates the item at what
was played, also after ``response.done`` while the buffer still plays.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection

from w3sipagent.ai import session as ai
from w3sipagent.ai.channel import Channel
from w3sipagent.ai.webrtc import (
    CallerAudioTrack,
    DataChannel,
    from_pcm16,
    negotiate,
    peer_connection,
    remote_pcm,
    to_pcm16,
)
from w3sipagent.errors import AIError
from w3sipagent.realtime import events as ev
from w3sipagent.realtime.client import Link, RealtimeSessionBase, redact
from w3sipagent.realtime.secrets import (
    DEFAULT_HTTP_BASE_URL,
    hangup_call,
    http_base,
    mint_client_secret,
    refused,
)
from w3sipagent.realtime.session_object import session_object

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_HTTP_BASE_URL",
    "CallerAudioTrack",
    "RealtimeWebRTCClient",
    "from_pcm16",
    "to_pcm16",
]


@dataclass
class _Playout:
    """Which agent item the remote track is playing now (from data-channel events)."""

    response_id: str | None = None
    item_id: str | None = None
    buffer_events: bool = False  # the server sends output_audio_buffer.* events
    draining: bool = False  # response done, no buffer events: close on silence
    silent_ms: int = 0
    call_id: str | None = None  # this link's call, hung up when it closes
    track: CallerAudioTrack | None = None
    pc: RTCPeerConnection | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class RealtimeWebRTCClient(RealtimeSessionBase):
    """The OpenAI Realtime GA API over WebRTC (aiortc).

    ``base_url``: the HTTP API base (``https://api.openai.com/v1``; a ``ws``/``wss``
    URL is converted). ``ice_servers``: STUN/TURN URLs (none by default: the service
    has public candidates). ``connect_timeout`` bounds the HTTP exchange and the data
    channel opening; ``silence_close_ms`` ends an item's audio when the server sends
    no ``output_audio_buffer.stopped``; ``gap_s`` see :class:`CallerAudioTrack`;
    ``trust_env`` lets httpx take proxy settings from the environment;
    ``use_client_secret``: authorise the offer with a per-call ephemeral key lasting
    ``secret_ttl_s`` (True by default); ``hangup_on_close``: hang each call up on the
    service when it ends.
    """

    _wire_audio = False
    _send_session_update = False

    def __init__(
        self,
        config: ai.AISessionConfig,
        *,
        api_key: str,
        base_url: str = DEFAULT_HTTP_BASE_URL,
        connect_timeout: float = 10.0,
        ice_servers: list[str] | None = None,
        silence_close_ms: int = 300,
        gap_s: float = 0.06,
        trust_env: bool = True,
        use_client_secret: bool = True,
        secret_ttl_s: int = 60,
        hangup_on_close: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(config, **options)
        self._api_key = api_key
        self.base_url = http_base(base_url)
        self.use_client_secret = use_client_secret
        self.secret_ttl_s = secret_ttl_s
        self.hangup_on_close = hangup_on_close
        self.connect_timeout = connect_timeout
        self.ice_servers = list(ice_servers or [])
        self.silence_close_ms = silence_close_ms
        self.gap_s = gap_s
        self.trust_env = trust_env
        self.call_id: str | None = None

    def __repr__(self) -> str:
        return f"RealtimeWebRTCClient(url={self.calls_url!r}, call_id={self.call_id!r})"

    @property
    def calls_url(self) -> str:
        """Where the SDP offer is posted (no secret in it)."""
        return f"{self.base_url}/realtime/calls"

    @property
    def truncates_itself(self) -> bool:
        """True when the service cuts its own playout on caller speech
        (``interrupt_response``); otherwise the bridge's cut calls :meth:`truncate`."""
        return self._config.interrupts_itself

    # ------------------------------------------------------------ set-up

    async def _post_offer(self, offer_sdp: str) -> tuple[str, str | None]:
        """The answer SDP and the call id of an offer."""
        if self.use_client_secret:
            secret = await mint_client_secret(
                self._config,
                api_key=self._api_key,
                base_url=self.base_url,
                expires_after_s=self.secret_ttl_s,
                timeout=self.connect_timeout,
                trust_env=self.trust_env,
            )
            key = secret.value
            post: dict[str, Any] = {
                "content": offer_sdp.encode(),
                "headers": {"Content-Type": "application/sdp"},
            }
        else:
            key = self._api_key
            session = session_object(self._config, with_model=True, with_formats=False)
            post = {
                "files": {
                    "sdp": (None, offer_sdp.encode(), "application/sdp"),
                    "session": (None, json.dumps(session).encode(), "application/json"),
                },
                "headers": {},
            }
        post["headers"]["Authorization"] = f"Bearer {key}"
        try:
            async with httpx.AsyncClient(
                timeout=self.connect_timeout, trust_env=self.trust_env
            ) as http:
                resp = await http.post(self.calls_url, **post)
        except httpx.HTTPError as exc:
            text = redact(redact(f"{type(exc).__name__}: {exc}", self._api_key), key)
            raise AIError(f"cannot reach {self.calls_url}: {text}") from None
        if resp.status_code not in (200, 201):
            raise refused(f"{self.calls_url} refused the call", resp, key)
        location = resp.headers.get("Location", "")
        return resp.text, location.rstrip("/").rsplit("/", 1)[-1] or None

    async def _open_channel(self, link: Link) -> Channel:
        pc = peer_connection(self.ice_servers)
        track = CallerAudioTrack(self._config.input_format, gap_s=self.gap_s)
        state = _Playout(track=track, pc=pc)
        link.extra = state
        pc.addTrack(track)
        channel = DataChannel(pc, pc.createDataChannel("oai-events"))

        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                state.tasks.append(
                    asyncio.create_task(self._pump(link, track), name="webrtc-audio")
                )

        async def post_offer(offer_sdp: str) -> str:
            answer, state.call_id = await self._post_offer(offer_sdp)
            self.call_id = state.call_id
            return answer

        pc.on("track", on_track)
        await negotiate(pc, channel, post_offer, self.connect_timeout)
        return channel

    async def _close_channel(self, link: Link) -> None:
        state = link.extra
        if isinstance(state, _Playout):
            for task in state.tasks:
                task.cancel()
            if self.hangup_on_close and state.call_id is not None:
                await self._hangup(state.call_id)
        await super()._close_channel(link)

    async def _hangup(self, call_id: str) -> None:
        """End the call on the service too (before the peer connection closes)."""
        try:
            await hangup_call(
                call_id,
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.close_timeout,
                trust_env=self.trust_env,
            )
        except AIError as exc:
            log.info("WebRTC call %s not hung up on the service: %s", call_id, exc)

    # ------------------------------------------------------------ audio

    def _send_audio_on(self, link: Link, audio: bytes) -> None:
        state = link.extra
        if link.proto.ready and isinstance(state, _Playout) and state.track is not None:
            state.track.feed(audio)
        link.proto.append_audio(audio)  # held until ready, else counted for commits

    def _on_ready(self, link: Link) -> None:
        state = link.extra
        if isinstance(state, _Playout) and state.track is not None:
            for chunk in link.proto.take_held_audio():
                state.track.feed(chunk)

    async def _pump(self, link: Link, track: MediaStreamTrack) -> None:
        """Remote track -> AudioDelta of the item being played, in the output format."""
        fmt = self._config.output_format
        state: _Playout = link.extra
        async for pcm in remote_pcm(track, fmt.sample_rate):
            if state.item_id is None or state.response_id is None:
                continue
            if link.proto.is_cancelled(state.response_id):
                self._end_item(link, state)
                continue
            if state.draining:
                if _is_silent(pcm):
                    state.silent_ms += 1000 * (len(pcm) // 2) // fmt.sample_rate
                    if state.silent_ms >= self.silence_close_ms:
                        self._end_item(link, state)
                    continue
                state.silent_ms = 0
            self._dispatch(
                link, ai.AudioDelta(state.response_id, state.item_id, from_pcm16(pcm, fmt))
            )

    def _end_item(self, link: Link, state: _Playout) -> None:
        if state.item_id is not None and state.response_id is not None:
            done = ai.AudioDone(state.response_id, state.item_id)
            state.item_id = None
            if not link.proto.is_cancelled(state.response_id):
                self._dispatch(link, done)
        state.draining = False
        state.silent_ms = 0

    def _dispatch(self, link: Link, event: ai.AIEvent) -> None:
        if isinstance(event, ai.AudioDone) and event.item_id == getattr(
            link.extra, "item_id", None
        ):
            return  # data-channel audio.done: the track still plays; done when playout ends
        super()._dispatch(link, event)

    def _observe(self, link: Link, event: ev.ServerEvent) -> None:
        state = link.extra
        if not isinstance(state, _Playout):
            return
        if isinstance(event, ev.ResponseOutputItemAdded):
            item = event.item
            if item.type == "message" and item.role == "assistant" and item.id:
                if state.item_id is not None:
                    self._end_item(link, state)
                state.response_id, state.item_id = event.response_id, item.id
        elif isinstance(event, ev.OutputAudioBufferStarted):
            state.buffer_events = True
        elif isinstance(event, ev.OutputAudioBufferStopped | ev.OutputAudioBufferCleared):
            state.buffer_events = True
            if event.response_id in ("", state.response_id):
                self._end_item(link, state)
        elif (
            isinstance(event, ev.ResponseDone)
            and event.response.id == state.response_id
            and not state.buffer_events
        ):
            state.draining = True

    # ------------------------------------------------------------ API differences

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """The bridge cut the agent: stop the service's playout of ``item_id``.

        ``output_audio_buffer.clear`` (after a ``response.cancel`` while the response
        runs) stops what the service still plays, also after ``response.done``, and
        truncates the item at what was really played, which the service knows better
        than ``audio_end_ms``. Nothing is sent when the service cuts by itself
        (``interrupt_response``)."""
        if self._config.interrupts_itself:
            log.debug("truncate(%s, %d): the service cuts by itself", item_id, audio_end_ms)
            return

        def cut(p: Any) -> None:
            p.cancel_response()
            p.clear_output_audio()

        self._act(cut)
        self._stop_playout()

    async def cancel_response(self) -> None:
        """Cancel the active response and clear the server's unplayed audio."""

        def cancel(p: Any) -> None:
            if p.cancel_response():
                p.clear_output_audio()

        self._act(cancel)
        self._stop_playout()

    def _stop_playout(self) -> None:
        link = self._link
        if link is not None and isinstance(link.extra, _Playout):
            state = link.extra
            if state.response_id is not None:
                link.proto.drop_response(state.response_id)
            self._end_item(link, state)


def _is_silent(pcm: bytes, threshold: int = 64) -> bool:
    if not pcm:
        return True
    x = np.frombuffer(pcm, dtype="<i2")
    return bool(np.abs(x.astype(np.int32)).max() < threshold)
