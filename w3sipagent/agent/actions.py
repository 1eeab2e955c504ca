"""What the bridge does to the call: tools, transfers, hanging up, DTMF, the fallback.

:class:`CallActions` is the :class:`~w3sipagent.agent.tools.ToolContext` the tools run in
(:meth:`CallActions.transfer_to`, :meth:`CallActions.end_call`,
:meth:`CallActions.send_dtmf`); it runs the model's tool calls (:meth:`CallActions.run_tool`,
recorded in the CDR), the caller's keys (:mod:`w3sipagent.agent.dtmf`) and the fallback
when no AI can take the call (WAV prompt, then transfer or hangup). A transfer that
happened ends the bridge; a caller who leaves during a transfer is reckoned once its
outcome is known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from w3sipagent.agent.dtmf import DtmfAction, DtmfCollector, keypad_message
from w3sipagent.agent.lifecycle import (
    ENDED_TRANSFER,
    BridgeLife,
    LiveSlot,
    Outcome,
    outcome_of_call_end,
    transfer_disposition,
)
from w3sipagent.agent.media import BridgeMedia
from w3sipagent.agent.options import BridgeOptions
from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.agent.turns import Turns
from w3sipagent.ai.session import AISession, ToolCall
from w3sipagent.asyncio.call_api import CallEnded, CallLike, TransferOutcome
from w3sipagent.records.cdr import CallRecord, Disposition, ToolCallRecord, TransferRecord

__all__ = ["CallActions"]

log = logging.getLogger("w3sipagent.agent.bridge")


class CallActions:
    """Actions on one call (see the module docstring)."""

    def __init__(
        self,
        call: CallLike,
        options: BridgeOptions,
        tools: ToolRegistry,
        cdr: CallRecord,
        *,
        turns: Turns,
        media: BridgeMedia,
        live: LiveSlot,
        life: BridgeLife,
        touch: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.call = call
        self.options = options
        self.tools = tools
        self._cdr = cdr
        self._turns = turns
        self._media = media
        self._live = live
        self._life = life
        self._touch = touch
        self._clock = clock
        self._dtmf = DtmfCollector(options.dtmf_actions, options.dtmf_collect_timeout)
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._transferring = False
        self._ended_in_transfer: CallEnded | None = None

    @property
    def transferring(self) -> bool:
        """A transfer of ours is under way."""
        return self._transferring

    def stop(self) -> None:
        """The bridge ends: collected digits are not sent any more."""
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None

    def call_ended(self, ev: CallEnded) -> None:
        """The call ended by itself (after a transfer: once its outcome is known)."""
        if self._transferring:
            # our leg ended by the transfer (the transferer hangs up after success): the
            # outcome decides the CDR once known, and the tool call keeps its real result
            self._ended_in_transfer = ev
            return
        self._life.finish(outcome_of_call_end(ev))

    # ------------------------------------------------------------ tools

    async def run_tool(self, session: AISession, ev: ToolCall) -> None:
        """Run the model's tool call; its result goes back while ``session`` is live."""
        t0 = self._clock()
        try:
            args: Any = json.loads(ev.arguments) if ev.arguments.strip() else {}
        except ValueError:
            args = ev.arguments
        record = ToolCallRecord(
            name=ev.name, call_id=ev.call_id, arguments=args, at=self._cdr.offset()
        )
        self._cdr.add_tool_call(record)
        try:
            result = await self.tools.run(self, ev.name, ev.arguments)
        except asyncio.CancelledError:
            record.error = "cancelled: the call ended"
            raise
        record.result = result.output
        record.error = result.error
        record.duration_ms = round((self._clock() - t0) * 1000.0, 1)
        if self._live.is_live(session) and not self._life.ended:
            await session.send_tool_result(ev.call_id, result.to_json(), respond=result.respond)

    async def transfer_to(
        self,
        destination: str,
        uri: str,
        reason: str,
        *,
        wait_quiet: bool = True,
        disposition: Disposition = Disposition.TRANSFERRED,
    ) -> TransferOutcome:
        """Blind-transfer the caller; a transfer that happened ends the bridge."""
        if wait_quiet:
            await self.wait_quiet(self.options.quiet_timeout)
        self._cdr.transfer = rec = TransferRecord(destination=destination, uri=uri)
        self._cdr.add_event("transfer", destination=destination, reason=reason)
        self._transferring = True
        try:
            via = self.options.transferer
            timeout = self.options.transfer_timeout
            if via is None:
                outcome = await self.call.transfer(uri, timeout=timeout)
            else:
                outcome = await via(self.call, uri, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call %s: transfer failed: %r", self.call.info.call_id, exc)
            outcome = TransferOutcome("failed", reason=type(exc).__name__)
        finally:
            self._transferring = False
            self._touch(self._clock())
        rec.outcome = outcome.status
        rec.status = outcome.code
        if outcome.status in ENDED_TRANSFER:
            verb = "transferred to" if outcome.status == "succeeded" else "handed off to"
            why = f"{verb} {destination} ({outcome.status})"
            disp = transfer_disposition(outcome.status, disposition)
            self._life.finish(Outcome(disp, "agent", why, sip_code=outcome.code))
        elif self._ended_in_transfer is not None:  # the caller left while we transferred
            self.call_ended(self._ended_in_transfer)
        return outcome

    async def end_call(self, reason: str) -> None:
        """Hang up once the current response has been heard (returns at once)."""
        self._cdr.add_event("end_call", reason=reason)
        self._life.spawn(self._end_after_playout(reason), "end-call")

    async def send_dtmf(self, digits: str) -> None:
        """Send DTMF on the call."""
        await self.call.send_dtmf(digits)

    async def _end_after_playout(self, reason: str) -> None:
        s = self._live.session
        if s is not None and s.config.model_owns_turns:
            await self.wait_quiet_for(self.options.end_call_quiet, self.options.quiet_timeout)
        else:
            await self.wait_quiet(self.options.quiet_timeout)
        await asyncio.sleep(self.options.end_call_tail)
        self._life.finish(Outcome(Disposition.COMPLETED, "agent", f"end_call: {reason}"))

    async def wait_quiet(self, timeout: float) -> bool:
        """Wait until no response is active and the playout queue is empty."""
        deadline = self._clock() + timeout
        step = self._turns.playout.frame_ms / 1000.0
        while not self._turns.quiet:
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(step)
        return True

    async def wait_quiet_for(self, quiet: float, timeout: float) -> bool:
        """Wait until the agent has been quiet for ``quiet`` seconds (decided from the
        audio: no utterance under way, nothing queued); False when ``timeout`` passed."""
        start = self._clock()
        step = self._turns.playout.frame_ms / 1000.0
        since: float | None = None
        while True:
            now = self._clock()
            if not self._turns.quiet:
                since = None
            elif since is None:
                since = now
            if since is not None and now - since >= quiet:
                return True
            if now - start >= timeout:
                return False
            await asyncio.sleep(step)

    # ------------------------------------------------------------ the caller's keys

    def dtmf(self, digit: str) -> None:
        """A key the caller pressed: its action, or collected for the model."""
        self._cdr.add_event("dtmf", digit=digit)
        now = self._clock()
        self._touch(now)
        action = self._dtmf.press(digit, now)
        if action is not None:
            self._life.spawn(self._dtmf_action(action), "dtmf-action")
            return
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        loop = asyncio.get_running_loop()
        self._dtmf_timer = loop.call_later(self.options.dtmf_collect_timeout, self._flush_digits)

    def _flush_digits(self) -> None:
        self._dtmf_timer = None
        digits = self._dtmf.flush()
        if digits:
            self._life.spawn(self.tell_model(keypad_message(digits)), "dtmf")

    async def tell_model(self, text: str) -> None:
        """A system message to the live session, and a response to it."""
        s = self._live.session
        if s is not None and not self._life.ended:
            await s.add_message(text, "system")
            await s.create_response()

    async def _dtmf_action(self, action: DtmfAction) -> None:
        digit, arg = action.digit, action.arg
        if action.kind == "transfer":
            uri = self.options.transfers.get(arg)
            if uri is None:
                log.error("dtmf %s: no transfer destination named %r", digit, arg)
                return
            s = self._live.session
            if s is not None and self._turns.audible:
                await self._turns.barge_in(s)
            outcome = await self.transfer_to(arg, uri, f"dtmf {digit}", wait_quiet=False)
            if outcome.status not in ENDED_TRANSFER:
                await self.tell_model(
                    f"The caller pressed {digit} to reach {arg}, but the transfer failed "
                    f"({outcome.status}). Tell the caller and offer to help."
                )
        elif action.kind == "hangup":
            self._life.finish(Outcome(Disposition.COMPLETED, "caller", f"dtmf {digit}: hangup"))
        elif action.kind == "message":
            await self.tell_model(arg)

    # ------------------------------------------------------------ no AI

    async def fallback(self, why: str) -> None:
        """No AI can take the call: the fallback WAV, then transfer or hang up."""
        if self._life.ended:
            return
        opts = self.options
        self._cdr.add_event("fallback", reason=why[:200])
        played = False
        if opts.fallback_wav is not None:
            played = await self._media.play_prompt(opts.fallback_wav)
            if played:
                await asyncio.sleep(opts.end_call_tail)
        if self._life.ended:
            return
        if opts.fallback_uri is not None:
            outcome = await self.transfer_to(
                "fallback",
                opts.fallback_uri,
                why,
                wait_quiet=False,
                disposition=Disposition.FALLBACK,
            )
            if outcome.status in ENDED_TRANSFER:
                return
        handled = played or opts.fallback_uri is not None
        self._life.finish(
            Outcome(
                Disposition.FALLBACK if handled else Disposition.AI_ERROR,
                "agent",
                f"fallback: {why}" if handled else f"ai_error: {why}",
            )
        )
