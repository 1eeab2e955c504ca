"""The local server's failure paths and orderings as the live service has them (capture of
2026-09-18): refusals after the upgrade, GA fields it must accept, binary frames, event
order around ``response.done``, ephemeral client secrets and call hang-up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from w3sipagent.localai import RealtimeServer, ServerOptions

from .conftest import AUTH, connect, g711_session


async def refusal(url: str, headers: dict[str, str]) -> tuple[dict[str, Any], int]:
    ws = await websockets.connect(url, additional_headers=headers)  # the upgrade succeeds
    ev = json.loads(await asyncio.wait_for(ws.recv(), 5))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    return ev, closed.value.rcvd.code


@pytest.mark.parametrize(
    ("query", "headers", "code", "close"),
    [
        ("?model=gpt-realtime-nope", {}, "invalid_model", 4000),
        ("", {}, "missing_model", 4000),
        ("?model=gpt-realtime", {"OpenAI-Beta": "realtime=v1"}, "beta_api_shape_disabled", 4000),
    ],
)
async def test_refused_after_the_upgrade_with_error_and_close_code(
    server: RealtimeServer, query: str, headers: dict[str, str], code: str, close: int
) -> None:
    base = server.ws_url.split("?")[0]
    ev, got = await refusal(base + query, {**AUTH, **headers})
    assert ev["type"] == "error" and ev["event_id"].startswith("event_")
    assert (ev["error"]["type"], ev["error"]["code"], got) == ("invalid_request_error", code, close)
    assert not server.sessions


async def test_newer_models_accepted(server: RealtimeServer) -> None:
    ws = await websockets.connect(
        server.ws_url.split("?")[0] + "?model=gpt-realtime-2", additional_headers=AUTH
    )
    ev = json.loads(await ws.recv())
    assert ev["type"] == "session.created" and ev["session"]["model"] == "gpt-realtime-2"
    await ws.close()


async def test_valid_ga_fields_accepted(server: RealtimeServer) -> None:
    c = await connect(server)
    ev = await c.update(
        reasoning={"effort": "low"},
        parallel_tool_calls=False,
        audio={
            "input": {
                "transcription": {
                    "model": "gpt-4o-transcribe",
                    "prompt": "Menu words",
                    "delay": "low",
                    "keywords": ["Lumen"],
                    "languages": ["en", "fr"],
                }
            }
        },
    )
    assert ev["type"] == "session.updated", ev
    s = ev["session"]
    assert s["reasoning"] == {"effort": "low"} and s["parallel_tool_calls"] is False
    tr = s["audio"]["input"]["transcription"]
    assert tr["keywords"] == ["Lumen"] and tr["languages"] == ["en", "fr"]
    assert tr["delay"] == "low" and tr["prompt"] == "Menu words"
    await c.send({"type": "session.update", "session": {"type": "realtime", "reasoning": 3}})
    err = await c.recv()
    assert err["error"]["code"] == "invalid_type" and err["error"]["param"] == "session.reasoning"
    await c.ws.close()


async def test_binary_frames_get_invalid_event(server: RealtimeServer) -> None:
    c = await connect(server)
    await c.ws.send(json.dumps({"type": "input_audio_buffer.clear"}).encode())  # valid JSON
    ev = await c.recv()
    assert ev["type"] == "error" and ev["error"]["code"] == "invalid_event"
    await c.send({"type": "input_audio_buffer.clear"})  # the session goes on
    assert (await c.recv())["type"] == "input_audio_buffer.cleared"
    await c.ws.close()


async def test_rate_limits_follow_response_done_after_the_configured_delay(
    make_server: Callable[..., RealtimeServer],
) -> None:
    async with make_server(options=ServerOptions(rate_limits_delay_s=0.3)) as srv:
        c = await connect(srv)
        await c.update(**g711_session(None))
        await c.send({"type": "response.create"})
        loop = asyncio.get_running_loop()
        while (ev := await c.recv())["type"] != "response.done":
            assert ev["type"] != "rate_limits.updated"
            if ev["type"] == "response.output_item.done":
                assert c.received[-2]["type"] == "conversation.item.done"
        done_at = loop.time()
        ev = await c.recv()
        assert ev["type"] == "rate_limits.updated" and loop.time() - done_at >= 0.25
        assert ev["rate_limits"][0]["name"] == "tokens"
        await c.ws.close()


# ---------------------------------------------------------------- client secrets, hang-up


async def test_client_secret_minted_and_used_for_a_call(make_server: Callable[..., Any]) -> None:
    async with make_server(api_keys=["sk-standard-key-0123456789"]) as srv:
        auth = {"Authorization": "Bearer sk-standard-key-0123456789"}
        async with httpx.AsyncClient() as h:
            body = {
                "expires_after": {"anchor": "created_at", "seconds": 120},
                "session": {
                    "type": "realtime",
                    "model": "gpt-realtime",
                    "instructions": "From the secret.",
                    "audio": {"output": {"voice": "cedar"}},
                },
            }
            r = await h.post(srv.http_url + "/realtime/client_secrets", json=body, headers=auth)
            assert r.status_code == 200, r.text
            data = r.json()
            assert data["value"].startswith("ek_") and data["expires_at"] > 0
            assert data["session"]["instructions"] == "From the secret."
            assert data["session"]["object"] == "realtime.session"
            ek = {"Authorization": f"Bearer {data['value']}"}
            # an ephemeral key cannot mint another, a bad session is refused as an update is
            r = await h.post(srv.http_url + "/realtime/client_secrets", json=body, headers=ek)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            bad = {"session": {"type": "realtime", "audio": {"output": {"voice": "robot"}}}}
            r = await h.post(srv.http_url + "/realtime/client_secrets", json=bad, headers=auth)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_value"
            r = await h.post(
                srv.http_url + "/realtime/client_secrets",
                json={"expires_after": {"seconds": 5}},
                headers=auth,
            )
            assert r.json()["error"]["code"] == "integer_below_min_value"
            # unknown or expired ek_ keys are refused; a WebSocket too
            r = await h.post(
                srv.http_url + "/realtime/calls",
                content=b"v=0\r\n",
                headers={"Authorization": "Bearer ek_unknown", "Content-Type": "application/sdp"},
            )
            assert r.status_code == 401
            ws = await websockets.connect(srv.ws_url.split("?")[0], additional_headers=ek)
            created = json.loads(await ws.recv())  # the model and session come with the key
            assert created["type"] == "session.created"
            assert created["session"]["instructions"] == "From the secret."
            assert created["session"]["audio"]["output"]["voice"] == "cedar"
            assert created["session"]["model"] == "gpt-realtime"
            await ws.close()


async def test_hangup_endpoint_auth_and_unknown_call(server: RealtimeServer) -> None:
    async with httpx.AsyncClient() as h:
        r = await h.post(server.http_url + "/realtime/calls/rtc_nope/hangup")
        assert r.status_code == 401
        r = await h.post(server.http_url + "/realtime/calls/rtc_nope/hangup", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "call_not_found"
        r = await h.post(server.http_url + "/realtime/calls/rtc_nope/refer", headers=AUTH)
        assert r.status_code == 404
