"""SIP transports on asyncio: UDP, TCP and TLS listeners and connections feeding a :class:`SipCore`.

The core runs on :class:`~w3sipagent.asyncio.sipdriver.SipDriver` (re-exported here), which
sends through :meth:`TransportSet.send`.

Responses go where the core says (RFC 3261 §18.2.2, RFC 3581): the core computes the
destination; over TCP/TLS that is the source address, so the response leaves on the
connection the request came in on. Nothing here resolves a host name: every destination must
be an IP literal (:meth:`TransportSet.send` refuses anything else with TransactionError
rather than let ``sendto`` / ``create_connection`` look it up).

:class:`TransportSet` owns the sockets:

- one UDP socket per listener (the same port serves requests and responses);
- TCP (and TLS when a certificate and key are configured) listeners; accepted and outgoing
  connections are kept in one table keyed by (transport, peer address) and reused for every
  message to that peer; a connection with no traffic for ``tcp_idle_timeout`` seconds is
  closed, and so is one holding part of a message for ``tcp_message_timeout`` seconds;
- at most ``tcp_max_connections`` stream connections at once, and ``tcp_max_per_source``
  accepted ones per peer IP: a connection accepted beyond either is closed at once and
  counted (:attr:`TransportSet.refused_connections`);
- CRLF keep-alive pings (``\\r\\n\\r\\n``, RFC 5626 §3.5.1) on a stream are answered with
  ``\\r\\n``. Over UDP RFC 5626 §4.4.2 defines STUN, not CRLF, as the keep-alive (and
  only for edge proxies that offer ``outbound``); the CRLF datagrams that some NAT helpers
  send anyway are dropped by the core without an answer (never a 400), as RFC 3261 §7.5
  has stray CRLFs ignored;
- stream messages are framed by Content-Length (:class:`~w3sipagent.sip.framing.StreamFramer`);
  a framing error that cannot be recovered closes the connection after answering 400 when
  the request was readable.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from w3sipagent.asyncio.sipdriver import Sender, SipDriver
from w3sipagent.errors import ConfigError, SipParseError, TransactionError
from w3sipagent.sip.events import Address
from w3sipagent.sip.framing import KeepAlive, StreamFramer
from w3sipagent.sip.message import SipRequest, make_response, partial_message

log = logging.getLogger(__name__)

__all__ = [
    "Sender",
    "SipDriver",
    "StreamConnection",
    "TransportConfig",
    "TransportSet",
    "is_ip_literal",
]


def _addr(raw: object) -> Address:
    """(host, port) from a socket address (IPv6 4-tuples included)."""
    t = cast("tuple[object, ...]", raw)
    return (str(t[0]), int(cast(int, t[1])))


@functools.lru_cache(maxsize=1024)
def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 / IPv6 address (no DNS look-up may ever be needed)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- listeners and connections ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Where and how to listen.

    ``host``/``port``: the bind address (port 0 picks a free one; UDP and TCP share it).
    ``tls_port``: the TLS listener (None: the SIP port + 1 when ``tls_cert`` is set).
    ``tcp_idle_timeout``: close a connection after this many seconds without traffic.
    ``tcp_message_timeout``: close a connection holding part of a message this long.
    ``tcp_max_connections`` / ``tcp_max_per_source``: stream connections at once (all;
    accepted from one IP); beyond them an accepted connection is closed at once.
    ``bind_attempts``: with port 0, how many fresh ports to try when UDP's port is taken on TCP.
    """

    host: str = "127.0.0.1"
    port: int = 5090
    udp: bool = True
    tcp: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_port: int | None = None
    tls_verify: bool = True
    tls_ca: str | None = None
    tcp_idle_timeout: float = 300.0
    tcp_message_timeout: float = 10.0
    tcp_max_connections: int = 1024
    tcp_max_per_source: int = 64
    tcp_connect_timeout: float = 5.0
    max_message_size: int = 65535
    bind_attempts: int = 10


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: TransportSet) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.owner.received(data, _addr(addr), "UDP")

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP socket error: %s", exc)


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: framing in, writes out, idle and partial-message timers,
    keep-alive pongs. ``outgoing``: opened by us (never refused by the connection caps)."""

    def __init__(self, owner: TransportSet, transport_name: str, outgoing: bool = False) -> None:
        self.owner = owner
        self.name = transport_name
        self.outgoing = outgoing
        self.framer = StreamFramer(max_message_size=owner.config.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.last_activity = owner.loop.time()
        self._idle: asyncio.TimerHandle | None = None
        self._partial: asyncio.TimerHandle | None = None
        self.closed = False
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _addr(transport.get_extra_info("peername"))
        if not self.owner.admit(self):
            self.closed = True  # never registered: nothing to forget
            self.transport.abort()
            return
        self.owner.connection_up(self)
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = self.owner.loop.time()
        framed = False
        for item in self.framer.feed(data):
            if isinstance(item, KeepAlive):
                if item.ping and self.transport is not None:
                    self.transport.write(KeepAlive.PONG)
            elif isinstance(item, SipParseError):
                self._reply_error(item)
            else:
                # The core parses datagrams itself: hand it the framed message's bytes.
                framed = True
                self.owner.received(bytes(item), self.peer, self.name)
        if self.framer.failed:
            self.close()
        elif self.framer.buffered:
            if self._partial is None or framed:  # a message started: it has this long
                self._arm_partial()
        elif self._partial is not None:
            self._partial.cancel()
            self._partial = None

    def _arm_partial(self) -> None:
        if self._partial is not None:
            self._partial.cancel()
        loop = self.owner.loop
        timeout = self.owner.config.tcp_message_timeout
        self._partial = loop.call_at(loop.time() + timeout, self._partial_expired)

    def _partial_expired(self) -> None:
        self._partial = None
        if not self.closed:
            log.info(
                "closing %s connection from %s: message incomplete after %.0f s",
                self.name,
                self.peer,
                self.owner.config.tcp_message_timeout,
            )
            self.close()

    def _reply_error(self, err: SipParseError) -> None:
        partial = partial_message(err)
        # As SipCore does for datagrams: garbage without a Via (the stray bytes after a
        # body shorter than the stream carries, RFC 4475 dblreq over TCP) is not answered
        # with a headerless 400; the framing failure still closes the connection.
        if (
            not isinstance(partial, SipRequest)
            or partial.method == "ACK"
            or "Via" not in partial.headers
        ):
            log.debug("unanswerable bad message on %s from %s: %s", self.name, self.peer, err)
            return
        try:
            response = make_response(partial, err.status, err.reason)
            self.write(bytes(response))
        except SipParseError:
            log.debug("cannot answer bad message from %s: %s", self.peer, err)

    def write(self, data: bytes) -> None:
        """Send bytes on this connection (queued until connected)."""
        self.last_activity = self.owner.loop.time()
        if self.transport is None:
            self.pending.append(data)
        elif not self.closed and not self.transport.is_closing():
            # a peer that reset the connection: asyncio closes it on the next loop turn;
            # writing meanwhile only logs "socket.send() raised exception" (a log flood)
            self.transport.write(data)

    def _arm_idle(self) -> None:
        timeout = self.owner.config.tcp_idle_timeout
        self._idle = self.owner.loop.call_at(self.last_activity + timeout, self._check_idle)

    def _check_idle(self) -> None:
        self._idle = None
        if self.closed:
            return
        if self.owner.loop.time() - self.last_activity >= self.owner.config.tcp_idle_timeout:
            log.debug("closing idle %s connection to %s", self.name, self.peer)
            self.close()
        else:
            self._arm_idle()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self.transport is not None and not self.closed:
            self.transport.close()
        self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def connect_failed(self) -> None:
        """The outgoing connection could not be made: drop what was queued, close."""
        self.pending.clear()
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        for timer in (self._idle, self._partial):
            if timer is not None:
                timer.cancel()
        self._idle = self._partial = None
        self.owner.connection_down(self)


class TransportSet:
    """The UDP socket(s), TCP/TLS listeners and stream connections of one user agent.

    ``received(data, addr, transport)`` is called for each SIP message; :meth:`send` is the
    driver's sender. Start with :meth:`start`, stop with :meth:`close`.
    """

    def __init__(
        self,
        config: TransportConfig,
        received: Callable[[bytes, Address, str], None],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_connection_lost: Callable[[Address, str], None] | None = None,
    ) -> None:
        self.config = config
        self.received = received
        self.loop = loop or asyncio.get_running_loop()
        self.on_connection_lost = on_connection_lost
        self._udp: _Udp | None = None
        self._servers: list[asyncio.Server] = []
        self._connections: dict[tuple[str, Address], StreamConnection] = {}
        self._connecting: dict[tuple[str, Address], asyncio.Task[None]] = {}
        self._streams: set[StreamConnection] = set()  # live, for the caps
        self._per_source: dict[str, int] = {}  # accepted live connections per peer IP
        #: Accepted connections closed at once for the caps (``tcp_max_connections``,
        #: ``tcp_max_per_source``).
        self.refused_connections = 0
        self._server_ssl: ssl.SSLContext | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self.udp_address: Address | None = None
        self.tcp_address: Address | None = None
        self.tls_address: Address | None = None

    @property
    def tls_enabled(self) -> bool:
        """True when a certificate and key are configured."""
        return self.config.tls_cert is not None and self.config.tls_key is not None

    @property
    def port(self) -> int:
        """The bound SIP port (UDP, else TCP)."""
        addr = self.udp_address or self.tcp_address or self.tls_address
        return addr[1] if addr else self.config.port

    async def start(self) -> None:
        """Bind the listeners. UDP first; with port 0, TCP takes the port UDP got.

        With port 0 the kernel picks UDP's port without looking at TCP: when that number is
        taken on TCP (an outgoing connection's local port, another listener), the listeners
        are bound again on a fresh port, up to ``bind_attempts`` times.
        """
        c = self.config
        attempts = c.bind_attempts if c.port == 0 else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._bind()
                return
            except OSError as exc:
                port = self.port
                self.close()
                self.udp_address = self.tcp_address = self.tls_address = None
                if exc.errno == errno.EADDRINUSE and attempt < attempts:
                    log.debug("SIP port %d taken on TCP/TLS, binding again", port)
                    continue
                raise ConfigError(
                    f"SIP listener on {c.host}:{port}: {exc.strerror or exc}"
                ) from exc
            except ssl.SSLError as exc:
                self.close()
                raise ConfigError(f"SIP TLS certificate/key: {exc}") from exc

    async def _bind(self) -> None:
        c = self.config
        port = c.port
        if c.udp:
            transport, proto = await self.loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(c.host, port)
            )
            self._udp = proto
            self.udp_address = _addr(transport.get_extra_info("sockname"))
            port = self.udp_address[1]
        if c.tcp:
            server = await self.loop.create_server(
                lambda: StreamConnection(self, "TCP"), c.host, port
            )
            self._servers.append(server)
            self.tcp_address = _addr(server.sockets[0].getsockname())
            port = self.tcp_address[1]
        if self.tls_enabled:
            self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._server_ssl.load_cert_chain(cast(str, c.tls_cert), cast(str, c.tls_key))
            tls_port = c.tls_port if c.tls_port is not None else (port + 1 if port else 0)
            server = await self.loop.create_server(
                lambda: StreamConnection(self, "TLS"), c.host, tls_port, ssl=self._server_ssl
            )
            self._servers.append(server)
            self.tls_address = _addr(server.sockets[0].getsockname())

    def send(self, data: bytes, addr: Address, transport: str) -> None:
        """Send one message to an IP literal over ``transport`` (UDP, TCP, TLS)."""
        if not is_ip_literal(addr[0]):
            raise TransactionError(f"{addr[0][:64]!r} is not an IP address (no DNS here)")
        transport = transport.upper()
        if transport == "UDP":
            if self._udp is None or self._udp.transport is None:
                raise TransactionError("no UDP listener")
            self._udp.transport.sendto(data, addr)
            return
        key = (transport, addr)
        conn = self._connections.get(key)
        if conn is not None and not conn.closed:
            conn.write(data)
            return
        self._connect(key).pending.append(data)

    def _connect(self, key: tuple[str, Address]) -> StreamConnection:
        transport, addr = key
        conn = StreamConnection(self, transport, outgoing=True)
        conn.peer = addr
        self._connections[key] = conn

        async def connect() -> None:
            ssl_ctx: ssl.SSLContext | None = None
            if transport == "TLS":
                ssl_ctx = self._client_context()
            try:
                await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: conn,
                        addr[0],
                        addr[1],
                        ssl=ssl_ctx,
                        server_hostname=addr[0] if ssl_ctx is not None else None,
                    ),
                    self.config.tcp_connect_timeout,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                log.info("%s connection to %s failed: %s", transport, addr, exc)
                conn.connect_failed()
            finally:
                self._connecting.pop(key, None)

        if transport == "TLS" and not self.tls_enabled and self._client_ssl is None:
            self._client_context()
        self._connecting[key] = self.loop.create_task(connect())
        return conn

    def _client_context(self) -> ssl.SSLContext:
        if self._client_ssl is None:
            ctx = ssl.create_default_context(cafile=self.config.tls_ca)
            if not self.config.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._client_ssl = ctx
        return self._client_ssl

    def has_connection(self, addr: Address, transport: str) -> bool:
        """Whether a live stream connection to ``addr`` exists."""
        conn = self._connections.get((transport.upper(), addr))
        return conn is not None and not conn.closed

    @property
    def connections(self) -> list[StreamConnection]:
        """The live stream connections."""
        return [c for c in self._connections.values() if not c.closed]

    def admit(self, conn: StreamConnection) -> bool:
        """Whether an accepted connection fits under ``tcp_max_connections`` and
        ``tcp_max_per_source`` (outgoing ones always do, and count towards the total)."""
        if conn.outgoing:
            return True
        c = self.config
        ip = conn.peer[0]
        from_ip = self._per_source.get(ip, 0)
        if len(self._streams) >= c.tcp_max_connections or from_ip >= c.tcp_max_per_source:
            self.refused_connections += 1
            log.warning(
                "refused %s connection from %s: %d connections, %d from that address",
                conn.name,
                ip,
                len(self._streams),
                from_ip,
            )
            return False
        return True

    def connection_up(self, conn: StreamConnection) -> None:
        """``conn`` is connected (accepted or outgoing): it serves its peer from now on."""
        if conn not in self._streams:
            self._streams.add(conn)
            if not conn.outgoing:
                ip = conn.peer[0]
                self._per_source[ip] = self._per_source.get(ip, 0) + 1
        key = (conn.name, conn.peer)
        old = self._connections.get(key)
        if old is not None and old is not conn and not old.closed:
            old.close()
        self._connections[key] = conn

    def connection_down(self, conn: StreamConnection) -> None:
        """``conn`` is closed or lost: forget it and tell ``on_connection_lost``."""
        if conn in self._streams:
            self._streams.discard(conn)
            if not conn.outgoing:
                ip = conn.peer[0]
                left = self._per_source.get(ip, 1) - 1
                if left > 0:
                    self._per_source[ip] = left
                else:
                    self._per_source.pop(ip, None)
        key = (conn.name, conn.peer)
        if self._connections.get(key) is conn:
            del self._connections[key]
        if self.on_connection_lost is not None:
            try:
                self.on_connection_lost(conn.peer, conn.name)
            except Exception:
                log.exception("connection-lost handler failed")

    def close(self) -> None:
        """Close every socket and connection."""
        for task in list(self._connecting.values()):
            task.cancel()
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        self._udp = None
