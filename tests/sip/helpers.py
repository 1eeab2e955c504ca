"""Test helpers for the sans-IO SIP core: a fake clock, an in-memory network, request makers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from w3sipagent.sip.core import CoreConfig, SipCore
from w3sipagent.sip.events import Address, SipEvent
from w3sipagent.sip.ids import CountingIdSource
from w3sipagent.sip.message import SipRequest, parse_message
from w3sipagent.sip.timers import TimerConfig


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Sent:
    """One datagram put on the fake wire."""

    time: float
    source: Address
    destination: Address
    transport: str
    data: bytes
    dropped: bool

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()

    @property
    def message(self):  # type: ignore[no-untyped-def]
        return parse_message(self.data)


@dataclass
class Network:
    """Cores wired together in memory. Every datagram is logged; some can be lost.

    ``drop`` holds 1-based indices of datagrams (in sending order) to lose; ``drop_if`` is a
    predicate on a :class:`Sent` for the same purpose.
    """

    clock: FakeClock = field(default_factory=FakeClock)
    cores: dict[Address, SipCore] = field(default_factory=dict)
    wire: list[Sent] = field(default_factory=list)
    events: dict[Address, list[tuple[float, SipEvent]]] = field(default_factory=dict)
    drop: set[int] = field(default_factory=set)
    drop_if: Callable[[Sent], bool] | None = None
    outside: list[Sent] = field(default_factory=list)

    def add(self, addr: Address, core: SipCore) -> SipCore:
        self.cores[addr] = core
        self.events[addr] = []
        return core

    def pump(self) -> None:
        """Deliver everything queued until the network is quiet."""
        busy = True
        while busy:
            busy = False
            for addr, core in list(self.cores.items()):
                self._drain_events(addr, core)
                for data, dest, transport in core.datagrams_to_send(self.clock.now):
                    busy = True
                    sent = Sent(self.clock.now, addr, dest, transport, data, False)
                    self.wire.append(sent)
                    if len(self.wire) in self.drop or (
                        self.drop_if is not None and self.drop_if(sent)
                    ):
                        sent.dropped = True
                        continue
                    target = self.cores.get(dest)
                    if target is None:
                        self.outside.append(sent)
                        continue
                    target.receive_datagram(data, addr, self.clock.now, transport)
                self._drain_events(addr, core)

    def _drain_events(self, addr: Address, core: SipCore) -> None:
        while (ev := core.next_event()) is not None:
            self.events[addr].append((self.clock.now, ev))

    def next_timer(self) -> float | None:
        timers = [t for c in self.cores.values() if (t := c.get_timer()) is not None]
        return min(timers) if timers else None

    def run_until(self, until: float) -> None:
        """Pump, then fire timers in order up to ``until`` (the clock ends there)."""
        self.pump()
        while True:
            t = self.next_timer()
            if t is None or t > until:
                break
            self.clock.now = max(self.clock.now, t)
            for core in self.cores.values():
                deadline = core.get_timer()
                if deadline is not None and deadline <= self.clock.now:
                    core.handle_timer(self.clock.now)
            self.pump()
        self.clock.now = max(self.clock.now, until)

    def advance(self, seconds: float) -> None:
        self.run_until(self.clock.now + seconds)

    def take(self, addr: Address) -> list[SipEvent]:
        """The events ``addr`` got since the last take."""
        out = [e for _, e in self.events[addr]]
        self.events[addr].clear()
        return out

    def sent(self, first_line_prefix: str, source: Address | None = None) -> list[Sent]:
        """Datagrams whose first line starts with ``first_line_prefix``."""
        return [
            s
            for s in self.wire
            if s.first_line.startswith(first_line_prefix) and (source is None or s.source == source)
        ]


ALICE: Address = ("127.0.0.1", 5060)
BOB: Address = ("127.0.0.2", 5070)

FAST = TimerConfig(t1=0.5, t2=4.0, t4=5.0)


def make_core(
    addr: Address, timers: TimerConfig = FAST, prefix: str = "x", **kw: object
) -> SipCore:
    """A core whose Via sent-by is ``addr`` and whose ids are predictable."""
    config = CoreConfig(via_host=addr[0], via_port=addr[1], timers=timers, **kw)  # type: ignore[arg-type]
    return SipCore(config, ids=CountingIdSource(prefix))


def pair(timers: TimerConfig = FAST, **kw: object) -> tuple[Network, SipCore, SipCore]:
    """Alice and Bob wired together on a fresh network."""
    net = Network()
    a = net.add(ALICE, make_core(ALICE, timers, "a", **kw))
    b = net.add(BOB, make_core(BOB, timers, "b", **kw))
    return net, a, b


def request(
    method: str,
    src: Address = ALICE,
    dst: Address = BOB,
    *,
    call_id: str = "call-1",
    from_tag: str = "ft1",
    to_tag: str | None = None,
    cseq: int = 1,
    body: bytes = b"",
    extra: list[tuple[str, str]] | None = None,
) -> SipRequest:
    """A request from ``src`` to ``dst`` without Via (the core adds it)."""
    headers = [
        ("Max-Forwards", "70"),
        ("From", f"<sip:alice@{src[0]}:{src[1]}>;tag={from_tag}"),
        ("To", f"<sip:bob@{dst[0]}:{dst[1]}>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", f"<sip:alice@{src[0]}:{src[1]}>"),
        *(extra or []),
    ]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return SipRequest(method, f"sip:bob@{dst[0]}:{dst[1]}", headers, body)
