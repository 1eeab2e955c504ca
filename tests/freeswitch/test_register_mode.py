"""REGISTER mode through the real FreeSWITCH: the shipped directory user, the shipped and the
generated register dialplan and the agent profile settings (merged into the internal
profile, which carries the agent's leg in this mode), loaded and exercised by a call.

The agent service registers tenant globex's ``registrations.pbx`` (user ``ai-agent``,
domain 127.0.0.1) to the internal profile (5060, digest auth); FreeSWITCH originates a
loopback call to globex's DID in ``public`` and the dialplan bridges it with
``user/ai-agent@$${domain}`` to the registered Contact. Audio both ways, CDR tenant globex.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.helpers import wait_until
from tests.cli.conftest import invoke, write_config
from tests.freeswitch.conftest import DOMAIN, INTERNAL_PORT, ROOT, FreeSwitch
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
from w3sipagent.agent.service import registration_contact_user
from w3sipagent.freeswitch.esl import EslClient
from w3sipagent.tenants import AgentConfig, SecretRef, TenantConfig
from w3sipagent.tenants.models import RegistrationConfig

FS_DIR = ROOT / "freeswitch"
PASSWORD = "globex-secret-0123"


def globex(codecs: list[str]) -> TenantConfig:
    return TenantConfig(
        id="globex",
        hosts=[],  # reachable only through the registration
        dids={"+442071234567": None},
        api_key=SecretRef(env="GLOBEX_KEY"),
        codecs=codecs,  # type: ignore[arg-type]
        agents={"main": AgentConfig(instructions="Globex.", greeting="Greet.")},
        registrations={
            "pbx": RegistrationConfig(
                registrar=f"sip:127.0.0.1:{INTERNAL_PORT}",
                user="ai-agent",
                domain=DOMAIN,
                password=SecretRef(env="GLOBEX_SIP_PASSWORD"),
                expires=120,
            )
        },
    )


def install_register_files(fs: FreeSwitch, dialplan: str) -> list[str]:
    """The directory user (its password variable in vars.xml), the dialplan and the profile
    settings on the internal profile; the problems FreeSWITCH logged applying them."""
    vars_xml = fs.conf / "vars.xml"
    text = vars_xml.read_text()
    if "w3sipagent_globex_password" not in text:
        line = f'  <X-PRE-PROCESS cmd="set" data="w3sipagent_globex_password={PASSWORD}"/>\n'
        vars_xml.write_text(text.replace("</include>", line + "</include>"))
    fs.put(
        "directory/default/w3sipagent.xml",
        (FS_DIR / "directory/default/w3sipagent.xml").read_text(),
    )
    fs.put("dialplan/public/20_w3sipagent_register.xml", dialplan)
    changed = fs.merge_profile_settings(
        "internal", (FS_DIR / "sip_profiles/agent-profile-settings.xml").read_text()
    )
    return fs.reloadxml() + (fs.restart_profile("internal") if changed else [])


async def register_call(
    fs: FreeSwitch, esl: EslClient, tmp_path: Path, codec: str, interop_log: list[str]
) -> None:
    ai = Ai()
    env = {"GLOBEX_SIP_PASSWORD": PASSWORD}
    async with agent_service({"globex": globex([codec])}, tmp_path, ai, environ_extra=env) as svc:
        await wait_until(
            lambda: (
                svc.registration_statuses().get("globex/pbx") is not None
                and svc.registration_statuses()["globex/pbx"].state == "registered"
            ),
            timeout=10,
            what="registered at FreeSWITCH",
        )
        reg = await esl.api("sofia status profile internal reg")
        contact_user = registration_contact_user("globex", "pbx")
        assert f"sip:{contact_user}@127.0.0.1:{svc.port}" in reg, reg
        record = tmp_path / f"reg-{codec}.wav"
        await originate_to(esl, "442071234567", "public", record, seconds=3)
        cdr = await finished_cdr(svc)
        await wait_file(record)
        heard, _, rate = read_stereo(record)
        tenant, session = ai.made[-1]
        fmt = session.config.input_format
        to_ai = ai_pcm(fmt, bytes(session.audio))
        interop_log.append(
            f"REGISTER {codec}: FreeSWITCH heard {dominant_hz(heard[rate:], rate):.0f} Hz; AI got "
            f"{dominant_hz(to_ai, fmt.sample_rate):.0f} Hz; CDR tenant={cdr.tenant} "
            f"codec={cdr.codec} request_uri={cdr.request_uri}"
        )
        assert tenant == "globex" and cdr.tenant == "globex" and cdr.agent == "main"
        assert (cdr.codec or "").upper() == codec
        assert (cdr.request_uri or "").startswith(f"sip:{contact_user}@")
        assert abs(dominant_hz(heard[rate:], rate) - AGENT_HZ) < 20 and rms(heard[rate:]) > 1000
        assert abs(dominant_hz(to_ai, fmt.sample_rate) - FS_HZ) < 20 and rms(to_ai) > 1000


@pytest.mark.parametrize("codec", ["PCMA", "PCMU"])
async def test_shipped_register_files(
    freeswitch: FreeSwitch, esl: EslClient, tmp_path: Path, interop_log: list[str], codec: str
) -> None:
    problems = install_register_files(
        freeswitch, (FS_DIR / "dialplan/public/20_w3sipagent_register.xml").read_text()
    )
    assert problems == []
    await register_call(freeswitch, esl, tmp_path, codec, interop_log)


async def test_generated_register_dialplan(
    freeswitch: FreeSwitch,
    esl: EslClient,
    runner,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    interop_log: list[str],
) -> None:
    cfg = write_config(
        tmp_path,
        f"""
[tenants.globex]
dids = ["+44 20 7123 4567"]
codecs = ["PCMA", "PCMU"]
[tenants.globex.agents.main]
instructions = "Globex."
[tenants.globex.registrations.pbx]
registrar = "sip:127.0.0.1:{INTERNAL_PORT}"
user = "ai-agent"
domain = "{DOMAIN}"
""",
    )
    result = invoke(runner, "freeswitch", "dialplan", "-c", str(cfg), "--mode", "register")
    assert result.exit_code == 0, result.output
    assert install_register_files(freeswitch, result.stdout) == []
    await register_call(freeswitch, esl, tmp_path, "PCMA", interop_log)
