"""An in-memory :class:`~w3sipagent.asyncio.call_api.CallLike` for tests, demos and benchmarks.

:class:`MemoryCall` has no SIP and no sockets. A pacer on the loop's clock asks the frame
source for a payload every ``ptime`` (drift-free deadlines, like the real shared pacer) and
keeps what it got with the time it was sent, which is what the caller hears. Tests feed
caller frames with :meth:`MemoryCall.feed` / :meth:`MemoryCall.play`, press keys, put the
call on hold, make the caller hang up, or let the RTP time out; ``transfer()`` returns a
configured :class:`~w3sipagent.asyncio.call_api.TransferOutcome`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from w3sipagent.asyncio.call_api import (
    CallEnded,
    CallEvent,
    CallInfo,
    DtmfReceived,
    FrameSink,
    FrameSource,
    HoldChanged,
    MediaFormat,
    MediaTimeout,
    TransferOutcome,
)

__all__ = ["MemoryCall", "SentFrame"]


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One pacer tick: when it was due, when it ran, and the payload (None: silence)."""

    deadline: float
    at: float
    payload: bytes | None


TransferBehaviour = TransferOutcome | Callable[[str], Awaitable[TransferOutcome]]


class MemoryCall:
    """An established call held in memory (see the module docstring)."""

    def __init__(
        self,
        media: MediaFormat | None = None,
        info: CallInfo | None = None,
        *,
        transfer: TransferBehaviour | None = None,
        stats: dict[str, object] | None = None,
        silence: bytes | None = None,
        kick: bool = False,
    ) -> None:
        self._media = media or MediaFormat("PCMU", 8000)
        self._info = info or CallInfo(
            call_id="mem-call-1",
            direction="inbound",
            request_uri="sip:agent@acme.example",
            from_uri="sip:+15550001111@carrier.example",
            to_uri="sip:agent@acme.example",
            source=("127.0.0.1", 5060),
        )
        self._transfer = transfer or TransferOutcome("succeeded", 200, notifications=(200,))
        self._stats = stats or {"packets_received": 0, "packets_sent": 0, "lost": 0}
        self.silence = silence
        self.kick = kick
        """Honour :meth:`kick_audio` (like a real call's talk-spurt kick); off by default."""
        self._sink: FrameSink | None = None
        self._source: FrameSource | None = None
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._pacer: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._n = 0
        self.ended: CallEnded | None = None
        self.sent: list[SentFrame] = []
        self.fed = 0
        self.hangups: list[str] = []
        self.transfers: list[str] = []
        self.dtmf_sent: list[str] = []

    # ------------------------------------------------------------ CallLike

    @property
    def info(self) -> CallInfo:
        return self._info

    @property
    def media(self) -> MediaFormat:
        return self._media

    def set_frame_sink(self, sink: FrameSink | None) -> None:
        self._sink = sink

    def set_frame_source(self, source: FrameSource | None) -> None:
        self._source = source
        if source is not None and self._pacer is None and self.ended is None:
            self.start()

    async def events(self) -> AsyncIterator[CallEvent]:
        while True:
            ev = await self._events.get()
            yield ev
            if isinstance(ev, CallEnded):
                return

    async def hangup(self, reason: str = "local_hangup") -> None:
        self.hangups.append(reason)
        self._end(CallEnded("local_hangup", "local"))

    async def transfer(self, target: str, *, timeout: float = 30.0) -> TransferOutcome:
        self.transfers.append(target)
        t = self._transfer
        outcome = t if isinstance(t, TransferOutcome) else await t(target)
        if outcome.status in ("succeeded", "accepted"):
            self._end(CallEnded("transferred", "local"))
        return outcome

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> None:
        self.dtmf_sent.append(digits)

    def stats(self) -> dict[str, object]:
        out = dict(self._stats)
        out["packets_received"] = self.fed
        out["packets_sent"] = sum(1 for f in self.sent if f.payload is not None)
        return out

    @property
    def bridged(self) -> bool:
        """A frame sink is set (someone listens to the caller)."""
        return self._sink is not None

    # ------------------------------------------------------------ the pacer

    @property
    def period(self) -> float:
        return self._media.ptime_ms / 1000.0

    def start(self) -> None:
        """Start the pacer (done when a frame source is set)."""
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._n = 0
        self._pacer = loop.call_at(self._t0, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = self._t0 + self._n * self.period
        src = self._source
        payload = src.next_frame() if src is not None else None
        self.sent.append(SentFrame(deadline, loop.time(), payload))
        self._n += 1
        if self.ended is None:
            self._pacer = loop.call_at(self._t0 + self._n * self.period, self._tick)

    def kick_audio(self) -> bool:
        """With ``kick``: the source just got audio after a tick that sent none, so send its
        first frame now and re-phase the pacer to one period from now (like
        :meth:`w3sipagent.asyncio.call.Call.kick_audio`). True if a frame was sent."""
        src = self._source
        if not self.kick or self._pacer is None or self.ended is not None or src is None:
            return False
        if self.sent and self.sent[-1].payload is not None:
            return False
        payload = src.next_frame()
        if payload is None:
            return False
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.sent.append(SentFrame(now, now, payload))
        self._pacer.cancel()
        self._t0, self._n = now, 1
        self._pacer = loop.call_at(self._t0 + self.period, self._tick)
        return True

    def stop(self) -> None:
        """Stop the pacer."""
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None

    # ------------------------------------------------------------ driving the caller's side

    def feed(self, payload: bytes | None, next_payload: bytes | None = None) -> None:
        """One caller frame reaches the frame sink now (``None``: lost; ``next_payload``:
        the packet after a lost one, as the jitter buffer passes it for Opus FEC)."""
        self.fed += 1
        sink = self._sink
        if sink is not None:
            if next_payload is None:
                sink(payload)
            else:
                sink(payload, next_payload)

    async def play(self, frames: Sequence[bytes | None], *, realtime: bool = True) -> None:
        """Feed frames one per period on drift-free deadlines (or at once)."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, f in enumerate(frames):
            if realtime:
                delay = t0 + i * self.period - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if self.ended is not None:
                return
            self.feed(f)

    def press(self, digit: str, duration_ms: int = 100) -> None:
        """The caller presses a key."""
        self._events.put_nowait(DtmfReceived(digit, duration_ms))

    def hold(self, on_hold: bool) -> None:
        self._events.put_nowait(HoldChanged(on_hold))

    def remote_hangup(self) -> None:
        """The caller hangs up (BYE)."""
        self._end(CallEnded("remote_bye", "remote"))

    def rtp_timeout(self, seconds: float = 30.0) -> None:
        """No RTP from the caller for ``seconds``."""
        self._events.put_nowait(MediaTimeout(seconds))

    def _end(self, ev: CallEnded) -> None:
        if self.ended is not None:
            return
        self.ended = ev
        self.stop()
        self._events.put_nowait(ev)

    # ------------------------------------------------------------ what the caller heard

    def heard(self, *, since: float | None = None) -> bytes:
        """The payloads sent, silence ticks filled with ``silence`` (if set), concatenated."""
        out = bytearray()
        for f in self.sent:
            if since is not None and f.at < since:
                continue
            if f.payload is not None:
                out += f.payload
            elif self.silence is not None:
                out += self.silence
        return bytes(out)

    def audio_frames(self) -> list[SentFrame]:
        """The ticks that carried audio."""
        return [f for f in self.sent if f.payload is not None]
