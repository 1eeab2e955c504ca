"""The asyncio driver of the sans-IO SIP core: input, events, output, and the one timer.

:class:`SipDriver` follows the sans-IO contract of :mod:`w3sipagent.sip.core` (aioquic's):
every input (a datagram, a framed stream message, a timer, a user action) ends with one
call of :meth:`SipDriver.transmit`, which

1. hands every pending core event to the user agent (``on_event``),
2. sends every datagram the core queued (``datagrams_to_send``), and
3. re-arms *one* ``loop.call_at`` timer from ``core.get_timer()``.

The sockets it sends through are :class:`~w3sipagent.asyncio.transport.TransportSet`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from w3sipagent.sip.core import SipCore
from w3sipagent.sip.events import Address, SipEvent

log = logging.getLogger(__name__)

Sender = Callable[[bytes, Address, str], None]
"""``send(payload, destination, transport)``: how the driver puts bytes on the wire."""


class SipDriver:
    """Runs a :class:`SipCore` on an event loop: input, events, output, the one timer.

    ``on_event`` gets every core event; ``send`` puts a datagram on the wire (normally
    :meth:`TransportSet.send`). ``clock`` defaults to ``loop.time``.
    """

    def __init__(
        self,
        core: SipCore,
        on_event: Callable[[SipEvent], None],
        send: Sender,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.core = core
        self.on_event = on_event
        self.send = send
        self.loop = loop or asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._busy = False
        self._again = False
        self.closed = False

    def now(self) -> float:
        """The loop's monotonic clock (what the core's ``now`` is measured on)."""
        return self.loop.time()

    def receive(self, data: bytes, addr: Address, transport: str) -> None:
        """One datagram / framed stream message from ``addr``."""
        if self.closed:
            return
        try:
            self.core.receive_datagram(data, addr, self.loop.time(), transport)
        except Exception:  # the core is meant never to raise; keep the loop alive if it does
            log.exception("SIP core failed on a message from %s", addr)
        self.transmit()

    def transmit(self) -> None:
        """Deliver pending events, send queued datagrams, re-arm the timer.

        Re-entrant calls (a user agent acting from inside ``on_event``) are folded into the
        running one.
        """
        if self._busy:
            self._again = True
            return
        self._busy = True
        core = self.core
        try:
            while True:
                self._again = False
                while (event := core.next_event()) is not None:
                    try:
                        self.on_event(event)
                    except Exception:
                        log.exception("user agent failed on %s", type(event).__name__)
                for payload, addr, transport in core.datagrams_to_send(self.loop.time()):
                    try:
                        self.send(payload, addr, transport)
                    except Exception:
                        log.exception("send to %s over %s failed", addr, transport)
                if not self._again:
                    break
            self._arm()
        finally:
            self._busy = False

    def _arm(self) -> None:
        if self.closed:
            return
        deadline = self.core.get_timer()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.closed:
            return
        try:
            self.core.handle_timer(self.loop.time())
        except Exception:
            log.exception("SIP core timer failed")
        self.transmit()

    def close(self) -> None:
        """Stop the timer; further input is ignored."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
