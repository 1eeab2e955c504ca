"""``w3sipagent tenants import|export|list|show``, ``api-token create``, ``freeswitch xml-curl``."""

from __future__ import annotations

import asyncio
import json
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from tests.cli.conftest import TWO_TENANTS, invoke, write_config
from w3sipagent.config import load_settings
from w3sipagent.control.repo import ControlRepo
from w3sipagent.control.tokens import lookup_token


def test_import_export_round_trip(tmp_path: Path) -> None:
    runner = CliRunner()
    src = write_config(tmp_path, TWO_TENANTS)
    db = f"sqlite+aiosqlite:///{tmp_path / 'control.db'}"
    r = invoke(runner, "tenants", "import", str(src), "--database", db)
    assert r.exit_code == 0, r.output
    assert "imported 2 tenant(s): acme, globex" in r.output
    again = invoke(runner, "tenants", "import", str(src), "--database", db)
    assert again.exit_code == 1 and "--replace" in again.output
    assert (
        invoke(runner, "tenants", "import", str(src), "--database", db, "--replace").exit_code == 0
    )

    r = invoke(runner, "tenants", "export", "--database", db)
    assert r.exit_code == 0, r.output
    exported = tomllib.loads(r.output)
    assert set(exported["tenants"]) == {"acme", "globex"}
    # the exported file loads into the same tenants as the original
    out = tmp_path / "exported.toml"
    out.write_text(r.output)
    a = load_settings(src, environ={}, discover=False).tenants
    b = load_settings(out, environ={}, discover=False).tenants
    assert a == b

    r = invoke(runner, "tenants", "list", "--database", db, "--json")
    rows = {row["id"]: row for row in map(json.loads, r.output.strip().splitlines())}
    assert rows["acme"]["agents"] == ["sales", "support"]
    assert rows["globex"]["dids"] == ["+442071234567"] and rows["globex"]["served"]
    table = invoke(runner, "tenants", "list", "--database", db)
    assert "acme.example" in table.output and "+442071234567" in table.output
    r = invoke(runner, "tenants", "show", "acme", "--database", db)
    shown = json.loads(r.output)
    assert shown["hosts"] == ["acme.example"]
    assert {d["number"]: d["target_ref"] for d in shown["dids"]} == {
        "+15551230000": "support",
        "+15551230001": "sales",
    }
    r = invoke(runner, "tenants", "show", "nobody", "--database", db)
    assert r.exit_code == 1 and "no tenant 'nobody'" in r.output


def test_api_token_create(tmp_path: Path) -> None:
    runner = CliRunner()
    src = write_config(tmp_path, TWO_TENANTS)
    db = f"sqlite+aiosqlite:///{tmp_path / 'control.db'}"
    assert invoke(runner, "tenants", "import", str(src), "--database", db).exit_code == 0
    r = invoke(runner, "api-token", "create", "--tenant", "acme", "--database", db)
    assert r.exit_code == 0, r.output
    token = r.output.strip()
    assert token.startswith("w3t_")
    bad = invoke(runner, "api-token", "create", "--tenant", "nobody", "--database", db)
    assert bad.exit_code == 2
    assert invoke(runner, "api-token", "create", "--database", db).exit_code == 2

    async def check() -> None:
        repo = await ControlRepo.open(db)
        try:
            info = await lookup_token(repo.engine, token)
            assert info is not None and info.tenant_id == "acme"
            async with repo.engine.connect() as conn:
                from sqlalchemy import text

                stored = (await conn.execute(text("SELECT token_hash FROM control_tokens"))).all()
            assert token not in str(stored)
        finally:
            await repo.close()

    asyncio.run(check())


def test_freeswitch_xml_curl_prints_the_binding(tmp_path: Path) -> None:
    runner = CliRunner()
    r = invoke(
        runner, "freeswitch", "xml-curl", "--url", "http://10.0.0.5:8080/", "--token", "tok123"
    )
    assert r.exit_code == 0, r.output
    # the whole text is well-formed XML, its comments too (FreeSWITCH refuses a "--" in one)
    ET.fromstring(f"<pasted>{r.output}</pasted>")
    conf = ET.fromstring(r.output.split("\n\n")[0].split("-->", 1)[1])
    params = {p.get("name"): p for p in conf.iter("param")}
    url = params["gateway-url"]
    assert url.get("value") == "http://10.0.0.5:8080/api/freeswitch/dialplan"
    assert url.get("bindings") == "dialplan"
    assert params["gateway-credentials"].get("value") == "freeswitch:tok123"


def test_dids_set_list_delete(tmp_path: Path) -> None:
    runner = CliRunner()
    src = write_config(tmp_path, TWO_TENANTS)
    db = f"sqlite+aiosqlite:///{tmp_path / 'control.db'}"
    assert invoke(runner, "tenants", "import", str(src), "--database", db).exit_code == 0
    r = invoke(runner, "dids", "set", "acme", "+39 06 555", "--agent", "sales", "--database", db)
    assert r.exit_code == 0 and r.output.strip() == "+3906555: created", r.output
    r = invoke(runner, "dids", "set", "acme", "003906555", "--reject", "--database", db)
    assert r.output.strip() == "+3906555: updated"
    r = invoke(runner, "dids", "list", "--tenant", "acme", "--json", "--database", db)
    rows = {d["number"]: d for d in map(json.loads, r.output.strip().splitlines())}
    assert rows["+3906555"]["target_type"] == "reject"
    assert rows["+15551230001"]["target_ref"] == "sales"
    r = invoke(runner, "dids", "set", "globex", "+3906555", "--database", db)
    assert r.exit_code == 1 and "not available" in r.output and "acme" not in r.output
    r = invoke(runner, "dids", "set", "acme", "+3906556", "--agent", "ghost", "--database", db)
    assert r.exit_code == 1 and "ghost" in r.output
    bad = invoke(runner, "dids", "set", "acme", "x", "--reject", "--agent", "a", "--database", db)
    assert bad.exit_code == 2
    assert invoke(runner, "dids", "delete", "acme", "+3906555", "--database", db).exit_code == 0
    r = invoke(runner, "dids", "list", "--database", db)
    assert "+3906555" not in r.output and "+442071234567" in r.output
