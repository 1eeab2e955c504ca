"""What a higher layer (the AI bridge, an echo handler, a softphone) sees of one call.

The user agent's :class:`~w3sipagent.asyncio.call.Call` implements :class:`CallLike`.
The bridge codes against this protocol only, so it can be driven in tests by an
in-memory call and never depends on SIP details.

Media at this level is *codec payloads*, 20 ms at a time:

- inbound, the call pushes each frame that leaves the jitter buffer to the frame sink
  (``bytes`` in the negotiated codec, or ``None`` for a frame that was lost: the
  consumer decides how to conceal it);
- outbound, the shared pacer asks the frame source for the next payload every 20 ms at
  the moment it sends it (``None`` means nothing to say: the call sends silence or
  comfort noise). The pacer's call *is* the moment of sending, so a source can count
  exactly how much audio went out as RTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable


class FrameSink(Protocol):
    """Receives every inbound frame as it leaves the jitter buffer.

    Called ``sink(payload)``: the codec bytes of one frame, or None for a lost one. For a
    lost frame whose next packet has already arrived it is called ``sink(None,
    next_payload)`` instead: Opus carries the lost frame's in-band FEC in that packet
    (``Decoder.conceal(next_payload)`` rebuilds it); other codecs ignore it.
    """

    def __call__(self, payload: bytes | None, next_payload: bytes | None = None, /) -> None: ...


@runtime_checkable
class FrameSource(Protocol):
    """Supplies outbound payloads; called by the pacer once per frame period."""

    def next_frame(self) -> bytes | None:
        """The payload to send now (codec bytes for one frame), or None for silence."""
        ...


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """The negotiated audio codec of a call."""

    encoding: str  # "PCMU", "PCMA", "G722", "opus", "L16"
    clock_rate: int  # RTP clock rate (8000 for G.722 by RFC 3551)
    channels: int = 1
    payload_type: int = 0
    fmtp: str | None = None
    ptime_ms: int = 20
    telephone_event_pt: int | None = None


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Who called whom, how, and from where (fixed at admission)."""

    call_id: str
    direction: Literal["inbound", "outbound"]
    request_uri: str
    from_uri: str
    to_uri: str
    from_display: str | None = None
    source: tuple[str, int] = ("", 0)
    transport: str = "UDP"
    headers: tuple[tuple[str, str], ...] = ()
    registration: str | None = None

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Base class of call events."""


@dataclass(frozen=True, slots=True)
class DtmfReceived(CallEvent):
    """The caller pressed a key (RFC 4733 telephone-event or SIP INFO)."""

    digit: str
    duration_ms: int = 0
    via: Literal["rfc4733", "info"] = "rfc4733"


@dataclass(frozen=True, slots=True)
class HoldChanged(CallEvent):
    """The peer put the call on hold (sendonly / inactive / 0.0.0.0) or took it off."""

    on_hold: bool


@dataclass(frozen=True, slots=True)
class MediaChanged(CallEvent):
    """A re-INVITE / UPDATE changed the remote address or the codec."""

    media: MediaFormat
    remote: tuple[str, int]


@dataclass(frozen=True, slots=True)
class MediaTimeout(CallEvent):
    """No RTP from the peer for the configured inactivity time (never while on hold)."""

    seconds: float


HangupBy = Literal["remote", "local", "system"]
"""Who ended a call: the peer, our application, or the user agent itself."""


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    """The call is over; always the last event.

    ``reason``: remote_bye, local_hangup, cancelled, ack_timeout, rtp_timeout,
    transferred, shutdown, error... ``by``: who ended it (:data:`HangupBy`).
    """

    reason: str
    by: HangupBy
    sip_code: int | None = None


TransferStatus = Literal[
    "succeeded", "accepted", "unknown", "busy", "no_answer", "rejected", "failed", "timed_out"
]


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """The real result of a blind transfer (REFER), learnt from the NOTIFY sipfrags.

    - ``succeeded``: a final 2xx sipfrag; the transferee is with the target.
    - ``accepted``: the REFER was accepted and taken as final (no NOTIFY awaited).
    - ``unknown``: the caller has left our leg but the peer gave no verdict (an immediate
      2xx followed by BYE, as FreeSWITCH does without ``confirm-blind-transfer``; no
      NOTIFY while the caller's RTP stopped): our leg is over, the result is not known.
    - ``no_answer``: the target rang out (the ESL transfer says so; REFER cannot).
    - ``busy``: 486 / 600; ``rejected``: 403 / 603 / the REFER itself refused;
      ``failed``: any other final >= 300 (the caller is back with us: resume).
    - ``timed_out``: no final NOTIFY within the timeout, the caller still with us.
    """

    status: TransferStatus
    code: int | None = None
    reason: str = ""
    notifications: tuple[int, ...] = field(default_factory=tuple)


@runtime_checkable
class CallLike(Protocol):
    """One established (or being established) call, as the bridge sees it."""

    @property
    def info(self) -> CallInfo: ...

    @property
    def media(self) -> MediaFormat:
        """The current codec; changes are announced by :class:`MediaChanged`."""
        ...

    def set_frame_sink(self, sink: FrameSink | None) -> None:
        """Receive every inbound frame (payload or None for a lost one) as it leaves the jitter buffer."""
        ...

    def set_frame_source(self, source: FrameSource | None) -> None:
        """Supply outbound frames; None sends silence."""
        ...

    def events(self) -> AsyncIterator[CallEvent]:
        """DTMF, hold, media changes, timeouts; ends after :class:`CallEnded`."""
        ...

    async def hangup(self, reason: str = "local_hangup") -> None:
        """End the call (BYE, or CANCEL/reject before answer). Idempotent."""
        ...

    async def transfer(self, target: str, *, timeout: float = 30.0) -> TransferOutcome:
        """Blind transfer with REFER; returns the outcome. Hangs up after success."""
        ...

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> None:
        """Send RFC 4733 telephone-events (pausing audio while they play)."""
        ...

    def stats(self) -> dict[str, object]:
        """RTP statistics of the call (packets, loss, jitter...), for the CDR."""
        ...
