"""Framing SIP messages off transports (RFC 3261 §18.3, RFC 5626 §3.5.1).

- UDP: one message per datagram, :func:`parse_datagram`.
- TCP/TLS: :class:`StreamFramer` cuts a byte stream into messages by Content-Length
  (required on streams), copes with partial reads and several messages per read,
  and surfaces CRLF keep-alives as :class:`KeepAlive` so the transport can answer
  a ping (``\\r\\n\\r\\n``) with a pong (``\\r\\n``).

Buffers are bounded: a header block longer than ``max_message_size`` without its
blank line, or a Content-Length that would exceed it, is an unrecoverable framing
error; the framer then reports the error, sets :attr:`StreamFramer.failed`, drops
its buffer and ignores further input (the transport should close the connection,
RFC 4475 §3.1.2.3 / §3.3.9). A message that is framed correctly but malformed
inside is reported as a :class:`SipParseError` item and framing goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from w3sipagent.errors import SipParseError
from w3sipagent.sip.message import (
    MAX_MESSAGE_SIZE,
    SipMessageError,
    SipRequest,
    SipResponse,
    _parse,
)

__all__ = ["KeepAlive", "StreamFramer", "StreamItem", "parse_datagram"]


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLF keep-alive: ``ping`` (double CRLF, answer with :attr:`PONG`) or a pong."""

    ping: bool
    #: What a transport sends back on a ping.
    PONG: ClassVar[bytes] = b"\r\n"


StreamItem = SipRequest | SipResponse | KeepAlive | SipParseError

_CL_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def parse_datagram(data: bytes) -> SipRequest | SipResponse | KeepAlive:
    """Parse one UDP datagram: a message, or a keep-alive made only of CR/LF bytes.

    Raises :class:`SipParseError` for a malformed message.
    """
    if data and not data.strip(b"\r\n"):
        return KeepAlive(ping=len(data) >= 4)
    return _parse(data)


class StreamFramer:
    """Cuts a TCP/TLS byte stream into SIP messages (Content-Length framing).

    ``feed(data)`` returns the items completed by ``data``, in order: messages,
    :class:`KeepAlive` and :class:`SipParseError` (check :attr:`failed` after an
    error: when set, close the connection).
    """

    def __init__(self, *, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self.failed = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf)

    def _fail(self, err: SipParseError, out: list[StreamItem]) -> None:
        out.append(err)
        self.failed = True
        self._buf.clear()

    def feed(self, data: bytes) -> list[StreamItem]:
        """Add bytes read from the stream; return what they completed."""
        out: list[StreamItem] = []
        if self.failed:
            return out
        buf = self._buf
        buf += data
        while buf:
            first = buf[0]
            if first == 0x0D or first == 0x0A:  # CR / LF between messages
                if buf.startswith(b"\r\n\r\n"):
                    del buf[:4]
                    out.append(KeepAlive(ping=True))
                elif buf.startswith(b"\r\n"):
                    if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)) and len(buf) == 3:
                        break  # "\r\n\r": wait for the last byte of a ping
                    del buf[:2]
                    out.append(KeepAlive(ping=False))
                elif first == 0x0A:
                    del buf[:1]
                elif len(buf) == 1:
                    break  # a lone CR: wait
                else:
                    del buf[:1]  # stray CR
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_message_size:
                    self._fail(SipParseError("header block too large", 513), out)
                break
            head = bytes(buf[:end])
            values = _CL_RE.findall(head)
            if len(values) != 1:
                reason = (
                    "missing Content-Length on a stream transport"
                    if not values
                    else "more than one Content-Length header"
                )
                self._fail(self._with_message(reason, head), out)
                break
            v = values[0].strip()
            if not v.isdigit() or len(v) > 10:
                self._fail(self._with_message("malformed Content-Length", head), out)
                break
            total = end + 4 + int(v)
            if total > self.max_message_size:
                self._fail(self._with_message("message too large", head, 513), out)
                break
            if len(buf) < total:
                break
            chunk = bytes(buf[:total])
            del buf[:total]
            try:
                out.append(_parse(chunk))
            except SipParseError as e:
                out.append(e)
        return out

    @staticmethod
    def _with_message(reason: str, head: bytes, status: int = 400) -> SipParseError:
        """A framing error carrying what could be read of the message (for the reply)."""
        err = SipMessageError(reason, status)
        msg: SipRequest | SipResponse | None
        try:
            msg = _parse(head + b"\r\n\r\n")
        except SipParseError as e:
            msg = e.message
        if isinstance(msg, SipRequest):
            err.message = msg
        return err
