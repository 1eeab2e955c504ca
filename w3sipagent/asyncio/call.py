"""One call as an application sees it: :class:`Call` implements :class:`~.call_api.CallLike`.

Two ways to use the media of a call:

- **codec frames** (what the AI bridge does): :meth:`Call.set_frame_sink` receives every
  inbound payload as it leaves the jitter buffer (``None`` for a lost frame) and
  :meth:`Call.set_frame_source` supplies outbound payloads, one per 20 ms, at the moment
  the shared pacer sends them;
- **PCM** (simple handlers): ``async for pcm in call.audio():`` yields 20 ms frames of
  signed 16-bit mono PCM at the codec's sample rate (8 kHz for G.711, 16 kHz for G.722,
  48 kHz for Opus; pass ``sample_rate=`` to resample), and :meth:`Call.send_audio` /
  ``await call.play(pcm)`` queue PCM for sending, cut into 20 ms frames and encoded.

Answering is implicit: the user agent sends the 200 OK after the admission decision and
hands the call to the handler once the ACK arrived (the dialog is confirmed, media flows
both ways). When the handler returns or raises, the call is hung up; an exception is
logged and every resource of the call (RTP ports, tasks, timers, transactions) is released
on every exit path.

Events (:meth:`Call.events`): :class:`~.call_api.DtmfReceived` (RFC 4733 and SIP INFO),
:class:`~.call_api.HoldChanged`, :class:`~.call_api.MediaChanged`,
:class:`~.call_api.MediaTimeout`, and :class:`~.call_api.CallEnded` last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any, Literal, Protocol

from w3sipagent.asyncio.call_api import (
    CallEnded,
    CallEvent,
    CallInfo,
    DtmfReceived,
    FrameSink,
    FrameSource,
    HangupBy,
    MediaFormat,
    MediaTimeout,
    TransferOutcome,
)
from w3sipagent.asyncio.media import MediaEvent, RtpEndpoint, RtpTimeout
from w3sipagent.codecs import Codec, Decoder, Encoder, get_codec
from w3sipagent.codecs.convert import Framer
from w3sipagent.codecs.resample import Resampler
from w3sipagent.errors import CodecError
from w3sipagent.rtp.dtmf import DtmfReceived as RtpDtmf
from w3sipagent.rtp.jitter import Frame
from w3sipagent.sip.dialog import Dialog
from w3sipagent.sip.message import SipResponse

log = logging.getLogger(__name__)

CallState = Literal["incoming", "outgoing", "early", "answered", "active", "ended"]

Transferer = Callable[["Call", str, float], Awaitable[TransferOutcome]]
"""``transferer(call, target, timeout) -> outcome``: how :meth:`Call.transfer` is carried out."""


class CallPort(Protocol):
    """What a :class:`Call` may ask of its user agent (the user agent implements it)."""

    @property
    def audio_queue(self) -> int:
        """Frames an :meth:`Call.audio` reader may fall behind."""
        ...

    @property
    def hangup_on_media_timeout(self) -> bool:
        """Whether an RTP timeout hangs the call up."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the user agent."""
        ...

    async def hang_up(self, call: Call, reason: str, by: HangupBy, code: int | None = None) -> None:
        """End ``call``: BYE when answered, a refusal before."""
        ...

    async def transfer(self, call: Call, target: str, timeout: float) -> TransferOutcome:
        """Carry out a blind transfer (the user agent's transferer)."""
        ...

    async def request_in_dialog(
        self,
        dialog_or_call: Dialog | Call,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> SipResponse:
        """Send ``method`` in the call's dialog; the final response."""
        ...


class Call:
    """One call: signalling state, RTP endpoint, events and the PCM convenience layer.

    Built by the :class:`~w3sipagent.asyncio.useragent.UserAgent`; applications never
    construct it. ``context`` is what the admission callable attached (a tenant...).
    """

    def __init__(
        self,
        port: CallPort,
        info: CallInfo,
        *,
        transport: str,
        peer: tuple[str, int],
        context: object = None,
        state: CallState = "incoming",
    ) -> None:
        self._port = port
        self._info = info
        self.transport = transport
        """The SIP transport of the dialog (UDP, TCP, TLS)."""
        self.peer = peer
        """Where the peer's SIP messages came from (for in-dialog requests without IP target)."""
        self.context = context
        self.state: CallState = state
        self.answered_at: datetime | None = None
        """When our 200 OK answered the INVITE (UTC), for the CDR's answer time."""
        self.dialog: Dialog | None = None
        self.endpoint: RtpEndpoint | None = None
        self._media = MediaFormat("PCMU", 8000)
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._ended: asyncio.Future[CallEnded] = asyncio.get_running_loop().create_future()
        self._sink: FrameSink | None = None
        self._source: FrameSource | None = None
        self._codec: Codec | None = None
        self._decoder: Decoder | None = None
        self._encoder: Encoder | None = None
        self._pcm_queues: list[asyncio.Queue[bytes | None]] = []
        self._playout: deque[bytes] = deque()
        self._play_framer: Framer | None = None
        self._play_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._played = 0
        self._queued = 0
        self.on_hold = False
        """Whether the peer holds the call (sendonly / inactive / 0.0.0.0)."""
        self.limit_key: str | None = None
        self.registration_task: asyncio.Task[None] | None = None
        # signalling bookkeeping used by the user agent
        self.local_sdp: object = None
        self.remote_sdp: object = None
        self.invite_tx: int | None = None
        self.session_interval: int | None = None
        self.we_refresh = False
        self.session_timer: asyncio.TimerHandle | None = None
        self.reinvite_pending = False
        self.credentials: tuple[str, str] | None = None
        self.codecs: tuple[str, ...] | None = None
        """This call's codec preference (``Accept.codecs``, ``dial(codecs=)``), kept for
        its later offers (re-INVITE / UPDATE, an offer in a 2xx); None: the configured."""
        self.handler_task: asyncio.Task[None] | None = None
        self.handler_started = False
        """Whether the call handler began to run (it then owns the call's end)."""

    def __repr__(self) -> str:
        return f"<Call {self._info.direction} {self._info.call_id} {self.state}>"

    # -- CallLike -------------------------------------------------------------------------

    @property
    def info(self) -> CallInfo:
        """Who called whom, from where (fixed at admission)."""
        return self._info

    @property
    def media(self) -> MediaFormat:
        """The negotiated codec (changes are announced by MediaChanged)."""
        return self._media

    @property
    def call_id(self) -> str:
        """The SIP Call-ID."""
        return self._info.call_id

    @property
    def ended(self) -> bool:
        """True once the call is over."""
        return self._ended.done()

    @property
    def end(self) -> CallEnded | None:
        """The :class:`CallEnded` event once the call is over, else None."""
        return self._ended.result() if self._ended.done() else None

    def add_end_callback(self, callback: Callable[[CallEnded], None]) -> None:
        """Call ``callback(end)`` once the call is over (at once if it is)."""
        self._ended.add_done_callback(lambda fut: callback(fut.result()))

    async def wait_ended(self) -> CallEnded:
        """Wait until the call is over."""
        return await asyncio.shield(self._ended)

    def set_frame_sink(self, sink: FrameSink | None) -> None:
        """Receive each inbound payload (None for a lost frame) as it leaves the jitter buffer."""
        self._sink = sink

    def set_frame_source(self, source: FrameSource | None) -> None:
        """Supply outbound payloads (None: back to the PCM playout queue / silence)."""
        self._source = source

    def kick_audio(self) -> bool:
        """The frame source just got audio after being empty: send its first frame now.

        A talk-spurt start need not wait up to 20 ms for the pacer's next tick (see
        :meth:`RtpEndpoint.kick`: not on hold, not during DTMF, only after a tick that
        sent no audio). Optional for a :class:`CallLike`; the bridge checks for it.
        Returns True if a packet was sent.
        """
        ep = self.endpoint
        if ep is None or self.ended:
            return False
        try:
            return ep.kick()
        except Exception:
            log.exception("talk-spurt kick of call %s failed", self.call_id)
            return False

    async def events(self) -> AsyncIterator[CallEvent]:
        """DTMF, hold, media changes and timeouts; ends after :class:`CallEnded`."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, CallEnded):
                return

    async def hangup(self, reason: str = "local_hangup", *, by: HangupBy = "local") -> None:
        """End the call: BYE when answered, CANCEL / reject before. Idempotent.

        ``by`` is who ended it (:attr:`CallEnded.by`): the application (``"local"``) unless
        the user agent itself gives up (``"system"``: shutdown, error, RTP timeout).
        """
        await self._port.hang_up(self, reason, by)

    async def transfer(self, target: str, *, timeout: float = 30.0) -> TransferOutcome:
        """Blind transfer with REFER through the user agent's transferer.

        After ``succeeded`` or ``accepted`` the call is hung up (reason ``transferred``).
        """
        outcome = await self._port.transfer(self, target, timeout)
        if outcome.status in ("succeeded", "accepted") and not self.ended:
            await self.hangup("transferred")
        return outcome

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> None:
        """Send DTMF: RFC 4733 when a telephone-event type was negotiated, else SIP INFO."""
        ep = self.endpoint
        if ep is not None and ep.telephone_event_pt is not None:
            ep.send_dtmf(digits, duration_ms)
            return
        for digit in digits:
            body = f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode()
            await self._port.request_in_dialog(
                self, "INFO", body=body, content_type="application/dtmf-relay"
            )

    def stats(self) -> dict[str, object]:
        """RTP statistics of the call (packets, loss, jitter...)."""
        if self.endpoint is None:
            return {}
        snap = self.endpoint.snapshot()
        if dataclasses.is_dataclass(snap) and not isinstance(snap, type):
            return dataclasses.asdict(snap)
        return dict(vars(snap))

    # -- PCM layer ------------------------------------------------------------------------

    @property
    def codec(self) -> Codec:
        """The :mod:`w3sipagent.codecs` codec of the negotiated format."""
        if self._codec is None:
            m = self._media
            self._codec = get_codec(m.encoding, m.clock_rate, m.channels, m.fmtp)
        return self._codec

    @property
    def sample_rate(self) -> int:
        """The PCM rate of :meth:`audio` and :meth:`send_audio` (the codec's)."""
        return self.codec.sample_rate

    async def audio(self, *, sample_rate: int | None = None) -> AsyncIterator[bytes]:
        """Inbound audio as 20 ms PCM16 frames (lost frames concealed) until the call ends.

        ``sample_rate`` resamples (e.g. 8000 whatever the codec); default the codec's rate.
        """
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=self._port.audio_queue)
        self._pcm_queues.append(queue)
        resampler: Resampler | None = None
        try:
            if self.ended:
                return
            while True:
                pcm = await queue.get()
                if pcm is None:
                    return
                rate = self.codec.sample_rate
                if sample_rate is not None and sample_rate != rate:
                    if resampler is None:
                        resampler = Resampler(rate, sample_rate)
                    pcm = resampler.process(pcm)
                yield pcm
        finally:
            if queue in self._pcm_queues:
                self._pcm_queues.remove(queue)

    def send_audio(self, pcm: bytes) -> None:
        """Queue PCM16 mono at :attr:`sample_rate` for sending (20 ms frames, encoded)."""
        codec = self.codec
        if self._play_framer is None:
            self._play_framer = Framer(codec.samples_per_frame * 2)
        if self._encoder is None:
            self._encoder = codec.encoder()
        for frame in self._play_framer.push(pcm):
            self._playout.append(self._encoder.encode(frame))
            self._queued += 1

    async def play(self, pcm: bytes) -> None:
        """Queue PCM like :meth:`send_audio` (the tail padded with silence) and wait until
        it was sent (or the call ended)."""
        self.send_audio(pcm)
        if self._play_framer is not None and self._encoder is not None:
            tail = self._play_framer.flush()
            if tail is not None:
                self._playout.append(self._encoder.encode(tail))
                self._queued += 1
        if self.ended or self._played >= self._queued:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._play_waiters.append((self._queued, fut))
        waits: list[asyncio.Future[Any]] = [fut, self._ended]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)

    def clear_audio(self) -> int:
        """Drop queued outbound audio (barge-in); returns the frames dropped."""
        n = len(self._playout)
        self._playout.clear()
        if self._play_framer is not None:
            self._play_framer.clear()
        self._played += n
        self._release_play_waiters()
        return n

    # -- wiring by the user agent (not for applications) --------------------------------------

    def attach(self, endpoint: RtpEndpoint, media: MediaFormat) -> None:
        """Wire the call's RTP endpoint (media setup does this once, before the answer)."""
        self.endpoint = endpoint
        endpoint.on_frame = self._on_frame
        endpoint.on_dtmf = self._on_rtp_dtmf
        endpoint.on_event = self._on_media_event
        endpoint.set_source(self._next_frame)
        self.set_media(media)

    def set_media(self, media: MediaFormat) -> None:
        """The negotiated format changed (the user agent announces it with MediaChanged)."""
        if media == self._media and self._codec is not None:
            return
        changed_codec = (media.encoding, media.clock_rate, media.channels, media.fmtp) != (
            self._media.encoding,
            self._media.clock_rate,
            self._media.channels,
            self._media.fmtp,
        )
        self._media = media
        if changed_codec or self._codec is None:
            self._codec = None
            self._decoder = None
            self._encoder = None
            self._play_framer = None
            try:
                _ = self.codec
            except CodecError:
                log.warning("no local codec for %s/%d", media.encoding, media.clock_rate)

    def _on_frame(self, frame: Frame) -> None:
        payload = frame.payload
        sink = self._sink
        if sink is not None:
            try:
                if frame.next_payload is None:
                    sink(payload)
                else:  # lost, and the packet after it is here: it may carry FEC for this one
                    sink(None, frame.next_payload)
            except Exception:
                log.exception("frame sink of call %s failed", self.call_id)
        if not self._pcm_queues:
            return
        try:
            if self._decoder is None:
                self._decoder = self.codec.decoder()
            pcm = (
                self._decoder.decode(payload)
                if payload is not None
                else self._decoder.conceal(frame.next_payload)
            )
        except Exception:
            log.debug("decode failed on call %s", self.call_id, exc_info=True)
            return
        for q in self._pcm_queues:
            if q.full():
                q.get_nowait()  # a slow reader loses the oldest frame, not the newest
            q.put_nowait(pcm)

    def _next_frame(self) -> bytes | None:
        source = self._source
        if source is not None:
            try:
                return source.next_frame()
            except Exception:
                log.exception("frame source of call %s failed", self.call_id)
                return None
        if self._playout:
            payload = self._playout.popleft()
            self._played += 1
            if self._play_waiters:
                self._release_play_waiters()
            return payload
        return None

    def _release_play_waiters(self) -> None:
        keep = []
        for mark, fut in self._play_waiters:
            if self._played >= mark:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((mark, fut))
        self._play_waiters = keep

    def _on_rtp_dtmf(self, ev: RtpDtmf) -> None:
        self.emit(DtmfReceived(ev.digit, ev.duration_ms, "rfc4733"))

    def _on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, RtpTimeout):
            self.emit(MediaTimeout(event.seconds))
            if self._port.hangup_on_media_timeout and not self.ended:
                self._port.spawn(self.hangup("rtp_timeout", by="system"))

    def emit(self, event: CallEvent) -> None:
        """Post an event to :meth:`events` (dropped once the call ended)."""
        if not self.ended:
            self._events.put_nowait(event)

    def finish(self, reason: str, by: HangupBy, code: int | None = None) -> bool:
        """Release the call's media and timer, post :class:`CallEnded` (the user agent's
        call table calls this; applications use :meth:`hangup`). False when already ended."""
        if self._ended.done():
            return False
        self.state = "ended"
        event = CallEnded(reason, by, code)
        if self.session_timer is not None:
            self.session_timer.cancel()
            self.session_timer = None
        if self.endpoint is not None:
            self.endpoint.set_source(None)
            self.endpoint.on_frame = None
            self.endpoint.on_dtmf = None
            self.endpoint.on_event = None
            self.endpoint.close(reason)
        self._events.put_nowait(event)
        self._ended.set_result(event)
        for q in self._pcm_queues:
            if q.full():
                q.get_nowait()
            q.put_nowait(None)
        for _, fut in self._play_waiters:
            if not fut.done():
                fut.set_result(None)
        self._play_waiters.clear()
        return True
