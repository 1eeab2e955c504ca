"""The test suite's port plan.

Everything a test binds on a chosen number lies below the kernel's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default). A number the kernel
hands out for port 0 or an outgoing connection is then never one a test, or a peer process
started later (baresip, Kamailio, PostgreSQL), is about to bind: "free when probed, taken
when bound" cannot happen with sockets of this run. Within a block each process starts at
an offset taken from its pid, so that suites run side by side mostly keep apart; user
agents skip a taken RTP port anyway. Under pytest-xdist (scripts/test.sh runs the suite on
several worker processes) the workers of one run take distinct slots (:func:`process_slot`).

=============  ========================================================================
20000-20999    ``UserAgentConfig``'s default RTP range (no test relies on it)
21000-22099    inside network namespaces only (tests/netns)
23000-26999    RTP of the in-process user agents (``tests.asyncio.helpers.rtp_range``)
27000-28999    RTP of peer processes and the agents they talk to (:func:`rtp_block`)
29000-30399    SIP / control / database ports of peer processes (:func:`free_port`)
30500-31499    fixed numbers of single tests (test_ports, test_media, test_useragent_dial)
=============  ========================================================================
"""

from __future__ import annotations

import os
import socket

RTP_BLOCKS = (27000, 29000)
SERVICE_PORTS = (29000, 30400)

_handed_out: set[int] = set()
_next_rtp = [0]


def process_slot() -> int:
    """This process' slot, 0-9, for spreading port blocks: from the pid, or under pytest-xdist
    from the controller's pid plus the worker's number (``gw0``, ``gw1``, ...), so that the
    workers of one run never share a slot (up to ten of them) and parallel runs still spread."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return (os.getppid() + int(worker[2:])) % 10
    return os.getpid() % 10


def _free_on_both(port: int) -> bool:
    """True when ``port`` can be bound on 127.0.0.1 over TCP and UDP right now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1, not handed out before in this run.

    Port + 1 is free too and is not handed out later: SIP peers listen for TLS there
    (baresip with ``sip_listen`` N takes N + 1 for TLS).
    """
    lo, hi = SERVICE_PORTS
    size = hi - lo - 1
    start = (process_slot() * size // 10 + os.getpid() % 37) % size
    for i in range(size):
        port = lo + (start + i) % size
        pair = (port, port + 1)
        if any(p in _handed_out for p in pair) or not all(map(_free_on_both, pair)):
            continue
        _handed_out.update(pair)
        return port
    raise RuntimeError(f"no free port in {lo}-{hi - 1}")


def rtp_block(size: int = 20) -> tuple[int, int]:
    """A private RTP port range (inclusive) for one peer or agent."""
    lo, hi = RTP_BLOCKS
    span = hi - lo
    if not 2 <= size <= span:
        raise ValueError(f"rtp_block size {size}: between 2 and {span}")
    offset = process_slot() * 200
    start = lo + (offset + _next_rtp[0]) % (span - size)
    start += start % 2  # RTP on even ports
    _next_rtp[0] += size + (size % 2)
    return start, start + size - 1
