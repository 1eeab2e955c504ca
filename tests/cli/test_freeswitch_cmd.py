"""`w3sipagent freeswitch dialplan`: generated XML matches the tenants and the documented dial strings."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.cli.conftest import TWO_TENANTS, invoke, write_config


def actions(xml: str) -> dict[str, list[tuple[str, str]]]:
    root = ET.fromstring(xml)
    out = {}
    for ext in root.iter("extension"):
        out[ext.get("name", "")] = [
            (a.get("application", ""), a.get("data", "")) for a in ext.iter("action")
        ]
    return out


def conditions(xml: str) -> dict[str, str]:
    root = ET.fromstring(xml)
    out = {}
    for ext in root.iter("extension"):
        cond = ext.find("condition")
        assert cond is not None, ext.get("name")
        out[ext.get("name", "")] = cond.get("expression", "")
    return out


def test_direct_mode(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, TWO_TENANTS)
    result = invoke(runner, "freeswitch", "dialplan", "-c", str(cfg))
    assert result.exit_code == 0, result.output
    acts = actions(result.output)
    assert set(acts) == {
        "w3sipagent-acme-support",
        "w3sipagent-acme-sales",
        "w3sipagent-globex-main",
    }
    bridge = dict(acts["w3sipagent-acme-support"])["bridge"]
    assert bridge == (
        "{absolute_codec_string='PCMU,PCMA,G722',sip_h_X-Tenant=acme}"
        "sofia/external/support@acme.example;fs_path=sip:127.0.0.1:5090"
    )
    # a tenant without hosts keeps the dialled number, resolved by DID on the agent
    assert dict(acts["w3sipagent-globex-main"])["bridge"] == (
        "{absolute_codec_string='PCMA,PCMU',sip_h_X-Tenant=globex}"
        "sofia/external/${destination_number}@127.0.0.1:5090"
    )
    import re

    expr = conditions(result.output)
    assert expr["w3sipagent-acme-support"] == r"^\+?(15551230000)$"
    assert re.match(expr["w3sipagent-acme-sales"], "+15551230001")
    assert re.match(expr["w3sipagent-acme-sales"], "15551230001")
    assert not re.match(expr["w3sipagent-acme-sales"], "15551230000")
    assert re.match(expr["w3sipagent-globex-main"], "+442071234567")


def test_agent_override_profile_fallback(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, TWO_TENANTS)
    out = tmp_path / "dp.xml"
    result = invoke(
        runner,
        "freeswitch",
        "dialplan",
        "-c",
        str(cfg),
        "--agent",
        "10.1.2.3:5080",
        "--profile",
        "internal",
        "--fallback",
        "1000 XML default",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    acts = actions(out.read_text())["w3sipagent-acme-sales"]
    names = [a for a, _ in acts]
    # continue_on_fail before bridge, transfer after it
    assert names.index("bridge") < names.index("transfer")
    assert any(
        a == "set" and d.startswith("continue_on_fail=") for a, d in acts[: names.index("bridge")]
    )
    assert dict(acts)["bridge"].endswith(
        "sofia/internal/sales@acme.example;fs_path=sip:10.1.2.3:5080"
    )
    assert dict(acts)["transfer"] == "1000 XML default"


def test_register_mode(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, TWO_TENANTS)
    result = invoke(runner, "freeswitch", "dialplan", "-c", str(cfg), "--mode", "register")
    acts = actions(result.stdout)
    assert list(acts) == ["w3sipagent-globex-pbx"]
    # $${domain}: the directory domain, set in the public context too (where trunk calls enter)
    assert dict(acts["w3sipagent-globex-pbx"])["bridge"] == (
        "{absolute_codec_string='PCMA,PCMU'}user/ai-agent@$${domain}"
    )
    # acme has DIDs but no registration: said on stderr and in the XML
    assert "skipped: tenant acme has no registrations" in result.stderr
    assert "<!-- skipped: tenant acme has no registrations -->" in result.stdout


def test_register_mode_without_dids_says_why(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(
        tmp_path,
        """
[tenants.globex.agents.main]
instructions = "Globex."
[tenants.globex.registrations.pbx]
registrar = "sip:pbx.globex.example"
user = "ai-agent"
[tenants.initech]
dids = { "+1 555 000 1111" = "main" }
[tenants.initech.agents.main]
instructions = "Initech."
[tenants.initech.agents.other]
instructions = "Initech, no DID."
[tenants.initech.registrations.pbx]
registrar = "sip:pbx.initech.example"
user = "ai-initech"
agent = "other"
""",
    )
    result = invoke(runner, "freeswitch", "dialplan", "-c", str(cfg), "--mode", "register")
    assert result.exit_code == 0, result.output
    assert actions(result.stdout) == {}
    assert "skipped: tenant globex has no dids" in result.stderr
    assert "skipped: tenant initech/pbx registers agent other, which has no DID" in result.stderr
    assert "no extension generated: REGISTER mode needs tenants with both dids and" in result.stderr
    root = ET.fromstring(result.stdout)
    comments = result.stdout.split("<include>", 1)[1]
    assert "skipped: tenant globex has no dids" in comments
    assert "no extension: no tenant has both DIDs and registrations" in comments
    assert root.tag == "include"


def test_wildcard_listen_needs_agent(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, TWO_TENANTS.replace("127.0.0.1:5090", "0.0.0.0:5090"))
    result = invoke(runner, "freeswitch", "dialplan", "-c", str(cfg))
    assert result.exit_code == 2
    assert "--agent HOST:PORT" in result.output


def test_example_config(runner) -> None:  # type: ignore[no-untyped-def]
    root = Path(__file__).resolve().parents[2]
    result = invoke(
        runner,
        "freeswitch",
        "dialplan",
        "-c",
        str(root / "examples/w3sipagent.toml"),
        "--agent",
        "127.0.0.1:5090",
    )
    assert result.exit_code == 0, result.output
    acts = actions(result.output)
    assert dict(acts["w3sipagent-acme-support"])["bridge"] == (
        "{absolute_codec_string='PCMU,PCMA,G722',sip_h_X-Tenant=acme}"
        "sofia/external/support@acme.example;fs_path=sip:127.0.0.1:5090"
    )
