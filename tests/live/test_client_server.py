"""LiveClient against the local GPT-Live server: start, greeting, turns, tools, usage, expiry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.agent.helpers import tone_ulaw, wait_until
from w3sipagent.ai import session as ai
from w3sipagent.errors import AIError
from w3sipagent.live import LiveClient
from w3sipagent.live.protocol import silence_frame
from w3sipagent.localai.live import LiveServer, LiveServerOptions
from w3sipagent.localai.scenario import FunctionCall, Injection, Scenario, Turn

SCRIPT = Scenario(
    name="live-test",
    greeting="Hello there.",
    turns=(
        Turn(caller="When do you open?", say="At nine."),
        Turn(
            caller="Check my order.",
            call=FunctionCall("check_order", '{"id":"42"}', after="It shipped."),
        ),
    ),
)
SILENCE = silence_frame(ai.AudioFormat.PCMU)
CFG = ai.AISessionConfig(
    instructions="Be brief.",
    model="gpt-live-1",
    turn_detection=None,
    backend="live",
    playout_lead_ms=200,
    tools=(ai.ToolSpec("check_order", "Look up an order"),),
)


class Collector:
    def __init__(self, client: LiveClient) -> None:
        self.events: list[ai.AIEvent] = []
        self.task = asyncio.create_task(self._run(client))

    async def _run(self, client: LiveClient) -> None:
        async for ev in client.events():
            self.events.append(ev)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def speak(client: LiveClient, ms: int = 300, quiet_ms: int = 700) -> None:
    """The caller says something: tone then silence, at real time."""
    frames = [tone_ulaw(20)] * (ms // 20) + [SILENCE] * (quiet_ms // 20)
    for f in frames:
        client.send_audio(f)
        await asyncio.sleep(0.02)


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[LiveServer]:
    scenario, options = getattr(request, "param", (SCRIPT, LiveServerOptions(usage_interval_s=0.3)))
    async with LiveServer(scenario=scenario, tts_engine="tone", options=options) as srv:
        yield srv


def client_for(srv: LiveServer, **kw: Any) -> LiveClient:
    return LiveClient(CFG, api_key="sk-test", base_url=srv.base_url, proxy=None, **kw)


async def test_greeting_turn_and_tool_call_through_delegation(server: LiveServer) -> None:
    client = client_for(server)
    await client.start()
    col = Collector(client)
    rec = server.sessions[0]
    assert rec.types()[0] == "session.start"
    await client.create_response("Greet the caller.")
    await wait_until(lambda: len(col.of(ai.ResponseDone)) >= 1, timeout=5, what="greeting spoken")
    assert col.of(ai.AudioDelta)
    await speak(client)
    await wait_until(lambda: len(col.of(ai.ResponseDone)) >= 2, timeout=5, what="answer spoken")
    await speak(client)
    await wait_until(lambda: bool(col.of(ai.ToolCall)), timeout=5, what="tool call")
    (call,) = col.of(ai.ToolCall)
    assert call.name == "check_order" and json.loads(call.arguments) == {"id": "42"}
    await client.send_tool_result(call.call_id, '{"status":"shipped"}')
    await wait_until(
        lambda: any(e.final and e.text == "It shipped." for e in col.of(ai.AgentTranscript)),
        timeout=8,
        what="the after text",
    )
    finals = [
        (type(e).__name__, getattr(e, "text", "")) for e in col.events if getattr(e, "final", False)
    ]
    assert ("CallerTranscript", "When do you open?") in finals
    assert ("AgentTranscript", "Hello there.") in finals
    assert ("AgentTranscript", "At nine.") in finals
    types = rec.types()
    i = types.index("response.item.create")
    assert types[i + 1] == "response.create"
    await wait_until(lambda: client.usage.seconds > 0, timeout=3, what="usage")
    await client.close()
    await asyncio.wait_for(col.task, 3)
    assert col.events[-1] == ai.Closed("closed by client", error=False)
    assert "session.close" in rec.types()


async def test_silence_streams_while_the_caller_sends_nothing(server: LiveServer) -> None:
    client = client_for(server)
    await client.start()
    await wait_until(lambda: client.silence_frames >= 10, timeout=3, what="silence frames")
    rec = server.sessions[0]
    await wait_until(lambda: len(rec.audio) >= 1600, timeout=3, what="silence at the server")
    assert set(bytes(rec.audio)) == {0xFF}
    await client.close()


@pytest.mark.parametrize(
    "server",
    [(SCRIPT, LiveServerOptions(session_duration_s=3.0, usage_interval_s=10))],
    indirect=True,
)
async def test_renewal_before_expires_at_reseeds_the_transcript(server: LiveServer) -> None:
    client = client_for(server, renew_margin_s=1.5)
    await client.start()
    col = Collector(client)
    await client.create_response("Greet.")
    await wait_until(lambda: bool(col.of(ai.AgentTranscript)), timeout=1.4, what="greeting text")
    await wait_until(lambda: client.renewals >= 1, timeout=6, what="renewal")
    assert len(server.sessions) >= 2
    second = server.sessions[1].events[0].event["session"]
    assert {
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello there."}],
    } in second.get("input", [])
    assert not col.of(ai.Closed)
    await client.close()


@pytest.mark.parametrize(
    "server",
    [
        (
            Scenario(
                greeting="Hi.",
                inject=(
                    Injection(at="response.done", action="close", turn=0, close_reason="content"),
                ),
            ),
            LiveServerOptions(),
        )
    ],
    indirect=True,
)
async def test_injected_close_ends_the_session_with_an_error(server: LiveServer) -> None:
    client = client_for(server)
    await client.start()
    col = Collector(client)
    await client.create_response("Greet.")
    await asyncio.wait_for(col.task, 5)
    assert col.events[-1] == ai.Closed("live session closed: content", error=True, retry=False)


async def test_rejected_start_raises_without_the_key(server: LiveServer) -> None:
    bad = LiveClient(
        ai.AISessionConfig(model="gpt-realtime", turn_detection=None),
        api_key="sk-secret-key-123456",
        base_url=server.base_url,
        proxy=None,
    )
    with pytest.raises(AIError) as info:
        await bad.start()
    assert "model_not_found" in str(info.value) and "sk-secret" not in str(info.value)


async def test_server_strict_start_and_immutable_update(server: LiveServer) -> None:
    async with connect(
        f"{server.base_url}/live/sessions", additional_headers={"Authorization": "Bearer k"}
    ) as ws:

        async def ask(event: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps(event))
            return dict(json.loads(await ws.recv()))

        err = await ask({"type": "session.input_audio.append", "audio": ""})
        assert err["error"]["code"] == "session_not_started"
        err = await ask(
            {"type": "session.start", "session": {"model": "gpt-live-1", "turn_detection": {}}}
        )
        assert err["error"]["code"] == "unknown_parameter"
        assert err["error"]["param"] == "session.turn_detection"
        ok = await ask({"type": "session.start", "session": {"model": "gpt-live-1.1"}})
        assert ok["type"] == "session.started"
        assert ok["session"]["id"].startswith("live_") and ok["session"]["expires_at"] > 0
        err = await ask({"type": "session.update", "session": {"instructions": "new"}})
        assert err["error"]["code"] == "immutable_field_update"
        await ws.send(json.dumps({"type": "session.close"}))
        closed = json.loads(await ws.recv())
        assert closed["type"] == "session.closed" and closed["reason"] == "close_requested"


async def test_start_cancelled_mid_setup_closes_the_socket_and_its_tasks() -> None:
    """A caller who left while the session was starting (the service cancels the start):
    the WebSocket and the reader / writer tasks go too (before, they stayed for good)."""
    from websockets.asyncio.server import ServerConnection, serve

    connected = asyncio.Event()
    closed = asyncio.Event()

    async def mute(ws: ServerConnection) -> None:  # never says session.started
        try:
            async for _ in ws:  # session.start came: the client's tasks run
                connected.set()
        finally:
            closed.set()

    async with serve(mute, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = LiveClient(
            ai.AISessionConfig(instructions="x"),
            api_key="sk-test",
            base_url=f"ws://127.0.0.1:{port}/v1",
            session_timeout=30,
            proxy=None,
        )
        before = asyncio.all_tasks()
        starting = asyncio.ensure_future(client.start())
        await asyncio.wait_for(connected.wait(), 5)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        mine = [
            t.get_name() for t in asyncio.all_tasks() - before if t.get_name().startswith("live-")
        ]
        assert mine == []
        await asyncio.wait_for(closed.wait(), 5)
        await client.close()
