"""The WebRTC side of the local GPT-Live server (aiortc).

``POST /v1/live/sessions`` with ``{"session": {...}, "transport": {"type": "webrtc", "sdp":
offer}}`` validates the session (create-only fields allowed, no ``audio.format``), answers
``201 {"session": {"id", "expires_at", …}, "transport": {"type": "webrtc", "sdp": answer}}``
and runs a :class:`~w3sipagent.localai.live.session.LiveServerSession` whose events travel on
the client's ``oai-events`` data channel; its speech is played at real time on an Opus track
(the shared :class:`~w3sipagent.localai.realtime.webrtc.PlayoutTrack`) and the caller's
track is decoded to 24 kHz PCM for the VAD. ICE is restricted to one host address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.live.ports import LiveTransport
from w3sipagent.localai.live.session import LiveServerSession
from w3sipagent.localai.realtime.ice import restrict_ice
from w3sipagent.localai.realtime.webrtc import PlayoutTrack, audio_frame_to_pcm24k

__all__ = ["LiveWebRtcCall"]

log = logging.getLogger(__name__)


class LiveWebRtcCall:
    """One WebRTC session: a peer connection, its :class:`LiveServerSession` and tracks.

    ``make_session(transport, player)`` builds the session; ``on_closed`` runs once the
    call ended.
    """

    def __init__(
        self,
        make_session: Callable[[LiveTransport, PlayoutTrack], LiveServerSession],
        *,
        on_closed: Callable[[LiveWebRtcCall], Awaitable[None]] | None = None,
    ) -> None:
        self.pc = RTCPeerConnection()
        self.player = PlayoutTrack()
        self.channel: Any = None
        self.on_closed = on_closed
        self.session = make_session(
            LiveTransport(self._send, self._close, self._abort), self.player
        )
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task owned by the call."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, offer_sdp: str, ice_host: str) -> str:
        """Apply the offer and return the SDP answer (candidates included)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        self.pc.addTrack(self.player)
        await restrict_ice(self.pc, ice_host)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    # ------------------------------------------------------------ transport of the session

    async def _send(self, text: str) -> None:
        ch = self.channel
        if ch is None or ch.readyState != "open":
            raise ConnectionError("data channel is not open")
        ch.send(text)
        await asyncio.sleep(0)

    async def _close(self, code: int, reason: str) -> None:
        self.spawn(self.close())

    def _abort(self) -> None:
        self.spawn(self.close())

    # ------------------------------------------------------------ peer connection

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != "oai-events" or self.channel is not None:
            log.info("live call %s: ignoring data channel %r", self.session.id, channel.label)
            return
        self.channel = channel
        channel.on("message", self._inbox.put_nowait)
        self.spawn(self._run_events())

    async def _run_events(self) -> None:
        try:
            await self.session.announce()
            while True:
                await self.session.handle_text(await self._inbox.get())
        except ConnectionError:
            pass
        finally:
            self.session.closed("call ended")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.spawn(self._read_audio(track))

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, AudioFrame) or not self.session.started:
                continue
            pcm = audio_frame_to_pcm24k(frame)
            self.session.recording.record_audio(pcm, AudioFormat.PCM24K)
            with contextlib.suppress(ConnectionError):
                await self.session.input_pcm(pcm, 24000)

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def close(self) -> None:
        """Hang up: stop the session and the peer connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.session.closed("call closed")
        for t in list(self._tasks):
            if t is not asyncio.current_task():
                t.cancel()
        await self.pc.close()
        if self.on_closed is not None:
            await self.on_closed(self)


def parse_create(body: bytes) -> tuple[Any, str] | str:
    """``(session, sdp)`` of a WebRTC create request, or what is wrong with it."""
    try:
        data = json.loads(body or b"")
    except ValueError:
        return "The body is not JSON: send {session, transport: {type: 'webrtc', sdp}}."
    if not isinstance(data, dict):
        return "The body must be a JSON object."
    transport = data.get("transport")
    if not isinstance(transport, dict) or transport.get("type") != "webrtc":
        return "Missing or unsupported 'transport': expected {type: 'webrtc', sdp}."
    sdp = transport.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        return "Invalid 'transport.sdp': not an SDP offer."
    return data.get("session"), sdp
