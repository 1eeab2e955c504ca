"""SDP (RFC 8866): parse and serialize; offer/answer (RFC 3264).

Parsing keeps everything: the typed parts (``o=``, ``c=``, ``b=``, ``t=``, ``m=``,
``a=rtpmap``/``fmtp``/``ptime``/``maxptime``/``rtcp``/``rtcp-mux`` and the direction
attributes) become fields, every other ``a=`` line stays in :attr:`attributes` in order.
``parse(str(parse(x))) == parse(x)`` holds for every accepted input; serialization is
canonical (CRLF line ends, typed attributes before the others), not byte-identical.

Offer/answer:

* :func:`negotiate_answer` answers a remote offer (incoming INVITE, re-INVITE, UPDATE).
  It never raises on an unacceptable offer: the failure comes back as data in
  :attr:`AnswerResult.failure` (status 488 plus a Warning code and text), so the user
  agent can answer ``488 Not Acceptable Here`` with ``Warning:`` :meth:`NegotiationFailure.warning_header`.
  Only a malformed SDP raises :class:`~w3sipagent.errors.SdpError` (from :meth:`SessionDescription.parse`).
* :func:`process_answer` reads the remote answer to one of our offers (outbound calls,
  offerless INVITE answered in the ACK).
* :func:`create_offer` builds our offer; :func:`bump_version` and :func:`assign_version`
  handle the ``o=`` version for re-INVITEs (it increments only when the SDP changes).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

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
        return _parse(text)

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


# --------------------------------------------------------------------------- parsing


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"bad c= line: {value[:80]!r}")
    nettype, addrtype, addr = parts
    ttl: int | None = None
    count: int | None = None
    if "/" in addr and addrtype.upper() == "IP4":
        pieces = addr.split("/")
        if len(pieces) > 3:
            raise SdpError(f"bad c= address: {addr[:80]!r}")
        addr = pieces[0]
        ttl = _int(pieces[1], "c= TTL", 0, 255)
        if len(pieces) == 3:
            count = _int(pieces[2], "c= address count", 1)
    elif "/" in addr:
        pieces = addr.split("/")
        if len(pieces) != 2:
            raise SdpError(f"bad c= address: {addr[:80]!r}")
        addr = pieces[0]
        count = _int(pieces[1], "c= address count", 1)
    if not addr:
        raise SdpError("empty c= address")
    return Connection(address=addr, addrtype=addrtype, nettype=nettype, ttl=ttl, count=count)


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpError(f"bad o= line (needs 6 fields): {value[:80]!r}")
    return Origin(
        username=parts[0],
        sess_id=_int(parts[1], "o= sess-id"),
        sess_version=_int(parts[2], "o= sess-version"),
        nettype=parts[3],
        addrtype=parts[4],
        address=parts[5],
    )


def _parse_bandwidth(value: str) -> tuple[str, int]:
    bwtype, sep, bw = value.partition(":")
    if not sep or not bwtype:
        raise SdpError(f"bad b= line: {value[:80]!r}")
    return bwtype, _int(bw.strip(), "b= bandwidth")


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"bad m= line (needs media, port, proto and a format): {value[:80]!r}")
    media, port_text, proto, *formats = parts
    port_count = 1
    if "/" in port_text:
        port_text, _, count_text = port_text.partition("/")
        port_count = _int(count_text, "m= port count", 1)
    port = _int(port_text, "m= port", 0, 65535)
    m = MediaDescription(
        media=media, port=port, proto=proto, formats=formats, port_count=port_count
    )
    if m.is_rtp:
        for f in formats:
            _int(f, "RTP payload type", 0, 127)
    return m


def _parse_ms(value: str, what: str) -> int:
    try:
        ms = float(value.strip())
    except ValueError:
        raise SdpError(f"{what} is not a number: {value[:40]!r}") from None
    if not 0 < ms <= 100000:
        raise SdpError(f"{what} out of range: {value[:40]!r}")
    return max(1, round(ms))


def _parse_rtcp(value: str) -> Rtcp:
    parts = value.split()
    if len(parts) not in (1, 4):
        raise SdpError(f"bad a=rtcp: {value[:80]!r}")
    port = _int(parts[0], "a=rtcp port", 0, 65535)
    if len(parts) == 1:
        return Rtcp(port)
    return Rtcp(port, address=parts[3], addrtype=parts[2], nettype=parts[1])


def _parse_rtpmap(value: str) -> tuple[int, str, int, int]:
    pt_text, _, rest = value.strip().partition(" ")
    pt = _int(pt_text, "a=rtpmap payload type", 0, 127)
    pieces = rest.strip().split("/")
    if len(pieces) not in (2, 3) or not pieces[0]:
        raise SdpError(f"bad a=rtpmap: {value[:80]!r}")
    rate = _int(pieces[1], "a=rtpmap clock rate", 1)
    channels = _int(pieces[2], "a=rtpmap channels", 1, 255) if len(pieces) == 3 else 1
    return pt, pieces[0], rate, channels


class _MediaBuilder:
    """Collects the attribute lines of one m= section."""

    def __init__(self, m: MediaDescription) -> None:
        self.m = m
        self.rtpmaps: dict[int, tuple[str, int, int]] = {}
        self.unreadable: set[str] = set()  # formats whose a=rtpmap is malformed
        self.fmtps: dict[str, str] = {}
        self.seen_direction = False

    def attribute(self, name: str, value: str | None) -> None:
        m = self.m
        if name in DIRECTIONS and value is None:
            if self.seen_direction:
                raise SdpError(f"m={m.media}: more than one direction attribute")
            self.seen_direction = True
            m.direction = name
            m.direction_explicit = True
        elif name == "rtpmap" and value is not None and m.is_rtp:
            try:
                pt, enc, rate, ch = _parse_rtpmap(value)
            except SdpError:
                # RFC 4475 §3.1.1.3 (esc01, longreq: "a=rtpmap:31 LPC"): a format we cannot
                # read is unusable, the rest of the offer is processed normally.
                self.unreadable.add(value.strip().partition(" ")[0])
                m.attributes.append((name, value))
                return
            if pt in self.rtpmaps:
                raise SdpError(f"m={m.media}: duplicate a=rtpmap for payload type {pt}")
            self.rtpmaps[pt] = (enc, rate, ch)
        elif name == "fmtp" and value is not None:
            fmt, _, params = value.partition(" ")
            if not fmt:
                raise SdpError("bad a=fmtp: no format")
            if fmt in self.fmtps:
                raise SdpError(f"m={m.media}: duplicate a=fmtp for format {fmt}")
            self.fmtps[fmt] = params.strip()
        elif name == "ptime" and value is not None and m.ptime is None:
            m.ptime = _parse_ms(value, "a=ptime")
        elif name == "maxptime" and value is not None and m.maxptime is None:
            m.maxptime = _parse_ms(value, "a=maxptime")
        elif name == "rtcp" and value is not None and m.rtcp is None:
            m.rtcp = _parse_rtcp(value)
        elif name == "rtcp-mux" and value is None:
            m.rtcp_mux = True
        else:
            m.attributes.append((name, value))

    def finish(self, session_direction: Direction | None) -> MediaDescription:
        m = self.m
        if not self.seen_direction and session_direction is not None:
            m.direction = session_direction
        if m.is_rtp:
            for f in m.formats:
                if f in self.unreadable:
                    continue
                pt = int(f)
                fmtp = self.fmtps.pop(f, None)
                if pt in self.rtpmaps:
                    enc, rate, ch = self.rtpmaps.pop(pt)
                    m.codecs.append(Codec(pt, enc, rate, ch, fmtp))
                elif pt in STATIC_PAYLOAD_TYPES:
                    enc, rate, ch = STATIC_PAYLOAD_TYPES[pt]
                    m.codecs.append(Codec(pt, enc, rate, ch, fmtp, rtpmap_line=False))
                elif fmtp is not None:
                    self.fmtps[f] = fmtp  # dynamic type without rtpmap: keep as attribute
            for pt, (enc, rate, ch) in self.rtpmaps.items():  # rtpmap for an unlisted type
                m.attributes.append(
                    ("rtpmap", f"{pt} {enc}/{rate}" + (f"/{ch}" if ch != 1 else ""))
                )
        for fmt, params in self.fmtps.items():
            m.attributes.append(("fmtp", f"{fmt} {params}" if params else fmt))
        return m


def _lines(text: str | bytes) -> list[str]:
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_SDP_SIZE:
            raise SdpError(f"SDP larger than {MAX_SDP_SIZE} bytes")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not valid UTF-8") from None
    if len(text) > MAX_SDP_SIZE:
        raise SdpError(f"SDP larger than {MAX_SDP_SIZE} characters")
    lines = text.split("\n")
    if len(lines) > MAX_SDP_LINES:
        raise SdpError(f"SDP has more than {MAX_SDP_LINES} lines")
    out = []
    for raw in lines:
        line = raw[:-1] if raw.endswith("\r") else raw
        if line.strip() == "":
            continue
        out.append(line)
    return out


def _split_attr(value: str) -> tuple[str, str | None]:
    name, sep, v = value.partition(":")
    if not name or " " in name or "\t" in name or "\r" in name:
        raise SdpError(f"bad a= line: {value[:80]!r}")
    return name, (v if sep else None)


def _parse(text: str | bytes) -> SessionDescription:
    if not isinstance(text, str | bytes | bytearray):
        raise SdpError(f"SDP must be str or bytes, not {type(text).__name__}")
    lines = _lines(text)
    if not lines:
        raise SdpError("empty SDP")
    if lines[0] != "v=0":
        raise SdpError(f"SDP must start with v=0, got {lines[0][:40]!r}")
    origin: Origin | None = None
    name: str | None = None
    sd_fields: dict[str, object] = {}
    session_attrs: list[tuple[str, str | None]] = []
    session_direction: Direction | None = None
    times: list[Timing] = []
    bandwidths: list[tuple[str, int]] = []
    emails: list[str] = []
    phones: list[str] = []
    connection: Connection | None = None
    builders: list[_MediaBuilder] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"bad SDP line: {line[:80]!r}")
        kind, value = line[0], line[2:]
        if builders:
            b = builders[-1]
            m = b.m
            if kind == "m":
                if len(builders) >= MAX_MEDIA:
                    raise SdpError(f"more than {MAX_MEDIA} m= lines")
                builders.append(_MediaBuilder(_parse_media_line(value)))
            elif kind == "a":
                b.attribute(*_split_attr(value))
            elif kind == "c":
                c = _parse_connection(value)
                if m.connection is None:
                    m.connection = c
                else:
                    m.extra_connections.append(c)
            elif kind == "b":
                m.bandwidths.append(_parse_bandwidth(value))
            elif kind == "i" and m.title is None:
                m.title = value
            elif kind == "k" and m.key is None:
                m.key = value
            else:
                raise SdpError(f"unexpected {kind}= line in m={m.media} section")
            continue
        if kind == "o" and origin is None:
            origin = _parse_origin(value)
        elif kind == "s" and name is None:
            name = value
        elif kind == "c" and connection is None:
            connection = _parse_connection(value)
        elif kind == "t":
            t = value.split()
            if len(t) != 2:
                raise SdpError(f"bad t= line: {value[:80]!r}")
            times.append(Timing(_int(t[0], "t= start"), _int(t[1], "t= stop")))
        elif kind == "r":
            if not times:
                raise SdpError("r= line before any t= line")
            times[-1].repeats.append(value)
        elif kind == "b":
            bandwidths.append(_parse_bandwidth(value))
        elif kind == "e":
            emails.append(value)
        elif kind == "p":
            phones.append(value)
        elif kind in ("i", "u", "z", "k") and kind not in sd_fields:
            sd_fields[kind] = value
        elif kind == "a":
            aname, avalue = _split_attr(value)
            if aname in DIRECTIONS and avalue is None:
                if session_direction is not None:
                    raise SdpError("more than one session-level direction attribute")
                session_direction = aname
            else:
                session_attrs.append((aname, avalue))
        elif kind == "m":
            if origin is None or name is None:
                raise SdpError("m= line before the o= and s= lines")
            builders.append(_MediaBuilder(_parse_media_line(value)))
        else:
            raise SdpError(f"unexpected or repeated {kind}= line at session level")
    if origin is None:
        raise SdpError("SDP has no o= line")
    if name is None:
        raise SdpError("SDP has no s= line")
    return SessionDescription(
        origin=origin,
        name=name,
        connection=connection,
        times=times,
        attributes=session_attrs,
        media=[b.finish(session_direction) for b in builders],
        direction=session_direction,
        info=cast("str | None", sd_fields.get("i")),
        uri=cast("str | None", sd_fields.get("u")),
        emails=emails,
        phones=phones,
        bandwidths=bandwidths,
        zone=cast("str | None", sd_fields.get("z")),
        key=cast("str | None", sd_fields.get("k")),
    )


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


# --------------------------------------------------------------------------- versions


def bump_version(sd: SessionDescription) -> SessionDescription:
    """A copy of ``sd`` with the ``o=`` session version incremented (for a changed re-offer)."""
    new = sd.copy()
    new.origin = dataclasses.replace(sd.origin, sess_version=sd.origin.sess_version + 1)
    return new


def assign_version(
    candidate: SessionDescription, previous: SessionDescription
) -> SessionDescription:
    """``candidate`` with the ``o=`` line continuing ``previous`` (our last SDP in this dialog).

    Same session id; the version stays when nothing else changed (RFC 3264 §8: a re-offer
    that changes nothing keeps the version) and is ``previous + 1`` otherwise.
    """
    new = candidate.copy()
    new.origin = dataclasses.replace(
        candidate.origin,
        sess_id=previous.origin.sess_id,
        sess_version=previous.origin.sess_version,
    )
    if str(new) != str(previous):
        new.origin = dataclasses.replace(new.origin, sess_version=previous.origin.sess_version + 1)
    return new


# --------------------------------------------------------------------------- offer/answer


def _pref_key(p: str | Codec) -> str:
    if isinstance(p, Codec):
        return p.key
    name = p.strip().lower()
    parts = name.split("/")
    if len(parts) == 3 and parts[2] == "1":
        name = "/".join(parts[:2])
    return name


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _origin(username: str, sess_id: int, sess_version: int, address: str) -> Origin:
    return Origin(username, sess_id, sess_version, "IN", _addrtype(address), address)


def _normalize_direction(direction: str) -> Direction:
    if direction not in DIRECTIONS:
        raise SdpError(f"unknown direction {direction!r}")
    return direction


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


def preference_list(prefs: Iterable[str | Codec]) -> list[str | Codec]:
    """Validate a codec preference list (names like ``"PCMU/8000"`` or :class:`Codec`)."""
    out: list[str | Codec] = []
    for p in prefs:
        if isinstance(p, str):
            parts = p.strip().split("/")
            if len(parts) not in (2, 3) or not parts[0]:
                raise SdpError(f"codec name must be encoding/rate[/channels]: {p!r}")
            for n in parts[1:]:
                _int(n, f"codec {p!r} rate/channels", 1)
        out.append(p)
    return out


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


def _offer_codecs(codecs: Sequence[str | Codec], telephone_event: bool) -> list[Codec]:
    entries = preference_list(codecs)
    used: set[int] = {c.payload_type for c in entries if isinstance(c, Codec)}
    out: list[Codec] = []

    def dynamic(key: str) -> int:
        pt = PREFERRED_DYNAMIC_PT.get(key)
        if pt is None or pt in used:
            pt = next(n for n in range(96, 128) if n not in used)
        used.add(pt)
        return pt

    static_by_key = {
        f"{e}/{r}".lower(): pt for pt, (e, r, ch) in STATIC_PAYLOAD_TYPES.items() if ch == 1
    }
    for e in entries:
        if isinstance(e, Codec):
            out.append(e)
            continue
        parts = e.strip().split("/")
        key = _pref_key(e)
        enc, rate = parts[0], int(parts[1])
        ch = int(parts[2]) if len(parts) == 3 else 1
        pt = static_by_key.get(key)
        if pt is None or pt in used:
            pt = dynamic(key)
        else:
            used.add(pt)
        out.append(Codec(pt, enc, rate, ch, DEFAULT_FMTP.get(key)))
    if telephone_event and not any(c.is_telephone_event for c in out):
        for rate in dict.fromkeys(c.clock_rate for c in out):
            key = f"{TELEPHONE_EVENT}/{rate}"
            if key in DEFAULT_FMTP:
                out.append(Codec(dynamic(key), TELEPHONE_EVENT, rate, 1, DEFAULT_FMTP[key]))
    if len(out) > 32 or len({c.payload_type for c in out}) != len(out):
        raise SdpError("codec list has duplicate payload types or too many codecs")
    return out


def create_offer(
    codecs: Sequence[str | Codec],
    *,
    local_address: str,
    port: int,
    session_id: int,
    session_version: int,
    direction: str = "sendrecv",
    telephone_event: bool = True,
    ptime: int | None = 20,
    rtcp_mux: bool = False,
    proto: str = "RTP/AVP",
    origin_username: str = "w3sipagent",
    session_name: str = "w3sipagent",
) -> SessionDescription:
    """Our offer with one audio stream (outbound calls, offerless INVITE, re-INVITE).

    ``codecs`` in preference order: names (``"PCMU/8000"``, ``"opus/48000/2"``; static
    payload types are used where RFC 3551 has one, dynamic ones from 96 otherwise, opus 111)
    or :class:`Codec` with an explicit payload type. ``telephone_event`` adds
    telephone-event (``0-16``) for each clock rate offered (8000 -> PT 101, 48000 -> 110).
    For a re-INVITE (hold: ``direction="sendonly"``) pass the previous version + 1, or use
    :func:`assign_version` against the previous SDP.
    """
    if not codecs:
        raise SdpError("an offer needs at least one codec")
    if not 0 < port <= 65535:
        raise SdpError(f"bad RTP port {port}")
    offered = _offer_codecs(codecs, telephone_event)
    m = MediaDescription(
        media="audio",
        port=port,
        proto=proto,
        formats=[str(c.payload_type) for c in offered],
        codecs=offered,
        direction=_normalize_direction(direction),
        direction_explicit=True,
        ptime=ptime,
        rtcp_mux=rtcp_mux,
    )
    return SessionDescription(
        origin=_origin(origin_username, session_id, session_version, local_address),
        name=session_name,
        connection=Connection(local_address, _addrtype(local_address)),
        media=[m],
    )
