"""The one public SIP address of a multi-process agent: every datagram routed by Call-ID.

``w3sipagent serve --workers N`` runs N worker processes, each a whole user agent with its
own calls, RTP ports and AI sessions. :class:`SipFront` lives in the supervisor process
and owns the public listeners (``sip.listen``: UDP, TCP, TLS): FreeSWITCH sends every request and
response there, and every message the workers send leaves from there, so the peer sees one
address and one port both ways (NAT bindings, ACLs and ``rport`` stay right).

Routing is by Call-ID, the one header every message of a dialog and of its transactions
carries (INVITE, CANCEL, ACK, BYE, re-INVITE, UPDATE, INFO, REFER, NOTIFY and all their
responses):

- a Call-ID the front knows goes to its worker;
- a new out-of-dialog request (INVITE, OPTIONS, ...) goes to the worker ``pick()`` names
  (the supervisor: the ready worker with the fewest calls), and the Call-ID is remembered;
- a Call-ID a worker sends first (its ``dial()``, REGISTER, OPTIONS) is remembered for it;
- a request for a Call-ID whose worker died gets ``481 Call/Transaction Does Not Exist``
  (the peer ends its leg), ACKs and stray responses are dropped; with no worker ready a new
  request gets ``503`` with ``Retry-After``.

Routes of admitted calls (:meth:`hold`) stay until the call ends (:meth:`release`) plus
``linger`` seconds (retransmissions, the ACK of a late 200); routes of requests that never
became a call go after ``linger`` seconds without traffic; routes a worker opened (outbound
calls, whose life the front does not see) after ``idle`` seconds without traffic (default
2 h: session timers refresh an established dialog every ``session_expires / 2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from w3sipagent.asyncio.transport import TransportConfig, TransportSet
from w3sipagent.errors import SipParseError, TransactionError
from w3sipagent.sip.message import parse_message
from w3sipagent.sip.sipmessage import SipRequest, make_response

__all__ = ["SipFront"]

log = logging.getLogger("w3sipagent.front")

Address = tuple[str, int]


@dataclass
class _Route:
    worker: int
    seen: float
    held: bool = False
    opened_by_worker: bool = False


class SipFront:
    """The public SIP listeners and the Call-ID → worker table.

    ``deliver(worker, data, source, transport)``: hand a message to a worker (False: that
    worker is gone). ``pick()``: the worker for a new request (None: none ready).
    ``config``: the public listeners (UDP, TCP, TLS: a :class:`TransportSet`; stream
    connections end here, the workers get each framed message).
    """

    def __init__(
        self,
        deliver: Callable[[int, bytes, Address, str], bool],
        pick: Callable[[], int | None],
        *,
        linger: float = 32.0,
        idle: float = 7200.0,
        retry_after: int = 5,
        sweep_interval: float = 5.0,
    ) -> None:
        self.deliver = deliver
        self.pick = pick
        self.linger = linger
        self.idle = idle
        self.retry_after = retry_after
        self.sweep_interval = sweep_interval
        self.routes: dict[str, _Route] = {}
        self.dead: dict[str, float] = {}
        """Call-IDs of calls whose worker died, with when (answered 481 for ``linger``)."""
        self.transports: TransportSet | None = None
        self.dropped = 0
        """Messages dropped: not SIP, stray responses and ACKs, lost workers."""
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, config: TransportConfig) -> Address:
        """Bind the public listeners; returns the SIP address (UDP, else TCP)."""
        loop = self._loop = asyncio.get_running_loop()
        self.transports = TransportSet(config, self.received, loop=loop)
        await self.transports.start()
        self._sweeper = loop.call_later(self.sweep_interval, self._sweep)
        return self.address

    @property
    def address(self) -> Address:
        """The bound SIP address."""
        assert self.transports is not None
        t = self.transports
        addr = t.udp_address or t.tcp_address or t.tls_address
        assert addr is not None
        return (str(addr[0]), int(addr[1]))

    def close(self) -> None:
        """Close the listeners and connections."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.transports is not None:
            self.transports.close()
            self.transports = None

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    # -- inbound ------------------------------------------------------------------------------

    def received(self, data: bytes, source: Address, transport: str) -> None:
        """One datagram or framed stream message from ``source``."""
        if not data.strip(b"\r\n"):
            return  # keep-alive CRLF
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            # a worker answers malformed requests the way the user agent does (400)
            partial = exc.message
            call_id = partial.headers.get("call-id") if partial is not None else None
            if not call_id:
                self.dropped += 1
                return
            self._route(
                str(call_id), data, source, transport, request=isinstance(partial, SipRequest)
            )
            return
        if isinstance(msg, SipRequest):
            self._route(
                msg.call_id, data, source, transport, request=True, method=msg.method, parsed=msg
            )
        else:
            self._route(msg.call_id, data, source, transport, request=False)

    def _route(
        self,
        call_id: str,
        data: bytes,
        source: Address,
        transport: str,
        *,
        request: bool,
        method: str = "",
        parsed: SipRequest | None = None,
    ) -> None:
        route = self.routes.get(call_id)
        now = self._now()
        if route is not None:
            route.seen = now
            if self.deliver(route.worker, data, source, transport):
                return
            self.worker_gone(route.worker)
        if call_id in self.dead:
            if parsed is not None and method != "ACK":
                self._answer(parsed, 481, "Call/Transaction Does Not Exist", source, transport)
            else:
                self.dropped += 1
            return
        if not request or method == "ACK":
            self.dropped += 1  # a response or ACK of nothing we know
            return
        worker = self.pick()
        if worker is None:
            if parsed is not None:
                self._answer(parsed, 503, "Service Unavailable", source, transport, retry=True)
            return
        self.routes[call_id] = _Route(worker, now)
        if not self.deliver(worker, data, source, transport):
            self.routes.pop(call_id, None)
            self.dropped += 1

    def _answer(
        self,
        request: SipRequest,
        status: int,
        reason: str,
        dest: Address,
        transport: str,
        *,
        retry: bool = False,
    ) -> None:
        headers = [("Retry-After", str(self.retry_after))] if retry else []
        response = make_response(request, status, reason, to_tag="front", headers=headers)
        self.send(bytes(response), dest, transport)

    # -- outbound -----------------------------------------------------------------------------

    def send(self, data: bytes, dest: Address, transport: str, worker: int | None = None) -> None:
        """Send a message from the public address (``worker``: the worker that sent it; a
        Call-ID it starts is routed to it from now on)."""
        if worker is not None:
            call_id = _call_id(data)
            if call_id is not None:
                route = self.routes.get(call_id)
                if route is None:
                    self.routes[call_id] = _Route(worker, self._now(), opened_by_worker=True)
                else:
                    route.seen = self._now()
        if self.transports is None:
            return
        try:
            self.transports.send(data, dest, transport)
        except (TransactionError, OSError) as exc:
            log.warning("SIP front: not sent to %s (%s): %s", dest, transport, exc)

    # -- call life ----------------------------------------------------------------------------

    def hold(self, call_id: str, worker: int) -> None:
        """An admitted call: its route stays until :meth:`release`."""
        route = self.routes.get(call_id)
        if route is None:
            self.routes[call_id] = _Route(worker, self._now(), held=True)
        else:
            route.held = True

    def release(self, call_id: str) -> None:
        """The call ended: its route goes ``linger`` seconds after its last message."""
        route = self.routes.get(call_id)
        if route is not None:
            route.held = False
            route.seen = self._now()

    def worker_gone(self, worker: int) -> list[str]:
        """A worker died: its Call-IDs are answered 481 from now on. Returns them."""
        now = self._now()
        gone = [cid for cid, r in self.routes.items() if r.worker == worker]
        for cid in gone:
            del self.routes[cid]
            self.dead[cid] = now
        return gone

    def _sweep(self) -> None:
        now = self._now()
        for cid, r in list(self.routes.items()):
            if r.held:
                continue
            limit = self.idle if r.opened_by_worker else self.linger
            if now - r.seen > limit:
                del self.routes[cid]
        for cid, at in list(self.dead.items()):
            if now - at > self.linger:
                del self.dead[cid]
        if self._loop is not None and self.transports is not None:
            self._sweeper = self._loop.call_later(self.sweep_interval, self._sweep)


def _call_id(data: bytes) -> str | None:
    """The Call-ID of a message a worker sends (its own serialization: parsed for sure)."""
    with contextlib.suppress(SipParseError):
        return parse_message(data).call_id
    return None
