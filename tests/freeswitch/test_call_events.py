"""What FreeSWITCH does to an established call reaches the agent: DTMF (RFC 2833 and SIP
INFO), a hold / unhold re-INVITE (``uuid_hold``), and a hang-up while the agent speaks.

Bridge mode with the shipped public dialplan (agent address replaced); the caller is a
loopback leg FreeSWITCH originates to the DID, and the commands go to the agent's leg
(``sofia/external/support@acme.example``) over the event socket.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.agent.helpers import wait_until
from tests.freeswitch.conftest import ROOT, FreeSwitch
from tests.freeswitch.helpers import Ai, agent_service, finished_cdr, originate_to
from w3sipagent.agent.service import AgentService
from w3sipagent.freeswitch.esl import EslClient
from w3sipagent.records.cdr import Disposition
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig

SHIPPED = ROOT / "freeswitch" / "dialplan" / "public" / "10_w3sipagent.xml"


def acme() -> TenantConfig:
    return TenantConfig(
        id="acme",
        hosts=["acme.example"],
        dids={"+15551230000": "support"},
        api_key=SecretRef(env="ACME_KEY"),
        codecs=["PCMU"],
        agents={"support": AgentConfig(instructions="Acme support.", greeting="Greet.")},
    )


async def agent_leg(esl: EslClient) -> str:
    """The UUID of FreeSWITCH's leg to the agent, once it is answered."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while True:
        rows = json.loads(await esl.api("show channels as json")).get("rows") or []
        for r in rows:
            if r.get("name", "").startswith("sofia/external/support@") and r.get("callstate") in (
                "ACTIVE",
                "HELD",
            ):
                return str(r["uuid"])
        assert loop.time() < end, rows
        await asyncio.sleep(0.1)


async def start_call(
    fs: FreeSwitch,
    esl: EslClient,
    svc: AgentService,
    tmp_path: Path,
    *,
    seconds: int,
    dial_vars: str = "",
) -> tuple[str, str]:
    xml = SHIPPED.read_text().replace("127.0.0.1:5090", f"127.0.0.1:{svc.port}")
    if dial_vars:  # more variables on the dial string to the agent
        xml = xml.replace("{absolute_codec_string=", "{" + dial_vars + ",absolute_codec_string=")
    fs.put("dialplan/public/10_w3sipagent.xml", xml)
    assert fs.reloadxml() == []
    # an earlier test's leg to the agent may still be tearing down: wait until it is gone,
    # so that agent_leg() finds this call's leg and no other
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while any(
        r.get("name", "").startswith("sofia/external/support@")
        for r in json.loads(await esl.api("show channels as json")).get("rows") or []
    ):
        assert loop.time() < end, "an earlier call's leg to the agent is still up"
        await asyncio.sleep(0.1)
    caller = await originate_to(esl, "15551230000", "public", tmp_path / "rec.wav", seconds=seconds)
    return caller, await agent_leg(esl)


@pytest.mark.parametrize("how", ["rfc2833", "info"])
async def test_dtmf_from_freeswitch_reaches_the_agent(
    freeswitch: FreeSwitch, esl: EslClient, tmp_path: Path, how: str
) -> None:
    """RFC 2833: ``uuid_send_dtmf`` on the agent's leg (telephone-event negotiated). SIP INFO:
    ``uuid_send_info LEG application dtmf DIGIT``, one INFO per digit. (Measured: the channel
    variable ``dtmf_type=info`` on the dial string only drops telephone-event from
    FreeSWITCH's offer; ``uuid_send_dtmf`` then sends nothing at all.)"""
    ai = Ai()
    async with agent_service({"acme": acme()}, tmp_path, ai) as svc:
        _, leg = await start_call(freeswitch, esl, svc, tmp_path, seconds=20)
        if how == "rfc2833":
            out = await esl.api(f"uuid_send_dtmf {leg} 1234")
            assert out.startswith("+OK"), out
        else:
            # FreeSWITCH sends INFO only to peers that say "X-FS-Support: send_info", unless
            # told otherwise (measured: without this, +OK and nothing on the wire)
            await esl.api(f"uuid_setvar {leg} fs_send_unsupported_info true")
            loop = asyncio.get_running_loop()
            for digit in "1234":
                # one INFO at a time: while the previous one is unanswered FreeSWITCH says
                # "-ERR Operation Failed" (seen on a busy machine), so try again shortly
                end = loop.time() + 5
                while not (
                    out := await esl.api(f"uuid_send_info {leg} application dtmf {digit}")
                ).startswith("+OK"):
                    assert loop.time() < end, out
                    await asyncio.sleep(0.05)
        session = ai.made[-1][1]
        await wait_until(
            lambda: any("pressed 1234" in text for _, text in session.messages),
            timeout=8,
            what="the digits told to the model",
        )
        assert (await esl.api(f"uuid_kill {leg}")).startswith("+OK")
        cdr = await finished_cdr(svc)
    digits = "".join(str(e.get("digit")) for e in cdr.events if e.get("kind") == "dtmf")
    assert digits == "1234", cdr.events


async def test_hold_and_unhold_from_freeswitch(
    freeswitch: FreeSwitch, esl: EslClient, tmp_path: Path
) -> None:
    ai = Ai()
    async with agent_service({"acme": acme()}, tmp_path, ai) as svc:
        # a long call, hung up below once the checks are done (a busy machine needs time)
        _, leg = await start_call(freeswitch, esl, svc, tmp_path, seconds=60)
        bridge = next(iter(svc.bridges.values()))

        def holds() -> list[object]:
            return [e.get("on_hold") for e in bridge.cdr.events if e.get("kind") == "hold"]

        assert (await esl.api(f"uuid_hold {leg}")).startswith("+OK")
        await wait_until(lambda: holds() == [True], timeout=5, what="on hold")
        assert (await esl.api(f"uuid_hold off {leg}")).startswith("+OK")
        await wait_until(lambda: holds() == [True, False], timeout=5, what="off hold")
        session = ai.made[-1][1]
        before = len(session.audio)
        await wait_until(
            lambda: len(session.audio) > before + 8000, timeout=5, what="audio after unhold"
        )
        assert not bridge.ended
        assert (await esl.api(f"uuid_kill {leg}")).startswith("+OK")
        cdr = await finished_cdr(svc)
    assert cdr.disposition is Disposition.CALLER_HANGUP


async def test_freeswitch_hangs_up_while_the_agent_speaks(
    freeswitch: FreeSwitch, esl: EslClient, tmp_path: Path
) -> None:
    ai = Ai(greeting_ms=8000)  # still speaking when FreeSWITCH hangs up after 1 s
    async with agent_service({"acme": acme()}, tmp_path, ai) as svc:
        await start_call(freeswitch, esl, svc, tmp_path, seconds=1)
        cdr = await finished_cdr(svc)
        session = ai.made[-1][1]
        await wait_until(lambda: session.closed, timeout=5, what="AI session closed")
    assert cdr.disposition is Disposition.CALLER_HANGUP and cdr.hangup_by == "caller"
    assert cdr.answer_at is not None and cdr.end_at is not None
    assert (cdr.end_at - cdr.answer_at).total_seconds() < 3.0  # not after the 8 s greeting
