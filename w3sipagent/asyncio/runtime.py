"""What every part of the user agent shares: the SIP core and its driver, the loop, the
task set, the configuration and our advertised address.

The parts (:mod:`.calltable`, :mod:`.clientrequest`, :mod:`.inbound`, :mod:`.indialog`,
:mod:`.mediasetup`, :mod:`.gate`, :mod:`.dispatch`) reach it through the :class:`Runtime`
protocol (respond, spawn, now, config...), never through the :class:`UserAgent`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from w3sipagent.asyncio.transport import SipDriver, TransportSet
from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.errors import TransactionError
from w3sipagent.sip.core import SipCore
from w3sipagent.sip.events import Address, TransactionId
from w3sipagent.sip.ids import IdSource
from w3sipagent.sip.message import SipResponse

log = logging.getLogger("w3sipagent.asyncio.useragent")  # the records keep the UA's logger


class Runtime(Protocol):
    """The narrow port the parts of the user agent are given."""

    @property
    def config(self) -> UserAgentConfig: ...
    @property
    def core(self) -> SipCore: ...
    @property
    def ids(self) -> IdSource: ...
    @property
    def advertised_host(self) -> str: ...

    def now(self) -> float: ...
    def transmit(self) -> None: ...
    def respond(
        self,
        tx: TransactionId,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipResponse | None: ...
    def send_response(self, tx: TransactionId, response: SipResponse) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
    def next_session_id(self) -> int: ...
    def contact(self, user: str | None = None, transport: str = "UDP") -> str: ...
    def has_connection(self, peer: Address, transport: str) -> bool: ...


class UaRuntime:
    """The :class:`Runtime` of one user agent (built by its composition root)."""

    def __init__(
        self,
        config: UserAgentConfig,
        core: SipCore,
        driver: SipDriver,
        transports: TransportSet,
        ids: IdSource,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._config = config
        self._core = core
        self._driver = driver
        self._transports = transports
        self._ids = ids
        self._loop = loop
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session_id = ids.randbits(32) or 1

    @property
    def config(self) -> UserAgentConfig:
        return self._config

    @property
    def core(self) -> SipCore:
        return self._core

    @property
    def ids(self) -> IdSource:
        return self._ids

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The SIP port actually bound (or configured, before the listeners start)."""
        t = self._transports
        return t.port if t.udp_address or t.tcp_address else self._config.port

    @property
    def advertised_host(self) -> str:
        return self._config.advertised_host or self._config.host

    @property
    def advertised_port(self) -> int:
        return self._config.advertised_port or self.port

    def contact(self, user: str | None = None, transport: str = "UDP") -> str:
        """Our Contact URI (advertised address) for ``user`` and ``transport``."""
        host = self.advertised_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        u = self._config.contact_user if user is None else user
        port = self.advertised_port
        tls = self._transports.tls_address
        if transport.upper() == "TLS" and tls is not None:
            port = self._config.advertised_port or tls[1]
        t = "" if transport.upper() == "UDP" else f";transport={transport.lower()}"
        return f"sip:{u}@{host}:{port}{t}" if u else f"sip:{host}:{port}{t}"

    def has_connection(self, peer: Address, transport: str) -> bool:
        """Whether a TCP / TLS connection to ``peer`` is open."""
        return self._transports.has_connection(peer, transport)

    # -- the core -------------------------------------------------------------------------------

    def now(self) -> float:
        return self._loop.time()

    def transmit(self) -> None:
        """Send what the core queued."""
        self._driver.transmit()

    def respond(
        self,
        tx: TransactionId,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipResponse | None:
        """Answer a server transaction; the response, or None when it is over."""
        try:
            response = self._core.create_response(
                tx, status, reason, headers=headers, body=body, content_type=content_type
            )
        except TransactionError:
            return None
        sent = self._core.send_response(tx, response, self._loop.time())
        self._driver.transmit()
        return response if sent else None

    def send_response(self, tx: TransactionId, response: SipResponse) -> None:
        """Send a ready response (a request handler built it)."""
        self._core.send_response(tx, response, self._loop.time())
        self._driver.transmit()

    def next_session_id(self) -> int:
        """A fresh SDP session id (o= line)."""
        self._session_id = (self._session_id + 1) % (1 << 62) or 1
        return self._session_id

    # -- tasks -----------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the user agent (cancelled on close, failures logged)."""
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("user agent task failed", exc_info=task.exception())

    async def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the running tasks to end on their own."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def cancel_tasks(self, timeout: float) -> None:
        """Cancel every task still running and wait up to ``timeout`` for them, the tasks
        they spawn while ending included (a cancelled call's end callbacks spawn its BYE),
        so none is left running after close. What is still running then is logged."""
        deadline = self._loop.time() + timeout
        cancelled: set[asyncio.Task[Any]] = set()
        while self._tasks:
            left = deadline - self._loop.time()
            if left <= 0:
                break
            for task in self._tasks - cancelled:  # once: a second cancel cuts its cleanup
                task.cancel()
                cancelled.add(task)
            await asyncio.wait(list(self._tasks), timeout=left, return_when="FIRST_COMPLETED")
        if self._tasks:
            names = sorted(_task_label(t) for t in self._tasks)
            log.warning("user agent closed with %d tasks still ending: %s", len(names), names)


def _task_label(task: asyncio.Task[Any]) -> str:
    """A task's name and coroutine, for the log."""
    coro = task.get_coro()
    return f"{task.get_name()}:{getattr(coro, '__qualname__', type(coro).__name__)}"
