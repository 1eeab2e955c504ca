"""SDP parsing (RFC 8866): text to the :mod:`.model`, keeping every line it does not type
in order; size and count limits; each defect raises :class:`~w3sipagent.errors.SdpError`.
"""

from __future__ import annotations

from typing import cast

from w3sipagent.errors import SdpError
from w3sipagent.sdp.model import (
    DIRECTIONS,
    MAX_MEDIA,
    MAX_SDP_LINES,
    MAX_SDP_SIZE,
    STATIC_PAYLOAD_TYPES,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    Rtcp,
    SessionDescription,
    Timing,
    _int,
)


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


def parse_sdp(text: str | bytes) -> SessionDescription:
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
