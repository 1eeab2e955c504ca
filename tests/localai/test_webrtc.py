"""WebRTC: POST /v1/realtime/calls with an aiortc client peer on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import AudioFrame

from tests.agent.helpers import wait_until
from w3sipagent.localai import RealtimeServer
from w3sipagent.localai.realtime.ice import restrict_ice

from .conftest import AUTH


class Peer:
    """A WebRTC client: data channel oai-events, silence out, audio in."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.channel.on("message", lambda m: self.events.put_nowait(json.loads(m)))
        self.pc.addTrack(AudioStreamTrack())
        self.frames_rms: list[float] = []
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            x = frame.to_ndarray().astype(float)
            self.frames_rms.append(float(np.sqrt(np.mean(x * x))))

    async def offer(self) -> str:
        await restrict_ice(self.pc)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def until(self, etype: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        out = []
        while True:
            ev = await asyncio.wait_for(self.events.get(), timeout)
            out.append(ev)
            if ev["type"] == etype:
                return out

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


async def post_offer(
    srv: RealtimeServer, sdp: str, session: dict[str, Any] | None
) -> httpx.Response:
    async with httpx.AsyncClient() as h:
        if session is None:
            return await h.post(
                srv.http_url + "/realtime/calls",
                content=sdp,
                headers={**AUTH, "Content-Type": "application/sdp"},
            )
        return await h.post(
            srv.http_url + "/realtime/calls",
            files={"sdp": (None, sdp), "session": (None, json.dumps(session))},
            headers=AUTH,
        )


async def test_webrtc_call(make_server: Callable[..., RealtimeServer]) -> None:
    async with make_server() as srv:
        peer = Peer()
        try:
            offer = await peer.offer()
            offered = [ln for ln in offer.splitlines() if ln.startswith("a=candidate:")]
            assert offered and all(" 127.0.0.1 " in ln for ln in offered), offered
            r = await post_offer(srv, offer, {"type": "realtime", "instructions": "Be quick."})
            assert r.status_code == 201, r.text
            assert r.headers["content-type"] == "application/sdp"
            assert r.headers["location"].startswith("/v1/realtime/calls/rtc_")
            assert "a=candidate:" in r.text and "127.0.0.1" in r.text and "opus" in r.text.lower()
            for line in r.text.splitlines():
                if line.startswith("a=candidate:"):
                    assert " 127.0.0.1 " in line, line
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
            created = (await peer.until("session.created"))[-1]
            assert created["session"]["instructions"] == "Be quick."
            peer.channel.send(json.dumps({"type": "response.create"}))
            events = await peer.until("output_audio_buffer.stopped", timeout=15.0)
            t = [e["type"] for e in events]
            assert "response.output_audio.delta" not in t
            assert t.index("response.content_part.added") < t.index("output_audio_buffer.started")
            assert t.index("response.done") < t.index("output_audio_buffer.stopped")
            transcript = next(
                e for e in events if e["type"] == "response.output_audio_transcript.done"
            )
            assert transcript["transcript"] == "Hello caller."
            # the greeting reached the client's track as audio with energy
            loud = [v for v in peer.frames_rms if v > 300]
            assert len(loud) >= 10, peer.frames_rms[-50:]
            rec = srv.sessions[0]
            assert rec.transport == "webrtc" and rec.types() == ["response.create"]
            assert len(srv.calls) == 1 and len(srv.live) == 1
        finally:
            await peer.close()
        # the hang-up is noticed: the call and its session are released
        await wait_until(lambda: not srv.calls and not srv.live, 5.0, "call released")
        assert srv.calls == {} and srv.live == {} and srv.sessions[0].closed


async def test_webrtc_bad_session_and_sdp(server: RealtimeServer) -> None:
    peer = Peer()
    try:
        sdp = await peer.offer()
        r = await post_offer(server, sdp, {"instructions": "no type"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "session.type"
        r = await post_offer(server, "hello", None)
        assert r.status_code == 400
    finally:
        await peer.close()
