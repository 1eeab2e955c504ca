"""``python -m w3sipagent.faults relay|aiproxy``: the fault injectors as commands.

    python -m w3sipagent.faults relay --agent 127.0.0.1:5090 --rtp "loss=5%,jitter=30ms"
    python -m w3sipagent.faults aiproxy --upstream api.example:443 --fault close --after 2

Each runs until Ctrl-C, then prints what it did as JSON. docs/testing-faults.md has more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from w3sipagent.faults.aiproxy import AIFault, FaultPlan, FaultProxy
from w3sipagent.faults.impair import Impairment
from w3sipagent.faults.relay import ImpairingRelay, Impairments


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host, int(port)


def _impairment(text: str) -> Impairment:
    try:
        return Impairment.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _relay(args: argparse.Namespace) -> dict[str, object]:
    back_rtp = args.rtp_to_peer or args.rtp.with_seed(args.rtp.seed + 1)
    back_sip = args.sip_to_peer or args.sip.with_seed(args.sip.seed + 1)
    imp = Impairments(args.sip, back_sip, args.rtp, back_rtp)
    async with ImpairingRelay(args.agent, imp, host=args.host) as relay:
        print(f"relay: point the peer at {relay.address[0]}:{relay.address[1]}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return dict(relay.stats())


async def _aiproxy(args: argparse.Namespace) -> dict[str, object]:
    plan = FaultPlan(
        AIFault(args.fault),
        after=args.after,
        connections=args.connections,
        slow_rate=args.slow_rate,
        seed=args.seed,
    )
    async with FaultProxy(args.upstream, plan, host=args.host) as proxy:
        print(f"aiproxy: {args.host}:{proxy.port} -> {args.upstream[0]}:{args.upstream[1]}")
        sys.stdout.flush()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return {"connections": proxy.connections, "faulted": proxy.faulted}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m w3sipagent.faults", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("relay", help="impairing SIP/UDP + RTP relay between a peer and an agent")
    r.add_argument("--agent", type=_address, required=True, help="the agent's SIP HOST:PORT")
    r.add_argument("--host", default="127.0.0.1", help="address the relay binds")
    r.add_argument("--sip", type=_impairment, default=Impairment(), help="SIP both ways")
    r.add_argument("--rtp", type=_impairment, default=Impairment(), help="RTP both ways")
    r.add_argument("--sip-to-peer", type=_impairment, help="SIP towards the peer only")
    r.add_argument("--rtp-to-peer", type=_impairment, help="RTP towards the peer only")
    a = sub.add_parser("aiproxy", help="TCP proxy in front of an AI service, with a fault")
    a.add_argument("--upstream", type=_address, required=True, help="the service's HOST:PORT")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--fault", choices=[f.value for f in AIFault], default="none")
    a.add_argument("--after", type=float, default=0.5, help="seconds into each connection")
    a.add_argument("--connections", type=int, default=1, help="first N connections (0: all)")
    a.add_argument("--slow-rate", type=int, default=2000, help="bytes/s for slow_reader")
    a.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run = _relay if args.command == "relay" else _aiproxy
    try:
        result = asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
