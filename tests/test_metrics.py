"""Metrics from CDRs and events; /metrics, /healthz and /readyz over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from w3sipagent.metrics import HealthState, Metrics, MetricsServer, MetricsSink
from w3sipagent.records.cdr import CallRecord, Disposition
from w3sipagent.records.store import NullSink

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def cdr(call_id: str, tenant: str = "acme") -> CallRecord:
    c = CallRecord(call_id=call_id, tenant=tenant, invite_at=T0)
    c.answered(T0 + timedelta(milliseconds=150))
    c.turn_latencies_ms = [400.0, 900.0]
    c.rtp = {"packets_lost": 3, "jitter_ms": 4.0}
    c.finish(Disposition.CALLER_HANGUP, when=T0 + timedelta(seconds=10))
    return c


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


async def test_sink_updates_metrics_and_forwards() -> None:
    m = Metrics()
    seen: list[str] = []

    class Inner(NullSink):
        async def call_ended(self, cdr: CallRecord) -> None:
            seen.append(cdr.call_id)

    sink = MetricsSink(m, Inner())
    c = cdr("c1")
    await sink.call_started(c)
    assert value(m, "w3sipagent_active_calls", tenant="acme") == 1
    # what the bridge notes in the CDR during a call (counted once, when the call ends)
    c.add_event("barge_in", item_id="i1", heard_ms=420, dropped_frames=3)
    c.add_event("ai_error", code="server_error", message="boom", fatal=False)
    c.add_event("ai_lost", reason="socket closed")
    c.add_event("ai_reconnected")
    await sink.call_event("c1", "barge_in")  # forwarded to the store, not counted twice
    await sink.call_ended(c)
    assert seen == ["c1"]
    assert value(m, "w3sipagent_active_calls", tenant="acme") == 0
    assert value(m, "w3sipagent_calls_total", tenant="acme", disposition="caller_hangup") == 1
    assert value(m, "w3sipagent_setup_seconds_count", tenant="acme") == 1
    assert value(m, "w3sipagent_setup_seconds_sum", tenant="acme") == 0.15
    assert value(m, "w3sipagent_turn_latency_seconds_count", tenant="acme") == 2
    assert value(m, "w3sipagent_turn_latency_seconds_bucket", tenant="acme", le="0.5") == 1
    assert value(m, "w3sipagent_turn_latency_seconds_bucket", tenant="acme", le="1.0") == 2
    assert value(m, "w3sipagent_barge_ins_total", tenant="acme") == 1
    assert value(m, "w3sipagent_realtime_errors_total", tenant="acme", code="server_error") == 1
    assert value(m, "w3sipagent_realtime_errors_total", tenant="acme", code="connection_lost") == 1
    assert value(m, "w3sipagent_realtime_reconnects_total", tenant="acme") == 1
    assert value(m, "w3sipagent_rtp_packets_lost_total", tenant="acme") == 3
    assert value(m, "w3sipagent_rtp_jitter_seconds_sum", tenant="acme") == 0.004


async def test_ended_without_start_keeps_gauge_at_zero() -> None:
    m = Metrics()
    await MetricsSink(m).call_ended(cdr("c2", "globex"))
    assert value(m, "w3sipagent_active_calls", tenant="globex") == 0
    assert value(m, "w3sipagent_calls_total", tenant="globex", disposition="caller_hangup") == 1


async def http_get(port: int, path: str, method: str = "GET", headers: str = "") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


async def test_http_endpoints_and_draining() -> None:
    m = Metrics()
    health = HealthState(m)
    m.rejected_call(503)
    async with MetricsServer(m, health, "127.0.0.1", 0) as srv:
        assert (await http_get(srv.port, "/readyz"))[0] == 503  # not started yet
        health.set_started()
        assert await http_get(srv.port, "/readyz") == (200, "ready\n")
        assert await http_get(srv.port, "/healthz") == (200, "ok\n")
        status, body = await http_get(srv.port, "/metrics")
        assert status == 200
        assert 'w3sipagent_rejected_calls_total{code="503",reason="other"} 1.0' in body
        assert "w3sipagent_draining 0.0" in body
        health.set_draining()
        assert await http_get(srv.port, "/readyz") == (503, "draining\n")
        assert await http_get(srv.port, "/healthz") == (200, "ok\n")
        assert "w3sipagent_draining 1.0" in (await http_get(srv.port, "/metrics"))[1]
        assert (await http_get(srv.port, "/nope"))[0] == 404
        assert (await http_get(srv.port, "/metrics", "POST"))[0] == 405
        assert await http_get(srv.port, "/healthz", "HEAD") == (200, "")


def test_rejected_reason_label_stays_bounded() -> None:
    m = Metrics()
    m.rejected_call(403, "source_not_allowed")
    m.rejected_call(403, "anything an attacker chose")
    assert value(m, "w3sipagent_rejected_calls_total", code="403", reason="source_not_allowed") == 1
    assert value(m, "w3sipagent_rejected_calls_total", code="403", reason="other") == 1


async def test_bearer_token_guards_every_endpoint() -> None:
    m = Metrics()
    health = HealthState(m)
    health.set_started()
    async with MetricsServer(m, health, "127.0.0.1", 0, token="s3cret-token") as srv:
        for path in ("/metrics", "/healthz", "/readyz"):
            assert (await http_get(srv.port, path))[0] == 401
            wrong = "Authorization: Bearer s3cret-tokem\r\n"
            assert (await http_get(srv.port, path, headers=wrong))[0] == 401
            basic = "Authorization: Basic s3cret-token\r\n"
            assert (await http_get(srv.port, path, headers=basic))[0] == 401
            right = "Authorization: Bearer s3cret-token\r\n"
            assert (await http_get(srv.port, path, headers=right))[0] == 200
        assert (await http_get(srv.port, "/metrics", headers=right))[0] == 200
        _, body = await http_get(srv.port, "/metrics", headers=right)
        assert "w3sipagent_draining" in body and "s3cret" not in body


async def test_slow_client_is_dropped() -> None:
    async with MetricsServer(Metrics(), port=0, read_timeout=0.2) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /metr")
        data = await asyncio.wait_for(reader.read(), 2.0)
        writer.close()
    assert data == b""
