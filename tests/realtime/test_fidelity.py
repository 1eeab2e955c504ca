"""Realtime client defects found by comparing with the official SDK and service captures:
masked key fragments in errors, empty instructions, refusals after the upgrade, the GA
session fields of a tenant, per-call client secrets and the WebRTC hang-up."""

from __future__ import annotations

import pytest

from tests.realtime.test_client import Conn, ScriptedServer, default_handler, make_client
from w3sipagent.ai import session as ai
from w3sipagent.ai.redaction import strip_masked_keys
from w3sipagent.errors import AIError
from w3sipagent.realtime import RealtimeRefused, hangup_call, mint_client_secret, open_session
from w3sipagent.realtime import events as ev
from w3sipagent.realtime.session_object import session_object

server_mod = pytest.importorskip("w3sipagent.localai")
RealtimeServer = server_mod.RealtimeServer

KEY = "sk-proj-abcdefghijklmnop0123456789XYZ"
MASKED = "Incorrect API key provided: sk-abc***xyz. You can find your API key at https://x."


def test_masked_key_fragments_are_stripped() -> None:
    text = strip_masked_keys(MASKED)
    assert "***" not in text and "sk-abc" not in text and "xyz." not in text
    assert text.startswith("Incorrect API key provided: [redacted].")
    long_mask = "key sk-proj-****************************************abcd is wrong"
    assert strip_masked_keys(long_mask) == "key [redacted] is wrong"
    assert strip_masked_keys("a * b ** c") == "a * b ** c"  # not a key


async def test_masked_key_not_in_setup_error_nor_error_events() -> None:
    async def reject(conn: Conn, event: ev.ClientEvent) -> None:
        if isinstance(event, ev.SessionUpdate):
            err = {"type": "invalid_request_error", "code": "invalid_api_key", "message": MASKED}
            await conn.send("error", error=err)

    async with ScriptedServer(reject) as srv:
        with pytest.raises(RealtimeRefused) as info:
            await make_client(srv.url).start()
    assert info.value.code == "invalid_api_key"
    assert "***" not in str(info.value) and "sk-abc" not in str(info.value)
    assert "check the API key" in str(info.value)

    async with ScriptedServer(default_handler) as srv:
        client = make_client(srv.url)
        await client.start()
        err = {"type": "invalid_request_error", "code": "x", "message": MASKED}
        await srv.conns[0].send("error", error=err)
        async for e in client.events():
            if isinstance(e, ai.AIErrorEvent):
                assert "***" not in e.message and "sk-abc" not in e.message
                break
        await client.close()


async def test_empty_instructions_are_sent() -> None:
    async with ScriptedServer() as srv:
        client = make_client(srv.url, config=ai.AISessionConfig(instructions=""))
        await client.start()
        (update,) = srv.conns[0].of(ev.SessionUpdate)
        await client.close()
    assert update.session["instructions"] == ""  # not left out: no default persona


# ---------------------------------------------------------------- refusals (local server)


async def test_bad_key_and_bad_model_are_specific_errors_without_the_key() -> None:
    async with RealtimeServer(scenario="demo", api_keys=["sk-the-right-one-0123456789"]) as srv:
        base = srv.http_url.replace("http", "ws")
        client = open_session(ai.AISessionConfig(), api_key=KEY, base_url=base, proxy=None)
        with pytest.raises(RealtimeRefused) as info:
            await client.start()
        assert info.value.code == "invalid_api_key"
        text = str(info.value)
        assert KEY not in text and KEY[:6] not in text and "***" not in text
        bad_model = ai.AISessionConfig(model="gpt-realtime-nope")
        client = open_session(
            bad_model, api_key="sk-the-right-one-0123456789", base_url=base, proxy=None
        )
        with pytest.raises(RealtimeRefused) as info:
            await client.start()
        assert info.value.code == "invalid_model" and "check the agent's model" in str(info.value)
        assert not srv.sessions


# ---------------------------------------------------------------- GA session fields


def test_ga_session_fields_reach_the_session_object() -> None:
    config = ai.AISessionConfig(
        voice="voice_abc123",
        transcription_prompt="Bistro Lumen, Sancerre",
        prompt=ai.StoredPrompt("pmpt_123", version="4", variables={"city": "Lyon"}),
        tracing={"workflow_name": "acme-phone", "group_id": "tenant-a"},
        include=("item.input_audio_transcription.logprobs",),
    )
    s = session_object(config)
    assert s["audio"]["output"]["voice"] == {"id": "voice_abc123"}
    assert s["audio"]["input"]["transcription"]["prompt"] == "Bistro Lumen, Sancerre"
    assert s["prompt"] == {"id": "pmpt_123", "version": "4", "variables": {"city": "Lyon"}}
    assert s["tracing"] == {"workflow_name": "acme-phone", "group_id": "tenant-a"}
    assert s["include"] == ["item.input_audio_transcription.logprobs"]
    plain = session_object(ai.AISessionConfig(voice="marin"))
    assert plain["audio"]["output"]["voice"] == "marin"
    assert "prompt" not in plain and "tracing" not in plain and "include" not in plain


async def test_ga_session_fields_accepted_by_the_local_server() -> None:
    config = ai.AISessionConfig(
        transcription_prompt="menu words",
        prompt=ai.StoredPrompt("pmpt_1"),
        tracing="auto",
        include=("item.input_audio_transcription.logprobs",),
        voice="voice_custom1",
    )
    async with RealtimeServer(scenario="demo") as srv:
        base = srv.http_url.replace("http", "ws")
        client = open_session(config, api_key=KEY, base_url=base, proxy=None)
        await client.start()
        eff = client.server_session  # type: ignore[attr-defined]
        await client.close()
    assert eff is not None
    assert eff["prompt"] == {"id": "pmpt_1"} and eff["tracing"] == "auto"
    assert eff["audio"]["output"]["voice"] == {"id": "voice_custom1"}
    assert eff["audio"]["input"]["transcription"]["prompt"] == "menu words"


# ---------------------------------------------------------------- client secrets, hang-up


async def test_mint_client_secret_library_call() -> None:
    config = ai.AISessionConfig(instructions="Per tenant.", voice="cedar")
    async with RealtimeServer(scenario="demo", api_keys=[KEY]) as srv:
        secret = await mint_client_secret(
            config, api_key=KEY, base_url=srv.http_url, expires_after_s=120, trust_env=False
        )
        assert secret.value.startswith("ek_") and secret.value not in repr(secret)
        assert secret.session["instructions"] == "Per tenant."
        assert secret.session["model"] == "gpt-realtime"
        with pytest.raises(AIError) as info:
            await mint_client_secret(
                config, api_key="sk-wrong-0123456789abc", base_url=srv.http_url
            )
        assert "HTTP 401" in str(info.value) and "sk-wrong" not in str(info.value)
        with pytest.raises(AIError, match=r"10\.\.7200"):
            await mint_client_secret(config, api_key=KEY, expires_after_s=5)
        with pytest.raises(AIError, match="HTTP 404"):
            await hangup_call("rtc_none", api_key=KEY, base_url=srv.http_url, trust_env=False)


async def test_webrtc_call_uses_a_client_secret_and_is_hung_up_on_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("aiortc")
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    config = ai.AISessionConfig(instructions="Via the secret.")
    async with RealtimeServer(scenario="demo", api_keys=[KEY]) as srv:
        client = open_session(config, api_key=KEY, transport="webrtc", base_url=srv.http_url)
        await client.start()
        call_id = client.call_id  # type: ignore[attr-defined]
        assert call_id in srv.ephemeral_calls  # the tenant's key did not authorise the media
        assert srv.calls[call_id].session.config["instructions"] == "Via the secret."
        await client.close()
        assert srv.hangups == [call_id] and call_id not in srv.calls
