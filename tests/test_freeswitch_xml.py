"""The shipped FreeSWITCH files: well-formed XML, and the dial strings the docs describe."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "freeswitch").rglob("*.xml"))


def test_files_exist() -> None:
    names = {p.relative_to(ROOT / "freeswitch").as_posix() for p in FILES}
    assert "dialplan/public/10_w3sipagent.xml" in names
    assert "dialplan/public/20_w3sipagent_register.xml" in names
    assert "dialplan/public/05_w3sipagent_transfers.xml" in names
    assert "directory/default/w3sipagent.xml" in names
    assert "sip_profiles/agent-profile-settings.xml" in names
    # trunk calls enter `public`: nothing of ours belongs in `default`
    assert not any(n.startswith("dialplan/default/") for n in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_well_formed(path: Path) -> None:
    ET.parse(path)


def bridges(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return [a.get("data", "") for a in root.iter("action") if a.get("application") == "bridge"]


def test_public_dialplan_dial_strings() -> None:
    for data in bridges(ROOT / "freeswitch/dialplan/public/10_w3sipagent.xml"):
        m = re.fullmatch(
            r"\{(?P<vars>[^}]*)\}sofia/external/(?P<user>[^@]+)@(?P<host>[^;]+);fs_path=sip:(?P<agent>[^;]+)",
            data,
        )
        assert m, data
        # commas separate variables inside {}: the codec list must be quoted
        quoted = re.search(r"absolute_codec_string='([A-Za-z0-9,]+)'", m["vars"])
        assert quoted, data
        codecs = quoted[1].split(",")
        assert codecs[0] in ("PCMU", "PCMA")  # G.711 first: passthrough
        assert not re.match(r"^\d", m["host"])  # the tenant host is kept, not the agent IP


def test_register_dialplan_bridges_user() -> None:
    data = bridges(ROOT / "freeswitch/dialplan/public/20_w3sipagent_register.xml")
    assert any(
        re.fullmatch(r"\{absolute_codec_string='[A-Za-z0-9,]+'\}user/[\w-]+@\$\$\{domain\}", d)
        for d in data
    )
    text = (ROOT / "freeswitch/dialplan/public/20_w3sipagent_register.xml").read_text()
    assert "mode=register" not in text  # the flag is `--mode register`, not this


def test_transfer_targets_are_not_shadowed_by_stock_extensions() -> None:
    """The stock public.xml sends 1000-1019 to `default` before including public/*.xml."""
    root = ET.parse(ROOT / "freeswitch/dialplan/public/05_w3sipagent_transfers.xml").getroot()
    exprs = [c.get("expression", "") for c in root.iter("condition")]
    assert exprs
    for n in range(1000, 1020):
        assert not any(re.search(e, str(n)) for e in exprs), n


def test_profile_sets_confirm_blind_transfer() -> None:
    root = ET.parse(ROOT / "freeswitch/sip_profiles/agent-profile-settings.xml").getroot()
    params = {p.get("name"): p.get("value") for p in root.iter("param")}
    assert params["confirm-blind-transfer"] == "true"
    # deprecated in 1.10 (a WARNING per profile start); the stock profiles set them already
    assert "rtp-timeout-sec" not in params and "rtp-hold-timeout-sec" not in params
