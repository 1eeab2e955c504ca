"""The WebRTC side of the local GPT-Live server (aiortc).

``POST /v1/live/sessions`` with ``{"session": {...}, "transport": {"type": "webrtc", "sdp":
offer}}`` validates the session (create-only fields allowed, no ``audio.format``), answers
``201 {"session": {"id", "expires_at", …}, "transport": {"type": "webrtc", "sdp": answer}}``
and runs a :class:`~w3sipagent.localai.live.session.LiveServerSession` whose events travel on
the client's ``oai-events`` data channel; its speech is played at real time on an Opus track
(the shared :class:`~w3sipagent.localai.realtime.webrtc.PlayoutTrack`) and the caller's
track is decoded to 24 kHz PCM for the VAD. ICE is restricted to one host address. The peer
connection's plumbing is the Realtime side's
(:class:`~w3sipagent.localai.realtime.webrtc.PeerCall`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from av import AudioFrame

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.live.ports import LiveTransport
from w3sipagent.localai.live.session import LiveServerSession
from w3sipagent.localai.realtime.webrtc import PeerCall, PlayoutTrack, audio_frame_to_pcm24k

__all__ = ["LiveWebRtcCall"]

log = logging.getLogger(__name__)


class LiveWebRtcCall(PeerCall[LiveServerSession]):
    """One WebRTC session: a peer connection, its :class:`LiveServerSession` and tracks.

    ``make_session(transport, player)`` builds the session; ``on_closed`` runs once the
    call ended.
    """

    _log = log

    def __init__(
        self,
        make_session: Callable[[LiveTransport, PlayoutTrack], LiveServerSession],
        *,
        on_closed: Callable[[LiveWebRtcCall], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(on_closed=on_closed)
        self.session = make_session(
            LiveTransport(self._send, self._close, self._abort), self.player
        )

    @property
    def label(self) -> str:
        """``live call live_…``."""
        return f"live call {self.session.id}"

    async def _open_session(self) -> None:
        await self.session.announce()

    async def _caller_frame(self, frame: AudioFrame) -> None:
        if not self.session.started:
            return
        pcm = audio_frame_to_pcm24k(frame)
        self.session.recording.record_audio(pcm, AudioFormat.PCM24K)
        with contextlib.suppress(ConnectionError):
            await self.session.input_pcm(pcm, 24000)

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
