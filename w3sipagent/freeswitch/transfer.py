"""Transfer over FreeSWITCH's event socket: the caller stays with the agent until the
target has answered, and every outcome is known.

FreeSWITCH tells the agent the caller's channel UUID in a header of the INVITE it bridges
to the agent (``X-W3-Caller-UUID``, set by the one dialplan line
``<action application="set" data="sip_h_X-W3-Caller-UUID=${uuid}"/>`` before the
``bridge``; the shipped dialplans and ``w3sipagent freeswitch dialplan`` carry it). The
transfer (:class:`EslTransferer`):

1. ``originate {origination_uuid=T,originate_timeout=N,ignore_early_media=true}DIAL &park()``
   as a background job: FreeSWITCH rings the target while the caller still talks to the
   agent; the job answers ``+OK T`` once the target answered, or ``-ERR CAUSE`` (the
   target channel's Hangup-Cause: ``USER_BUSY``, ``NO_ANSWER``, ``NO_ROUTE_DESTINATION``...);
2. on ``+OK``: ``uuid_bridge CALLER T`` joins the caller to the target (FreeSWITCH drops
   its leg to the agent) and the agent hangs its own leg up; on ``-ERR``: nothing moved,
   the caller is still with the agent and the model is told why (:func:`outcome_of_cause`).

``DIAL`` is the tenant's destination: a FreeSWITCH dial string as is
(``user/1001@acme.example``, ``loopback/1000/default``, ``sofia/internal/1001@host``), or a
``sip:`` URI, dialled as ``sofia/PROFILE/USER@HOST`` (:func:`dial_string`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from w3sipagent.asyncio.call_api import CallLike, TransferOutcome
from w3sipagent.freeswitch.esl import EslClient, EslError

__all__ = [
    "CALLER_UUID_ACTION",
    "CALLER_UUID_HEADER",
    "EslTransferConfig",
    "EslTransferer",
    "dial_string",
    "outcome_of_cause",
]

log = logging.getLogger(__name__)

CALLER_UUID_HEADER = "X-W3-Caller-UUID"
CALLER_UUID_ACTION = f'<action application="set" data="sip_h_{CALLER_UUID_HEADER}=${{uuid}}"/>'
"""The dialplan line that puts the caller's channel UUID into the INVITE to the agent."""

_UUID = re.compile(r"^[0-9A-Za-z-]{8,64}$")
_BUSY = {"USER_BUSY"}
_NO_ANSWER = {"NO_ANSWER", "NO_USER_RESPONSE", "ALLOTTED_TIMEOUT", "PROGRESS_TIMEOUT"}
_REJECTED = {"CALL_REJECTED"}
_MISSING = {"NO_ROUTE_DESTINATION", "UNALLOCATED_NUMBER", "INVALID_NUMBER_FORMAT"}


def outcome_of_cause(cause: str) -> TransferOutcome:
    """The outcome of a failed originate: its Hangup-Cause (``-ERR USER_BUSY``)."""
    c = cause.strip().removeprefix("-ERR").strip().split()[0] if cause.strip() else ""
    if c in _BUSY:
        return TransferOutcome("busy", 486, c)
    if c in _NO_ANSWER:
        return TransferOutcome("no_answer", 480, c)
    if c in _REJECTED:
        return TransferOutcome("rejected", 603, c)
    if c in _MISSING:
        return TransferOutcome("failed", 404, c)
    return TransferOutcome("failed", None, c or "originate failed")


def dial_string(destination: str, profile: str = "external") -> str:
    """A FreeSWITCH dial string for a transfer destination (see the module docstring)."""
    d = destination.strip().strip("<>")
    for scheme in ("sip:", "sips:"):
        if d.lower().startswith(scheme):
            return f"sofia/{profile}/{d[len(scheme) :]}"
    return d


@dataclass(frozen=True, slots=True)
class EslTransferConfig:
    """Where the event socket is and how to dial: ``profile`` for ``sip:`` destinations."""

    host: str = "127.0.0.1"
    port: int = 8021
    profile: str = "external"
    connect_timeout: float = 5.0


class EslTransferer:
    """``transfer(call, target, timeout)`` over the event socket (module docstring).

    ``password`` is called at each transfer (a secret reference resolved then, so a
    rotated password is picked up). ``timeout`` is how long the target may ring.
    """

    def __init__(self, config: EslTransferConfig, password: Callable[[], str]) -> None:
        self.config = config
        self._password = password

    async def __call__(self, call: CallLike, target: str, timeout: float) -> TransferOutcome:
        caller = call.info.header(CALLER_UUID_HEADER)
        if caller is None or not _UUID.match(caller.strip()):
            return TransferOutcome(
                "failed", None, f"no {CALLER_UUID_HEADER} header: the dialplan must set it"
            )
        caller = caller.strip()
        cfg = self.config
        client = EslClient(cfg.host, cfg.port, self._password(), timeout=cfg.connect_timeout)
        try:
            await client.connect()
        except (OSError, EslError, TimeoutError) as exc:
            log.warning("ESL transfer: cannot reach %s:%d: %s", cfg.host, cfg.port, exc)
            return TransferOutcome("failed", None, f"event socket unreachable: {exc}")
        try:
            return await self._transfer(client, call, caller, target, timeout)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _transfer(
        self, client: EslClient, call: CallLike, caller: str, target: str, timeout: float
    ) -> TransferOutcome:
        if (await client.api(f"uuid_exists {caller}")).strip() != "true":
            return TransferOutcome("failed", None, "the caller's channel is gone")
        leg = str(uuid.uuid4())
        ring = max(1, round(timeout))
        dial = dial_string(target, self.config.profile)
        cmd = (
            f"originate {{origination_uuid={leg},originate_timeout={ring},"
            f"ignore_early_media=true,w3sipagent_caller={caller}}}{dial} &park()"
        )
        log.info("ESL transfer of %s to %s", caller, dial)
        try:
            out = await client.bgapi(cmd, timeout=timeout + 10)
        except (EslError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await client.api(f"uuid_kill {leg}")
            return TransferOutcome("failed", None, f"originate: {exc}")
        if not out.startswith("+OK"):
            return outcome_of_cause(out)
        bridged = await client.api(f"uuid_bridge {caller} {leg}")
        if not bridged.startswith("+OK"):
            with contextlib.suppress(Exception):
                await client.api(f"uuid_kill {leg}")
            return TransferOutcome("failed", None, f"uuid_bridge: {bridged.strip()[:80]}")
        with contextlib.suppress(Exception):
            await call.hangup("transferred")
        return TransferOutcome("succeeded", 200, "answered")
