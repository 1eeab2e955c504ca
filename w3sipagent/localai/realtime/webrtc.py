"""The WebRTC side of the local Realtime server (aiortc).

``POST /v1/realtime/calls`` takes an SDP offer (``application/sdp``, or
``multipart/form-data`` with ``sdp`` and ``session`` fields, the "unified
interface") and answers ``201`` with the SDP answer and
``Location: /v1/realtime/calls/rtc_...``. Events travel over the client's
``oai-events`` data channel; the agent's speech goes out on an Opus track,
played at real time by :class:`PlayoutTrack`, which reports playout so the
session emits ``output_audio_buffer.started`` / ``stopped`` / ``cleared`` and
truncates interrupted items itself. Caller audio from the client's track is
decoded, down-mixed and fed to the VAD as 24 kHz PCM.

ICE is restricted to one host address (loopback by default) with
:func:`restrict_ice`, so an offline run never sends a packet anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, Self, TypeVar

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from w3sipagent.ai.session import AudioFormat
from w3sipagent.localai.audio import resample
from w3sipagent.localai.realtime.ice import restrict_ice
from w3sipagent.localai.realtime.ports import SessionEnded
from w3sipagent.localai.realtime.session import ServerSession

log = logging.getLogger(__name__)

_RATE = 48000
_FRAME_SAMPLES = 960  # 20 ms at 48 kHz
_FRAME_BYTES = 2 * _FRAME_SAMPLES


class PlayoutTrack(MediaStreamTrack):
    """Outgoing audio: response audio queued faster than real time, played at 20 ms a frame."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[str, str, bytearray]] = deque()
        self._start: float | None = None
        self._pts = 0
        self._started: set[str] = set()
        self._ended: set[str] = set()
        self._current: str | None = None
        self.played_ms: dict[str, int] = {}
        self._items_of: dict[str, set[str]] = {}
        self.on_started: Callable[[str], None] | None = None
        self.on_stopped: Callable[[str], None] | None = None
        self.frames_sent = 0
        self.voiced_frames_sent = 0

    @property
    def playing_response(self) -> str | None:
        """The response whose audio is queued or playing."""
        if self._queue:
            return self._queue[0][0]
        return self._current

    def enqueue(self, response_id: str, item_id: str, pcm24k: bytes) -> None:
        """Queue 24 kHz PCM of an item (upsampled to 48 kHz here)."""
        pcm48 = resample(pcm24k, 24000, _RATE)
        if self._queue and self._queue[-1][0] == response_id and self._queue[-1][1] == item_id:
            self._queue[-1][2].extend(pcm48)
        else:
            self._queue.append((response_id, item_id, bytearray(pcm48)))

    def end_response(self, response_id: str) -> None:
        """No more audio for ``response_id``: ``stopped`` follows once it drained."""
        self._ended.add(response_id)
        if self._current == response_id and not self._queue:
            self._stop(response_id)

    def clear(self) -> dict[str, int]:
        """Drop queued audio; milliseconds played per item of the interrupted response."""
        rid = self.playing_response
        self._queue.clear()
        self._current = None
        if rid is not None:
            self._ended.add(rid)
        return {
            item: ms
            for (item, ms) in self.played_ms.items()
            if item in self._items_of.get(rid or "", set())
        }

    def _stop(self, response_id: str) -> None:
        self._current = None
        if self.on_stopped is not None:
            self.on_stopped(response_id)

    def _take(self) -> bytes:
        out = bytearray()
        while len(out) < _FRAME_BYTES and self._queue:
            rid, item_id, buf = self._queue[0]
            if rid not in self._started:
                self._started.add(rid)
                self._current = rid
                if self.on_started is not None:
                    self.on_started(rid)
            n = min(_FRAME_BYTES - len(out), len(buf))
            out += buf[:n]
            del buf[:n]
            self.played_ms[item_id] = self.played_ms.get(item_id, 0) + n // 96
            self._items_of.setdefault(rid, set()).add(item_id)
            if not buf:
                self._queue.popleft()
        if out:
            self.voiced_frames_sent += 1
        if not self._queue and self._current is not None and self._current in self._ended:
            self._stop(self._current)
        return bytes(out) + bytes(_FRAME_BYTES - len(out))

    async def recv(self) -> AudioFrame:
        """The next 20 ms frame (silence when nothing is queued), paced at real time."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
            self._pts = 0
        else:
            self._pts += _FRAME_SAMPLES
            wait = self._start + self._pts / _RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = AudioFrame(format="s16", layout="mono", samples=_FRAME_SAMPLES)
        frame.planes[0].update(self._take())
        frame.pts = self._pts
        frame.sample_rate = _RATE
        frame.time_base = fractions.Fraction(1, _RATE)
        self.frames_sent += 1
        return frame


class DataChannelTransport:
    """Server events as JSON on the ``oai-events`` data channel."""

    kind = "webrtc"

    def __init__(self, call: WebRtcCall) -> None:
        self.call = call

    async def send_json(self, event: dict[str, Any]) -> None:
        """Send one event on the data channel."""
        ch = self.call.channel
        if ch is None or ch.readyState != "open":
            raise ConnectionError("data channel is not open")
        ch.send(json.dumps(event, separators=(",", ":")))
        await asyncio.sleep(0)

    async def close(self, code: int, reason: str) -> None:
        """End the call (a peer connection has no close code)."""
        await self.call.close()

    def abort(self) -> None:
        """End the call at once."""
        self.call.spawn(self.call.close())


def audio_frame_to_pcm24k(frame: AudioFrame) -> bytes:
    """A decoded aiortc frame (s16, any layout, any rate) as 24 kHz mono PCM."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    x = data.reshape(-1, channels) if data.shape[0] == 1 else data.T
    mono = x.astype(np.int32).mean(axis=1).astype("<i2").tobytes()
    return resample(mono, frame.sample_rate, 24000)


class _EventSession(Protocol):
    async def handle_text(self, text: str | bytes) -> None: ...

    def closed(self, reason: str) -> None: ...


S = TypeVar("S", bound=_EventSession)


class PeerCall(Generic[S]):
    """One WebRTC call of the local server, whichever API it serves (Realtime here, GPT-Live
    in :mod:`w3sipagent.localai.live.webrtc`): a peer connection, the :class:`PlayoutTrack`,
    the client's ``oai-events`` data channel feeding the session, and the call's tasks.

    Subclasses set ``session`` and give :meth:`_open_session` (what the session sends first),
    :meth:`_caller_frame` (what a caller frame becomes) and ``label`` (for the log).
    """

    session: S
    _log = log

    def __init__(self, *, on_closed: Callable[[Self], Awaitable[None]] | None = None) -> None:
        self.on_closed: Callable[[Self], Awaitable[None]] | None = on_closed
        self.pc = RTCPeerConnection()
        self.player = PlayoutTrack()
        self.channel: Any = None
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def label(self) -> str:
        """How the log names the call."""
        raise NotImplementedError

    async def _open_session(self) -> None:
        """Run once the data channel is there, before the first client event."""
        raise NotImplementedError

    async def _caller_frame(self, frame: AudioFrame) -> None:
        """One decoded frame of the caller's track."""
        raise NotImplementedError

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
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return str(self.pc.localDescription.sdp)

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != "oai-events" or self.channel is not None:
            self._log.info("%s: ignoring data channel %r", self.label, channel.label)
            return
        self.channel = channel
        channel.on("message", self._inbox.put_nowait)
        self.spawn(self._run_events())

    async def _run_events(self) -> None:
        try:
            await self._open_session()
            while True:
                msg = await self._inbox.get()
                await self.session.handle_text(msg)
        except (SessionEnded, ConnectionError):
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
            if isinstance(frame, AudioFrame):
                await self._caller_frame(frame)

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def close(self: Self) -> None:
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


class WebRtcCall(PeerCall[ServerSession]):
    """One WebRTC call of the Realtime API: its session and its tracks."""

    def __init__(
        self,
        call_id: str,
        session_factory: Callable[[WebRtcCall], ServerSession],
        *,
        on_closed: Callable[[WebRtcCall], Awaitable[None]] | None = None,
    ) -> None:
        self.call_id = call_id
        super().__init__(on_closed=on_closed)
        self.session = session_factory(self)
        self.player.on_started = self.session.playout_started
        self.player.on_stopped = self.session.playout_stopped

    @property
    def label(self) -> str:
        """``call rtc_…``."""
        return f"call {self.call_id}"

    async def _open_session(self) -> None:
        await self.session.start()

    async def _caller_frame(self, frame: AudioFrame) -> None:
        with contextlib.suppress(SessionEnded, ConnectionError):
            await self.session.append_audio(audio_frame_to_pcm24k(frame), AudioFormat.PCM24K)


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body (name -> value bytes)."""
    boundary = None
    for part in content_type.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip('"')
    if not boundary:
        raise ValueError("multipart/form-data without a boundary")
    fields: dict[str, bytes] = {}
    delim = b"--" + boundary.encode("latin-1")
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, value = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = None
        for line in head.decode("latin-1").split("\r\n"):
            key, _, rest = line.partition(":")
            if key.strip().lower() == "content-disposition":
                for p in rest.split(";"):
                    pk, _, pv = p.strip().partition("=")
                    if pk == "name":
                        name = pv.strip('"')
        if name is not None:
            fields[name] = value.removesuffix(b"\r\n")
    return fields
