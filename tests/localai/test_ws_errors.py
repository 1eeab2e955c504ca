"""Validation errors, interrupts, injected failures, auth and recording, as the service does them."""

from __future__ import annotations

import base64
import json
import logging
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.agent.helpers import wait_until
from w3sipagent.localai import RealtimeServer, Scenario, ServerOptions
from w3sipagent.localai.audio import silence, tone, ulaw_encode

from .conftest import AUTH, TOOLS, Client, connect, g711_session, types


async def error_of(client: Client, event: dict[str, Any]) -> dict[str, Any]:
    await client.send(event)
    ev = await client.recv()
    assert ev["type"] == "error", ev
    return ev["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"input_audio_format": "g711_ulaw"}, "unknown_parameter", "session.input_audio_format"),
        ({"voice": "alloy"}, "unknown_parameter", "session.voice"),
        ({"audio": {"output": {"voice": "robot"}}}, "invalid_value", "session.audio.output.voice"),
        (
            {"audio": {"input": {"format": {"type": "g711_ulaw"}}}},
            "invalid_value",
            "session.audio.input.format.type",
        ),
        ({"audio": {"input": {"format": "pcm16"}}}, "invalid_type", "session.audio.input.format"),
        (
            {"audio": {"output": {"format": {"type": "audio/pcm"}}}},
            "missing_required_parameter",
            "session.audio.output.format.rate",
        ),
        (
            {"audio": {"input": {"turn_detection": {"threshold": 0.3}}}},
            "missing_required_parameter",
            "session.audio.input.turn_detection.type",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}},
            "decimal_above_max_value",
            "session.audio.input.turn_detection.threshold",
        ),
        ({"output_modalities": ["audio", "text"]}, "invalid_value", "session.output_modalities"),
        (
            {"audio": {"output": {"speed": 3.0}}},
            "decimal_above_max_value",
            "session.audio.output.speed",
        ),
    ],
)
async def test_bad_session_fields(
    client: Client, session: dict[str, Any], code: str, param: str
) -> None:
    err = await error_of(
        client,
        {"type": "session.update", "event_id": "evt_1", "session": {"type": "realtime", **session}},
    )
    assert (err["type"], err["code"], err["param"], err["event_id"]) == (
        "invalid_request_error",
        code,
        param,
        "evt_1",
    )
    # rejected updates change nothing
    ok = await client.update(instructions="x")
    assert ok["session"]["audio"]["output"]["voice"] == "marin"
    assert ok["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}


async def test_missing_session_type(client: Client) -> None:
    err = await error_of(client, {"type": "session.update", "session": {"instructions": "hi"}})
    assert err["code"] == "missing_required_parameter" and err["param"] == "session.type"
    assert err["message"] == "Missing required parameter: 'session.type'."


async def test_unknown_event_type(client: Client) -> None:
    err = await error_of(client, {"type": "response.audio.delta", "event_id": "e9"})
    assert (
        err["type"] == "invalid_request_error"
        and err["param"] == "type"
        and err["event_id"] == "e9"
    )
    assert "response.audio.delta" in err["message"]
    err2 = await error_of(client, {"no_type": 1})
    assert err2["code"] == "missing_required_parameter"


async def test_commit_too_small(client: Client) -> None:
    await client.update(**g711_session(None))
    await client.append(ulaw_encode(tone(300, 60, 8000)))
    err = await error_of(client, {"type": "input_audio_buffer.commit"})
    assert err["code"] == "input_audio_buffer_commit_empty"
    assert err["message"] == (
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
        "but buffer only has 60.00ms of audio."
    )
    await client.append(ulaw_encode(tone(300, 60, 8000)))
    await client.send({"type": "input_audio_buffer.commit"})
    ev = await client.recv()
    assert ev["type"] == "input_audio_buffer.committed"


async def test_response_create_while_active_and_cancel(
    make_server: Callable[..., RealtimeServer],
) -> None:
    async with make_server(options=ServerOptions(realtime_pacing=True)) as srv:
        c = await connect(srv)
        err = await error_of(c, {"type": "response.cancel"})
        assert err["code"] == "response_cancel_not_active"
        assert err["message"] == "Cancellation failed: no active response found"
        await c.send({"type": "response.create"})
        created = await c.until("response.created")
        rid = created[-1]["response"]["id"]
        await c.send({"type": "response.create"})
        events = await c.until("error")
        assert events[-1]["error"]["code"] == "conversation_already_has_active_response"
        assert rid in events[-1]["error"]["message"]
        await c.send({"type": "response.cancel"})
        events = await c.until("response.done")
        done = events[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        assert done["output"][0]["status"] == "incomplete"
        assert (
            srv.sessions[0].cancels[-1].accepted and srv.sessions[0].cancels[-1].response_id == rid
        )
        await c.ws.close()


async def test_vad_interrupt_cancels_response(make_server: Callable[..., RealtimeServer]) -> None:
    async with make_server(options=ServerOptions(realtime_pacing=True)) as srv:
        c = await connect(srv)
        await c.update(**g711_session({"type": "server_vad", "silence_duration_ms": 200}))
        await c.send({"type": "response.create"})
        await c.until("response.output_audio.delta")
        await c.append(ulaw_encode(tone(300, 200, 8000)))
        events = await c.until("response.done")
        t = types(events)
        assert t[0] == "input_audio_buffer.speech_started"
        assert events[-1]["response"]["status"] == "cancelled"
        assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
        await c.ws.close()


async def test_truncate_validation(client: Client, server: RealtimeServer) -> None:
    await client.update(**g711_session(None))
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    item = events[-1]["response"]["output"][0]
    audio_ms = (
        sum(
            len(base64.b64decode(e["delta"]))
            for e in events
            if e["type"] == "response.output_audio.delta"
        )
        // 8
    )
    err = await error_of(
        client,
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": audio_ms + 1,
        },
    )
    assert err["code"] == "invalid_value" and err["param"] == "audio_end_ms"
    assert (
        err["message"] == f"Audio content of {audio_ms}ms is already shorter than {audio_ms + 1}ms"
    )
    err = await error_of(
        client,
        {
            "type": "conversation.item.truncate",
            "item_id": "item_nope",
            "content_index": 0,
            "audio_end_ms": 0,
        },
    )
    assert err["param"] == "item_id"
    await client.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": 300,
        }
    )
    ev = await client.recv()
    assert ev == {
        **ev,
        "type": "conversation.item.truncated",
        "item_id": item["id"],
        "content_index": 0,
        "audio_end_ms": 300,
    }
    await client.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    got = await client.recv()
    assert len(base64.b64decode(got["item"]["content"][0]["audio"])) == 300 * 8
    rec = server.sessions[0].truncates
    assert [(t.audio_end_ms, t.accepted) for t in rec] == [
        (audio_ms + 1, False),
        (0, False),
        (300, True),
    ]
    assert rec[2].item_audio_ms == audio_ms


async def test_voice_frozen_after_audio(client: Client) -> None:
    ok = await client.update(audio={"output": {"voice": "ash"}})
    assert ok["session"]["audio"]["output"]["voice"] == "ash"
    await client.send({"type": "response.create"})
    await client.until("response.done")
    err = await error_of(
        client,
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}},
        },
    )
    assert err["code"] == "cannot_update_voice"
    same = await client.update(audio={"output": {"voice": "ash"}})
    assert same["type"] == "session.updated"


async def test_item_create_errors_and_delete(client: Client) -> None:
    err = await error_of(
        client,
        {
            "type": "conversation.item.create",
            "previous_item_id": "item_x",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        },
    )
    assert err["param"] == "previous_item_id"
    err = await error_of(
        client,
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_audio", "audio": "AAAA"}],
            },
        },
    )
    assert err["code"] == "invalid_value"
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "id": "item_a",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        }
    )
    ev = await client.until("conversation.item.done")
    assert ev[0]["item"]["id"] == "item_a" and ev[0]["previous_item_id"] is None
    await client.send({"type": "conversation.item.delete", "item_id": "item_a"})
    deleted = await client.recv()
    assert (deleted["type"], deleted["item_id"]) == ("conversation.item.deleted", "item_a")
    err = await error_of(client, {"type": "conversation.item.delete", "item_id": "item_a"})
    assert err["param"] == "item_id"


def injected(extra: str) -> Scenario:
    return Scenario.loads(
        """
[greeting]
say = "Hi."
[[turns]]
caller = "one"
say = "First."
[[turns]]
caller = "two"
say = "Second."
"""
        + extra
    )


async def test_injected_error_after_turn(make_server: Callable[..., RealtimeServer]) -> None:
    scen = injected(
        '[[inject]]\nturn = 1\nat = "response.done"\naction = "error"\ncode = "server_error"\nmessage = "boom"\n'
    )
    async with make_server(scenario=scen) as srv:
        c = await connect(srv)
        await c.update(**g711_session(None))
        await c.send({"type": "response.create"})
        assert types(await c.until("response.done"))[-1] == "response.done"
        await c.append(ulaw_encode(tone(300, 200, 8000)))
        await c.send({"type": "input_audio_buffer.commit"})
        await c.send({"type": "response.create"})
        await c.until("response.done")
        ev = await c.recv()
        assert ev["type"] == "error" and ev["error"] == {
            "type": "server_error",
            "code": "server_error",
            "message": "boom",
            "param": None,
            "event_id": None,
        }
        # the session survives an error
        await c.send({"type": "input_audio_buffer.clear"})
        assert (await c.recv())["type"] == "input_audio_buffer.cleared"
        await c.ws.close()


@pytest.mark.parametrize("action", ["close", "abort"])
async def test_injected_disconnect(make_server: Callable[..., RealtimeServer], action: str) -> None:
    scen = injected(
        f'[[inject]]\nturn = 0\nat = "first_audio"\naction = "{action}"\nclose_code = 4001\nclose_reason = "bye"\n'
    )
    async with make_server(scenario=scen) as srv:
        c = await connect(srv)
        await c.send({"type": "response.create"})
        with pytest.raises(ConnectionClosed) as exc:
            while True:
                await c.recv()
        if action == "close":
            assert (
                exc.value.rcvd is not None
                and exc.value.rcvd.code == 4001
                and exc.value.rcvd.reason == "bye"
            )
        else:
            assert exc.value.rcvd is None
        assert "response.done" not in [e["type"] for e in c.received]


async def test_injected_failed_response(make_server: Callable[..., RealtimeServer]) -> None:
    scen = injected(
        '[[inject]]\nturn = 0\nat = "response.created"\naction = "fail"\ncode = "rate_limit_exceeded"\n'
    )
    async with make_server(scenario=scen) as srv:
        c = await connect(srv)
        await c.send({"type": "response.create"})
        events = await c.until("response.done")
        assert types(events) == ["response.created", "response.done"]
        assert [e["type"] for e in c.rate_limits] == ["rate_limits.updated"]
        assert events[-1]["response"]["status"] == "failed"
        assert events[-1]["response"]["status_details"]["error"]["code"] == "rate_limit_exceeded"
        await c.ws.close()


async def refused(url: str, headers: dict[str, str] | None = None) -> tuple[dict[str, Any], int]:
    """Connect (the upgrade succeeds), read the error event and the close code."""
    ws = await websockets.connect(url, additional_headers=headers or {})
    ev = json.loads(await ws.recv())
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    return ev, closed.value.rcvd.code


async def test_auth(make_server: Callable[..., RealtimeServer]) -> None:
    async with make_server(api_keys=["good"]) as srv:
        bad = "sk-bad-0123456789abcdefSECRET"
        ev, code = await refused(srv.ws_url, {"Authorization": f"Bearer {bad}"})
        assert ev["type"] == "error" and code == 3000  # 101 first, then error and close
        assert ev["error"]["code"] == "invalid_api_key"
        assert ev["error"]["message"].startswith("Incorrect API key provided: sk-bad***RET.")
        assert bad not in json.dumps(ev) and bad[:12] not in json.dumps(ev)
        ev, code = await refused(srv.ws_url)
        assert (ev["error"]["code"], code) == ("invalid_api_key", 3000)
        assert not srv.sessions  # no session was created for them
        c = await connect(srv, {"Authorization": "Bearer good"})
        await c.ws.close()


async def test_recording(make_server: Callable[..., RealtimeServer], tmp_path: Path) -> None:
    async with make_server(record_dir=tmp_path) as srv:
        c = await connect(srv)
        await c.update(**g711_session(None), tools=TOOLS)
        caller = ulaw_encode(silence(100, 8000) + tone(300, 400, 8000))
        await c.append(caller)
        await c.send({"type": "input_audio_buffer.commit", "event_id": "c1"})
        await c.until("conversation.item.done")
        await c.ws.close()
        # the server's close waits for the connection handler, which writes the recording
    rec = srv.sessions[0]
    assert bytes(rec.audio) == caller
    assert rec.types() == ["session.update"] + ["input_audio_buffer.append"] * (
        len(caller) // 160
    ) + ["input_audio_buffer.commit"]
    assert rec.events[-1].event["event_id"] == "c1"
    assert all(a.t <= b.t for a, b in zip(rec.events, rec.events[1:], strict=False))
    assert rec.closed
    with wave.open(str(tmp_path / f"{rec.session_id}.wav")) as w:
        assert w.getframerate() == 8000 and w.getnframes() == len(caller)
    lines = (tmp_path / f"{rec.session_id}.events.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["type"] == "session.update" and len(lines) == len(rec.events)


async def test_ended_recordings_are_bounded(make_server: Callable[..., RealtimeServer]) -> None:
    async with make_server(keep_recordings=2) as srv:
        for n in range(4):
            c = await connect(srv)
            await c.update(instructions=f"session {n}")
            await c.ws.close()
            await wait_until(lambda: not srv.live, 5.0, "session ended")
        kept = [r.events[0].event["session"]["instructions"] for r in srv.sessions]
        assert kept == ["session 2", "session 3"]  # the two most recent ended sessions


async def test_http_errors(server: RealtimeServer) -> None:
    import httpx

    async with httpx.AsyncClient() as h:
        r = await h.post(
            server.http_url + "/realtime/calls",
            content=b"v=0\r\n",
            headers={"Content-Type": "application/sdp"},
        )
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
        r = await h.post(server.http_url + "/nope", content=b"x", headers=AUTH)
        assert r.status_code == 404
        r = await h.post(
            server.http_url + "/realtime/calls",
            content=b"hello",
            headers={**AUTH, "Content-Type": "text/plain"},
        )
        assert r.status_code == 415


async def test_keys_never_logged_by_the_server(
    make_server: Callable[..., RealtimeServer], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-local-0123456789abcdefSECRET"
    caplog.set_level(logging.DEBUG)
    async with make_server(api_keys=[secret]) as srv:
        ws = await websockets.connect(
            srv.ws_url, additional_headers={"Authorization": f"Bearer {secret}"}
        )
        await ws.close()
        ws = await websockets.connect(
            srv.ws_url,
            subprotocols=[
                Subprotocol(f"openai-insecure-api-key.{secret}"),
                Subprotocol("realtime"),
            ],
        )
        await ws.close()
        await refused(srv.ws_url, {"Authorization": "Bearer x"})
    server_log = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("w3sipagent.localai")
    )
    assert "Authorization: [redacted]" in server_log  # the handshake was logged...
    assert "openai-insecure-api-key.[redacted]" in server_log
    assert secret not in server_log and secret[:12] not in server_log  # ...without the key
