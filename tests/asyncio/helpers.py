"""Helpers for the user agent tests: short-timer configs, a raw-socket UAC, RTP tools."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import struct
from collections.abc import Iterable

from tests.ports import process_slot
from w3sipagent.asyncio.useragent import UserAgentConfig
from w3sipagent.sip.message import SipRequest, SipResponse, parse_message

_NEXT_RANGE = [0]


def rtp_range(size: int = 40) -> tuple[int, int]:
    """A port range of its own for one user agent (spread by :func:`tests.ports.process_slot`:
    parallel runs and xdist workers).

    23000-26999, below the ephemeral range (see tests/ports.py).
    """
    base = 23000 + process_slot() * 400
    start = base + (_NEXT_RANGE[0] * size) % 400
    _NEXT_RANGE[0] += 1
    return start, start + size - 1


def fast_config(**overrides: object) -> UserAgentConfig:
    """A config with short timers, port 0 and a private RTP range on 127.0.0.1."""
    lo, hi = rtp_range()
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "t1": 0.02,
        "t2": 0.08,
        "t4": 0.1,
        "timer_d": 0.1,
        "rtp_port_min": lo,
        "rtp_port_max": hi,
        "drain_timeout": 1.0,
        "bye_timeout": 0.5,
        "dial_timeout": 3.0,
    }
    values.update(overrides)
    return UserAgentConfig(**values)  # type: ignore[arg-type]


SDP_TEMPLATE = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 {ip}\r\n"
    "t=0 0\r\n"
    "m=audio {port} {proto} {pts}\r\n"
    "{rtpmaps}"
    "a={direction}\r\n"
)

_RTPMAP = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 101: "telephone-event/8000"}


def sdp(
    port: int,
    *,
    ip: str = "127.0.0.1",
    pts: Iterable[int] = (0, 8, 101),
    direction: str = "sendrecv",
    proto: str = "RTP/AVP",
    version: int = 1,
) -> bytes:
    """A small SDP offer."""
    pts = list(pts)
    rtpmaps = "".join(f"a=rtpmap:{pt} {_RTPMAP[pt]}\r\n" for pt in pts if pt in _RTPMAP)
    text = SDP_TEMPLATE.format(
        ip=ip,
        port=port,
        proto=proto,
        pts=" ".join(map(str, pts)),
        rtpmaps=rtpmaps,
        direction=direction,
    ).replace("o=- 1 1", f"o=- 1 {version}")
    return text.encode()


class RawUac:
    """A UDP socket speaking SIP by hand, for exact-bytes tests."""

    def __init__(self, ua_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.ua = ("127.0.0.1", ua_port)
        self.n = 0
        self.call_id = f"raw-{os.getpid()}-{id(self)}"
        self.from_tag = "fromtag1"
        self.cseq = 1

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendto(data, self.ua)

    async def recv(self, timeout: float = 2.0) -> SipRequest | SipResponse:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)
        return parse_message(data)

    async def recv_response(
        self, timeout: float = 2.0, *, skip_100: bool = True, any_call: bool = False
    ) -> SipResponse:
        """The next response of the current Call-ID (retransmissions of others skipped)."""
        while True:
            msg = await self.recv(timeout)
            if not isinstance(msg, SipResponse) or (skip_100 and msg.status == 100):
                continue
            if any_call or msg.call_id == self.call_id:
                return msg

    async def recv_request(self, timeout: float = 2.0) -> SipRequest:
        while True:
            msg = await self.recv(timeout)
            if isinstance(msg, SipRequest):
                return msg

    def request(
        self,
        method: str,
        *,
        uri: str | None = None,
        body: bytes = b"",
        content_type: str | None = "application/sdp",
        to_tag: str | None = None,
        cseq: int | None = None,
        branch: str | None = None,
        extra: Iterable[str] = (),
        call_id: str | None = None,
    ) -> bytes:
        self.n += 1
        uri = uri or f"sip:support@acme.example;fs_path=sip:127.0.0.1:{self.ua[1]}"
        to = "<sip:support@acme.example>" + (f";tag={to_tag}" if to_tag else "")
        seq = cseq if cseq is not None else self.cseq
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch or f'z9hG4bKraw{self.n}x{id(self)}'};rport",
            "Max-Forwards: 70",
            f'From: "Alice" <sip:alice@127.0.0.1>;tag={self.from_tag}',
            f"To: {to}",
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {seq} {'INVITE' if method == 'ACK' and cseq is None else method}",
            f"Contact: <sip:alice@127.0.0.1:{self.port}>",
            *extra,
        ]
        if body and content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def ack(self, response: SipResponse, body: bytes = b"", cseq: int | None = None) -> bytes:
        """An ACK for a 2xx (new branch) naming the To tag of ``response``."""
        return self.request(
            "ACK",
            uri=str(response.contact[0].uri) if response.contact else None,
            body=body,
            to_tag=response.to.tag,
            cseq=cseq if cseq is not None else response.cseq.seq,
        )


class RtpPeer(asyncio.DatagramProtocol):
    """A UDP socket receiving RTP (and able to send PCMU packets)."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.got = asyncio.Event()

    @classmethod
    async def open(cls) -> RtpPeer:
        loop = asyncio.get_running_loop()
        peer = cls()
        await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
        return peer

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 1 and 192 <= data[1] <= 223:
            return  # RTCP
        self.packets.append(data)
        self.got.set()

    def send_rtp(self, addr: tuple[str, int], payload: bytes, seq: int, pt: int = 0) -> None:
        assert self.transport is not None
        header = struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0x1234)
        self.transport.sendto(header + payload, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def tone_pcmu(n: int, freq: float = 440.0, amplitude: float = 8000.0) -> list[bytes]:
    """``n`` 20 ms PCMU frames of a sine tone."""
    from w3sipagent.codecs import ulaw_encode

    out = []
    for k in range(n):
        samples = [
            int(amplitude * math.sin(2 * math.pi * freq * (k * 160 + i) / 8000)) for i in range(160)
        ]
        out.append(ulaw_encode(struct.pack(f"<{len(samples)}h", *samples)))
    return out


def pcm_rms(pcm: bytes) -> float:
    """RMS of s16le PCM."""
    if not pcm:
        return 0.0
    n = len(pcm) // 2
    samples = struct.unpack(f"<{n}h", pcm[: n * 2])
    return math.sqrt(sum(s * s for s in samples) / n)


def payload_rms_pcmu(payloads: Iterable[bytes]) -> float:
    """RMS of the audio carried by PCMU payloads."""
    from w3sipagent.codecs import ulaw_decode

    return pcm_rms(b"".join(ulaw_decode(p) for p in payloads))
