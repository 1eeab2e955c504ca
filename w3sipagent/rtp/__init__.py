"""RTP, RTCP, jitter buffer, stream statistics and RFC 4733 DTMF (sans-IO).

Nothing here imports asyncio, socket or time; the asyncio endpoint lives in
:mod:`w3sipagent.asyncio.media`.
"""

from __future__ import annotations

from w3sipagent.rtp.dtmf import DtmfPacket, DtmfReceived, DtmfReceiver, DtmfSender, TelephoneEvent
from w3sipagent.rtp.jitter import Frame, JitterBuffer
from w3sipagent.rtp.packet import RtpPacket, is_rtcp, seq_diff, ts_diff
from w3sipagent.rtp.rtcp import RtcpSession, parse_rtcp
from w3sipagent.rtp.session import RtpSession
from w3sipagent.rtp.stats import ReceiverStatistics, StreamStats

__all__ = [
    "DtmfPacket",
    "DtmfReceived",
    "DtmfReceiver",
    "DtmfSender",
    "Frame",
    "JitterBuffer",
    "ReceiverStatistics",
    "RtcpSession",
    "RtpPacket",
    "RtpSession",
    "StreamStats",
    "TelephoneEvent",
    "is_rtcp",
    "parse_rtcp",
    "seq_diff",
    "ts_diff",
]
