"""Answering and reading answers (RFC 3264): :func:`negotiate_answer` answers a remote
offer, :func:`process_answer` reads the answer to ours; both report per stream
(:class:`NegotiatedStream`) and an unacceptable one as data (:class:`NegotiationFailure`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from w3sipagent.errors import SdpError
from w3sipagent.sdp.model import (
    _COMPLEMENT,
    RTP_PROTOS,
    SRTP_PROTOS,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    SessionDescription,
    _dir,
    _receives,
    _sends,
)
from w3sipagent.sdp.offer import (
    _addrtype,
    _origin,
    _pref_key,
    preference_list,
)


@dataclass(frozen=True)
class NegotiationFailure:
    """Why an offer (or answer) was unacceptable, with what to send back.

    ``status`` is the SIP response code (488 Not Acceptable Here); ``warning_code`` and
    ``warning_text`` fill an RFC 3261 §20.43 ``Warning`` header (302 incompatible transport
    protocol, 304 media type not available, 305 incompatible media format).
    """

    reason: str
    status: int = 488
    warning_code: int = 305
    warning_text: str = "Incompatible media format"

    def warning_header(self, agent: str = "w3sipagent") -> str:
        """The value of a Warning header: ``305 w3sipagent "Incompatible media format"``."""
        text = self.warning_text.replace("\\", "").replace('"', "'")
        return f'{self.warning_code} {agent} "{text}"'


@dataclass
class NegotiatedStream:
    """The outcome of offer/answer for one m= line.

    ``codec`` is the codec we send and expect (payload type from the SDP of the side that
    receives it, i.e. the offerer's numbers for answers we make); ``codecs`` everything the
    answer lists for the stream; ``remote_*`` where to send RTP/RTCP; ``remote_direction``
    the peer's attribute and ``local_direction`` ours; ``hold`` whether the peer put us on
    hold (sendonly/inactive or the address 0.0.0.0).
    """

    index: int
    media: str
    accepted: bool
    reason: str | None = None
    codec: Codec | None = None
    codecs: list[Codec] = field(default_factory=list)
    telephone_event: Codec | None = None
    remote_address: str | None = None
    remote_port: int = 0
    remote_rtcp: tuple[str, int] | None = None
    rtcp_mux: bool = False
    remote_direction: Direction = "sendrecv"
    local_direction: Direction = "inactive"
    hold: bool = False
    ptime: int | None = None
    maxptime: int | None = None
    local_port: int = 0
    proto: str = "RTP/AVP"

    @property
    def send(self) -> bool:
        """Whether we may send RTP on this stream."""
        return self.accepted and _sends(self.local_direction)

    @property
    def receive(self) -> bool:
        """Whether we should expect RTP on this stream."""
        return self.accepted and _receives(self.local_direction)


@dataclass
class AnswerResult:
    """What offer/answer produced.

    ``answer`` is our answer SDP (for :func:`negotiate_answer`) or the remote answer (for
    :func:`process_answer`). ``failure`` is set when no stream could be used: answer the
    request with ``failure.status`` and ``Warning: failure.warning_header()``.
    """

    answer: SessionDescription
    streams: list[NegotiatedStream]
    failure: NegotiationFailure | None = None

    @property
    def ok(self) -> bool:
        """True when at least one stream was accepted."""
        return self.failure is None

    @property
    def audio(self) -> NegotiatedStream | None:
        """The first accepted audio stream with a real codec (what a voice agent uses)."""
        for s in self.streams:
            if s.accepted and s.media == "audio" and s.codec is not None:
                return s
        return None

    @property
    def hold(self) -> bool:
        """True when every accepted stream is on hold by the peer."""
        accepted = [s for s in self.streams if s.accepted]
        return bool(accepted) and all(s.hold for s in accepted)

    @property
    def rejected(self) -> list[NegotiatedStream]:
        """Streams answered with port 0, with their reason."""
        return [s for s in self.streams if not s.accepted]


def _remote_rtcp(
    sd: SessionDescription, m: MediaDescription, addr: str | None
) -> tuple[str, int] | None:
    if addr is None:
        return None
    if m.rtcp is not None:
        return (m.rtcp.address or addr, m.rtcp.port)
    return (addr, m.port + 1)


def _pick_telephone_event(offered: Sequence[Codec], rate: int) -> Codec | None:
    events = [c for c in offered if c.is_telephone_event]
    for c in events:
        if c.clock_rate == rate:
            return c
    return events[0] if events else None


def _match_codecs(
    offered: Sequence[Codec],
    preference: Sequence[str | Codec],
    honor_offer_order: bool,
) -> list[tuple[Codec, Codec | None]]:
    """(offered codec, our preference entry when it is a Codec) in the chosen order."""
    prefs = {_pref_key(p): (i, p) for i, p in reversed(list(enumerate(preference)))}
    matches: list[tuple[int, int, Codec, Codec | None]] = []
    seen: set[str] = set()
    for pos, c in enumerate(offered):
        hit = prefs.get(c.key)
        if hit is None or c.key in seen:
            continue
        seen.add(c.key)
        rank, p = hit
        matches.append((rank, pos, c, p if isinstance(p, Codec) else None))
    matches.sort(key=lambda t: (t[1], t[0]) if honor_offer_order else (t[0], t[1]))
    return [(c, p) for _, _, c, p in matches]


def _answer_codec(offered: Codec, ours: Codec | None) -> Codec:
    fmtp = ours.fmtp if ours is not None and ours.fmtp is not None else offered.fmtp
    return Codec(offered.payload_type, offered.encoding, offered.clock_rate, offered.channels, fmtp)


def negotiate_answer(
    offer: SessionDescription,
    *,
    local_address: str,
    ports: Sequence[int] | Callable[[int, MediaDescription], int | None],
    codec_preference: Sequence[str | Codec],
    session_id: int,
    session_version: int,
    telephone_event: bool = True,
    allow_srtp: bool = False,
    ptime: int | None = None,
    hold: bool = False,
    rtcp_mux: bool = True,
    max_codecs: int | None = 1,
    honor_offer_order: bool = False,
    origin_username: str = "w3sipagent",
    session_name: str = "w3sipagent",
) -> AnswerResult:
    """Answer a remote offer (RFC 3264 §6).

    * The answer has the offer's m= lines in the same order; a stream we cannot take keeps
      its m= line with port 0 and its reason in :attr:`NegotiatedStream.reason`.
    * ``codec_preference`` (``"PCMU/8000"``, ``"opus/48000/2"`` or :class:`Codec` to impose
      our fmtp) is applied to the offered codecs: the best match is chosen, keeping the
      offerer's payload type; ``max_codecs`` limits how many media codecs are listed (None:
      all common ones, in preference order or the offer's with ``honor_offer_order``).
      A stream offering only telephone-event is accepted when that is in the preference.
    * With ``telephone_event`` the offered telephone-event of the chosen codec's clock rate
      (else any offered one) is added with its payload type and fmtp.
    * ``ports``: local RTP ports for the accepted streams, used in order (a stream for which
      none is left is rejected), or ``callable(index, offered_media) -> port | None``.
    * Direction is the complement of the offered one; a stream with the null address
      0.0.0.0 gets no send direction; ``hold=True`` (we hold the peer) takes away receive.
    * ``rtcp-mux`` is echoed when offered and ``rtcp_mux`` is on; ``ptime`` adds ``a=ptime``.
    * SRTP protos are only accepted with ``allow_srtp`` (the caller then adds its crypto
      attributes to the answer); an SRTP-only offer fails with warning 302.

    ``session_id``/``session_version`` fill our ``o=`` line; in a re-INVITE pass the values of
    the previous answer and apply :func:`assign_version` against it (the version moves only
    when the answer changed).

    Failures come back as data: :attr:`AnswerResult.failure` (488 + Warning); this function
    raises :class:`SdpError` only for a bad argument (an unknown direction never happens).
    """
    if max_codecs is not None and max_codecs < 1:
        raise SdpError("max_codecs must be at least 1")
    pref_keys = {_pref_key(p) for p in preference_list(codec_preference)}
    port_iter = iter(ports) if not callable(ports) else None
    answer = SessionDescription(
        origin=_origin(origin_username, session_id, session_version, local_address),
        name=session_name,
        connection=Connection(local_address, _addrtype(local_address)),
    )
    streams: list[NegotiatedStream] = []
    for index, om in enumerate(offer.media):
        conn = offer.connection_for(om)
        stream = NegotiatedStream(index=index, media=om.media, accepted=False, proto=om.proto)
        stream.remote_direction = om.direction
        reason = _stream_obstacle(om, conn, allow_srtp)
        chosen: list[tuple[Codec, Codec | None]] = []
        event: Codec | None = None
        if reason is None:
            media_codecs = [c for c in om.codecs if not c.is_telephone_event]
            chosen = _match_codecs(media_codecs, codec_preference, honor_offer_order)
            if max_codecs is not None:
                chosen = chosen[:max_codecs]
            if chosen:
                if telephone_event:
                    event = _pick_telephone_event(om.codecs, chosen[0][0].clock_rate)
            else:
                events = [c for c in om.codecs if c.is_telephone_event and c.key in pref_keys]
                if events:
                    event = events[0]
                else:
                    reason = "no common codec"
        local_port: int | None = None
        if reason is None:
            if port_iter is not None:
                local_port = next(port_iter, None)
            elif callable(ports):
                local_port = ports(index, om)
            if local_port is None or not 0 < local_port <= 65535:
                reason = "no local port available"
        if reason is not None or local_port is None or conn is None:
            stream.reason = reason
            answer.media.append(_rejected_media(om))
            streams.append(stream)
            continue
        codecs = [_answer_codec(c, p) for c, p in chosen]
        if event is not None:
            codecs.append(_answer_codec(event, None))
        null = conn.is_null
        send = _sends(_COMPLEMENT[om.direction]) and not null
        recv = _receives(_COMPLEMENT[om.direction]) and not hold
        local_dir = _dir(send, recv)
        mux = om.rtcp_mux and rtcp_mux
        am = MediaDescription(
            media=om.media,
            port=local_port,
            proto=om.proto,
            formats=[str(c.payload_type) for c in codecs],
            codecs=codecs,
            direction=local_dir,
            direction_explicit=True,
            ptime=ptime if om.media == "audio" else None,
            rtcp_mux=mux,
        )
        answer.media.append(am)
        remote_addr = None if null else conn.address
        stream.accepted = True
        stream.codec = codecs[0] if chosen else None
        stream.codecs = codecs
        stream.telephone_event = event
        stream.remote_address = remote_addr
        stream.remote_port = om.port
        stream.remote_rtcp = _remote_rtcp(offer, om, remote_addr) if not mux else None
        stream.rtcp_mux = mux
        stream.local_direction = local_dir
        stream.hold = null or om.direction in ("sendonly", "inactive")
        stream.ptime = om.ptime
        stream.maxptime = om.maxptime
        stream.local_port = local_port
        streams.append(stream)
    return AnswerResult(answer, streams, _failure(streams))


def _rejected_media(om: MediaDescription) -> MediaDescription:
    """The port-0 m= line for a stream we reject: its first offered format, no attributes."""
    formats = om.formats[:1]
    codecs = [
        dataclasses.replace(c, fmtp=None, rtpmap_line=False)
        for c in om.codecs
        if str(c.payload_type) in formats
    ]
    return MediaDescription(media=om.media, port=0, proto=om.proto, formats=formats, codecs=codecs)


def _stream_obstacle(m: MediaDescription, conn: Connection | None, allow_srtp: bool) -> str | None:
    if m.port == 0:
        return "stream disabled in the offer"
    if m.proto.upper() in SRTP_PROTOS:
        if not allow_srtp:
            return "SRTP not supported"
    elif m.proto.upper() not in RTP_PROTOS:
        return f"transport {m.proto} not supported"
    if conn is None:
        return "no connection address"
    return None


def _failure(streams: Sequence[NegotiatedStream]) -> NegotiationFailure | None:
    if any(s.accepted for s in streams):
        return None
    reasons = {s.reason for s in streams}
    if not streams:
        return NegotiationFailure(
            "no media streams", warning_code=304, warning_text="Media type not available"
        )
    if "SRTP not supported" in reasons and "no common codec" not in reasons:
        return NegotiationFailure(
            "SRTP-only offer",
            warning_code=302,
            warning_text="Incompatible transport protocol: SRTP (RTP/SAVP) is not supported, offer RTP/AVP",
        )
    if "no common codec" in reasons:
        return NegotiationFailure("no common codec")
    if "no local port available" in reasons:
        return NegotiationFailure(
            "no local port available", warning_code=304, warning_text="Media type not available"
        )
    return NegotiationFailure(
        "no usable media stream", warning_code=304, warning_text="Media type not available"
    )


def process_answer(offer: SessionDescription, answer: SessionDescription) -> AnswerResult:
    """Read the remote answer to our ``offer``: chosen codecs, remote addresses, directions.

    Raises :class:`SdpError` when the answer breaks RFC 3264 (a different number of m=
    lines, or a different media type on a line). A stream whose answer lists no codec we
    offered counts as rejected; when no stream is usable, ``failure`` is set (the caller
    then ends the call).
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= lines but the offer had {len(offer.media)}"
        )
    streams: list[NegotiatedStream] = []
    for index, (om, am) in enumerate(zip(offer.media, answer.media, strict=True)):
        if om.media != am.media:
            raise SdpError(f"answer m= line {index} is {am.media}, the offer's is {om.media}")
        stream = NegotiatedStream(index=index, media=am.media, accepted=False, proto=am.proto)
        stream.remote_direction = am.direction
        stream.local_port = om.port
        conn = answer.connection_for(am)
        if am.port == 0 or om.port == 0:
            stream.reason = "stream rejected in the answer"
            streams.append(stream)
            continue
        if conn is None:
            stream.reason = "no connection address"
            streams.append(stream)
            continue
        ours = {c.key for c in om.codecs}
        listed = [c for c in am.codecs if c.key in ours]
        media_codecs = [c for c in listed if not c.is_telephone_event]
        if not listed:
            stream.reason = "no common codec"
            streams.append(stream)
            continue
        codec = media_codecs[0] if media_codecs else None
        event = _pick_telephone_event(listed, codec.clock_rate if codec else 8000)
        null = conn.is_null
        send = _sends(om.direction) and _receives(am.direction) and not null
        recv = _receives(om.direction) and _sends(am.direction)
        remote_addr = None if null else conn.address
        mux = om.rtcp_mux and am.rtcp_mux
        stream.accepted = True
        stream.codec = codec
        stream.codecs = listed
        stream.telephone_event = event
        stream.remote_address = remote_addr
        stream.remote_port = am.port
        stream.remote_rtcp = _remote_rtcp(answer, am, remote_addr) if not mux else None
        stream.rtcp_mux = mux
        stream.local_direction = _dir(send, recv)
        stream.hold = null or am.direction in ("sendonly", "inactive")
        stream.ptime = am.ptime
        stream.maxptime = am.maxptime
        streams.append(stream)
    return AnswerResult(answer, streams, _failure(streams))
