"""SIP micro-benchmark: microseconds to parse and to serialize a real INVITE with SDP.

Run::

    .venv/bin/python benchmarks/sip_bench.py [--loops 5000] [--repeat 9] [--json]

"parse" is :func:`~w3sipagent.sip.parse_message` on the datagram: start line, every
header split, and the typed values admission needs (top Via, From, To, Call-ID, CSeq,
Max-Forwards, Content-Length, Content-Type, Require); the SDP body is not parsed.
"parse + Request-URI" adds the lazy Request-URI parse (tenant lookup needs it).
"serialize" is ``bytes(msg)`` of the parsed message. Each figure is the median of
``--repeat`` runs of ``--loops`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.sip import SipRequest, parse_message

ROOT = Path(__file__).resolve().parent.parent
#: The SIPp INVITE answered by FreeSWITCH 1.6.12 (Wireshark sample sip-rtp-opus-hybrid).
INVITE_FILE = "freeswitch/wireshark-sip-rtp-opus-hybrid_01_INVITE_from_sipp.sip"
#: An INVITE sent by FreeSWITCH itself (Kazoo), larger SDP.
KAZOO_FILE = "freeswitch/kazoo-freeswitch_INVITE_G7221_video.sip"


def _vectors() -> Path | None:
    env = os.environ.get("W3SIPAGENT_VECTORS")
    for c in ([Path(env)] if env else []) + [
        ROOT / "tests" / "vectors",
        ROOT.parent / "shared" / "vectors",
    ]:
        if c.is_dir():
            return c
    return None


def _median_us(fn: Callable[[], object], loops: int, repeat: int) -> float:
    runs = timeit.repeat(fn, number=loops, repeat=repeat)
    return statistics.median(runs) / loops * 1e6


def _operations(data: bytes, msg: SipRequest) -> list[tuple[str, Callable[[], object]]]:
    def parse() -> object:
        return parse_message(data)

    def parse_ruri() -> object:
        m = parse_message(data)
        assert isinstance(m, SipRequest)
        return m.request_uri

    def serialize() -> object:
        return bytes(msg)

    return [("parse", parse), ("parse + Request-URI", parse_ruri), ("serialize", serialize)]


def run(loops: int = 5000, repeat: int = 9) -> list[dict[str, object]]:
    """Measure every vector found; one row per (message, operation)."""
    vec = _vectors()
    if vec is None:
        raise SystemExit("test vectors not found: set W3SIPAGENT_VECTORS=/path/to/vectors")
    rows: list[dict[str, object]] = []
    for name in (INVITE_FILE, KAZOO_FILE):
        data = (vec / name).read_bytes()
        msg = parse_message(data)
        assert isinstance(msg, SipRequest)
        label = Path(name).name
        ops = _operations(data, msg)
        for op, fn in ops:
            rows.append(
                {"message": label, "bytes": len(data), "operation": op,
                 "median_us": round(_median_us(fn, loops, repeat), 2)}
            )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the table (or JSON with ``--json``)."""
    ap = argparse.ArgumentParser(prog="benchmarks/sip_bench.py", description=__doc__)
    ap.add_argument("--loops", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args(argv)
    rows = run(args.loops, args.repeat)
    if not args.json:
        print(f"{'message':58} {'operation':22} {'µs (median)':>12}")
        for r in rows:
            print(f"{r['message']!s:58} {r['operation']!s:22} {r['median_us']:>12}")
        print()
    print(
        json.dumps(
            {"benchmark": "sip", "loops": args.loops, "repeat": args.repeat, "results": rows}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
