"""RTP on the wire for the SIPp load test: a speech pcap to play, and a receiver-side sniffer.

``write_speech_pcap`` builds the caller's side of a call as a pcap (Ethernet / IPv4 / UDP /
RTP PCMU, 20 ms packets with their send times), which SIPp replays with
``play_pcap_audio``: the caller's lines spoken by espeak-ng (or speech-shaped tones), each
followed by a pause for the agent's answer, repeated until the call's length is covered.

``sniff`` measures what the *caller* receives: it reads every UDP packet sent to SIPp's
media port on an interface (``AF_PACKET``, a classic BPF filter in the kernel, so only those
packets reach Python) with the kernel's receive timestamp, groups them by RTP SSRC (one per
call) and histograms the gap between consecutive packets of each stream. SIPp's own
``rtp_echo`` and pcap play do not look at the timing of what they receive, so this is the
"outbound RTP inter-packet gap seen by the caller" of the load report. Needs root (or
CAP_NET_RAW). Runs as ``python benchmarks/rtp_capture.py --sniff IFACE PORT SECONDS``, in
its own process so that its CPU does not mix with the load tool's.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
GAP_BUCKET_US = 100  # histogram resolution
GAP_BUCKETS = 30_000  # up to 3 s; longer gaps land in the last bucket


def _bpf_udp_dport(port: int) -> list[tuple[int, int, int, int]]:
    """Accept IPv4 UDP to ``port`` (not fragments, not our own copy of an outgoing packet).

    For a ``SOCK_DGRAM`` packet socket the filter sees the packet from its IP header on.
    """
    return [
        (0x20, 0, 0, 0xFFFFF004),  # ld  pkttype (SKF_AD_OFF + SKF_AD_PKTTYPE)
        (0x15, 8, 0, PACKET_OUTGOING),  # jeq OUTGOING -> drop
        (0x30, 0, 0, 9),  # ldb [9]   protocol
        (0x15, 0, 6, 17),  # jeq UDP
        (0x28, 0, 0, 6),  # ldh [6]   flags / fragment offset
        (0x45, 4, 0, 0x1FFF),  # jset fragment -> drop
        (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)  IP header length
        (0x48, 0, 0, 2),  # ldh [x+2] destination port
        (0x15, 0, 1, port),  # jeq port
        (0x06, 0, 0, 0xFFFF),  # ret accept
        (0x06, 0, 0, 0),  # ret drop
    ]


def open_sniffer(iface: str, port: int) -> socket.socket:
    """A packet socket on ``iface`` that receives UDP packets to ``port`` with timestamps."""
    import ctypes

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    prog = _bpf_udp_dport(port)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))
    fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((iface, ETH_P_IP))  # the kernel copied the filter program: buf may go
    return sock


def sniff(
    iface: str, port: int, seconds: float, src_ports: tuple[int, int] = (0, 65535)
) -> dict[str, object]:
    """Capture for ``seconds`` (or until SIGINT); the gap histogram (100 µs buckets) and
    per-stream counts. Packets from a source port outside ``src_ports`` are only counted
    (``foreign``): on a shared machine another program may still be sending to the port
    number SIPp was given."""
    sock = open_sniffer(iface, port)
    sock.settimeout(0.2)
    print("ready", flush=True)
    hist = [0] * GAP_BUCKETS
    last: dict[int, int] = {}
    packets: dict[int, int] = {}
    seq_jumps = foreign = 0
    lo, hi = src_ports
    last_seq: dict[int, int] = {}
    end = time.monotonic() + seconds
    cpu0 = time.process_time()
    ts_struct = struct.Struct("qq")
    while time.monotonic() < end:
        try:
            data, anc, _flags, _addr = sock.recvmsg(2048, 64)
        except TimeoutError:
            continue
        except KeyboardInterrupt:
            break
        if len(data) < 40:
            continue
        ihl = (data[0] & 0x0F) * 4
        if not lo <= int.from_bytes(data[ihl : ihl + 2], "big") <= hi:
            foreign += 1
            continue
        rtp = data[ihl + 8 :]
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        ssrc = int.from_bytes(rtp[8:12], "big")
        seq = int.from_bytes(rtp[2:4], "big")
        t_ns = 0
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                s, ns = ts_struct.unpack(value[:16])
                t_ns = s * 1_000_000_000 + ns
        if not t_ns:
            t_ns = time.time_ns()
        prev = last.get(ssrc)
        if prev is not None:
            hist[min(GAP_BUCKETS - 1, (t_ns - prev) // (GAP_BUCKET_US * 1000))] += 1
            if (seq - last_seq[ssrc]) & 0xFFFF != 1:
                seq_jumps += 1
        last[ssrc] = t_ns
        last_seq[ssrc] = seq
        packets[ssrc] = packets.get(ssrc, 0) + 1
    sock.close()
    return {
        "streams": len(packets),
        "packets": sum(packets.values()),
        "seq_jumps": seq_jumps,
        "foreign": foreign,
        "packets_per_stream": sorted(packets.values()),
        "gap_hist_100us": {str(i): n for i, n in enumerate(hist) if n},
        "cpu_s": round(time.process_time() - cpu0, 2),
    }


def gap_percentiles(hist: dict[str, int], qs: tuple[float, ...]) -> list[float | None]:
    """Percentiles (ms, bucket upper edge) of a ``gap_hist_100us`` histogram."""
    items = sorted((int(k), n) for k, n in hist.items())
    total = sum(n for _, n in items)
    out: list[float | None] = []
    for q in qs:
        if not total:
            out.append(None)
            continue
        rank, seen = q * total, 0
        for k, n in items:
            seen += n
            if seen >= rank:
                out.append((k + 1) * GAP_BUCKET_US / 1000)
                break
    return out


# ------------------------------------------------------------------ the pcap
def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(path: Path, payloads: list[bytes], ptime_ms: int = 20) -> Path:
    """A pcap of one RTP PCMU stream (payload type 0), one packet per payload every
    ``ptime_ms``; addresses and ports are placeholders that SIPp replaces."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    src, dst = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    for n, payload in enumerate(payloads):
        rtp = struct.pack("!BBHII", 0x80, 0, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, 0x5A5A0001)
        rtp += payload
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0, src, dst
        )
        ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
        frame = eth + ip + udp
        t_us = n * ptime_ms * 1000
        out.append(
            struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(frame), len(frame))
        )
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path


def speech_frames(seconds: float, pause: float = 4.0, engine: str = "auto") -> list[bytes]:
    """PCMU frames (160 bytes) covering ``seconds``: the demo caller's lines, each followed
    by ``pause`` seconds of silence (the agent's turn), over and over."""
    import asyncio

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from w3sipagent.codecs import ulaw_encode
    from w3sipagent.demo_assets import caller_utterances

    lines = asyncio.run(caller_utterances(8000, engine=engine))  # type: ignore[arg-type]
    silence = b"\xff" * 160
    frames: list[bytes] = []
    need = int(seconds * 50) + 1
    while len(frames) < need:
        for pcm in lines:
            coded = ulaw_encode(pcm)
            coded += b"\xff" * (-len(coded) % 160)
            frames.extend(coded[i : i + 160] for i in range(0, len(coded), 160))
            frames.extend([silence] * int(pause * 50))
    return frames[:need]


def main(argv: list[str]) -> int:
    """``--sniff IFACE PORT SECONDS [SRC_LO SRC_HI]``: print the capture summary as one
    JSON line."""
    if len(argv) in (4, 6) and argv[0] == "--sniff":
        src = (int(argv[4]), int(argv[5])) if len(argv) == 6 else (0, 65535)
        print(json.dumps(sniff(argv[1], int(argv[2]), float(argv[3]), src)), flush=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
