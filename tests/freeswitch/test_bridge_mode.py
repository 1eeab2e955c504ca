"""Bridge (direct-INVITE) mode through the real FreeSWITCH: the shipped dialplan and the
generated one, loaded into ``conf/dialplan/public`` and exercised by a call per codec.

FreeSWITCH originates a loopback call to the tenant's DID in ``public`` (as a trunk call
enters), plays a 1 kHz tone and records what it hears; the dialplan bridges it to the
in-process agent service, whose scripted AI greets with a 600 Hz tone. Audio both ways:
FreeSWITCH's recording holds 600 Hz, the AI received 1 kHz. The CDR names the tenant, the
codec on the wire and the AI format.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.cli.conftest import invoke, write_config
from tests.freeswitch.conftest import ROOT, FreeSwitch
from tests.freeswitch.helpers import (
    AGENT_HZ,
    FS_HZ,
    Ai,
    agent_service,
    ai_pcm,
    dominant_hz,
    finished_cdr,
    originate_to,
    read_stereo,
    rms,
    wait_file,
)
from w3sipagent.agent.service import AgentService
from w3sipagent.freeswitch.esl import EslClient
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig

SHIPPED = ROOT / "freeswitch" / "dialplan" / "public" / "10_w3sipagent.xml"
AI_FORMAT = {"PCMU": "audio/pcmu", "PCMA": "audio/pcma", "G722": "audio/pcm", "opus": "audio/pcm"}


def acme(codecs: list[str]) -> TenantConfig:
    return TenantConfig(
        id="acme",
        hosts=["acme.example"],
        dids={"+15551230000": "support", "+15551230001": "sales"},
        api_key=SecretRef(env="ACME_KEY"),
        codecs=codecs,  # type: ignore[arg-type]
        agents={
            "support": AgentConfig(instructions="Acme support.", greeting="Greet."),
            "sales": AgentConfig(instructions="Acme sales.", greeting="Greet."),
        },
    )


async def call_and_check(
    fs: FreeSwitch,
    esl: EslClient,
    svc: AgentService,
    ai: Ai,
    tmp_path: Path,
    did: str,
    codec: str,
    *,
    tenant: str = "acme",
    agent: str = "support",
) -> list[str]:
    """FreeSWITCH calls ``did`` in ``public``; audio both ways, codec and CDR. Log lines."""
    record = tmp_path / f"fs-{codec}.wav"
    uid = await originate_to(esl, did, "public", record, seconds=3)
    cdr = await finished_cdr(svc)
    await wait_file(record)
    heard, _played, rate = read_stereo(record)
    tenant_seen, session = ai.made[-1]
    fmt = session.config.input_format
    to_ai = ai_pcm(fmt, bytes(session.audio))
    lines = [
        f"{codec}: FreeSWITCH heard {dominant_hz(heard[rate:], rate):.0f} Hz rms {rms(heard):.0f}; "
        f"AI got {dominant_hz(to_ai, fmt.sample_rate):.0f} Hz ({fmt.value}); "
        f"CDR tenant={cdr.tenant} agent={cdr.agent} codec={cdr.codec} ai={cdr.ai_format} "
        f"{cdr.disposition.value}"
    ]
    assert tenant_seen == tenant and cdr.tenant == tenant and cdr.agent == agent
    assert (cdr.codec or "").upper() == codec.upper(), cdr.codec
    assert cdr.ai_format == AI_FORMAT[codec]
    # the agent's 600 Hz greeting reached FreeSWITCH; FreeSWITCH's 1 kHz reached the AI
    assert abs(dominant_hz(heard[rate:], rate) - AGENT_HZ) < 20, lines
    assert rms(heard[rate:]) > 1000, lines
    assert abs(dominant_hz(to_ai, fmt.sample_rate) - FS_HZ) < 20, lines
    assert rms(to_ai) > 1000, lines
    # the channel on the agent's side used that codec (FreeSWITCH's own view)
    assert uid
    return lines


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722"])
async def test_shipped_public_dialplan(
    freeswitch: FreeSwitch,
    esl: EslClient,
    tmp_path: Path,
    interop_log: list[str],
    codec: str,
) -> None:
    """``dialplan/public/10_w3sipagent.xml`` as shipped (only the agent address replaced,
    as its comment says); it offers PCMU,PCMA,G722 and the tenant's codec list picks."""
    ai = Ai()
    async with agent_service({"acme": acme([codec])}, tmp_path, ai) as svc:
        xml = SHIPPED.read_text().replace("127.0.0.1:5090", f"127.0.0.1:{svc.port}")
        freeswitch.put("dialplan/public/10_w3sipagent.xml", xml)
        assert freeswitch.reloadxml() == []
        interop_log += await call_and_check(
            freeswitch, esl, svc, ai, tmp_path, "15551230000", codec
        )


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "opus", "G722"])
async def test_generated_direct_dialplan(
    freeswitch: FreeSwitch,
    esl: EslClient,
    runner,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    interop_log: list[str],
    codec: str,
) -> None:
    """``w3sipagent freeswitch dialplan --agent ... --fallback ...`` for a tenant whose only
    codec is ``codec``: FreeSWITCH loads it and the call uses that codec end to end."""
    ai = Ai()
    async with agent_service({"acme": acme([codec])}, tmp_path, ai) as svc:
        cfg = write_config(
            tmp_path,
            f"""
[sip]
listen = "127.0.0.1:{svc.port}"
[tenants.acme]
hosts = ["acme.example"]
dids = {{ "+1 555 123 0000" = "support", "+1 555 123 0001" = "sales" }}
codecs = ["{codec}"]
[tenants.acme.agents.support]
instructions = "Support."
[tenants.acme.agents.sales]
instructions = "Sales."
""",
        )
        result = invoke(
            runner, "freeswitch", "dialplan", "-c", str(cfg), "--fallback", "1000 XML default"
        )
        assert result.exit_code == 0, result.output
        freeswitch.put("dialplan/public/10_w3sipagent.xml", result.output)
        assert freeswitch.reloadxml() == []
        interop_log += await call_and_check(
            freeswitch, esl, svc, ai, tmp_path, "+15551230001", codec, agent="sales"
        )


async def test_generated_dialplan_tenant_without_hosts(
    freeswitch: FreeSwitch,
    esl: EslClient,
    runner,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    interop_log: list[str],
) -> None:
    """A tenant without hosts is bridged as ``sofia/external/${destination_number}@AGENT``:
    the agent resolves it by the dialled DID."""
    globex = TenantConfig(
        id="globex",
        dids={"+442071234567": None},
        api_key=SecretRef(env="GLOBEX_KEY"),
        codecs=["PCMA"],
        agents={"main": AgentConfig(instructions="Globex.", greeting="Greet.")},
    )
    ai = Ai()
    async with agent_service({"globex": globex}, tmp_path, ai) as svc:
        cfg = write_config(
            tmp_path,
            f"""
[sip]
listen = "127.0.0.1:{svc.port}"
[tenants.globex]
dids = ["+44 20 7123 4567"]
codecs = ["PCMA"]
[tenants.globex.agents.main]
instructions = "Globex."
""",
        )
        result = invoke(runner, "freeswitch", "dialplan", "-c", str(cfg))
        assert result.exit_code == 0, result.output
        assert "sofia/external/${destination_number}@127.0.0.1:" in result.stdout
        freeswitch.put("dialplan/public/10_w3sipagent.xml", result.stdout)
        assert freeswitch.reloadxml() == []
        interop_log += await call_and_check(
            freeswitch, esl, svc, ai, tmp_path, "442071234567", "PCMA", tenant="globex",
            agent="main",
        )  # fmt: skip


async def test_generated_fallback_when_the_agent_answers_503(
    freeswitch: FreeSwitch,
    esl: EslClient,
    runner,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """``--fallback``: a draining agent answers 503 and FreeSWITCH transfers the caller to
    the fallback extension (here the loopback config's echo test, 9196 in public)."""
    ai = Ai()
    async with agent_service({"acme": acme(["PCMU"])}, tmp_path, ai) as svc:
        cfg = write_config(
            tmp_path,
            f"""
[sip]
listen = "127.0.0.1:{svc.port}"
[tenants.acme]
hosts = ["acme.example"]
dids = {{ "+1 555 123 0000" = "support" }}
codecs = ["PCMU"]
[tenants.acme.agents.support]
instructions = "Support."
""",
        )
        result = invoke(
            runner, "freeswitch", "dialplan", "-c", str(cfg), "--fallback", "9196 XML public"
        )
        assert result.exit_code == 0, result.output
        freeswitch.put("dialplan/public/10_w3sipagent.xml", result.stdout)
        assert freeswitch.reloadxml() == []
        svc.drain()
        q = esl.subscribe()
        uid = await originate_to(esl, "15551230000", "public", tmp_path / "fb.wav", seconds=2)
        # the caller was answered by the fallback (echo), not by the agent
        apps: list[str] = []
        while True:
            ev = await asyncio.wait_for(q.get(), 10)
            assert ev is not None
            if ev.name == "CHANNEL_EXECUTE" and ev.get("Application") in ("transfer", "echo"):
                apps.append(f"{ev.get('Application')} {ev.get('Application-Data')}".strip())
            if ev.name == "CHANNEL_HANGUP_COMPLETE" and ev.uuid == uid:
                break
        esl.unsubscribe(q)
        assert "transfer 9196 XML public" in apps and "echo" in apps, apps
        assert ai.made == []  # no AI session for a refused call
