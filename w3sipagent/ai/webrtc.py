"""The aiortc pieces the Realtime and GPT-Live WebRTC clients share.

Both services take an SDP offer over HTTP, answer with SDP, carry their events on an
``oai-events`` data channel and the audio on Opus tracks; what differs (the HTTP request,
what the answer carries, how the model's audio is cut into items) stays with each back end.
Here: G.711/PCM conversion, the caller's outgoing track, the data channel as a
:class:`~w3sipagent.ai.channel.Channel`, the offer/answer exchange and the model's track
as PCM.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from w3sipagent.ai import session as ai
from w3sipagent.ai.channel import ChannelClosed
from w3sipagent.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from w3sipagent.errors import AIError

__all__ = [
    "CallerAudioTrack",
    "DataChannel",
    "from_pcm16",
    "negotiate",
    "peer_connection",
    "remote_pcm",
    "to_pcm16",
]


def to_pcm16(audio: bytes, fmt: ai.AudioFormat) -> bytes:
    """Audio in ``fmt`` as 16-bit PCM at the format's own rate."""
    if fmt is ai.AudioFormat.PCMU:
        return ulaw_decode(audio)
    if fmt is ai.AudioFormat.PCMA:
        return alaw_decode(audio)
    return audio[: len(audio) & ~1]


def from_pcm16(pcm: bytes, fmt: ai.AudioFormat) -> bytes:
    """16-bit PCM at the format's rate encoded in ``fmt``."""
    if fmt is ai.AudioFormat.PCMU:
        return ulaw_encode(pcm)
    if fmt is ai.AudioFormat.PCMA:
        return alaw_encode(pcm)
    return pcm


class CallerAudioTrack(MediaStreamTrack):
    """An aiortc audio track fed with caller audio; silence when nothing arrives in time.

    Frames go out as they are fed (never held to batch); ``gap_s`` without audio
    produces one 20 ms silence frame so the RTP clock keeps running.
    """

    kind = "audio"

    def __init__(self, fmt: ai.AudioFormat, *, gap_s: float = 0.06) -> None:
        super().__init__()
        self.fmt = fmt
        self.rate = fmt.sample_rate
        self.gap_s = gap_s
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._pts = 0
        self.frames_sent = 0

    def feed(self, audio: bytes) -> None:
        """Queue caller audio in the session's input format."""
        pcm = to_pcm16(audio, self.fmt)
        if pcm:
            self._queue.put_nowait(pcm)

    async def recv(self) -> av.AudioFrame:
        try:
            # asyncio.timeout(): 3.11's wait_for() can swallow the cancellation that stops
            # aiortc's sender loop when audio arrives at that very moment
            async with asyncio.timeout(self.gap_s):
                pcm = await self._queue.get()
        except TimeoutError:
            pcm = bytes(2 * self.rate // 50)
        samples = len(pcm) // 2
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        self._pts += samples
        self.frames_sent += 1
        return frame


class DataChannel:
    """The ``oai-events`` data channel as a :class:`~w3sipagent.ai.channel.Channel`;
    closing it closes the peer connection."""

    def __init__(self, pc: RTCPeerConnection, dc: Any) -> None:
        self._pc = pc
        self._dc = dc
        self._queue: asyncio.Queue[str | ChannelClosed] = asyncio.Queue()
        self.opened = asyncio.Event()
        dc.on("open", self.opened.set)
        dc.on("message", self._message)
        dc.on("close", lambda: self._queue.put_nowait(ChannelClosed("data channel closed")))
        pc.on("connectionstatechange", self._state)

    def _message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        self._queue.put_nowait(message)

    def _state(self) -> None:
        if self._pc.connectionState in ("failed", "closed"):
            self._queue.put_nowait(ChannelClosed(f"peer connection {self._pc.connectionState}"))

    async def send(self, text: str) -> None:
        if self._dc.readyState != "open":
            raise ChannelClosed("data channel closed")
        self._dc.send(text)

    async def recv(self) -> str:
        item = await self._queue.get()
        if isinstance(item, ChannelClosed):
            self._queue.put_nowait(item)
            raise item
        return item

    async def close(self) -> None:
        await self._pc.close()


def peer_connection(ice_servers: list[str]) -> RTCPeerConnection:
    """A peer connection using these STUN/TURN URLs."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(u) for u in ice_servers]))


async def negotiate(
    pc: RTCPeerConnection,
    channel: DataChannel,
    post_offer: Callable[[str], Awaitable[str]],
    timeout: float,
) -> None:
    """Offer, have ``post_offer`` send the offer SDP and return the answer SDP, apply it
    and wait up to ``timeout`` seconds for ``channel`` to open. On failure the peer
    connection is closed and :class:`~w3sipagent.errors.AIError` raised."""
    try:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await post_offer(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(channel.opened.wait(), timeout)
    except TimeoutError:
        await pc.close()
        raise AIError(f"WebRTC data channel not open within {timeout:g} s") from None
    except AIError:
        await pc.close()
        raise
    except ValueError as exc:  # aiortc: unusable answer SDP
        await pc.close()
        raise AIError(f"WebRTC set-up failed: {exc}") from None


async def remote_pcm(track: MediaStreamTrack, rate: int) -> AsyncIterator[bytes]:
    """The model's track as 16-bit mono PCM at ``rate``, a chunk per received frame,
    until the track ends."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame):
            continue
        yield b"".join(bytes(f.planes[0])[: 2 * f.samples] for f in resampler.resample(frame))
