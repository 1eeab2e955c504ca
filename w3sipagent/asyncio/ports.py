"""RTP / RTCP port allocation from a configured range.

Ports are bound directly (no probe-close-rebind race): :meth:`RtpPortRange.allocate`
returns the bound sockets themselves, to be handed to
``loop.create_datagram_endpoint(sock=...)``. RTP takes even ports, RTCP the
next odd one (RFC 3550 §11) unless rtcp-mux makes it unnecessary. A rotating
cursor avoids handing out a just-released port at once (late packets of the
previous call). When no port is left the caller gets :class:`PortsExhausted`
and the user agent can answer 503.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from w3sipagent.errors import ConfigError, PortsExhausted

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PortAllocation:
    """Bound sockets for one call: ``rtp`` on ``port``, ``rtcp`` on ``port + 1`` (or None)."""

    port: int
    rtp: socket.socket
    rtcp: socket.socket | None
    #: gives the port back to its range (called once, by :meth:`release`)
    _give_back: Callable[[int], None] | None = field(default=None, repr=False)

    @property
    def rtcp_port(self) -> int | None:
        return None if self.rtcp is None else self.port + 1

    def release(self) -> None:
        """Close the sockets (if still open) and return the port to the range. Idempotent."""
        for s in (self.rtp, self.rtcp):
            if s is not None and s.fileno() != -1:
                s.close()
        if self._give_back is not None:
            self._give_back(self.port)
            self._give_back = None


class RtpPortRange:
    """Even RTP ports ``start..end`` (inclusive; RTCP uses port + 1 <= end)."""

    def __init__(self, start: int = 20000, end: int = 30000) -> None:
        if not (1024 <= start < end <= 65535):
            raise ConfigError(f"rtp port range {start}-{end}: need 1024 <= start < end <= 65535")
        first = start + (start % 2)
        self.start = start
        self.end = end
        self._ports = list(range(first, end, 2))  # port + 1 <= end
        if not self._ports:
            raise ConfigError(f"rtp port range {start}-{end} holds no even/odd port pair")
        self._cursor = 0
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        """How many RTP ports the range holds."""
        return len(self._ports)

    @property
    def in_use(self) -> int:
        """How many are allocated by this process right now."""
        return len(self._in_use)

    def allocate(self, host: str, *, rtcp: bool = True) -> PortAllocation:
        """Bind a free RTP port (and RTP+1 for RTCP unless ``rtcp`` is False) on ``host``.

        Raises :class:`PortsExhausted` when every port of the range is taken.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        n = len(self._ports)
        for _ in range(n):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % n
            if port in self._in_use:
                continue
            rtp_sock = self._bind(family, host, port)
            if rtp_sock is None:
                continue
            rtcp_sock = None
            if rtcp:
                rtcp_sock = self._bind(family, host, port + 1)
                if rtcp_sock is None:
                    rtp_sock.close()
                    continue
            self._in_use.add(port)
            return PortAllocation(port, rtp_sock, rtcp_sock, self._release)
        raise PortsExhausted(
            f"no free RTP port in {self.start}-{self.end} on {host} ({self.in_use} in use here)"
        )

    @staticmethod
    def _bind(family: int, host: str, port: int) -> socket.socket | None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise ConfigError(f"cannot bind RTP on {host}:{port}: {exc.strerror}") from exc
        return sock

    def _release(self, port: int) -> None:
        self._in_use.discard(port)
