"""The exception tree of w3sipagent.

Every error raised on purpose by the library derives from :class:`W3SipError`.
Errors caused by bad input derive from :class:`ValueError` as well, so callers
that only know the standard library can still catch them::

    W3SipError
    ├── SipParseError (ValueError)      malformed SIP message or header value
    │   (carries ``status``: the response code this endpoint owes, e.g. 400, 505, 416)
    ├── SdpError (ValueError)           malformed SDP or no acceptable offer/answer
    ├── AuthError                        digest authentication could not be done
    ├── TransactionError                 a transaction timed out or failed at transport level
    ├── RtpError (ValueError)           malformed RTP / RTCP / telephone-event packet
    ├── CodecError                       codec unavailable or could not code a frame
    ├── PortsExhausted                   no free RTP port in the configured range
    ├── ConfigError (ValueError)        bad configuration: names the file and the key
    └── AIError                          the AI session failed (connect, protocol, closed)

Messages never contain secrets (API keys, SIP passwords).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type-only: errors.py imports nothing at run time
    from w3sipagent.sip.message import SipRequest, SipResponse


class W3SipError(Exception):
    """Base class of every error raised by w3sipagent."""


class SipParseError(W3SipError, ValueError):
    """A SIP message, URI or header value is malformed.

    ``status`` is the SIP response code an endpoint should answer a request with
    (400 by default; 505 for a wrong version, 416 for an unsupported URI scheme...).
    ``reason`` is a short reason phrase naming the defect, safe to put on the wire.
    ``message`` is the request or response as far as it could be read when the defect
    was found after the start line and header lines were split (None otherwise), so a
    user agent can still answer a bad request with ``status``.
    """

    def __init__(
        self,
        reason: str,
        status: int = 400,
        message: SipRequest | SipResponse | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message


class SdpError(W3SipError, ValueError):
    """An SDP body is malformed, or offer/answer found nothing acceptable."""


class AuthError(W3SipError):
    """Digest authentication failed or could not be attempted."""


class TransactionError(W3SipError):
    """A SIP transaction timed out or failed at transport level."""


class RtpError(W3SipError, ValueError):
    """An RTP, RTCP or telephone-event packet is malformed."""


class CodecError(W3SipError):
    """A codec is not available or could not encode / decode a frame."""


class PortsExhausted(W3SipError):
    """No free RTP port is left in the configured range."""


class ConfigError(W3SipError, ValueError):
    """The configuration is invalid. The message names the file, the key and the defect."""


class AIError(W3SipError):
    """The AI session could not be opened or failed."""
