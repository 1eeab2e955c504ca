"""The asyncio layer: SIP transports, the user agent, calls, RTP media and the shared pacer."""

from __future__ import annotations

from w3sipagent.asyncio.call import Call, Transferer
from w3sipagent.asyncio.call_api import (
    CallEnded,
    CallEvent,
    CallInfo,
    CallLike,
    DtmfReceived,
    FrameSource,
    HangupBy,
    HoldChanged,
    MediaChanged,
    MediaFormat,
    MediaTimeout,
    TransferOutcome,
)
from w3sipagent.asyncio.server import serve
from w3sipagent.asyncio.transport import SipDriver, TransportConfig, TransportSet
from w3sipagent.asyncio.useragent import (
    Accept,
    Admission,
    AdmissionRequest,
    CallRejected,
    DialError,
    DialTimeout,
    Handler,
    Reject,
    Reply,
    UserAgent,
    UserAgentConfig,
)

__all__ = [
    "Accept",
    "Admission",
    "AdmissionRequest",
    "Call",
    "CallEnded",
    "CallEvent",
    "CallInfo",
    "CallLike",
    "CallRejected",
    "DialError",
    "DialTimeout",
    "DtmfReceived",
    "FrameSource",
    "Handler",
    "HangupBy",
    "HoldChanged",
    "MediaChanged",
    "MediaFormat",
    "MediaTimeout",
    "Reject",
    "Reply",
    "SipDriver",
    "TransferOutcome",
    "Transferer",
    "TransportConfig",
    "TransportSet",
    "UserAgent",
    "UserAgentConfig",
    "serve",
]
