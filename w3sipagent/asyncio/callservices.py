"""What a call may ask of its user agent (:class:`CallServices`, the :class:`~.call.CallPort`
of every :class:`~.call.Call`), also the port of the session timers (:mod:`.sessiontimer`):
hang up or end a call, a request in its dialog, a task, a timer, a transfer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from w3sipagent.asyncio.call import Call, Transferer
from w3sipagent.asyncio.call_api import HangupBy, TransferOutcome
from w3sipagent.asyncio.calltable import CallTable
from w3sipagent.asyncio.clientrequest import ClientRequests
from w3sipagent.asyncio.runtime import Runtime
from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.sip.dialog import Dialog
from w3sipagent.sip.events import TransactionId
from w3sipagent.sip.message import SipResponse


class CallServices:
    """The user agent's services for its calls (built by the composition root)."""

    def __init__(
        self,
        runtime: Runtime,
        loop: asyncio.AbstractEventLoop,
        table: CallTable,
        requests: ClientRequests,
        transferer: Callable[[], Transferer],
    ) -> None:
        self._rt = runtime
        self.loop = loop
        self._table = table
        self._requests = requests
        self._transferer = transferer

    @property
    def config(self) -> UserAgentConfig:
        return self._rt.config

    @property
    def audio_queue(self) -> int:
        return self._rt.config.audio_queue

    @property
    def hangup_on_media_timeout(self) -> bool:
        return self._rt.config.hangup_on_media_timeout

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._rt.spawn(coro)

    def respond(
        self,
        tx: TransactionId,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> SipResponse | None:
        """Answer a server transaction (a re-INVITE / UPDATE of a call)."""
        return self._rt.respond(tx, status, reason, headers=headers)

    async def hang_up(self, call: Call, reason: str, by: HangupBy, code: int | None = None) -> None:
        await self._table.hang_up(call, reason, by, code)

    def end(self, call: Call, reason: str, by: HangupBy, code: int | None = None) -> None:
        """The call is over without a BYE of ours (the peer's dialog is gone)."""
        self._table.end(call, reason, by, code)

    async def transfer(self, call: Call, target: str, timeout: float) -> TransferOutcome:
        return await self._transferer()(call, target, timeout)

    async def request_in_dialog(
        self,
        dialog_or_call: Dialog | Call,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> SipResponse:
        return await self._requests.request_in_dialog(
            dialog_or_call,
            method,
            headers=headers,
            body=body,
            content_type=content_type,
            timeout=timeout,
        )
