"""Session timers (RFC 4028) of a user agent's calls, on the event loop: the policy is
:mod:`w3sipagent.sip.sessiontimer` (sans-IO); this module sends what it returns, keeps the
negotiated timer on the call, arms the loop timer for its deadline and sends the refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import HangupBy
from w3sipagent.asyncio.uaconfig import UserAgentConfig
from w3sipagent.errors import TransactionError
from w3sipagent.sdp import SessionDescription
from w3sipagent.sip import sessiontimer as policy
from w3sipagent.sip.dialog import Dialog
from w3sipagent.sip.events import RequestReceived
from w3sipagent.sip.message import SipRequest, SipResponse

Respond = Callable[..., object]
"""``respond(transaction, status, reason=None, *, headers=...)``: send a response."""


class SessionTimerPort(Protocol):
    """What the session timers ask of the user agent (:class:`~.callservices.CallServices`)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the timers are armed on (and whose ``time()`` they read)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the user agent."""
        ...

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
        """Send ``method`` in the call's dialog; the final response."""
        ...

    async def hang_up(self, call: Call, reason: str, by: HangupBy, code: int | None = None) -> None:
        """BYE the call and end it."""
        ...

    def end(self, call: Call, reason: str, by: HangupBy, code: int | None = None) -> None:
        """End the call without a BYE (the peer's dialog is gone)."""
        ...


def refuse_session_expires(config: UserAgentConfig, ev: RequestReceived, respond: Respond) -> bool:
    """Answer an INVITE / UPDATE whose Session-Expires we cannot take: 400 when malformed,
    422 with our Min-SE when below it (RFC 4028 §8). True if a response was sent."""
    refusal = policy.check_session_expires(
        ev.request, enabled=config.session_timers, min_se=config.min_se
    )
    if refusal is None:
        return False
    respond(ev.transaction, refusal.status, refusal.reason, headers=refusal.headers)
    return True


def session_timer_answer(
    config: UserAgentConfig, call: Call, request: SipRequest
) -> list[tuple[str, str]]:
    """Headers of our 2xx for the Session-Expires of ``request``; sets the call's timer."""
    if not config.session_timers:
        return []
    state, headers = policy.negotiate_uas(
        request, session_expires=config.session_expires, min_se=config.min_se
    )
    _set(call, state)
    return headers


def session_timer_from_response(config: UserAgentConfig, call: Call, response: SipResponse) -> None:
    """The 2xx to our INVITE sets the call's timer (when it has a Session-Expires)."""
    state = policy.state_from_response(response)
    if state is not None and config.session_timers:
        _set(call, state)


def _set(call: Call, state: policy.SessionTimerState | None) -> None:
    call.session_interval = state.interval if state is not None else None
    call.we_refresh = state.we_refresh if state is not None else False


def _state(call: Call) -> policy.SessionTimerState | None:
    if call.session_interval is None:
        return None
    return policy.SessionTimerState(call.session_interval, call.we_refresh)


class SessionTimers:
    """Arms the session timer of each call and refreshes or ends the session when it fires,
    through the :class:`SessionTimerPort` (loop, tasks, requests in the dialog, hang-up)."""

    def __init__(self, port: SessionTimerPort) -> None:
        self._port = port

    def arm(self, call: Call) -> None:
        """(Re)arm the call's timer for its negotiated interval; none when the call is not
        active or has no session timer."""
        if call.session_timer is not None:
            call.session_timer.cancel()
            call.session_timer = None
        state = _state(call)
        if state is None or call.ended or call.state != "active":
            return
        loop = self._port.loop
        due = policy.deadline(state, loop.time())
        if due.action == "refresh":
            call.session_timer = loop.call_at(due.at, lambda: self._port.spawn(self.refresh(call)))
        else:
            call.session_timer = loop.call_at(
                due.at,
                lambda: self._port.spawn(
                    self._port.hang_up(call, "session_expired", "system", 408)
                ),
            )

    async def refresh(self, call: Call) -> None:
        """Refresh the session: UPDATE without body (re-INVITE with our SDP when the peer
        does not allow UPDATE)."""
        state = _state(call)
        if call.ended or state is None:
            return
        headers = policy.refresh_headers(state.interval)
        try:
            if policy.refresh_method(call.info.header("Allow")) == "UPDATE":
                response = await self._port.request_in_dialog(call, "UPDATE", headers=headers)
            else:
                sdp = call.local_sdp
                body = bytes(sdp) if isinstance(sdp, SessionDescription) else b""
                response = await self._port.request_in_dialog(
                    call,
                    "INVITE",
                    headers=headers,
                    body=body,
                    content_type="application/sdp" if body else None,
                )
        except TransactionError:
            await self._port.hang_up(call, "session_refresh_failed", "system", 408)
            return
        after = policy.refresh_outcome(response, state)
        if after is None:
            self._port.end(call, "session_refresh_failed", "system", response.status)
            return
        _set(call, after)
        self.arm(call)
