"""CDR webhook: a real HTTP server on 127.0.0.1 that fails, then succeeds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.agent.helpers import wait_until
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.webhook import CdrWebhookPoster
from w3sipagent.tenants.models import CdrWebhookConfig


@dataclass
class Hook:
    """A tiny HTTP/1.1 server answering with the scripted statuses, then 200."""

    statuses: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], bytes, float]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = {
                k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((lines[0], headers, body, time.monotonic()))
            delay = self.delays.pop(0) if self.delays else 0.0
            if delay:
                await asyncio.sleep(delay)
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cdr"


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = Hook()
    server = await asyncio.start_server(h.handle, "127.0.0.1", 0)
    h.port = server.sockets[0].getsockname()[1]
    yield h
    server.close()
    await server.wait_closed()


def cdr() -> CallRecord:
    c = CallRecord(call_id="wh-1@agent", tenant="acme", agent="support")
    c.add_transcript("caller", "hello", at=1.0)
    c.finish(Disposition.COMPLETED, hangup_by="agent")
    return c


async def test_fails_then_succeeds_with_backoff(hook: Hook) -> None:
    hook.statuses = [500, 503]
    poster = CdrWebhookPoster(environ={"ACME_HOOK_TOKEN": "hook-secret-123"})
    cfg = CdrWebhookConfig(url=hook.url, attempts=5, backoff=0.05, auth_env="ACME_HOOK_TOKEN")
    t = time.monotonic()
    task = poster.submit(cdr(), cfg)
    assert time.monotonic() - t < 0.01  # submit never waits for the network
    result = await asyncio.wait_for(task, 10)
    await poster.close()
    assert result.delivered and result.attempts == 3 and result.status == 200
    assert len(hook.requests) == 3
    gaps = [b[3] - a[3] for a, b in zip(hook.requests, hook.requests[1:], strict=False)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095  # 0.05 then 0.10
    line, headers, body, _ = hook.requests[-1]
    assert line == "POST /cdr HTTP/1.1"
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == "wh-1@agent"
    assert headers["authorization"] == "Bearer hook-secret-123"
    doc = json.loads(body)
    assert doc["call_id"] == "wh-1@agent" and doc["disposition"] == "completed"
    assert doc["transcript"][0]["text"] == "hello"
    assert poster.delivered == 1 and poster.failed == 0


async def test_gives_up_after_attempts(hook: Hook) -> None:
    hook.statuses = [500] * 10
    poster = CdrWebhookPoster()
    result = await poster.submit(cdr(), CdrWebhookConfig(url=hook.url, attempts=3, backoff=0.01))
    await poster.close()
    assert not result.delivered and result.attempts == 3 and result.error == "HTTP 500"
    assert len(hook.requests) == 3 and poster.failed == 1


async def test_client_error_is_final(hook: Hook) -> None:
    hook.statuses = [404]
    poster = CdrWebhookPoster()
    result = await poster.submit(cdr(), CdrWebhookConfig(url=hook.url, attempts=5, backoff=0.01))
    await poster.close()
    assert not result.delivered and result.status == 404 and len(hook.requests) == 1


async def test_429_is_retried(hook: Hook) -> None:
    hook.statuses = [429]
    poster = CdrWebhookPoster()
    result = await poster.submit(cdr(), CdrWebhookConfig(url=hook.url, attempts=2, backoff=0.01))
    await poster.close()
    assert result.delivered and result.attempts == 2


async def test_timeout_then_success(hook: Hook) -> None:
    hook.delays = [0.5]  # the first answer comes too late, the second at once
    poster = CdrWebhookPoster()
    cfg = CdrWebhookConfig(url=hook.url, attempts=2, timeout=0.1, backoff=0.01)
    result = await asyncio.wait_for(poster.submit(cdr(), cfg), 5)
    await poster.close()
    assert result.delivered and result.attempts == 2 and len(hook.requests) == 2


async def test_connection_refused_is_retried_then_reported() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    poster = CdrWebhookPoster()
    result = await poster.submit(
        cdr(), CdrWebhookConfig(url=f"http://127.0.0.1:{port}/", attempts=2, backoff=0.01)
    )
    await poster.close()
    assert not result.delivered and result.attempts == 2 and "ConnectError" in (result.error or "")


async def test_missing_auth_variable_is_reported_without_posting(hook: Hook) -> None:
    poster = CdrWebhookPoster(environ={})
    result = await poster.submit(cdr(), CdrWebhookConfig(url=hook.url, auth_env="NOPE_TOKEN"))
    await poster.close()
    assert not result.delivered and result.attempts == 0
    assert result.error == "cdr_webhook.auth_env: environment variable NOPE_TOKEN is not set"
    assert hook.requests == []


async def test_close_bounds_waiting(hook: Hook) -> None:
    hook.statuses = [500] * 100
    poster = CdrWebhookPoster(close_timeout=0.2)
    task = poster.submit(cdr(), CdrWebhookConfig(url=hook.url, attempts=20, backoff=1.0))
    await wait_until(lambda: bool(hook.requests), what="the first attempt")
    t = time.monotonic()
    await poster.close()
    assert time.monotonic() - t < 1.0 and task.cancelled() and poster.pending == 0
