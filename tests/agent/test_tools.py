"""Webhook tools against a local HTTP server, and the registry's error handling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.agent.helpers import Rig, wait_until
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.scripted import ScriptedBackend, ScriptedReply
from w3sipagent.agent.tools import ToolRegistry, ToolResult, WebhookTool, builtin_tools
from w3sipagent.asyncio.call_api import TransferOutcome
from w3sipagent.tenants import TenantConfig, WebhookToolConfig


class HttpServer:
    """A minimal HTTP/1.1 server on 127.0.0.1: /ok answers JSON, /fail 500, /slow sleeps."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((path, headers, body))
        if path == "/slow":
            await asyncio.sleep(2)
        status, payload = (200, json.dumps({"order": "4217", "status": "shipped"}))
        if path == "/fail":
            status, payload = 500, "database down"
        if path == "/text":
            payload = "plain words"
        data = payload.encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def http() -> AsyncIterator[HttpServer]:
    srv = HttpServer()
    await srv.start()
    yield srv
    await srv.close()


class _Ctx:
    async def transfer_to(self, destination: str, uri: str, reason: str) -> TransferOutcome:
        raise AssertionError("not expected")

    async def end_call(self, reason: str) -> None:
        raise AssertionError("not expected")

    async def send_dtmf(self, digits: str) -> None:
        raise AssertionError("not expected")


def _tool(url: str, **kw: Any) -> WebhookToolConfig:
    return WebhookToolConfig(
        name="orders",
        description="Look up an order",
        parameters={"type": "object", "properties": {"order": {"type": "string"}}},
        url=url,
        **kw,
    )


async def test_webhook_tool_ok_error_timeout_and_auth(http: HttpServer) -> None:
    env = {"ORDERS_TOKEN": "secret-token-123"}
    async with httpx.AsyncClient() as client:
        reg = ToolRegistry(
            [
                WebhookTool(
                    _tool(http.url + "/ok", auth_env="ORDERS_TOKEN"), http=client, environ=env
                ).tool()
            ]
        )
        ok = await reg.run(_Ctx(), "orders", '{"order": "4217"}')
        assert ok == ToolResult({"order": "4217", "status": "shipped"})
        path, headers, body = http.requests[-1]
        assert path == "/ok" and json.loads(body) == {"order": "4217"}
        assert headers["authorization"] == "Bearer secret-token-123"
        assert headers["content-type"] == "application/json"

        fail = ToolRegistry([WebhookTool(_tool(http.url + "/fail"), http=client).tool()])
        res = await fail.run(_Ctx(), "orders", "{}")
        assert res.error == "tool orders failed: HTTP 500 database down"
        assert json.loads(res.to_json()) == {"error": "tool orders failed: HTTP 500 database down"}

        slow = ToolRegistry(
            [WebhookTool(_tool(http.url + "/slow", timeout=0.2), http=client).tool()]
        )
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        res = await slow.run(_Ctx(), "orders", "{}")
        assert res.error == "tool orders timed out after 0.2 s"
        assert loop.time() - t0 < 1.0

        text = ToolRegistry([WebhookTool(_tool(http.url + "/text"), http=client).tool()])
        assert json.loads((await text.run(_Ctx(), "orders", "{}")).to_json()) == {
            "result": "plain words"
        }

        missing = ToolRegistry(
            [WebhookTool(_tool(http.url + "/ok", auth_env="NOPE"), http=client, environ={}).tool()]
        )
        res = await missing.run(_Ctx(), "orders", "{}")
        assert res.error == "tool orders is not configured"

        unreachable = ToolRegistry([WebhookTool(_tool("http://127.0.0.1:9/x"), http=client).tool()])
        res = await unreachable.run(_Ctx(), "orders", "{}")
        assert res.error is not None and res.error.startswith("tool orders unreachable")


async def test_registry_rejects_bad_calls() -> None:
    reg = ToolRegistry(builtin_tools({"sales": "sip:sales@pbx.example"}))
    assert [s.name for s in reg.specs()] == ["transfer_call", "end_call", "send_dtmf"]
    assert (await reg.run(_Ctx(), "rm_rf", "{}")).error == (
        "unknown tool 'rm_rf'; available: transfer_call, end_call, send_dtmf"
    )
    assert (await reg.run(_Ctx(), "send_dtmf", "{not json")).error is not None
    assert (await reg.run(_Ctx(), "send_dtmf", "[1, 2]")).error == "arguments must be a JSON object"
    assert (await reg.run(_Ctx(), "send_dtmf", '{"digits": "12; DROP"}')).error == (
        "digits must be 1 to 32 of 0-9 * # A-D"
    )
    no_dest = ToolRegistry(builtin_tools({}))
    assert "transfer_call" not in no_dest  # no destinations, no transfer tool at all


async def test_a_slow_tool_never_blocks_audio(http: HttpServer) -> None:
    """While a webhook takes 2 s, the agent's audio keeps flowing frame by frame."""
    from tests.agent.helpers import tone_ulaw

    tenant = TenantConfig(
        id="acme",
        agents={"a": {"tools": [_tool(http.url + "/slow", timeout=5)]}},  # type: ignore[dict-item]
    )
    async with httpx.AsyncClient() as client:
        tools = ToolRegistry.for_tenant(tenant, tenant.default.tools, http=client)
        first = ScriptedReply(tone_ulaw(100), "Let me check.", tool=("orders", '{"order": "1"}'))
        backend = ScriptedBackend(
            greeting=first, after_tool=[ScriptedReply(tone_ulaw(200), "Found it.")]
        )
        reply2 = ScriptedReply(tone_ulaw(1000, amp=5000), "Meanwhile...")
        async with Rig(backend, options=BridgeOptions(greeting="hi"), tools=tools) as rig:
            await rig.ready()
            await wait_until(lambda: len(http.requests) == 1, what="webhook called")
            # the model keeps talking while the tool runs
            rig.session.replies.append(reply2)
            await rig.session.create_response()
            n0 = len(rig.call.audio_frames())
            await wait_until(
                lambda: len(rig.call.audio_frames()) - n0 >= 30, timeout=1.8, what="600 ms heard"
            )
            assert rig.session.tool_results == []  # the webhook (2 s) is still running
            frames = rig.call.audio_frames()
            gaps = [b.at - a.at for a, b in zip(frames[n0:], frames[n0 + 1 :], strict=False)]
            # a loop held by the 2 s webhook would leave a gap of a second or more; a busy
            # CI machine may delay a 20 ms tick by tens of milliseconds, never by 250
            assert max(gaps) < 0.25, max(gaps)
            results = await rig.tool_results()
            assert json.loads(results[0][1])["status"] == "shipped"
        (rec,) = rig.bridge.cdr.tool_calls
        assert rec.name == "orders" and rec.arguments == {"order": "1"}
        assert rec.result == {"order": "4217", "status": "shipped"} and rec.duration_ms is not None
        assert rec.duration_ms >= 1900
