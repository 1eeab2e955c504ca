"""message/sipfrag bodies (RFC 3420), as carried by REFER NOTIFYs (RFC 3515 §2.4.5).

A sipfrag is a partial SIP message: an optional start line, optional header lines and
an optional body. The transfer code only needs the status line of the NOTIFY body
(``SIP/2.0 180 Ringing``), but a peer may send more (headers of the response it got),
and real peers take liberties: FreeSWITCH writes ``SIP/2.0 486 486`` (the code as the
reason), others omit the reason phrase or the final CRLF. The parser accepts those and
rejects what cannot be a sipfrag with :class:`SipFragError` (a
:class:`~w3sipagent.errors.SipParseError`), naming the defect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from w3sipagent.errors import SipParseError
from w3sipagent.sip.message import REASON_PHRASES

__all__ = [
    "MAX_SIPFRAG_SIZE",
    "SipFrag",
    "SipFragError",
    "parse_sipfrag",
    "status_sipfrag",
]

#: Largest sipfrag body accepted (bytes).
MAX_SIPFRAG_SIZE = 16384

_STATUS_RE = re.compile(r"(SIP/\d+\.\d+) ([1-6]\d\d)(?: (.*))?", re.IGNORECASE)
_REQUEST_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP/\d+\.\d+)", re.IGNORECASE)
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


class SipFragError(SipParseError):
    """A message/sipfrag body is malformed."""


@dataclass(frozen=True, slots=True)
class SipFrag:
    """A parsed sipfrag: a status line or a request line (or none), headers and body.

    For a REFER NOTIFY, ``status`` is the progress of the referred request
    (100 / 180 / 200 / 486...); ``reason`` is the phrase as received (may be empty).
    """

    status: int | None = None
    reason: str = ""
    version: str = "SIP/2.0"
    method: str | None = None
    uri: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def is_final(self) -> bool:
        """True for a final status (>= 200)."""
        return self.status is not None and self.status >= 200

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), or None."""
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None


def parse_sipfrag(data: bytes) -> SipFrag:
    """Parse a message/sipfrag body.

    Accepts a status line without reason phrase, a missing final CRLF, bare LF line
    ends and folded header lines. Raises :class:`SipFragError` for an empty or
    oversized body, text that is not UTF-8, a start line that is neither a status
    nor a request line, or a header line without a colon.
    """
    if len(data) > MAX_SIPFRAG_SIZE:
        raise SipFragError(f"sipfrag larger than {MAX_SIPFRAG_SIZE} bytes")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipFragError("sipfrag is not UTF-8 text") from None
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise SipFragError("empty sipfrag")
    status: int | None = None
    reason = ""
    version = "SIP/2.0"
    method: str | None = None
    uri: str | None = None
    if lines[0][:1] in (" ", "\t"):
        raise SipFragError("sipfrag starts with a continuation line")
    first = lines[0].rstrip()
    m = _STATUS_RE.fullmatch(first)
    r = None if m is not None else _REQUEST_RE.fullmatch(first)
    if m is not None:
        version = m.group(1).upper()
        status = int(m.group(2))
        reason = (m.group(3) or "").strip()
        lines = lines[1:]
    elif r is not None:
        method, uri, version = r.group(1), r.group(2), r.group(3).upper()
        lines = lines[1:]
    elif ":" not in first or first.upper().startswith("SIP/"):
        raise SipFragError(f"sipfrag start line is malformed: {first[:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not headers:
                raise SipFragError("sipfrag starts with a continuation line")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _HEADER_NAME_RE.fullmatch(name):
            raise SipFragError(f"sipfrag header line is malformed: {line[:60]!r}")
        headers.append((name, value.strip()))
    return SipFrag(status, reason, version, method, uri, tuple(headers), body)


def status_sipfrag(status: int, reason: str | None = None) -> bytes:
    """The body of a REFER NOTIFY for ``status``: ``SIP/2.0 180 Ringing\\r\\n``."""
    if not 100 <= status <= 699:
        raise SipFragError(f"sipfrag status {status} is not a SIP status code")
    phrase = REASON_PHRASES.get(status, "") if reason is None else reason
    if "\r" in phrase or "\n" in phrase:
        raise SipFragError("sipfrag reason phrase contains a line break")
    return f"SIP/2.0 {status} {phrase}".rstrip().encode("utf-8") + b"\r\n"
