"""What the parts of an RTP endpoint share: its tunables, its events, and where the peer is.

Source policy (``MediaConfig.source_policy``):

- ``"strict"``: only the address the SDP names;
- ``"latch"`` (default): also a new address/port from the SDP's IP or the IP of
  the call's SIP signalling; the endpoint then sends there (symmetric RTP);
- ``"latch-any"``: latch to any source (least safe: RTP injection).

Latching (both latch policies): while nothing is latched (call start, or the SDP named a
new address) the first valid RTP packet (it parses, carries one of the session's payload
types) latches. Once a stream is latched, another source takes over only after
``relatch_packets`` consecutive valid packets of the *established* stream (its SSRC, its
sequence continued) with none from the latched source in between: a caller's NAT
rebinding. Anything else from another source is dropped and counted
(``StreamStats.foreign``); it never reaches the frame sink.

:class:`PeerAddresses` holds the peer's addresses as the SDP names them and as
latched from received packets; the receive path latches, the send path reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Address = tuple[str, int]
SourcePolicy = Literal["latch", "strict", "latch-any"]
SilenceMode = Literal["silence", "comfort-noise", "none"]
Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]

CN_PAYLOAD_TYPE = 13


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Tunables of an RTP endpoint (every timer is here, with its default)."""

    source_policy: SourcePolicy = "latch"
    inactivity_timeout: float = 30.0
    rtcp_interval: float = 5.0
    silence: SilenceMode = "silence"
    #: Let ``kick()`` start a talk spurt between ticks (the first frame of a turn goes out
    #: when it arrives instead of at the next tick). Over continuous silence the spurt then
    #: runs up to one frame ahead of its timestamps and is pulled back while silent.
    kick: bool = True
    #: Step of a kicked stream's way back onto its clock (seconds; at least one pacer slot,
    #: 2 ms by default): a retry of a frame slot waiting for the source, or the shift of one
    #: silence packet.
    kick_pullback: float = 0.002
    comfort_noise_level: int = 70  # -dBov (RFC 3389)
    comfort_noise_every: int = 10  # frames between CN updates while silent
    jitter_max_delay: float = 0.2
    jitter_window: int = 100
    jitter_max_conceal: int | None = None  # None: conceal every lost frame of a gap
    dtmf_end_timeout: float = 0.5
    dtmf_volume: int = 10
    dtmf_gap_ms: int = 60
    receive_buffer: int | None = 16384
    """SO_RCVBUF asked for on the RTP/RTCP sockets (bytes; None: the system default, 208 KB
    on Linux). Linux doubles the request and counts each queued datagram at its buffer size
    (~800 bytes for a 20 ms G.711 packet), so the default 16384 gives 32 KB ≈ 40 packets
    ≈ 0.8 s of audio: an agent starved of CPU drops stale audio instead of lagging ~5 s."""
    receive_batch: int = 32
    """Datagrams read from an RTP socket per readiness event, until it is empty. asyncio's
    datagram transport reads one per event loop iteration: a backlog queued during a pause
    (GC, a burst of work, CPU taken by other processes) then drains only one packet per call
    per iteration, which at a few hundred calls is barely faster than packets arrive, and
    the small :attr:`receive_buffer` overflows. 1 keeps the transport's behaviour."""
    receive_budget: int = 256
    """Datagrams all the RTP endpoints of one event loop may read in one loop iteration
    beyond the one each readiness event reads (the batches of :attr:`receive_batch`
    together); what is left waits for the next iteration, after the timers (the pacer)
    have run. Without it, a backlog of every call after a pause (200 calls, 20 packets each)
    was read in one iteration: a 427 ms stall seen under load. 0: no bound."""

    relatch_packets: int = 5
    """Consecutive valid packets of the established stream (same SSRC, continued sequence)
    from a new source before the endpoint re-latches there (1 to 100)."""
    max_packet_ms: int | None = None
    """The most audio one RTP packet may carry (ms; None: twice the negotiated ptime, at
    least 60 ms). A bigger payload is dropped and counted (``StreamStats.oversize``)."""

    def __post_init__(self) -> None:
        if not 1 <= self.relatch_packets <= 100:
            raise ValueError(f"relatch_packets {self.relatch_packets!r}: 1 to 100 packets")
        if self.max_packet_ms is not None and not 10 <= self.max_packet_ms <= 1000:
            raise ValueError(f"max_packet_ms {self.max_packet_ms!r}: 10 to 1000 ms, or None")
        if self.source_policy not in ("latch", "strict", "latch-any"):
            raise ValueError(f"source_policy {self.source_policy!r}: latch, strict or latch-any")
        if self.silence not in ("silence", "comfort-noise", "none"):
            raise ValueError(f"silence {self.silence!r}: silence, comfort-noise or none")
        if self.inactivity_timeout <= 0 or self.rtcp_interval <= 0:
            raise ValueError("inactivity_timeout and rtcp_interval must be positive")
        if not 0 < self.kick_pullback <= 0.02:
            raise ValueError(f"kick_pullback {self.kick_pullback!r}: above 0, at most 0.02 s")
        if self.receive_buffer is not None and not 1024 <= self.receive_buffer <= 1 << 26:
            raise ValueError(
                f"receive_buffer {self.receive_buffer}: 1024 to 67108864 bytes, or None"
            )
        if not 1 <= self.receive_batch <= 1024:
            raise ValueError(f"receive_batch {self.receive_batch}: 1 to 1024 datagrams")
        if not 0 <= self.receive_budget <= 1_000_000:
            raise ValueError(f"receive_budget {self.receive_budget}: 0 to 1000000 datagrams")


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """Base class of endpoint events."""


@dataclass(frozen=True, slots=True)
class RtpTimeout(MediaEvent):
    """No RTP for ``seconds`` (never reported while the peer holds the call)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class SourceLatched(MediaEvent):
    """The endpoint now sends to ``address`` (symmetric RTP latching)."""

    address: Address
    rtcp: bool = False


@dataclass(frozen=True, slots=True)
class RtcpByeReceived(MediaEvent):
    """The peer said goodbye in RTCP."""


def source_allowed(
    policy: SourcePolicy, addr: Address, sdp: Address | None, signalling_ip: str | None
) -> bool:
    """Whether a packet from ``addr`` is accepted (and latched to) under ``policy``.

    The SDP's address is always accepted. ``latch`` also accepts any port of the
    SDP's IP and of the SIP signalling IP; ``latch-any`` accepts everything;
    ``strict`` nothing else.
    """
    if addr == sdp:
        return True
    if policy == "strict":
        return False
    if policy == "latch-any":
        return True
    return (sdp is not None and addr[0] == sdp[0]) or addr[0] == signalling_ip


class PeerAddresses:
    """The peer's RTP and RTCP addresses: as the SDP names them (``sdp``, ``sdp_rtcp``),
    where we send (``send``, ``rtcp_send``) and the source last accepted (``rx``,
    ``rtcp_rx``: packets from there skip the source policy)."""

    __slots__ = ("rtcp_mux", "rtcp_rx", "rtcp_send", "rx", "sdp", "sdp_rtcp", "send")

    def __init__(self, rtcp_mux: bool) -> None:
        self.rtcp_mux = rtcp_mux
        self.sdp: Address | None = None
        self.sdp_rtcp: Address | None = None
        self.send: Address | None = None
        self.rtcp_send: Address | None = None
        self.rx: Address | None = None
        self.rtcp_rx: Address | None = None

    def set_sdp(self, address: Address, rtcp_address: Address | None = None) -> None:
        """The addresses the SDP names (RTCP: port + 1, or the RTP address with rtcp-mux);
        sending goes there and latching starts over."""
        self.sdp = address
        self.send = address
        self.rx = None
        if rtcp_address is None:
            rtcp_address = address if self.rtcp_mux else (address[0], address[1] + 1)
        self.sdp_rtcp = rtcp_address
        self.rtcp_send = rtcp_address
        self.rtcp_rx = None

    def latch(self, addr: Address, rtcp: bool) -> bool:
        """A packet from ``addr`` was accepted: send there from now on. True if the send
        address changed (RTP latching also moves RTCP with rtcp-mux)."""
        if rtcp:
            self.rtcp_rx = addr
            if self.rtcp_send != addr:
                self.rtcp_send = addr
                return True
            return False
        self.rx = addr
        if self.send != addr:
            self.send = addr
            if self.rtcp_mux:
                self.rtcp_send = addr
            return True
        return False
