"""A call's CDR, its stored row, its webhook and the logs never contain the API key."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import text

from w3sipagent.agent.reload import table_from_settings
from w3sipagent.config import load_settings
from w3sipagent.records.cdr import CallRecord, Disposition, ToolCallRecord
from w3sipagent.records.store import CdrStore
from w3sipagent.records.webhook import CdrWebhookPoster
from w3sipagent.tenants.resolver import CallRequest, Resolution
from w3sipagent.tenants.secrets import resolve_api_key, resolve_secret

API_KEY = "sk-proj-TESTKEY-4f9d2c7a1b"
SIP_PASSWORD = "sip-pass-77c1e0"
HOOK_TOKEN = "hook-token-5a5a5a"


async def test_no_secret_in_cdr_row_webhook_or_logs(
    store: CdrStore,
    tmp_path,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    conf = tmp_path / "w3sipagent.toml"
    conf.write_text(
        """
[tenants.acme]
hosts = ["acme.example"]
api_key = { env = "ACME_OPENAI_API_KEY" }
cdr_webhook = { url = "http://127.0.0.1:9/cdr", attempts = 2, backoff = "10ms", auth_env = "ACME_HOOK" }
[tenants.acme.registrations.pbx]
registrar = "sip:pbx.acme.example"
user = "agent"
password = { env = "ACME_SIP_PASSWORD" }
[tenants.acme.agents.support]
instructions = "Help the caller."
"""
    )
    env = {
        "ACME_OPENAI_API_KEY": API_KEY,
        "ACME_SIP_PASSWORD": SIP_PASSWORD,
        "ACME_HOOK": HOOK_TOKEN,
    }
    caplog.set_level(logging.DEBUG)
    settings = load_settings(conf, {}, environ=env)
    res = table_from_settings(settings).resolve(
        CallRequest("acme.example", "127.0.0.1", "support", to_host="acme.example")
    )
    assert isinstance(res, Resolution)
    key = resolve_api_key(res.tenant, environ=env)
    assert key is not None and key.get_secret_value() == API_KEY
    reg = res.tenant.registrations["pbx"]
    assert reg.password is not None
    assert resolve_secret(reg.password, environ=env).get_secret_value() == SIP_PASSWORD

    cdr = CallRecord(
        call_id="sec-1",
        tenant=res.tenant.id,
        agent=res.agent_name,
        request_uri="sip:support@acme.example",
    )
    await store.call_started(cdr)
    cdr.answered()
    cdr.add_transcript("caller", "what is my balance?")
    cdr.add_tool_call(ToolCallRecord(name="crm", arguments={"q": "balance"}, result={"balance": 3}))
    await store.call_event("sec-1", "barge_in", {"audio_end_ms": 400})
    cdr.finish(Disposition.COMPLETED, hangup_by="agent")
    await store.call_ended(cdr)
    assert res.tenant.cdr_webhook is not None
    poster = CdrWebhookPoster(environ=env)
    result = await poster.submit(cdr, res.tenant.cdr_webhook)  # port 9: refused, retried, logged
    await poster.close()
    assert not result.delivered
    await store.flush()

    async with store.engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(text("SELECT * FROM cdrs"))).mappings()]
    assert len(rows) == 1
    stored = json.dumps(rows, default=str)
    exported = cdr.model_dump_json() + repr(settings) + str(settings.describe())
    logs = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "sec-1" in stored and "balance" in stored and "webhook" in logs.lower()
    for secret in (API_KEY, SIP_PASSWORD, HOOK_TOKEN):
        assert secret not in stored
        assert secret not in exported
        assert secret not in logs
