"""The SDP data model (RFC 8866) and its canonical text form: the constants and tables
(static payload types, our preferred dynamic ones), the typed parts of a body
(:class:`SessionDescription`, :class:`MediaDescription`, :class:`Codec`, ...) and their
serialization (CRLF line ends, typed attributes before the others).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

from w3sipagent.errors import SdpError

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")

#: Largest SDP body accepted (bytes or characters).
MAX_SDP_SIZE = 65536
#: Most lines accepted in one SDP body.
MAX_SDP_LINES = 2048
#: Most m= sections accepted in one SDP body.
MAX_MEDIA = 64

#: Transport protocols carrying plain RTP.
RTP_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})
#: Transport protocols carrying SRTP (SDES or DTLS keyed).
SRTP_PROTOS = frozenset({"RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF"})

#: RFC 3551 static payload types: PT -> (encoding, clock rate, channels).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
    25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1),
    28: ("nv", 90000, 1),
    31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1),
    33: ("MP2T", 90000, 1),
    34: ("H263", 90000, 1),
}

#: Payload types we prefer when we offer a dynamic codec (else the first free one from 96).
PREFERRED_DYNAMIC_PT: dict[str, int] = {
    "telephone-event/8000": 101,
    "telephone-event/48000": 110,
    "opus/48000/2": 111,
}

#: fmtp we put in our offer for a codec named without one.
DEFAULT_FMTP: dict[str, str] = {
    "opus/48000/2": "minptime=10;useinbandfec=1",
    "telephone-event/8000": "0-16",
    "telephone-event/48000": "0-16",
}

TELEPHONE_EVENT = "telephone-event"

_COMPLEMENT: dict[str, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


def _dir(send: bool, recv: bool) -> Direction:
    if send and recv:
        return "sendrecv"
    if send:
        return "sendonly"
    if recv:
        return "recvonly"
    return "inactive"


def _sends(d: str) -> bool:
    return d in ("sendrecv", "sendonly")


def _receives(d: str) -> bool:
    return d in ("sendrecv", "recvonly")


def _int(text: str, what: str, lo: int = 0, hi: int | None = None) -> int:
    if not text.isascii() or not text.isdigit():
        raise SdpError(f"{what} is not a number: {text[:40]!r}")
    value = int(text)
    if value < lo or (hi is not None and value > hi):
        raise SdpError(f"{what} out of range: {value}")
    return value


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Codec:
    """One RTP payload format: ``a=rtpmap`` (or a static payload type) plus its ``a=fmtp``."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None
    #: Whether an ``a=rtpmap`` line is written for it (static types may omit it).
    rtpmap_line: bool = field(default=True, compare=False, repr=False)

    @property
    def name(self) -> str:
        """``"PCMU/8000"``, ``"opus/48000/2"``: encoding/rate[/channels when not 1]."""
        base = f"{self.encoding}/{self.clock_rate}"
        return base if self.channels == 1 else f"{base}/{self.channels}"

    @property
    def key(self) -> str:
        """:attr:`name` in lower case, for case-insensitive matching."""
        return self.name.lower()

    @property
    def is_telephone_event(self) -> bool:
        """True for RFC 4733 ``telephone-event`` (DTMF) formats."""
        return self.encoding.lower() == TELEPHONE_EVENT

    def fmtp_params(self) -> dict[str, str]:
        """The fmtp as a dict: ``"useinbandfec=1; minptime=10"`` -> ``{"useinbandfec": "1", ...}``.

        Keys are lower-cased; a parameter without ``=`` (``"0-16"``) maps to ``""``.
        """
        params: dict[str, str] = {}
        if not self.fmtp:
            return params
        for part in self.fmtp.split(";"):
            part = part.strip()
            if not part:
                continue
            k, sep, v = part.partition("=")
            params[k.strip().lower()] = v.strip() if sep else ""
        return params

    def rtpmap_value(self) -> str:
        """The value of this codec's ``a=rtpmap`` line."""
        return f"{self.payload_type} {self.name}"


@dataclass(frozen=True)
class Connection:
    """A ``c=`` line: ``IN IP4 192.0.2.1`` (``/ttl/count`` kept for multicast)."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"
    ttl: int | None = None
    count: int | None = None

    @property
    def is_null(self) -> bool:
        """True for the RFC 2543 hold address ``0.0.0.0`` (and ``::``)."""
        return self.address in ("0.0.0.0", "::")

    def __str__(self) -> str:
        addr = self.address
        if self.ttl is not None:
            addr += f"/{self.ttl}"
        if self.count is not None:
            addr += f"/{self.count}"
        return f"{self.nettype} {self.addrtype} {addr}"


@dataclass(frozen=True)
class Origin:
    """The ``o=`` line."""

    username: str
    sess_id: int
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True)
class Rtcp:
    """``a=rtcp:port [nettype addrtype address]`` (RFC 3605)."""

    port: int
    address: str | None = None
    addrtype: str = "IP4"
    nettype: str = "IN"

    def __str__(self) -> str:
        if self.address is None:
            return str(self.port)
        return f"{self.port} {self.nettype} {self.addrtype} {self.address}"


@dataclass
class Timing:
    """A ``t=`` line and the ``r=`` lines that follow it."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass
class MediaDescription:
    """One ``m=`` section.

    :attr:`direction` is the effective direction (the media-level attribute, else the
    session-level one, else ``sendrecv``); :attr:`connection` is the media-level ``c=``
    only - use :meth:`SessionDescription.connection_for` for the effective one.
    """

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int = 1
    connection: Connection | None = None
    extra_connections: list[Connection] = field(default_factory=list)
    codecs: list[Codec] = field(default_factory=list)
    direction: Direction = "sendrecv"
    ptime: int | None = None
    maxptime: int | None = None
    rtcp: Rtcp | None = None
    rtcp_mux: bool = False
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    title: str | None = None
    key: str | None = None
    #: Whether the direction attribute is written even when it equals the inherited one.
    direction_explicit: bool = field(default=False, compare=False, repr=False)

    @property
    def is_rtp(self) -> bool:
        """True when the proto carries RTP (plain or secure)."""
        return self.proto.upper() in RTP_PROTOS or self.proto.upper() in SRTP_PROTOS

    @property
    def is_srtp(self) -> bool:
        """True for RTP/SAVP, RTP/SAVPF and DTLS-SRTP protos."""
        return self.proto.upper() in SRTP_PROTOS

    @property
    def rejected(self) -> bool:
        """A port of 0 disables (rejects) the stream."""
        return self.port == 0

    def codec(self, payload_type: int) -> Codec | None:
        """The codec with this payload type, if known."""
        for c in self.codecs:
            if c.payload_type == payload_type:
                return c
        return None

    @property
    def telephone_events(self) -> list[Codec]:
        """The telephone-event formats of this stream."""
        return [c for c in self.codecs if c.is_telephone_event]

    def attribute(self, name: str) -> str | None:
        """The value of the first other attribute called ``name`` (``""`` for flags), or None."""
        for k, v in self.attributes:
            if k == name:
                return "" if v is None else v
        return None


@dataclass
class SessionDescription:
    """A whole SDP body. :meth:`parse` reads one, ``str()``/``bytes()`` write it (CRLF)."""

    origin: Origin
    name: str = "-"
    connection: Connection | None = None
    times: list[Timing] = field(default_factory=lambda: [Timing()])
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    version: int = 0
    direction: Direction | None = None
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    zone: str | None = None
    key: str | None = None

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        """Parse an SDP body; raises :class:`SdpError` naming the defect."""
        from w3sipagent.sdp.parse import parse_sdp  # the parser builds this model

        return parse_sdp(text)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The effective connection of a stream: media-level ``c=`` overrides session-level."""
        return media.connection if media.connection is not None else self.connection

    def __str__(self) -> str:
        return _serialize(self)

    def __bytes__(self) -> bytes:
        return _serialize(self).encode("utf-8")

    def copy(self) -> SessionDescription:
        """A deep copy (safe to edit)."""
        return copy.deepcopy(self)


# --------------------------------------------------------------------------- serializing


def _attr_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _serialize(sd: SessionDescription) -> str:
    out = [f"v={sd.version}", f"o={sd.origin}", f"s={sd.name}"]
    if sd.info is not None:
        out.append(f"i={sd.info}")
    if sd.uri is not None:
        out.append(f"u={sd.uri}")
    out += [f"e={e}" for e in sd.emails]
    out += [f"p={p}" for p in sd.phones]
    if sd.connection is not None:
        out.append(f"c={sd.connection}")
    out += [f"b={t}:{v}" for t, v in sd.bandwidths]
    for t in sd.times:
        out.append(f"t={t.start} {t.stop}")
        out += [f"r={r}" for r in t.repeats]
    if sd.zone is not None:
        out.append(f"z={sd.zone}")
    if sd.key is not None:
        out.append(f"k={sd.key}")
    if sd.direction is not None:
        out.append(f"a={sd.direction}")
    out += [_attr_line(k, v) for k, v in sd.attributes]
    inherited = sd.direction or "sendrecv"
    for m in sd.media:
        _serialize_media(m, inherited, out)
    out.append("")
    return "\r\n".join(out)


def _serialize_media(m: MediaDescription, inherited: str, out: list[str]) -> None:
    port = f"{m.port}/{m.port_count}" if m.port_count != 1 else str(m.port)
    formats = m.formats or [str(c.payload_type) for c in m.codecs]
    out.append(f"m={m.media} {port} {m.proto} {' '.join(formats)}")
    if m.title is not None:
        out.append(f"i={m.title}")
    if m.connection is not None:
        out.append(f"c={m.connection}")
    out += [f"c={c}" for c in m.extra_connections]
    out += [f"b={t}:{v}" for t, v in m.bandwidths]
    if m.key is not None:
        out.append(f"k={m.key}")
    for c in m.codecs:
        if c.rtpmap_line or c.payload_type not in STATIC_PAYLOAD_TYPES:
            out.append(f"a=rtpmap:{c.rtpmap_value()}")
        if c.fmtp is not None:
            out.append(
                f"a=fmtp:{c.payload_type} {c.fmtp}" if c.fmtp else f"a=fmtp:{c.payload_type}"
            )
    if m.ptime is not None:
        out.append(f"a=ptime:{m.ptime}")
    if m.maxptime is not None:
        out.append(f"a=maxptime:{m.maxptime}")
    if m.rtcp is not None:
        out.append(f"a=rtcp:{m.rtcp}")
    if m.rtcp_mux:
        out.append("a=rtcp-mux")
    if m.direction_explicit or m.direction != inherited:
        out.append(f"a={m.direction}")
    out += [_attr_line(k, v) for k, v in m.attributes]
