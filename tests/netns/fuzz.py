"""A seeded mutation fuzzer for SIP, SDP and RTP: the messages, not the sending.

Every message is a pure function of ``(seed, index)``: :func:`sip_message` and
:func:`rtp_packet` build their own :class:`random.Random` from both, so message 123,456 of a
run can be rebuilt alone (``python -m tests.netns.fuzz --seed S --sip 123456``) when the
agent misbehaves on it. A message is a well-formed seed (OPTIONS, INVITE with an SDP
offer, REGISTER, BYE, CANCEL, ACK, MESSAGE, INFO, UPDATE, SUBSCRIBE, NOTIFY, REFER, PRACK,
a stray response) with one to three mutations applied; each mutation has a name so a run
can count what it sent.

SIP mutations: bit flips, byte overwrites, truncation, header duplication (up to hundreds)
and removal, huge values (numbers past 2**64, values of tens of kilobytes), invalid UTF-8,
NUL bytes, bad Content-Length (negative, too long, too short, not a number, twice), bad
start lines, bare LF / CR line ends, folded lines, spliced messages. SDP mutations (body
then re-framed, so it reaches the SDP parser): lines removed, duplicated and reordered,
bad ``m=`` ports and formats, bad ``c=`` addresses, hundreds of ``m=`` lines, huge
``a=fmtp``, odd ``ptime``/``rtpmap`` clock rates, a wrong version.

RTP mutations: version, padding (count 0 or past the packet), extension (length past the
packet), CSRC count 15 in a short packet, payload types outside the session (RTCP range
too), sequence and timestamp jumps, SSRC changes, truncation below the fixed header,
over-long payloads (1,500 to 65,000 bytes), DTMF events with bad lengths, and random bytes.
"""

from __future__ import annotations

import argparse
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

CRLF = b"\r\n"
BUILD_LIMIT = 200_000
"""Bytes a message may reach while it is being mutated: past it, no further mutation (else
a duplicated 30 kB header duplicated again makes gigabytes)."""
_UTF8_BAD = (b"\xff", b"\xfe\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")
_HUGE = (
    b"18446744073709551616",
    b"99999999999999999999999999999999",
    b"-1",
    b"4294967296",
    b"2147483648",
    b"0",
    b"1e309",
    b"NaN",
)
METHODS = (
    "OPTIONS",
    "INVITE",
    "REGISTER",
    "BYE",
    "CANCEL",
    "ACK",
    "MESSAGE",
    "INFO",
    "UPDATE",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "PRACK",
    "RESPONSE",
)
# how often each seed message is picked (INVITE most: it reaches the most code)
_WEIGHTS = (3, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)


@dataclass(frozen=True)
class Target:
    """Where the messages go and what they name as their sender (replies come back there)."""

    agent_host: str
    agent_port: int
    local_port: int
    transport: str = "UDP"
    media_port: int = 9  # the SDP offers' audio port (discard: nothing listens in a namespace)


def sdp_offer(r: random.Random, media_port: int) -> bytes:
    sid = r.randrange(1, 2**31)
    lines = [
        "v=0",
        f"o=fuzz {sid} {sid} IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {media_port} RTP/AVP 0 8 9 111 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 useinbandfec=1",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def seed_message(r: random.Random, t: Target, method: str) -> tuple[list[bytes], bytes]:
    """A well-formed message: its head lines (start line first) and its body."""
    tag = f"{r.getrandbits(48):x}"
    cid = f"fz{r.getrandbits(64):x}@fuzz"
    branch = f"z9hG4bKfz{r.getrandbits(64):x}"
    cseq = r.randrange(1, 1000)
    user = r.choice(("support", "sales", "fuzz", "1000", "agent"))
    host = f"{t.agent_host}:{t.agent_port}"
    via = f"Via: SIP/2.0/{t.transport} 127.0.0.1:{t.local_port};branch={branch};rport"
    body = b""
    if method == "RESPONSE":
        code = r.choice((100, 180, 200, 401, 404, 486, 500))
        head = [
            f"SIP/2.0 {code} Fuzz",
            f"Via: SIP/2.0/{t.transport} {host};branch={branch}",
            f"From: <sip:{user}@{host}>;tag={tag}",
            f"To: <sip:fuzz@127.0.0.1>;tag=fz{tag}",
            f"Call-ID: {cid}",
            f"CSeq: {cseq} {r.choice(('INVITE', 'BYE', 'OPTIONS'))}",
        ]
    else:
        cseq_method = "INVITE" if method in ("ACK", "CANCEL") else method
        head = [
            f"{method} sip:{user}@{host} SIP/2.0",
            via,
            "Max-Forwards: 70",
            f'From: "Fuzz" <sip:fuzz@127.0.0.1>;tag={tag}',
            f"To: <sip:{user}@{host}>" + (f";tag=ag{tag}" if method in ("BYE", "INFO") else ""),
            f"Call-ID: {cid}",
            f"CSeq: {cseq} {cseq_method}",
            f"Contact: <sip:fuzz@127.0.0.1:{t.local_port};transport={t.transport.lower()}>",
            "User-Agent: w3sipagent-fuzz",
        ]
        if method in ("INVITE", "UPDATE"):
            head += ["Supported: timer, 100rel", "Session-Expires: 1800", "Allow: INVITE, ACK"]
            body = sdp_offer(r, t.media_port)
            head.append("Content-Type: application/sdp")
        elif method == "REGISTER":
            head += ["Expires: 3600"]
        elif method == "MESSAGE":
            body = b"hello " * r.randrange(1, 20)
            head.append("Content-Type: text/plain")
        elif method == "INFO":
            body = b"Signal=5\r\nDuration=160\r\n"
            head.append("Content-Type: application/dtmf-relay")
        elif method in ("SUBSCRIBE", "NOTIFY"):
            head += ["Event: presence", "Subscription-State: active;expires=60"]
        elif method == "REFER":
            head.append(f"Refer-To: <sip:other@{host}>")
        elif method == "PRACK":
            head.append("RAck: 1 1 INVITE")
    head.append(f"Content-Length: {len(body)}")
    return [h.encode() for h in head], body


def join(head: list[bytes], body: bytes) -> bytes:
    return CRLF.join(head) + CRLF + CRLF + body


def set_length(head: list[bytes], body: bytes) -> list[bytes]:
    """``head`` with its Content-Length telling the truth about ``body``."""
    out = [h for h in head if not h.lower().startswith((b"content-length:", b"l:"))]
    return [*out, b"Content-Length: %d" % len(body)]


# ---------------------------------------------------------------- SIP mutations
# Each takes (r, head, body) and returns (head, body) or, for byte-level ones, the wire bytes.

Mut = Callable[[random.Random, list[bytes], bytes], "tuple[list[bytes], bytes] | bytes"]


def m_bitflip(r: random.Random, head: list[bytes], body: bytes) -> bytes:
    data = bytearray(join(head, body))
    for _ in range(r.choice((1, 1, 2, 4, 16))):
        i = r.randrange(len(data))
        data[i] ^= 1 << r.randrange(8)
    return bytes(data)


def m_bytes(r: random.Random, head: list[bytes], body: bytes) -> bytes:
    data = bytearray(join(head, body))
    for _ in range(r.randrange(1, 8)):
        data[r.randrange(len(data))] = r.choice((0, 0xFF, 0x3A, 0x20, 0x0D, 0x0A, 0x3B, 0x3C, 0x2C))
    return bytes(data)


def m_truncate(r: random.Random, head: list[bytes], body: bytes) -> bytes:
    data = join(head, body)
    return data[: r.randrange(0, len(data))]


def m_dup_header(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    i = r.randrange(1, len(head))
    copies = min(r.choice((1, 2, 10, 300)), max(1, BUILD_LIMIT // (len(head[i]) + 2)))
    return head[:i] + [head[i]] * copies + head[i:], body


def m_remove_header(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    i = r.randrange(1, len(head))
    return head[:i] + head[i + 1 :], body


def m_huge_value(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    i = r.randrange(1, len(head))
    name = head[i].split(b":", 1)[0]
    if r.random() < 0.5:
        value = r.choice(_HUGE)
        if name.lower() == b"cseq":
            value += b" " + (head[i].split()[-1] if len(head[i].split()) > 2 else b"INVITE")
    else:
        value = r.choice((b"a", b"9", b"<sip:x@y>;p=", b"%00", b" ")) * r.choice((300, 4000, 30000))
    return [*head[:i], name + b": " + value, *head[i + 1 :]], body


def m_utf8(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    idx = [k for k, h in enumerate(head) if h.lower().startswith((b"call-id", b"from", b"to:"))]
    i = r.choice(idx) if idx and r.random() < 0.7 else r.randrange(len(head))
    line = head[i]
    at = r.randrange(len(line) + 1)
    bad = b"".join(r.choice(_UTF8_BAD) for _ in range(r.randrange(1, 4)))
    return [*head[:i], line[:at] + bad + line[at:], *head[i + 1 :]], body


def m_nul(r: random.Random, head: list[bytes], body: bytes) -> bytes:
    data = join(head, body)
    at = r.randrange(len(data) + 1)
    return data[:at] + b"\x00" * r.choice((1, 3, 100)) + data[at:]


def m_content_length(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    rest = [h for h in head if not h.lower().startswith((b"content-length:", b"l:"))]
    n = len(body)
    value = r.choice(
        (b"-1", b"%d" % (n + r.randrange(1, 5000)), b"%d" % max(0, n - r.randrange(1, 50)),
         b"abc", b"", b"99999999999999999999", b"1.5", b" %d " % n, b"0x10")
    )  # fmt: skip
    lines = [b"Content-Length: " + value]
    if r.random() < 0.25:
        lines.append(b"l: %d" % (n + 1))  # a second, different one
    if r.random() < 0.15:
        lines = []  # none at all
    return rest + lines, body


def m_start_line(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    first = head[0]
    choice = r.randrange(7)
    if choice == 0:
        first = first.replace(b"SIP/2.0", r.choice((b"SIP/3.0", b"SIP/2", b"sip/2.0", b"HTTP/1.1")))
    elif choice == 1:
        first = b"SIP/2.0 %s Weird" % r.choice((b"0", b"99", b"999", b"1000", b"-200", b"2OO"))
    elif choice == 2:
        parts = first.split(b" ")
        parts[0] = r.choice((b"FUZZ", b"INV ITE", b"", b"invite", b"\xff\xfe", b"A" * 500))
        first = b" ".join(parts)
    elif choice == 3:
        parts = first.split(b" ")
        if len(parts) > 2:
            parts[1] = r.choice((b"sip:", b"<sip:a@b>", b"sip:@", b"tel:+1", b"x" * 2000,
                                 b"sip:a@[::1", b"sip:a@b:99999", b"sips:a@b;maddr=\xff"))  # fmt: skip
        first = b" ".join(parts)
    elif choice == 4:
        first = first.replace(b" ", b"\t")
    elif choice == 5:
        first = b""
    else:
        first = first + b" extra tokens"
    return [first, *head[1:]], body


def m_line_ends(r: random.Random, head: list[bytes], body: bytes) -> bytes:
    data = join(head, body)
    return data.replace(CRLF, r.choice((b"\n", b"\r", b"\r\r\n", b"\n\r")), r.choice((1, 3, -1)))


def m_fold(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    i = r.randrange(1, len(head))
    line = head[i]
    at = r.randrange(len(line) + 1)
    return [
        *head[:i],
        line[:at] + CRLF + r.choice((b" ", b"\t", b"")) + line[at:],
        *head[i + 1 :],
    ], body


def m_many_headers(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    extra = [b"X-F%d: %d" % (k, k) for k in range(r.choice((50, 500, 3000)))]
    return head[:1] + extra + head[1:], body


def m_splice(r: random.Random, head: list[bytes], body: bytes) -> bytes:
    data = join(head, body)
    a, b = sorted(r.randrange(len(data) + 1) for _ in range(2))
    return data[:b] + data[a:b] * r.randrange(1, 4) + data[b:]


def m_param(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    idx = [
        k for k, h in enumerate(head) if h.lower().startswith((b"via", b"from", b"to:", b"contact"))
    ]
    i = r.choice(idx)
    junk = r.choice((b";branch=", b";tag=;tag=x", b";rport=99999", b";received=::::", b";;;;",
                     b";maddr=" + b"9" * 300, b";=", b";expires=-5", b">", b"<", b'"'))  # fmt: skip
    return [*head[:i], head[i] + junk, *head[i + 1 :]], body


# ---------------------------------------------------------------- SDP mutations


def sdp_mutate(r: random.Random, sdp: bytes) -> bytes:
    lines = sdp.split(CRLF)[:-1] if sdp.endswith(CRLF) else sdp.split(CRLF)
    if not lines:
        lines = [b"v=0"]
    kind = r.randrange(11)
    if kind == 0:
        del lines[r.randrange(len(lines))]
    elif kind == 1:
        i = r.randrange(len(lines))
        lines.insert(i, lines[i])
    elif kind == 2:
        r.shuffle(lines)
    elif kind == 3:
        lines = [
            (b"m=audio %s RTP/AVP %s" % (r.choice((b"0", b"-1", b"65536", b"99999999", b"x", b"9/2")),
                                         r.choice((b"", b"0", b"200", b"-1", b"abc", b"0 " * 300))))
            if ln.startswith(b"m=") else ln for ln in lines
        ]  # fmt: skip
    elif kind == 4:
        addr = r.choice((b"IN IP4 999.1.1.1", b"IN IP6 ::1", b"IN IP4", b"IN IP4 0.0.0.0",
                         b"IN IP4 224.2.1.1/127/3", b"XX IP4 1.2.3.4", b"IN IP4 \xff"))  # fmt: skip
        lines = [b"c=" + addr if ln.startswith(b"c=") else ln for ln in lines]
    elif kind == 5:
        block = [ln for ln in lines if ln.startswith((b"m=", b"a="))]
        lines += block * r.choice((2, 50, 300))
    elif kind == 6:
        lines.append(b"a=fmtp:111 " + b"x=1;" * r.choice((100, 5000)))
    elif kind == 7:
        lines.append(b"a=ptime:" + r.choice((b"0", b"-20", b"100000", b"abc", b"1")))
        lines.append(b"a=maxptime:" + r.choice((b"0", b"9999999")))
    elif kind == 8:
        lines.append(
            b"a=rtpmap:0 PCMU/" + r.choice((b"0", b"-8000", b"99999999999", b"", b"8000/999"))
        )
        lines.append(b"a=rtpmap:" + r.choice((b"128", b"-1", b"x")) + b" foo/8000")
    elif kind == 9:
        lines[0] = r.choice((b"v=1", b"v=", b"x=0", b""))
    else:
        lines.append(r.choice((b"a=sendonly", b"a=inactive", b"a=recvonly", b"b=AS:99999999999",
                               b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:xxxx", b"a=rtcp:99999",
                               b"a=rtcp-mux", b"m=video 5000 RTP/AVP 96", b"m=audio 5000 UDP/TLS/RTP/SAVPF 111")))  # fmt: skip
    return CRLF.join(lines) + CRLF


def m_sdp(r: random.Random, head: list[bytes], body: bytes) -> tuple[list[bytes], bytes]:
    if not body:
        body = sdp_offer(r, 9)
        head = [*head, b"Content-Type: application/sdp"]
    for _ in range(r.randrange(1, 4)):
        if len(body) > BUILD_LIMIT // 4:
            break
        body = sdp_mutate(r, body)
    return set_length(head, body), body


SIP_MUTATIONS: dict[str, Mut] = {
    "bitflip": m_bitflip,
    "bytes": m_bytes,
    "truncate": m_truncate,
    "dup_header": m_dup_header,
    "remove_header": m_remove_header,
    "huge_value": m_huge_value,
    "invalid_utf8": m_utf8,
    "nul": m_nul,
    "content_length": m_content_length,
    "start_line": m_start_line,
    "line_ends": m_line_ends,
    "fold": m_fold,
    "many_headers": m_many_headers,
    "splice": m_splice,
    "param": m_param,
    "sdp": m_sdp,
}
_SIP_NAMES = tuple(SIP_MUTATIONS)
_SIP_WEIGHTS = (3, 2, 2, 2, 2, 2, 2, 1, 2, 2, 1, 1, 1, 1, 2, 4)


def sip_message(
    seed: int, index: int, target: Target, max_size: int = 65000
) -> tuple[bytes, list[str]]:
    """Message ``index`` of run ``seed``: its bytes and the names of the mutations applied.

    ``max_size`` bounds the result (a UDP datagram: 65,000; over TCP larger is allowed)."""
    r = random.Random(seed * 1_000_003 + index)
    method = r.choices(METHODS, _WEIGHTS)[0]
    head, body = seed_message(r, target, method)
    names: list[str] = []
    wire: bytes | None = None
    for _ in range(r.choice((1, 1, 1, 2, 3))):
        if sum(map(len, head)) + len(body) > BUILD_LIMIT:
            break
        name = r.choices(_SIP_NAMES, _SIP_WEIGHTS)[0]
        names.append(name)
        out = SIP_MUTATIONS[name](r, head, body)
        if isinstance(out, bytes):
            wire = out  # byte-level: the message is no longer lines; stop here
            break
        head, body = out
    if wire is None:
        wire = join(head, body)
    return wire[:max_size], names


# ---------------------------------------------------------------- RTP


@dataclass
class RtpStream:
    """The state of the valid stream the fuzzed packets are mixed into."""

    ssrc: int
    seq: int = 0
    ts: int = 0
    pt: int = 0

    def valid(self, payload: bytes, samples: int = 160) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + samples) & 0xFFFFFFFF
        return struct.pack("!BBHII", 0x80, self.pt, self.seq, self.ts, self.ssrc) + payload


def _tone(n: int, k: int) -> bytes:
    """``n`` PCMU bytes of a loud square-ish wave (the echo is easy to see)."""
    return bytes((0x8F if (i + k) % 16 < 8 else 0x0F) for i in range(n))


RTP_MUTATIONS = (
    "version",
    "padding",
    "extension",
    "csrc",
    "payload_type",
    "seq_jump",
    "ts_jump",
    "ssrc",
    "short",
    "oversize",
    "dtmf",
    "random",
    "bitflip",
    "rtcp",
)
_RTP_WEIGHTS = (1, 2, 2, 2, 2, 1, 1, 1, 2, 2, 1, 1, 2, 1)


def rtp_packet(seed: int, index: int, stream: RtpStream) -> tuple[bytes, str]:
    """Fuzzed RTP packet ``index`` of run ``seed`` (one mutation of the next packet of
    ``stream``; the stream's state moves as a sender's would). Returns (packet, mutation);
    a packet named ``rtcp`` is meant for the RTCP port (RTP + 1)."""
    r = random.Random(seed * 2_000_003 + index)
    name = r.choices(RTP_MUTATIONS, _RTP_WEIGHTS)[0]
    pkt = bytearray(stream.valid(_tone(160, index)))
    if name == "version":
        pkt[0] = (pkt[0] & 0x3F) | (r.choice((0, 1, 3)) << 6)
    elif name == "padding":
        pkt[0] |= 0x20
        pkt[-1] = r.choice((0, 255, len(pkt), len(pkt) - 11, 1))
    elif name == "extension":
        pkt[0] |= 0x10
        ext = struct.pack("!HH", r.choice((0xBEDE, 0x1000, 0)), r.choice((0, 1, 0xFFFF, 40)))
        pkt[12:12] = ext + bytes(4 * r.choice((0, 1, 3)))
    elif name == "csrc":
        pkt[0] = (pkt[0] & 0xF0) | r.choice((1, 15))
        if r.random() < 0.5:
            del pkt[12 + 4 * r.randrange(0, 3) :]
    elif name == "payload_type":
        pkt[1] = (pkt[1] & 0x80) | r.choice((8, 9, 13, 72, 73, 76, 96, 101, 111, 127))
    elif name == "seq_jump":
        stream.seq = (stream.seq + r.choice((1000, 30000, 65535, 32768))) & 0xFFFF
        struct.pack_into("!H", pkt, 2, stream.seq)
    elif name == "ts_jump":
        struct.pack_into("!I", pkt, 4, r.getrandbits(32))
    elif name == "ssrc":
        struct.pack_into("!I", pkt, 8, r.getrandbits(32))
    elif name == "short":
        del pkt[r.randrange(0, 12) :]
    elif name == "oversize":
        pkt = pkt[:12] + _tone(r.choice((1500, 8000, 30000, 65000)), index)
    elif name == "dtmf":
        pkt[1] = 101 | (r.random() < 0.3) * 0x80
        pkt = pkt[:12] + bytes(r.getrandbits(8) for _ in range(r.choice((0, 1, 3, 4, 5, 400))))
    elif name == "random":
        pkt = bytearray(r.getrandbits(8) for _ in range(r.choice((1, 12, 40, 172, 1400))))
    elif name == "bitflip":
        for _ in range(r.choice((1, 2, 8))):
            i = r.randrange(len(pkt))
            pkt[i] ^= 1 << r.randrange(8)
    else:  # RTCP: an SR/RR/BYE/APP header with lengths that lie
        kind = r.choice((200, 201, 203, 204, 206))
        count = r.randrange(32)
        body = bytes(r.getrandbits(8) for _ in range(r.choice((0, 4, 20, 100))))
        pkt = bytearray(struct.pack("!BBH", 0x80 | count, kind, r.choice((0, 1, 6, 0xFFFF)))) + body
    return bytes(pkt), name


def main() -> None:
    parser = argparse.ArgumentParser(description="print one fuzzed message of a run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sip", type=int, help="the index of a SIP message")
    parser.add_argument("--rtp", type=int, help="the index of an RTP packet (fresh stream)")
    parser.add_argument("--agent-port", type=int, default=5090)
    parser.add_argument("--local-port", type=int, default=40000)
    args = parser.parse_args()
    if args.sip is not None:
        wire, names = sip_message(
            args.seed, args.sip, Target("127.0.0.1", args.agent_port, args.local_port)
        )
        print(names)
        print(repr(wire))
    if args.rtp is not None:
        pkt, name = rtp_packet(args.seed, args.rtp, RtpStream(ssrc=0x1234))
        print(name, pkt.hex())


if __name__ == "__main__":
    main()
