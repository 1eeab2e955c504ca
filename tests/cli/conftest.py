"""Helpers for the CLI tests: a runner and small config files."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from w3sipagent.cli.app import app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """Run the app in-process; the environment is cleared of W3SIPAGENT_* variables."""
    base = {"W3SIPAGENT_CONFIG": "", "COLUMNS": "200"}
    return runner.invoke(app, list(args), env={**base, **(env or {})}, catch_exceptions=False)


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "w3sipagent.toml"
    path.write_text(body, encoding="utf-8")
    return path


TWO_TENANTS = """
[sip]
listen = "127.0.0.1:5090"
[records]
database_url = "sqlite+aiosqlite:///cdr.db"
[tenancy]
trusted_header = "X-Tenant"
trusted_sources = ["127.0.0.1/32"]
[tenants.acme]
hosts = ["acme.example"]
dids = { "+1 555 123 0000" = "support", "+1 555 123 0001" = "sales" }
codecs = ["PCMU", "PCMA", "G722"]
api_key = { env = "ACME_KEY_FOR_TEST" }
[tenants.acme.agents.support]
instructions = "Support."
[tenants.acme.agents.sales]
instructions = "Sales."
[tenants.globex]
dids = ["+44 20 7123 4567"]
codecs = ["PCMA", "PCMU"]
[tenants.globex.agents.main]
instructions = "Globex."
[tenants.globex.registrations.pbx]
registrar = "sip:pbx.globex.example"
user = "ai-agent"
"""
