"""Codec micro-benchmark: microseconds per 20 ms frame, per codec and per resampling pair.

Run::

    .venv/bin/python benchmarks/codec_bench.py [--frames 500] [--json]

Each figure is the best of ``--repeat`` runs of ``--frames`` frames (best, not mean: the
machine is shared, and the minimum is the cost of the code itself). Audio is a chirp,
so Opus and G.722 code something speech-like rather than silence.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from w3sipagent.codecs import Decoder, get_codec, ulaw_encode
from w3sipagent.codecs.convert import build_converters
from w3sipagent.codecs.g711 import ulaw_to_alaw
from w3sipagent.codecs.resample import Resampler


def _chirp(rate: int, seconds: float = 2.0) -> bytes:
    n = int(rate * seconds)
    t = np.arange(n) / rate
    x = 6000 * np.sin(2 * math.pi * (200 * t + 700 * t * t))
    data: bytes = np.rint(x).astype("<i2").tobytes()
    return data


def _frames(data: bytes, frame_bytes: int) -> list[bytes]:
    return [data[i : i + frame_bytes] for i in range(0, len(data) - frame_bytes + 1, frame_bytes)]


def _time_per_call(
    fn: Callable[[bytes], object], inputs: list[bytes], frames: int, repeat: int
) -> float:
    """Best-of-``repeat`` microseconds per call of ``fn`` over ``frames`` inputs."""
    seq = [inputs[i % len(inputs)] for i in range(frames)]
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for item in seq:
            fn(item)
        best = min(best, (time.perf_counter() - t0) / frames)
    return best * 1e6


_CODECS: list[tuple[str, str, int, int]] = [
    ("PCMU", "PCMU", 8000, 1),
    ("PCMA", "PCMA", 8000, 1),
    ("G722", "G722", 8000, 1),
    ("opus", "opus", 48000, 2),
    ("L16/16000", "L16", 16000, 1),
]


def bench_codecs(frames: int, repeat: int) -> dict[str, dict[str, float]]:
    """Encode / decode cost per 20 ms frame for each codec, and decode + conceal of a loss."""
    results: dict[str, dict[str, float]] = {}
    for label, name, rate, channels in _CODECS:
        codec = get_codec(name, rate, channels)
        frame_bytes = codec.samples_per_frame * 2
        pcm = _frames(_chirp(codec.sample_rate), frame_bytes)
        enc = codec.encoder()
        payloads = [enc.encode(p) for p in pcm]
        dec = codec.decoder()
        row = {
            "encode": _time_per_call(codec.encoder().encode, pcm, frames, repeat),
            "decode": _time_per_call(dec.decode, payloads, frames, repeat),
        }
        lossy = codec.decoder()

        def decode_then_lose(payload: bytes, d: Decoder = lossy) -> bytes:
            d.decode(payload)
            return d.conceal()  # every other frame lost: always the first-loss path

        row["decode+conceal"] = _time_per_call(decode_then_lose, payloads, frames, repeat)
        results[label] = row
    return results


def bench_resampling(frames: int, repeat: int) -> dict[str, dict[str, float]]:
    """Per 20 ms frame: our polyphase resampler, and PyAV's swresample for comparison."""
    results: dict[str, dict[str, float]] = {}
    pairs = [
        (8000, 24000),
        (24000, 8000),
        (16000, 24000),
        (24000, 16000),
        (48000, 24000),
        (24000, 48000),
    ]
    for src, dst in pairs:
        pcm = _frames(_chirp(src), src // 50 * 2)
        r = Resampler(src, dst)
        row = {
            "numpy_polyphase": _time_per_call(r.process, pcm, frames, repeat),
            "delay_ms": r.delay * 1000,
        }
        av_us = _pyav_resample_us(src, dst, pcm, frames, repeat)
        if av_us is not None:
            row["pyav_swresample"] = av_us
        results[f"{src}->{dst}"] = row
    return results


def _pyav_resample_us(
    src: int, dst: int, pcm: list[bytes], frames: int, repeat: int
) -> float | None:
    try:
        import av
    except ImportError:  # pragma: no cover
        return None
    resampler = av.AudioResampler(format="s16", layout="mono", rate=dst)

    def run(data: bytes) -> bytes:
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(data) // 2)
        frame.sample_rate = src
        frame.planes[0].update(data)
        return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(frame))

    return _time_per_call(run, pcm, frames, repeat)


_BRIDGES: list[tuple[str, str, int, int, str]] = [
    ("PCMU <-> audio/pcmu (passthrough)", "PCMU", 8000, 1, "audio/pcmu"),
    ("PCMU <-> audio/pcma (translate)", "PCMU", 8000, 1, "audio/pcma"),
    ("PCMU <-> audio/pcm 24k", "PCMU", 8000, 1, "audio/pcm"),
    ("G722 <-> audio/pcm 24k", "G722", 8000, 1, "audio/pcm"),
    ("opus <-> audio/pcm 24k", "opus", 48000, 2, "audio/pcm"),
]


def bench_bridge_paths(frames: int, repeat: int) -> dict[str, dict[str, float]]:
    """Call <-> AI conversion per 20 ms frame, both directions."""
    results: dict[str, dict[str, float]] = {}
    for label, name, rate, channels, fmt in _BRIDGES:
        inbound, outbound = build_converters(get_codec(name, rate, channels), fmt)
        if fmt == "audio/pcm":
            ai = _frames(_chirp(24000), 960)
        else:
            ai = [ulaw_encode(x) for x in _frames(_chirp(8000), 320)]
            if fmt == "audio/pcma":
                ai = [ulaw_to_alaw(x) for x in ai]
        payloads = [p for chunk in ai for p in outbound.push(chunk)]
        results[label] = {
            "ai_to_rtp": _time_per_call(outbound.push, ai, frames, repeat),
            "rtp_to_ai": _time_per_call(inbound.convert, payloads, frames, repeat),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the tables (or JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    report = {
        "codecs_us_per_20ms": bench_codecs(args.frames, args.repeat),
        "resampling_us_per_20ms": bench_resampling(args.frames, args.repeat),
        "bridge_us_per_20ms": bench_bridge_paths(args.frames, args.repeat),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for section, rows in report.items():
        print(f"\n{section}")
        cols: list[str] = []
        for row in rows.values():
            cols += [c for c in row if c not in cols]
        print(f"  {'':38}" + "".join(f"{c:>18}" for c in cols))
        for name, row in rows.items():
            print(f"  {name:38}" + "".join(f"{row.get(c, float('nan')):>18.1f}" for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
