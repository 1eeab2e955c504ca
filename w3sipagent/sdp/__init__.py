"""SDP (RFC 8866): parse and serialize; offer/answer (RFC 3264). Sans-IO.

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

The package: :mod:`.model` (the typed body and its serialization), :mod:`.parse`,
:mod:`.offer` (our offer, codec preferences, ``o=`` versions) and :mod:`.answer`
(answering an offer, reading an answer). Every name is importable from here.
"""

from __future__ import annotations

from w3sipagent.sdp.answer import (
    AnswerResult,
    NegotiatedStream,
    NegotiationFailure,
    negotiate_answer,
    process_answer,
)
from w3sipagent.sdp.model import (
    DEFAULT_FMTP,
    DIRECTIONS,
    MAX_MEDIA,
    MAX_SDP_LINES,
    MAX_SDP_SIZE,
    PREFERRED_DYNAMIC_PT,
    RTP_PROTOS,
    SRTP_PROTOS,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    Rtcp,
    SessionDescription,
    Timing,
)
from w3sipagent.sdp.offer import (
    assign_version,
    bump_version,
    create_offer,
    preference_list,
)
from w3sipagent.sdp.parse import (
    parse_sdp,
)

__all__ = [
    "DEFAULT_FMTP",
    "DIRECTIONS",
    "MAX_MEDIA",
    "MAX_SDP_LINES",
    "MAX_SDP_SIZE",
    "PREFERRED_DYNAMIC_PT",
    "RTP_PROTOS",
    "SRTP_PROTOS",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "AnswerResult",
    "Codec",
    "Connection",
    "Direction",
    "MediaDescription",
    "NegotiatedStream",
    "NegotiationFailure",
    "Origin",
    "Rtcp",
    "SessionDescription",
    "Timing",
    "assign_version",
    "bump_version",
    "create_offer",
    "negotiate_answer",
    "parse_sdp",
    "preference_list",
    "process_answer",
]
