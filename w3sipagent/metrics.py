"""Prometheus metrics and the health endpoints of a running agent.

Over 500 lines because it is one registry's declarations plus its small HTTP endpoint.

:class:`Metrics` owns a private :class:`prometheus_client.CollectorRegistry` with:

==========================================  =========  ==================================
``w3sipagent_active_calls{tenant}``          gauge      calls in progress
``w3sipagent_calls_total{tenant,disposition}``  counter  ended calls by disposition
``w3sipagent_rejected_calls_total{code,reason}``  counter  INVITEs refused before a call existed
``w3sipagent_setup_seconds{tenant}``         histogram  INVITE → answer (200 OK sent)
``w3sipagent_turn_latency_seconds{tenant}``  histogram  caller speech end → first agent RTP
``w3sipagent_barge_ins_total{tenant}``       counter    the caller interrupted the agent
``w3sipagent_rtp_packets_lost_total{tenant}``   counter  inbound RTP packets lost
``w3sipagent_rtp_jitter_seconds{tenant}``    histogram  inbound interarrival jitter at call end
``w3sipagent_rtp_packets_dropped_total{tenant,reason}``  counter  hostile inbound RTP dropped
``w3sipagent_sip_connections_refused_total``  counter  TCP/TLS connections over the caps
``w3sipagent_realtime_errors_total{tenant,code}``  counter  Realtime API errors
``w3sipagent_realtime_reconnects_total{tenant}``  counter  Realtime sessions re-opened
``w3sipagent_draining``                      gauge      1 while draining (SIGTERM)
``w3sipagent_event_loop_lag_seconds``        histogram  event loop lag (``watch_loop``)
``w3sipagent_event_loop_lag_max_seconds``    gauge      largest lag of the last minute
``w3sipagent_event_loop_stalls_total``       counter    lags over the stall threshold
``w3sipagent_event_loop_tasks``              gauge      asyncio tasks alive
==========================================  =========  ==================================

:class:`MetricsSink` wraps a records sink (the CDR store) and updates the metrics from the
CDRs the bridge reports, so the bridge needs no metrics code of its own.

:class:`MetricsServer` serves ``GET /metrics`` (Prometheus text format), ``GET /healthz``
(200 while the process runs) and ``GET /readyz`` (200 when ready, 503 before start-up is
complete and while draining), on a small asyncio HTTP/1.1 server. With a ``token`` every
request must carry ``Authorization: Bearer <token>`` (else 401).
The per-call figures (set-up time, turn latencies, RTP loss and jitter, barge-ins, Realtime
errors and reconnections) are taken from each CDR when its call ends
(:meth:`Metrics.call_ended`), so they appear when the call is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from w3sipagent.records.cdr import CallRecord
from w3sipagent.records.sink import RecordsSink

log = logging.getLogger("w3sipagent.metrics")

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
JITTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16)
NO_TENANT = "-"
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Must equal :data:`w3sipagent.asyncio.looplag.LAG_BUCKETS` (a test compares them)."""
CDR_EVENT_CODES = {
    "ai_error": "error",
    "ai_connect_failed": "connect_failed",
    "ai_lost": "connection_lost",
    "response_failed": "response_failed",
}
"""CDR event kinds counted as Realtime errors (``code``: the event's own, else this)."""


REJECT_REASONS = frozenset(
    {
        "source_not_allowed",
        "max_calls",
        "draining",
        "unknown_tenant",
        "forbidden",
        "tenant_limit",
        "not_served_here",
        "cluster_unavailable",
        "other",
    }
)
"""The ``reason`` label values of ``w3sipagent_rejected_calls_total``."""


class Metrics:
    """The agent's metrics, in their own registry (several agents can share a process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.active_calls = Gauge(
            "w3sipagent_active_calls", "Calls in progress", ["tenant"], registry=r
        )
        self.calls = Counter(
            "w3sipagent_calls", "Ended calls by disposition", ["tenant", "disposition"], registry=r
        )
        self.rejected = Counter(
            "w3sipagent_rejected_calls",
            "INVITEs refused before a call existed, by SIP status and reason",
            ["code", "reason"],
            registry=r,
        )
        self.setup = Histogram(
            "w3sipagent_setup_seconds",
            "INVITE received to call answered",
            ["tenant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_latency = Histogram(
            "w3sipagent_turn_latency_seconds",
            "End of caller speech to the first agent RTP packet",
            ["tenant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_stage = Histogram(  # issue 15: the cascade's stages of each turn
            "w3sipagent_turn_stage_seconds",
            "Caller speech end to each stage of the turn (cascade backend)",
            ["tenant", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_ins = Counter(
            "w3sipagent_barge_ins", "The caller interrupted the agent", ["tenant"], registry=r
        )
        self.rtp_lost = Counter(
            "w3sipagent_rtp_packets_lost", "Inbound RTP packets lost", ["tenant"], registry=r
        )
        self.rtp_jitter = Histogram(
            "w3sipagent_rtp_jitter_seconds",
            "Inbound RTP interarrival jitter at the end of each call",
            ["tenant"],
            buckets=JITTER_BUCKETS,
            registry=r,
        )
        self.rtp_dropped = Counter(
            "w3sipagent_rtp_packets_dropped",
            "Inbound RTP dropped: from a foreign source (reason=foreign), or carrying more "
            "audio than rtp.max_packet_ms (reason=oversize)",
            ["tenant", "reason"],
            registry=r,
        )
        #: Where ``w3sipagent_sip_connections_refused_total`` is read at each scrape
        #: (:meth:`watch_refused_connections`).
        self._refused_connections: Callable[[], int] | None = None
        r.register(_RefusedConnections(self))
        self.loop: LoopLag | None = None
        r.register(_LoopLagCollector(self))
        self.realtime_errors = Counter(
            "w3sipagent_realtime_errors", "Realtime API errors", ["tenant", "code"], registry=r
        )
        self.realtime_reconnects = Counter(
            "w3sipagent_realtime_reconnects",
            "Realtime sessions re-opened after a failure",
            ["tenant"],
            registry=r,
        )
        self.draining = Gauge("w3sipagent_draining", "1 while draining", registry=r)

    # -------------------------------------------------------------- updates

    def call_started(self, tenant: str | None) -> None:
        """A call was admitted."""
        self.active_calls.labels(tenant or NO_TENANT).inc()

    def call_ended(self, cdr: CallRecord) -> None:
        """A call ended: count it and observe its set-up time, turn latencies and RTP."""
        tenant = cdr.tenant or NO_TENANT
        self.active_calls.labels(tenant).dec()
        self.calls.labels(tenant, cdr.disposition.value).inc()
        if cdr.answer_at is not None:
            self.setup.labels(tenant).observe(
                max(0.0, (cdr.answer_at - cdr.invite_at).total_seconds())
            )
        for ms in cdr.turn_latencies_ms:
            self.turn_latency.labels(tenant).observe(ms / 1000.0)
        for stages in cdr.turn_stages_ms():
            for stage, ms in stages.items():
                if stage != "caller_speech_end":
                    self.turn_stage.labels(tenant, stage).observe(ms / 1000.0)
        lost = _number(cdr.rtp, "packets_lost", "lost")
        if lost is not None and lost > 0:
            self.rtp_lost.labels(tenant).inc(lost)
        for reason in ("foreign", "oversize"):
            dropped = _number(cdr.rtp, reason)
            if dropped is not None and dropped > 0:
                self.rtp_dropped.labels(tenant, reason).inc(dropped)
        jitter_ms = _number(cdr.rtp, "jitter_ms")
        jitter_s = _number(cdr.rtp, "jitter_s", "jitter")
        if jitter_ms is not None:
            self.rtp_jitter.labels(tenant).observe(jitter_ms / 1000.0)
        elif jitter_s is not None:
            self.rtp_jitter.labels(tenant).observe(jitter_s)
        for ev in cdr.events:  # what the bridge noted during the call
            kind = str(ev.get("kind", ""))
            if kind in CDR_EVENT_CODES:
                self.event(
                    tenant, "realtime_error", {"code": ev.get("code") or CDR_EVENT_CODES[kind]}
                )
            elif kind in ("barge_in", "ai_reconnected"):
                self.event(tenant, kind)

    def event(self, tenant: str | None, kind: str, data: Mapping[str, Any] | None = None) -> None:
        """A call event: ``barge_in``, ``realtime_error`` (``code``), ``realtime_reconnect``."""
        t = tenant or NO_TENANT
        if kind in ("barge_in", "barge-in", "interrupted"):
            self.barge_ins.labels(t).inc()
        elif kind in ("realtime_error", "ai_error"):
            code = str((data or {}).get("code") or "error")
            self.realtime_errors.labels(t, code[:64]).inc()
        elif kind in ("realtime_reconnect", "reconnect", "reconnected", "ai_reconnected"):
            self.realtime_reconnects.labels(t).inc()

    def watch_refused_connections(self, count: Callable[[], int]) -> None:
        """Report ``count()`` (the user agent's
        :attr:`~w3sipagent.asyncio.transport.TransportSet.refused_connections`) as
        ``w3sipagent_sip_connections_refused_total``."""
        self._refused_connections = count

    def watch_loop(self, monitor: LoopLag) -> None:
        """Export an event loop lag monitor
        (:class:`~w3sipagent.asyncio.looplag.LoopLagMonitor`): ``w3sipagent_event_loop_*``."""
        self.loop = monitor

    def refused_connections(self) -> int:
        """TCP/TLS connections refused for the caps so far (0 until watched)."""
        count = self._refused_connections
        return 0 if count is None else count()

    def rejected_call(self, code: int, reason: str = "other") -> None:
        """An INVITE was refused with ``code`` before any call existed; ``reason`` is one of
        :data:`REJECT_REASONS` (anything else counts as ``other``: the label stays bounded)."""
        self.rejected.labels(str(code), reason if reason in REJECT_REASONS else "other").inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return bytes(generate_latest(self.registry))


class LoopLag(Protocol):
    """What :meth:`Metrics.watch_loop` reads (a
    :class:`~w3sipagent.asyncio.looplag.LoopLagMonitor`)."""

    bucket_counts: list[int]
    lag_sum: float
    stall_count: int
    stall_threshold: float
    window: float

    def lag_max(self, now: float | None = None) -> float: ...

    def tasks(self) -> int: ...


class _LoopLagCollector(Collector):
    """The event loop's lag and tasks, read from the monitor when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        mon = self._metrics.loop
        if mon is None:
            return
        cumulative, buckets = 0, []
        for edge, n in zip((*LOOP_LAG_BUCKETS, float("inf")), mon.bucket_counts, strict=True):
            cumulative += n
            buckets.append(("+Inf" if edge == float("inf") else str(edge), cumulative))
        hist = HistogramMetricFamily(
            "w3sipagent_event_loop_lag_seconds",
            "How late the event loop ran a callback that was due (lag monitor ticks)",
        )
        hist.add_metric([], buckets, mon.lag_sum)
        yield hist
        top = GaugeMetricFamily(
            "w3sipagent_event_loop_lag_max_seconds",
            f"Largest event loop lag of the last {mon.window:g} s",
        )
        top.add_metric([], mon.lag_max())
        yield top
        stalls = CounterMetricFamily(
            "w3sipagent_event_loop_stalls",
            f"Event loop lags of {mon.stall_threshold:g} s or more (logged with their stack)",
        )
        stalls.add_metric([], mon.stall_count)
        yield stalls
        tasks = GaugeMetricFamily("w3sipagent_event_loop_tasks", "asyncio tasks alive")
        tasks.add_metric([], mon.tasks())
        yield tasks


class _RefusedConnections(Collector):
    """``w3sipagent_sip_connections_refused_total``, read from the user agent when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "w3sipagent_sip_connections_refused",
            "TCP/TLS connections closed at once: over sip.tcp_max_connections or "
            "sip.tcp_max_per_source",
        )
        family.add_metric([], self._metrics.refused_connections())
        yield family


def _number(data: Mapping[str, Any], *keys: str) -> float | None:
    for k in keys:
        v = data.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return None


class MetricsSink:
    """A records sink that updates :class:`Metrics` and forwards to ``inner`` (the CDR store)."""

    def __init__(self, metrics: Metrics, inner: RecordsSink | None = None) -> None:
        self.metrics = metrics
        self.inner = inner
        self._tenants: dict[str, str | None] = {}

    async def call_started(self, cdr: CallRecord) -> None:
        self._tenants[cdr.call_id] = cdr.tenant
        self.metrics.call_started(cdr.tenant)
        if self.inner is not None:
            await self.inner.call_started(cdr)

    async def call_event(
        self, call_id: str, kind: str, data: Mapping[str, Any] | None = None
    ) -> None:
        # counted from the CDR's events at the end of the call (call_ended), not here
        if self.inner is not None:
            await self.inner.call_event(call_id, kind, data)

    async def call_ended(self, cdr: CallRecord) -> None:
        if self._tenants.pop(cdr.call_id, "\0") == "\0":
            self.metrics.call_started(cdr.tenant)  # never seen starting: keep the gauge right
        self.metrics.call_ended(cdr)
        if self.inner is not None:
            await self.inner.call_ended(cdr)


class HealthState:
    """Readiness: ready once started, not ready while draining."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.started = False
        self.draining = False
        self._metrics = metrics

    @property
    def ready(self) -> bool:
        """True when new calls are welcome."""
        return self.started and not self.draining

    def set_started(self) -> None:
        """Start-up is complete."""
        self.started = True

    def set_draining(self, draining: bool = True) -> None:
        """Draining (SIGTERM): readiness goes to 503."""
        self.draining = draining
        if self._metrics is not None:
            self._metrics.draining.set(1 if draining else 0)


_REASONS = {
    200: "OK",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class MetricsServer:
    """A minimal asyncio HTTP/1.1 server for ``/metrics``, ``/healthz`` and ``/readyz``.

    ``port`` 0 picks a free port (see :attr:`port` after :meth:`start`). Requests must
    arrive within ``read_timeout`` seconds; each connection serves one request. ``token``:
    every request must send ``Authorization: Bearer <token>`` (401 otherwise).
    """

    def __init__(
        self,
        metrics: Metrics,
        health: HealthState | None = None,
        host: str = "127.0.0.1",
        port: int = 9464,
        *,
        read_timeout: float = 5.0,
        token: str | None = None,
    ) -> None:
        self.metrics = metrics
        self._token = token.encode() if token else None
        self.health = health or HealthState(metrics)
        self.host = host
        self._port = port
        self.read_timeout = read_timeout
        self._server: asyncio.Server | None = None
        self.connections = 0
        """Requests being served now (their sockets are this server's own)."""

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve."""
        self._server = await asyncio.start_server(self._handle, self.host, self._port)

    async def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def authorized(self, head: bytes) -> bool:
        """Whether the request head carries the bearer token (always, without a token)."""
        if self._token is None:
            return True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                scheme, _, given = value.strip().partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token):
                    return True
        return False

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a request."""
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self.metrics.render()
        if path in ("/healthz", "/health"):
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            if self.health.ready:
                return 200, "text/plain; charset=utf-8", b"ready\n"
            why = b"draining\n" if self.health.draining else b"starting\n"
            return 503, "text/plain; charset=utf-8", why
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n"

    async def arespond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """:meth:`respond`, for servers whose answers need to wait (``serve --workers``:
        the workers' metrics gathered)."""
        return self.respond(method, path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(self.read_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3:
                status, ctype, body = 400, "text/plain", b"bad request\n"
                method = "GET"
            elif not self.authorized(head):
                method = parts[0]
                status, ctype, body = 401, "text/plain; charset=utf-8", b"unauthorized\n"
            else:
                method = parts[0]
                status, ctype, body = await self.arespond(method, parts[1])
            reason = _REASONS.get(status, "Bad Request")
            extra = 'WWW-Authenticate: Bearer realm="w3sipagent"\r\n' if status == 401 else ""
            header = (
                f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(header if method == "HEAD" else header + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self.connections -= 1


__all__ = ["HealthState", "Metrics", "MetricsServer", "MetricsSink"]
