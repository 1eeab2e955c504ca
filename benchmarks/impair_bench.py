"""Audio quality under network impairment, per codec, as numbers.

    .venv/bin/python benchmarks/impair_bench.py                 # the table, then JSON
    .venv/bin/python benchmarks/impair_bench.py --seconds 2 --codecs PCMU --conditions loss20

Each row is one real call on 127.0.0.1: the project's softphone (``UserAgent.dial``) calls
an :class:`~w3sipagent.agent.service.AgentService` through
:class:`~w3sipagent.faults.ImpairingRelay`, which impairs the RTP both ways (and SIP with
the same loss). The AI is a scripted session whose greeting is a speech-like signal
(:func:`w3sipagent.faults.quality.speech_like`); at the same time the caller plays another
one. Then:

- ``to_ai``: what the AI session received (after the agent's jitter buffer, decoder and
  concealment) against the caller's clean signal;
- ``to_caller``: what the softphone decoded (its own jitter buffer and concealment) against
  the clean greeting.

Each as :func:`w3sipagent.faults.quality.similarity`: ``waveform`` (Pearson correlation of
the aligned samples) and ``envelope`` (correlation of the 10 ms level envelopes in dB).
``--no-conceal`` replaces every concealed frame by silence (both sides), the ablation the
tests use to show the concealment is what holds the figures up. The impairments are seeded:
the same seed and load give the same losses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.scripted import ScriptedReply, ScriptedSession
from w3sipagent.agent.service import AgentService
from w3sipagent.ai.session import AISessionConfig, AudioFormat
from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.codecs.convert import InboundConverter
from w3sipagent.codecs.g711 import G711Decoder, ulaw_decode, ulaw_encode
from w3sipagent.codecs.opus import OpusDecoder
from w3sipagent.config import Settings
from w3sipagent.faults import ImpairingRelay, Impairment, Impairments
from w3sipagent.faults.quality import similarity, speech_like
from w3sipagent.records.cdr import CallRecord
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig, TenantTable

CODECS = {"PCMU": "PCMU/8000", "opus": "opus/48000/2"}

#: The conditions of the issue; each impairs RTP both ways (seeded), loss also hits SIP.
CONDITIONS: dict[str, Impairment] = {
    "clean": Impairment(),
    "loss5": Impairment(loss=0.05),
    "loss20": Impairment(loss=0.20),
    "jitter30": Impairment(jitter=0.030),
    "reorder10": Impairment(reorder=0.10, reorder_delay=0.030),
    "jitter30+reorder10": Impairment(jitter=0.030, reorder=0.10, reorder_delay=0.030),
    "dup10": Impairment(duplicate=0.10),
}


@dataclass(frozen=True, slots=True)
class Row:
    """One call's figures."""

    codec: str
    condition: str
    conceal: bool
    to_ai_waveform: float
    to_ai_envelope: float
    to_caller_waveform: float
    to_caller_envelope: float
    rtp_lost: int
    rtp_reordered: int
    agent_concealed: int
    agent_late: int
    caller_concealed: int
    caller_late: int
    disposition: str
    seconds: float


def _tenants(codec: str) -> TenantTable:
    agent = AgentConfig(instructions="Benchmark.", greeting="Greet.")
    t = TenantConfig(
        id="acme",
        hosts=["acme.example"],
        api_key=SecretRef(env="ACME_KEY"),
        agents={"main": agent},
        codecs=[codec],
    )
    return TenantTable({"acme": t})


def _greeting(cfg: AISessionConfig, seconds: float) -> bytes:
    fmt = cfg.output_format
    pcm = speech_like(seconds, fmt.sample_rate, seed=1)
    return ulaw_encode(pcm) if fmt is AudioFormat.PCMU else pcm


def _ai_pcm(fmt: AudioFormat, audio: bytes) -> bytes:
    return ulaw_decode(audio) if fmt is AudioFormat.PCMU else audio


@contextlib.contextmanager
def no_concealment() -> Iterator[None]:
    """Every concealed frame becomes silence of the same length (both sides of the call)."""
    patched: list[tuple[Any, Callable[..., bytes]]] = []

    def silence_of(original: Callable[..., bytes], fill: int) -> Callable[..., bytes]:
        def conceal(self: Any, next_payload: bytes | None = None) -> bytes:
            return bytes([fill]) * len(original(self, next_payload))

        return conceal

    for cls in (G711Decoder, OpusDecoder):
        patched.append((cls, cls.conceal))
        cls.conceal = silence_of(cls.conceal, 0)  # type: ignore[method-assign]
    original = InboundConverter.conceal

    def converter_conceal(self: InboundConverter, next_payload: bytes | None = None) -> bytes:
        out = original(self, next_payload)
        return bytes([0xFF if self.passthrough else 0]) * len(out)  # G.711 silence is 0xFF

    InboundConverter.conceal = converter_conceal  # type: ignore[method-assign]
    try:
        yield
    finally:
        InboundConverter.conceal = original  # type: ignore[method-assign]
        for owner, method in patched:
            owner.conceal = method


async def measure(
    codec: str,
    condition: str,
    *,
    seconds: float = 3.0,
    conceal: bool = True,
    seed: int = 7,
    rtp_range: tuple[int, int] = (20000, 20999),
    impairment: Impairment | None = None,
) -> Row:
    """One call through the relay; see the module docstring."""
    imp = (impairment or CONDITIONS[condition]).with_seed(seed)
    sip = Impairment(loss=imp.loss, seed=seed + 10)
    made: list[ScriptedSession] = []

    def factory(tenant: str, key: str, transport: str, cfg: AISessionConfig) -> ScriptedSession:
        s = ScriptedSession(cfg, greeting=ScriptedReply(_greeting(cfg, seconds), "Hello."))
        made.append(s)
        return s

    lo, hi = rtp_range
    mid = (lo + hi) // 2
    timers: dict[str, Any] = {"t1": 0.05, "t2": 0.2, "t4": 0.2, "timer_d": 0.2}
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.nullcontext() if conceal else no_concealment(),
    ):
        svc = AgentService(
            Settings(records={"recordings_dir": str(Path(tmp) / "rec")}),  # type: ignore[arg-type]
            tenants=_tenants(codec),
            ai_factory=factory,
            ua_config=UserAgentConfig(
                host="127.0.0.1", port=0, rtp_port_min=lo, rtp_port_max=mid - 1, **timers
            ),
            environ={"ACME_KEY": "sk-bench-0123456789"},
            bridge_defaults=BridgeOptions(housekeeping_interval=0.02, close_timeout=0.5),
            register=False,
        )
        await svc.start()
        caller = UserAgent(
            UserAgentConfig(host="127.0.0.1", port=0, rtp_port_min=mid, rtp_port_max=hi, **timers)
        )
        await caller.start()
        relay = ImpairingRelay(("127.0.0.1", svc.port), Impairments.both_ways(sip=sip, rtp=imp))
        await relay.start()
        started = time.perf_counter()
        try:
            call = await caller.dial(
                "sip:main@acme.example", proxy=relay.address, codecs=[CODECS[codec]], timeout=10
            )
            heard = bytearray()

            async def listen() -> None:
                async for pcm in call.audio():
                    heard.extend(pcm)

            ear = asyncio.create_task(listen())
            loop = asyncio.get_running_loop()
            until = loop.time() + 5
            while not any(heard) and loop.time() < until:  # speak once the greeting plays
                await asyncio.sleep(0.01)
            said = speech_like(seconds, call.sample_rate, seed=2)
            await call.play(said)
            await asyncio.sleep(0.5)  # the tail of the greeting and the jitter buffers
            caller_rtp = call.stats()
            await call.hangup()
            await asyncio.wait_for(ear, 5)
            end = loop.time() + 5
            while not svc.finished and loop.time() < end:
                await asyncio.sleep(0.01)
            cdr: CallRecord | None = svc.finished[-1] if svc.finished else None
            session = made[-1]
            fmt = session.config.input_format
            to_ai = similarity(
                speech_like(seconds, fmt.sample_rate, seed=2),
                _ai_pcm(fmt, bytes(session.audio)),
                fmt.sample_rate,
            )
            to_caller = similarity(
                speech_like(seconds, call.sample_rate, seed=1), bytes(heard), call.sample_rate
            )
            stats = relay.stats()
            agent_rtp: dict[str, Any] = dict(cdr.rtp or {}) if cdr is not None else {}
            return Row(
                codec=codec,
                condition=condition,
                conceal=conceal,
                to_ai_waveform=round(to_ai.waveform, 3),
                to_ai_envelope=round(to_ai.envelope, 3),
                to_caller_waveform=round(to_caller.waveform, 3),
                to_caller_envelope=round(to_caller.envelope, 3),
                rtp_lost=stats["rtp_to_agent"]["lost"] + stats["rtp_to_peer"]["lost"],
                rtp_reordered=stats["rtp_to_agent"]["reordered"]
                + stats["rtp_to_peer"]["reordered"],
                agent_concealed=int(agent_rtp.get("concealed", -1)),
                agent_late=int(agent_rtp.get("late", -1)),
                caller_concealed=int(str(caller_rtp.get("concealed", -1))),
                caller_late=int(str(caller_rtp.get("late", -1))),
                disposition="" if cdr is None else f"{cdr.disposition.value}/{cdr.reason}",
                seconds=round(time.perf_counter() - started, 2),
            )
        finally:
            await relay.close()
            await caller.close(timeout=0)
            await svc.close(timeout=0)


async def _main(args: argparse.Namespace) -> list[Row]:
    rows = []
    for codec in args.codecs:
        for condition in args.conditions:
            rows.append(
                await measure(
                    codec,
                    condition,
                    seconds=args.seconds,
                    conceal=not args.no_conceal,
                    seed=args.seed,
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    p.add_argument("--seconds", type=float, default=4.0, help="length of each side's speech")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-conceal", action="store_true", help="concealed frames become silence")
    args = p.parse_args(argv)
    rows = asyncio.run(_main(args))
    head = (
        f"{'codec':6} {'condition':18} {'to AI wave/env':>15} {'to caller wave/env':>19}"
        f" {'lost':>5} {'reord':>5} {'concealed a/c':>13}  end"
    )
    print(head)
    for r in rows:
        print(
            f"{r.codec:6} {r.condition:18} {r.to_ai_waveform:7.3f}/{r.to_ai_envelope:<7.3f}"
            f" {r.to_caller_waveform:9.3f}/{r.to_caller_envelope:<9.3f}"
            f" {r.rtp_lost:5d} {r.rtp_reordered:5d} {r.agent_concealed:6d}/{r.caller_concealed:<6d}"
            f"  {r.disposition}"
        )
    print(json.dumps({"conceal": not args.no_conceal, "rows": [asdict(r) for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
