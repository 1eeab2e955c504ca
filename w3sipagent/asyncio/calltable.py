"""The calls of a user agent and everything keyed to them: Call-ID and dialog maps, the
ACKs we wait for (our 2xx to an INVITE or a re-INVITE), the global and per-key call limits.

A call is added once (:meth:`CallTable.add`), confirmed once its dialog exists
(:meth:`CallTable.confirm`) and ended in one place: :meth:`CallTable.end` records the end
and releases what the table holds; :meth:`CallTable.hang_up` is the one way to end a call
on our side (BYE when answered, a refusal of the INVITE before), with who hung up as an
explicit argument.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import HangupBy
from w3sipagent.errors import TransactionError
from w3sipagent.sdp import SessionDescription
from w3sipagent.sip.dialog import Dialog, DialogError, DialogId, DialogState
from w3sipagent.sip.events import TransactionId
from w3sipagent.sip.message import SipResponse

log = logging.getLogger("w3sipagent.asyncio.useragent")  # the records keep the UA's logger


class Responder(Protocol):
    """Answer a server transaction (the INVITE of a call not answered yet)."""

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


ByeSender = Callable[[Call, float], Awaitable[object]]
"""``send_bye(call, timeout)``: BYE in the call's dialog, awaited to its final response."""


class CallTable:
    """The calls in progress, their dialogs, pending ACKs and limit counts."""

    def __init__(
        self,
        responder: Responder,
        remove_dialog: Callable[[Dialog], None],
        send_bye: ByeSender,
        bye_timeout: float,
        max_calls: int,
    ) -> None:
        self._responder = responder
        self._remove_dialog = remove_dialog
        self._send_bye = send_bye
        self._bye_timeout = bye_timeout
        self._max_calls = max_calls
        self._calls: dict[str, Call] = {}  # Call-ID -> call
        self._dialogs: dict[DialogId, Call] = {}
        self._dialog_key: dict[Call, DialogId] = {}  # the key each call was confirmed under
        self._ack_wait: dict[TransactionId, Call] = {}
        self._reinvite_ack: dict[TransactionId, tuple[Call, SessionDescription | None]] = {}
        self._limits: dict[str, int] = {}
        self._pending = 0  # places held for INVITEs being admitted (not in _calls yet)

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def calls(self) -> list[Call]:
        """The calls in progress (answered or being set up)."""
        return list(self._calls.values())

    def by_dialog(self, dialog_id: DialogId) -> Call | None:
        """The call of a dialog, if it is one of ours."""
        return self._dialogs.get(dialog_id)

    @property
    def full(self) -> bool:
        """Whether ``max_calls`` calls are in progress or being admitted (new ones get 503)."""
        return len(self._calls) + self._pending >= self._max_calls

    def at_limit(self, key: str, limit: int) -> bool:
        """Whether ``limit`` calls of ``key`` are in progress (or held) already."""
        return self._limits.get(key, 0) >= limit

    # -- places held while an INVITE is admitted (a burst cannot over-admit) --------------

    def reserve(self) -> bool:
        """Hold a place for an INVITE being admitted; False when full (503). The place
        becomes the call's in :meth:`add` (``reserved=True``) or is given back by
        :meth:`unreserve`."""
        if self.full:
            return False
        self._pending += 1
        return True

    def unreserve(self) -> None:
        """Give back a place held by :meth:`reserve` (the INVITE was refused)."""
        self._pending = max(0, self._pending - 1)

    def reserve_key(self, key: str, limit: int) -> bool:
        """Count one more call of ``key`` now, if under ``limit`` (False: at the limit). The
        count becomes the call's in :meth:`add` (``key_reserved=True``) or is given back
        by :meth:`release_key`."""
        if self.at_limit(key, limit):
            return False
        self._limits[key] = self._limits.get(key, 0) + 1
        return True

    def release_key(self, key: str) -> None:
        """Give back one count of ``key``."""
        n = self._limits.get(key, 0) - 1
        if n > 0:
            self._limits[key] = n
        else:
            self._limits.pop(key, None)

    def awaiting_ack(self, tx: TransactionId) -> Call | None:
        """The call whose INVITE transaction ``tx`` was answered 2xx and is not ACKed yet."""
        return self._ack_wait.get(tx)

    # -- adding and confirming --------------------------------------------------------------

    def add(
        self,
        call: Call,
        *,
        limit_key: str | None = None,
        reserved: bool = False,
        key_reserved: bool = False,
    ) -> None:
        """A call being set up (its media ready); counted against ``limit_key``.
        ``reserved`` / ``key_reserved``: it takes the place / the key count held for it."""
        if reserved:
            self.unreserve()
        if limit_key is not None:
            call.limit_key = limit_key
            if not key_reserved:
                self._limits[limit_key] = self._limits.get(limit_key, 0) + 1
        self._calls[call.call_id] = call

    def confirm(
        self,
        call: Call,
        dialog_id: DialogId,
        dialog: Dialog | None,
        *,
        ack_tx: TransactionId | None = None,
    ) -> None:
        """The call's dialog exists (our 2xx sent, or theirs received); with ``ack_tx`` the
        ACK of that INVITE transaction is awaited (:meth:`take_ack`)."""
        call.dialog = dialog
        self._dialogs[dialog_id] = call
        self._dialog_key[call] = dialog_id  # the core may have no dialog (a bad Contact)
        if ack_tx is not None:
            self._ack_wait[ack_tx] = call

    def expect_reinvite_ack(
        self, tx: TransactionId, call: Call, offer: SessionDescription | None
    ) -> None:
        """Our 2xx to a re-INVITE went out; ``offer`` when the answer comes in the ACK."""
        self._reinvite_ack[tx] = (call, offer)

    def take_ack(self, tx: TransactionId) -> Call | None:
        """The call whose initial INVITE ``tx`` is, no longer waiting for its ACK."""
        return self._ack_wait.pop(tx, None)

    def take_reinvite_ack(self, tx: TransactionId) -> tuple[Call, SessionDescription | None] | None:
        """The call and our offer (if any) of the re-INVITE ``tx``, no longer waiting."""
        return self._reinvite_ack.pop(tx, None)

    # -- ending ----------------------------------------------------------------------------------

    def end(
        self,
        call: Call,
        reason: str,
        by: HangupBy,
        code: int | None = None,
        *,
        keep_dialog: bool = False,
    ) -> bool:
        """The call is over: post CallEnded, release its media, forget it. False when it
        had ended already. ``keep_dialog`` leaves the dialog to a BYE still to be sent."""
        if not call.finish(reason, by, code):
            return False
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        key = self._dialog_key.pop(call, None)
        if key is not None and self._dialogs.get(key) is call:
            del self._dialogs[key]
        if call.dialog is not None:
            self._dialogs.pop(call.dialog.id, None)
            if not keep_dialog:
                self._remove_dialog(call.dialog)
        if call.invite_tx is not None:
            self._ack_wait.pop(call.invite_tx, None)
        for tx, (rc, _) in list(self._reinvite_ack.items()):
            if rc is call:
                del self._reinvite_ack[tx]
        if call.limit_key is not None:
            self.release_key(call.limit_key)
        log.info("call %s ended: %s (%s)", call.call_id, reason, by)
        return True

    async def hang_up(self, call: Call, reason: str, by: HangupBy, code: int | None = None) -> None:
        """End ``call`` on our side: BYE when its dialog is confirmed; before that an
        inbound INVITE is refused (480, or 503 on shutdown) and an outbound one is left to
        :meth:`UserAgent.dial`, which cancels it. Idempotent."""
        if call.ended:
            return
        dialog = call.dialog
        if dialog is None or dialog.state is DialogState.TERMINATED:
            if call.invite_tx is not None and call.info.direction == "inbound":
                self._responder.respond(call.invite_tx, 480 if reason != "shutdown" else 503)
            self.end(call, reason, by, code)
            return
        self.end(call, reason, by, code, keep_dialog=True)
        try:
            await self._send_bye(call, self._bye_timeout)
        except (TransactionError, DialogError, TimeoutError) as exc:
            log.debug("BYE of %s: %s", call.call_id, exc)
        finally:
            self._remove_dialog(dialog)
