"""A userspace impairing relay for SIP over UDP and the RTP of the calls it carries.

:class:`ImpairingRelay` stands between one SIP peer (a softphone, baresip, a PBX) and an
agent. The peer sends its requests to :attr:`ImpairingRelay.address` (as its outbound
proxy); the relay forwards each datagram to the agent from a second socket, and the agent's
datagrams back to the peer, each direction through its own :class:`Impairer`. So that the
dialog and the media stay on the relay, it rewrites, as a NAT helper would:

- ``Contact`` of each side to the relay's socket facing the other side, and the relay's
  addresses in request URIs back to the real ones;
- the SDP's ``c=`` and ``m=audio`` port to a pair of RTP sockets per call (one facing each
  side), ``a=rtcp`` lines dropped (RTCP is not relayed), ``Content-Length`` fixed.

Both sides must put ``rport`` in their Via (RFC 3581; the project's user agent and baresip
do) so that responses come back through the relay. One peer address at a time (the last
one heard from). RTP sockets latch on the address each side sends from; a call's RTP
sockets close :attr:`ImpairingRelay.media_linger` seconds after its BYE.

Messages are handled in arrival order by one task per relay; impaired copies are sent by
timers of the event loop (delay, jitter, reordering), so a run costs no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from w3sipagent.faults.impair import Impairer, Impairment

__all__ = ["ImpairingRelay", "Impairments"]

log = logging.getLogger(__name__)

Address = tuple[str, int]

_CALL_ID = re.compile(r"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+?)[ \t]*\r?$", re.I | re.M)
_CONTACT = re.compile(
    r"^((?:contact|m)[ \t]*:[^\r\n]*?sips?:(?:[^@>;\r\n]*@)?)([^;>?\r\n]+)", re.I | re.M
)
_LENGTH = re.compile(r"^(?:content-length|l)[ \t]*:[ \t]*\d+", re.IGNORECASE | re.MULTILINE)
_C_LINE = re.compile(rb"^c=IN IP4 ([^\s]+)", re.MULTILINE)
_M_AUDIO = re.compile(rb"^m=audio (\d+)", re.MULTILINE)
_RTCP = re.compile(rb"^a=rtcp:[^\r\n]*\r?\n", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Impairments:
    """The impairment of each path: SIP and RTP, towards the agent and towards the peer."""

    sip_to_agent: Impairment = field(default_factory=Impairment)
    sip_to_peer: Impairment = field(default_factory=Impairment)
    rtp_to_agent: Impairment = field(default_factory=Impairment)
    rtp_to_peer: Impairment = field(default_factory=Impairment)

    @classmethod
    def both_ways(
        cls, *, sip: Impairment | None = None, rtp: Impairment | None = None
    ) -> Impairments:
        """The same impairment in both directions (the way back with the seed + 1)."""
        s, r = sip or Impairment(), rtp or Impairment()
        return cls(s, s.with_seed(s.seed + 1), r, r.with_seed(r.seed + 1))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._on(data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable on loopback: ignore
        log.debug("relay socket: %s", exc)


async def _bind(host: str, on: Callable[[bytes, Address], None]) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(on), local_addr=(host, 0))
    return transport


def _port(transport: asyncio.DatagramTransport) -> int:
    return int(transport.get_extra_info("sockname")[1])


class _Path:
    """One direction: its impairer and the timers of the copies still to send."""

    def __init__(self, impairment: Impairment) -> None:
        self.impairer = Impairer(impairment)
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._next = 0

    def send(self, transport: asyncio.DatagramTransport, data: bytes, to: Address) -> None:
        loop = asyncio.get_running_loop()
        for delay, copy in self.impairer.plan(data):
            if delay <= 0.0:
                self._emit(transport, copy, to, -1)
                continue
            self._next += 1
            key = self._next
            self._timers[key] = loop.call_later(delay, self._emit, transport, copy, to, key)

    def _emit(
        self, transport: asyncio.DatagramTransport, data: bytes, to: Address, key: int
    ) -> None:
        self._timers.pop(key, None)
        if not transport.is_closing():
            transport.sendto(data, to)

    def cancel(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()


class _Media:
    """The RTP of one call: a socket advertised to the agent and one advertised to the peer."""

    def __init__(self, relay: ImpairingRelay) -> None:
        self._relay = relay
        self.agent_side: asyncio.DatagramTransport | None = None
        self.peer_side: asyncio.DatagramTransport | None = None
        self.agent_media: Address | None = None
        self.peer_media: Address | None = None

    async def open(self, host: str) -> None:
        self.agent_side = await _bind(host, self._from_agent)
        self.peer_side = await _bind(host, self._from_peer)

    def _from_agent(self, data: bytes, addr: Address) -> None:
        self.agent_media = addr
        if self.peer_media is not None and self.peer_side is not None:
            self._relay.paths["rtp_to_peer"].send(self.peer_side, data, self.peer_media)

    def _from_peer(self, data: bytes, addr: Address) -> None:
        self.peer_media = addr
        if self.agent_media is not None and self.agent_side is not None:
            self._relay.paths["rtp_to_agent"].send(self.agent_side, data, self.agent_media)

    def close(self) -> None:
        for t in (self.agent_side, self.peer_side):
            if t is not None:
                t.close()


class ImpairingRelay:
    """SIP/UDP and RTP between one peer and an agent, impaired; see the module docstring.

    ``async with ImpairingRelay(agent_address, Impairments.both_ways(rtp=...)) as relay:``
    then point the peer at ``relay.address``. :meth:`stats` counts what each path did.
    """

    def __init__(
        self, agent: Address, impairments: Impairments | None = None, *, host: str = "127.0.0.1"
    ) -> None:
        imp = impairments or Impairments()
        self.agent = agent
        self.host = host
        self.paths = {
            "sip_to_agent": _Path(imp.sip_to_agent),
            "sip_to_peer": _Path(imp.sip_to_peer),
            "rtp_to_agent": _Path(imp.rtp_to_agent),
            "rtp_to_peer": _Path(imp.rtp_to_peer),
        }
        self.peer: Address | None = None
        self._peer_contact: str | None = None
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None
        self._media: dict[str, _Media] = {}
        self._forget: dict[str, asyncio.TimerHandle] = {}
        self.media_linger = 32.0
        """Seconds a call's RTP sockets stay open after its BYE (late packets, BYE retries)."""
        self._queue: asyncio.Queue[tuple[bool, bytes, Address]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    @property
    def address(self) -> Address:
        """Where the peer sends its SIP (the relay's face towards the peer)."""
        assert self._front is not None, "relay not started"
        return (self.host, _port(self._front))

    async def start(self) -> None:
        """Bind the two SIP sockets and start relaying."""
        self._front = await _bind(self.host, lambda d, a: self._queue.put_nowait((True, d, a)))
        self._back = await _bind(self.host, lambda d, a: self._queue.put_nowait((False, d, a)))
        self._worker = asyncio.create_task(self._run(), name="impairing-relay")

    async def close(self) -> None:
        """Stop relaying: cancel pending copies, close every socket."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for path in self.paths.values():
            path.cancel()
        for handle in self._forget.values():
            handle.cancel()
        self._forget.clear()
        for media in self._media.values():
            media.close()
        self._media.clear()
        for t in (self._front, self._back):
            if t is not None:
                t.close()

    async def __aenter__(self) -> ImpairingRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def open_calls(self) -> int:
        """Calls whose RTP sockets are open."""
        return len(self._media)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per path (sip_to_agent, sip_to_peer, rtp_to_agent, rtp_to_peer): its counters."""
        return {name: path.impairer.counts() for name, path in self.paths.items()}

    # -- SIP -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            from_peer, data, addr = await self._queue.get()
            try:
                await self._relay(from_peer, data, addr)
            except Exception:  # a harness must outlive any datagram; say what broke
                log.exception("relay: datagram from %s:%d not relayed", *addr)

    async def _relay(self, from_peer: bool, data: bytes, addr: Address) -> None:
        assert self._front is not None and self._back is not None
        if from_peer:
            self.peer = addr
            data = await self._rewrite(data, to_agent=True)
            self.paths["sip_to_agent"].send(self._back, data, self.agent)
        elif self.peer is not None:
            data = await self._rewrite(data, to_agent=False)
            self.paths["sip_to_peer"].send(self._front, data, self.peer)

    async def _rewrite(self, data: bytes, *, to_agent: bool) -> bytes:
        head_b, sep, body = data.partition(b"\r\n\r\n")
        if not sep or not head_b[:1].isalpha():
            return data  # a keep-alive or garbage: as it is
        head = head_b.decode("latin-1")
        front, back = self.address, (self.host, _port(self._back_t))
        agent_hp = f"{self.agent[0]}:{self.agent[1]}"
        if to_agent:
            found = _CONTACT.search(head)
            if found and self._peer_contact is None:
                self._peer_contact = found.group(2)
            head = _swap_hostport(head, front, agent_hp)
            head = _CONTACT.sub(lambda m: m.group(1) + f"{back[0]}:{back[1]}", head)
        else:
            if self._peer_contact is not None:
                head = _swap_hostport(head, back, self._peer_contact)
            head = _CONTACT.sub(lambda m: m.group(1) + f"{front[0]}:{front[1]}", head)
        if head[:4].upper() == "BYE ":
            self._forget_later(_CALL_ID.search(head))
        if b"m=audio" in body:
            call_id = _CALL_ID.search(head)
            if call_id is not None:
                body = await self._rewrite_sdp(call_id.group(1), body, to_agent=to_agent)
                head = _LENGTH.sub(f"Content-Length: {len(body)}", head, count=1)
        return head.encode("latin-1") + sep + body

    def _forget_later(self, call_id: re.Match[str] | None) -> None:
        """A BYE: close the call's RTP sockets once retransmissions are over (32 s, 64·T1)."""
        if call_id is None:
            return
        key = call_id.group(1)

        def forget() -> None:
            media = self._media.pop(key, None)
            if media is not None:
                media.close()

        self._forget[key] = asyncio.get_running_loop().call_later(self.media_linger, forget)

    @property
    def _back_t(self) -> asyncio.DatagramTransport:
        assert self._back is not None
        return self._back

    async def _rewrite_sdp(self, call_id: str, body: bytes, *, to_agent: bool) -> bytes:
        media = self._media.get(call_id)
        if media is None:
            media = _Media(self)
            await media.open(self.host)
            self._media[call_id] = media
        c, m = _C_LINE.search(body), _M_AUDIO.search(body)
        if c is None or m is None or m.group(1) == b"0":
            return body
        where = (c.group(1).decode("latin-1"), int(m.group(1)))
        assert media.agent_side is not None and media.peer_side is not None
        if to_agent:  # the peer's media address; the agent is told to send to agent_side
            media.peer_media = media.peer_media or where
            port = _port(media.agent_side)
        else:
            media.agent_media = media.agent_media or where
            port = _port(media.peer_side)
        body = _C_LINE.sub(f"c=IN IP4 {self.host}".encode(), body)
        body = _M_AUDIO.sub(f"m=audio {port}".encode(), body, count=1)
        return _RTCP.sub(b"", body)


def _swap_hostport(text: str, old: Address, new: str) -> str:
    """Replace ``host:port`` of ``old`` by ``new`` (not inside a longer port number)."""
    pattern = re.escape(f"{old[0]}:{old[1]}") + r"(?!\d)"
    return re.sub(pattern, new, text)
