"""Our side of offer/answer (RFC 3264): codec preference lists, the ``o=`` line, our offer
(:func:`create_offer`) and its version across re-offers (:func:`bump_version`,
:func:`assign_version`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from w3sipagent.errors import SdpError
from w3sipagent.sdp.model import (
    DEFAULT_FMTP,
    DIRECTIONS,
    PREFERRED_DYNAMIC_PT,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SessionDescription,
    _int,
)


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


# --------------------------------------------------------------------------- offer


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
