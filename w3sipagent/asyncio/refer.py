"""Blind transfer with REFER (RFC 3515), both directions.

Outgoing (:meth:`Transferer.transfer`): send ``REFER`` with ``Refer-To`` in the call's
dialog, take 202 (or 200), then follow the implicit ``refer`` subscription: every
``NOTIFY`` (``Event: refer;id=<CSeq>``, a ``message/sipfrag`` body ``SIP/2.0 180 Ringing``)
is answered 200 and fed to :class:`ReferProgress`, which turns the sipfrag statuses into
a :class:`~w3sipagent.asyncio.call_api.TransferOutcome`:

===========  ==============================================================================
succeeded    a final 2xx sipfrag (after progress, or without the peer hanging up at once)
unknown      the peer gave no verdict: a 2xx sipfrag at once followed by a BYE (FreeSWITCH
             without ``confirm-blind-transfer``, whatever the target did), a BYE or a
             terminated subscription without a final status, or no NOTIFY while the
             caller's RTP has stopped (FreeSWITCH with ``confirm-blind-transfer`` when the
             target answers by itself or hangs up): the caller has left our leg
accepted     a 202 taken as final (``accept_202_as_final``, ``Refer-Sub: false``)
busy         486 / 600
rejected     403 / 603, or the REFER itself refused (4xx-6xx)
failed       any other final >= 300: the caller is back with us, the call goes on
timed_out    no final NOTIFY within the timeout while the caller's RTP still flows: the
             caller is still with us, the call goes on
===========  ==============================================================================

After ``succeeded`` / ``accepted`` our leg is hung up (reason ``transferred``; FreeSWITCH
with ``confirm-blind-transfer`` sends no BYE), after ``unknown`` too (reason
``transfer_unknown``). The caller's RTP is read from the call's ``stats()``
(``packets_received``) every ``rtp_poll`` seconds. The decision itself is the pure
:meth:`ReferProgress.verdict`. Measured FreeSWITCH behaviour: docs/freeswitch.md.

Incoming (:meth:`Transferer.handle_refer`): a REFER is answered 603 Decline unless the
:data:`ReferPolicy` allows it; then 202, a NOTIFY ``100 Trying``, the
:data:`ReferAttempt` (e.g. dial the target with ``UserAgent.dial``) and a final NOTIFY
with its status (``Subscription-State: terminated``).

The user agent is reached only through :class:`InDialogRequester` (send a request in a
call's dialog); the UA routes in-dialog NOTIFY and REFER requests to
:meth:`Transferer.handle_notify` / :meth:`Transferer.handle_refer` (see :meth:`install`).
The parts without I/O (progress to outcome, configuration, policy types) live in
:mod:`.referprogress` and are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from w3sipagent.asyncio.call_api import TransferOutcome
from w3sipagent.asyncio.referprogress import (
    InDialogRequester,
    ReferAttempt,
    ReferPolicy,
    ReferProgress,
    ReferRequest,
    TransferableCall,
    TransferConfig,
    allow_all,
    classify_final,
    forbid_all,
)
from w3sipagent.errors import SipParseError, W3SipError
from w3sipagent.sip.headers import NameAddr, parse_media_type
from w3sipagent.sip.message import SipRequest, SipResponse, make_response
from w3sipagent.sip.sipfrag import parse_sipfrag, status_sipfrag

__all__ = [
    "Dialer",
    "InDialogRequester",
    "ReferAttempt",
    "ReferPolicy",
    "ReferProgress",
    "ReferRequest",
    "TransferConfig",
    "TransferableCall",
    "Transferer",
    "allow_all",
    "classify_final",
    "dial_attempt",
    "forbid_all",
]

log = logging.getLogger(__name__)

SIPFRAG_TYPE = "message/sipfrag;version=2.0"


def _call_key(call: Any) -> str:
    info = getattr(call, "info", None)
    key = getattr(info, "call_id", None)
    return str(key) if key is not None else str(id(call))


class _Pending:
    """One outgoing REFER waiting for NOTIFYs."""

    def __init__(self, progress: ReferProgress) -> None:
        self.progress = progress
        self.changed = asyncio.Event()


class Transferer:
    """Blind transfer for a user agent: outgoing REFER and incoming REFER / NOTIFY.

    ``ua`` sends in-dialog requests (:class:`InDialogRequester`). The UA must route
    in-dialog NOTIFY requests to :meth:`handle_notify` and REFER requests to
    :meth:`handle_refer` (:meth:`install` does so with ``ua.on_request``). The end of a
    call is learnt from ``wait_ended`` (default: the call's own ``wait_ended()``) or
    :meth:`call_ended`. The instance is itself the ``transferer(call, target, timeout)``
    hook of ``Call.transfer``.
    """

    def __init__(
        self,
        ua: InDialogRequester,
        config: TransferConfig | None = None,
        *,
        policy: ReferPolicy = forbid_all,
        attempt: ReferAttempt | None = None,
        wait_ended: Callable[[Any], Awaitable[object]] | None = None,
    ) -> None:
        self.ua = ua
        self.config = config or TransferConfig()
        self.policy = policy
        self.attempt = attempt
        self._wait_ended = wait_ended
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ wiring

    def install(self, ua: Any) -> None:
        """Register the NOTIFY and REFER handlers with ``ua.on_request(method, handler)``
        and make this the user agent's ``transferer`` (the hook of ``Call.transfer``)."""
        ua.on_request("NOTIFY", self.handle_notify)
        ua.on_request("REFER", self.handle_refer)
        if hasattr(ua, "transferer"):
            ua.transferer = self

    def call_ended(self, call: Any) -> None:
        """Tell the transferer the call ended (the peer's BYE)."""
        p = self._pending.get(_call_key(call))
        if p is not None:
            p.progress.peer_ended(asyncio.get_running_loop().time())
            p.changed.set()

    async def aclose(self) -> None:
        """Cancel incoming-REFER attempts still running."""
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    # ------------------------------------------------------------------ outgoing

    async def transfer(
        self, call: TransferableCall, target: str, *, timeout: float | None = None
    ) -> TransferOutcome:
        """Blind-transfer ``call`` to ``target`` (a SIP URI) and return the real outcome."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        timeout = cfg.default_timeout if timeout is None else timeout
        key = _call_key(call)
        if key in self._pending:
            return TransferOutcome("failed", None, "a transfer is already in progress")
        try:
            refer_to = str(NameAddr.parse(target if "<" in target else f"<{target}>"))
        except SipParseError as exc:
            raise SipParseError(f"bad transfer target: {exc}") from None
        headers = [("Refer-To", refer_to)]
        referred_by = cfg.referred_by or _local_uri(call)
        if referred_by:
            headers.append(("Referred-By", referred_by))
        if not cfg.subscribe:
            headers += [("Refer-Sub", "false"), ("Supported", "norefersub")]
        pending = _Pending(ReferProgress(loop.time(), cfg))
        self._pending[key] = pending
        ender = asyncio.ensure_future(self._watch_end(call, pending))
        try:
            return await self._run(call, pending, headers, timeout)
        finally:
            ender.cancel()
            with contextlib.suppress(BaseException):
                await ender
            self._pending.pop(key, None)

    async def __call__(
        self, call: TransferableCall, target: str, timeout: float
    ) -> TransferOutcome:
        """``transferer(call, target, timeout)``: the hook ``Call.transfer`` calls."""
        return await self.transfer(call, target, timeout=timeout)

    async def _watch_end(self, call: Any, pending: _Pending) -> None:
        waiter = self._wait_ended
        if waiter is None:
            method = getattr(call, "wait_ended", None)
            if method is None:
                return
            await method()
        else:
            await waiter(call)
        pending.progress.peer_ended(asyncio.get_running_loop().time())
        pending.changed.set()

    async def _run(
        self,
        call: TransferableCall,
        pending: _Pending,
        headers: list[tuple[str, str]],
        timeout: float,
    ) -> TransferOutcome:
        loop = asyncio.get_running_loop()
        cfg = self.config
        progress = pending.progress
        try:
            resp = await asyncio.wait_for(
                self.ua.request_in_dialog(
                    call, "REFER", headers=headers, timeout=cfg.refer_timeout
                ),
                cfg.refer_timeout,
            )
        except (TimeoutError, W3SipError) as exc:
            log.info("REFER got no answer: %s", exc)
            return TransferOutcome("failed", 408, "no answer to the REFER")
        if resp.status >= 300:
            return TransferOutcome("rejected", resp.status, resp.reason)
        with contextlib.suppress(SipParseError):
            progress.event_id = str(resp.cseq.seq)
        no_sub = (resp.headers.get("Refer-Sub") or "").strip().lower() == "false"
        if cfg.accept_202_as_final or (no_sub and not cfg.subscribe):
            await self._hangup(call, cfg.hangup_after_success)
            return TransferOutcome("accepted", resp.status, resp.reason)
        progress.accepted_at(loop.time())
        deadline = progress.sent_at + timeout
        watcher = asyncio.ensure_future(self._watch_rtp(call, pending))
        try:
            while True:
                now = loop.time()
                verdict = progress.verdict(now, deadline)
                if verdict is not None:
                    outcome = verdict
                    break
                await _wait(pending.changed, progress.next_check(now, deadline) - now)
        finally:
            watcher.cancel()  # (not awaited: the hangup below must not wait a loop turn)
        if outcome.status in ("succeeded", "accepted"):
            await self._hangup(call, cfg.hangup_after_success)
        elif outcome.status == "unknown":
            await self._hangup(call, cfg.hangup_on_unknown, "transfer_unknown")
        return outcome

    async def _watch_rtp(self, call: Any, pending: _Pending) -> None:
        """Feed the caller's RTP activity (the call's ``packets_received``) to the progress."""
        stats = getattr(call, "stats", None)
        if stats is None:
            return
        loop = asyncio.get_running_loop()
        last: object = None
        while True:
            try:
                count = stats().get("packets_received")
            except Exception:  # a call without RTP statistics: no media signal
                return
            if not isinstance(count, int):
                return
            if count != last:
                pending.progress.rtp_seen(loop.time())
                if last is None:  # the first sample: the media signal exists from now
                    pending.changed.set()
                last = count
            await asyncio.sleep(self.config.rtp_poll)

    async def _hangup(
        self, call: TransferableCall, wanted: bool, reason: str = "transferred"
    ) -> None:
        if not wanted:
            return
        try:
            await call.hangup(reason)
        except Exception:  # the outcome matters more than a failed BYE
            log.warning("hanging up after a transfer failed", exc_info=True)

    def handle_notify(self, call: Any, request: SipRequest) -> SipResponse:
        """Answer an in-dialog NOTIFY of a ``refer`` subscription (200, or 4xx when it is not ours)."""
        try:
            event = request.event
        except SipParseError:
            return make_response(request, 400, "Bad Event header")
        if event is None:
            return make_response(request, 400, "Missing Event header")
        if event.package.lower() != "refer":
            return make_response(request, 489, headers=[("Allow-Events", "refer")])
        pending = self._pending.get(_call_key(call))
        if pending is None:
            return make_response(request, 481, "Subscription does not exist")
        progress = pending.progress
        if event.id is not None and progress.event_id is not None and event.id != progress.event_id:
            return make_response(request, 481, "Subscription does not exist")
        try:
            state = request.subscription_state
        except SipParseError:
            return make_response(request, 400, "Bad Subscription-State header")
        terminated = state is not None and state.state == "terminated"
        status: int | None = None
        reason = ""
        if request.body:
            try:
                ctype = request.content_type
                mtype = parse_media_type(ctype)[0].lower() if ctype else "message/sipfrag"
            except SipParseError:
                return make_response(request, 400, "Bad Content-Type header")
            if mtype != "message/sipfrag":
                return make_response(request, 415, headers=[("Accept", "message/sipfrag")])
            try:
                frag = parse_sipfrag(request.body)
            except SipParseError as exc:
                return make_response(request, 400, f"Bad sipfrag: {exc.reason}"[:100])
            status, reason = frag.status, frag.reason
        log.info("REFER NOTIFY %s %s%s", status, reason, " (terminated)" if terminated else "")
        progress.notify(status, reason, terminated, asyncio.get_running_loop().time())
        pending.changed.set()
        return make_response(request, 200)

    # ------------------------------------------------------------------ incoming

    def handle_refer(self, call: Any, request: SipRequest) -> SipResponse:
        """Answer an incoming REFER: 400 when malformed, 603 unless the policy allows it,
        else 202 and the attempt starts in the background (NOTIFY 100, then the final)."""
        if call is None:
            return make_response(request, 481, "REFER outside a dialog")
        if request.headers.count("Refer-To") != 1:
            return make_response(request, 400, "Exactly one Refer-To header required")
        try:
            refer_to = request.refer_to
        except SipParseError as exc:
            return make_response(request, 400, f"Bad Refer-To: {exc.reason}"[:100])
        if refer_to is None:
            return make_response(request, 400, "Missing Refer-To header")
        subscribe = (request.headers.get("Refer-Sub") or "").strip().lower() != "false"
        refer = ReferRequest(
            str(refer_to.uri), request.headers.get("Referred-By"), subscribe, request
        )
        try:
            allowed = bool(self.policy(call, refer))
        except Exception:
            log.warning("REFER policy raised; declining", exc_info=True)
            allowed = False
        if not allowed:
            return make_response(request, 603, "Decline")
        task = asyncio.ensure_future(self._incoming(call, refer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        extra = [] if subscribe else [("Refer-Sub", "false")]
        return make_response(
            request, 202, headers=[*extra, ("Expires", str(self.config.notify_expires))]
        )

    async def _incoming(self, call: Any, refer: ReferRequest) -> None:
        await asyncio.sleep(0)  # let the 202 leave first
        cfg = self.config
        event = f"refer;id={refer.request.cseq.seq}"
        if refer.subscribe:
            await self._notify(call, event, 100, "Trying", f"active;expires={cfg.notify_expires}")
        status, reason = 503, "Service Unavailable"
        if self.attempt is not None:
            try:
                status, reason = await asyncio.wait_for(
                    self.attempt(call, refer), cfg.attempt_timeout
                )
            except TimeoutError:
                status, reason = 408, "Request Timeout"
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("incoming REFER attempt failed", exc_info=True)
                status, reason = 500, "Server Internal Error"
        if refer.subscribe:
            await self._notify(call, event, status, reason, "terminated;reason=noresource")
        if 200 <= status < 300 and cfg.hangup_after_success:
            await self._hangup(call, True)

    async def _notify(self, call: Any, event: str, status: int, reason: str, state: str) -> None:
        try:
            await self.ua.request_in_dialog(
                call,
                "NOTIFY",
                headers=[("Event", event), ("Subscription-State", state)],
                body=status_sipfrag(status, reason),
                content_type=SIPFRAG_TYPE,
            )
        except (W3SipError, TimeoutError) as exc:
            log.info("REFER NOTIFY %d not delivered: %s", status, exc)


def _local_uri(call: Any) -> str | None:
    info = getattr(call, "info", None)
    if info is None:
        return None
    uri = info.to_uri if getattr(info, "direction", "inbound") == "inbound" else info.from_uri
    return f"<{uri}>" if uri and not uri.startswith("<") else uri


async def _wait(event: asyncio.Event, seconds: float) -> None:
    event.clear()
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


class Dialer(Protocol):
    """What :func:`dial_attempt` needs: ``UserAgent.dial``."""

    async def dial(self, uri: str, *, timeout: float | None = None) -> Any:
        """Call ``uri``; the answered call, or a ``DialError`` (``status``, ``reason``)."""
        ...


def dial_attempt(
    ua: Dialer,
    on_call: Callable[[Any], Awaitable[None]] | None = None,
    *,
    timeout: float | None = None,
) -> ReferAttempt:
    """A :data:`ReferAttempt` that dials the Refer-To target with ``ua.dial``.

    Reports 200 when the target answered, the target's status when it refused
    (``CallRejected``), 408 when nobody answered in ``timeout`` and 503 when the call
    could not be placed (e.g. a host name, which this agent does not resolve). The
    answered call is handed to ``on_call(call)`` in a task (default: the user agent's
    ``handler``, if any), and hung up when that returns.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def run(new_call: Any) -> None:
        handler = on_call or getattr(ua, "handler", None)
        try:
            if handler is not None:
                await handler(new_call)
            else:
                await new_call.wait_ended()
        except Exception:
            log.warning("handler of a transferred call failed", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                await new_call.hangup()

    async def attempt(call: TransferableCall, refer: ReferRequest) -> tuple[int, str]:
        try:
            new_call = await ua.dial(refer.target, timeout=timeout)
        except asyncio.CancelledError:
            raise
        except (W3SipError, ValueError) as exc:
            status = getattr(exc, "status", None)
            if isinstance(status, int) and 300 <= status <= 699:
                return status, str(getattr(exc, "reason", "") or "")
            if type(exc).__name__ == "DialTimeout":
                return 408, "Request Timeout"
            log.info("transfer target %s not reachable: %s", refer.target, exc)
            return 503, "Service Unavailable"
        # a task of the user agent when it can run one (closing it ends the task too)
        spawn = getattr(ua, "spawn", asyncio.ensure_future)
        task = spawn(run(new_call))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return 200, "OK"

    return attempt
