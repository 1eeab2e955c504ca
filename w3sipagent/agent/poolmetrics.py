"""The supervisor's ``/metrics``, ``/healthz`` and ``/readyz`` (``serve --workers N``).

:class:`PoolMetricsServer` answers on ``metrics.listen`` for every worker: ``/metrics`` is
the workers' expositions (gathered over their links) merged by :func:`merge_expositions`,
each sample with a ``worker`` label, plus the pool's own gauges.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from w3sipagent.metrics import HealthState, Metrics, MetricsServer

if TYPE_CHECKING:
    from w3sipagent.agent.pool import WorkerPool

__all__ = ["PoolMetricsServer", "merge_expositions"]


class PoolMetricsServer(MetricsServer):
    """``/metrics``: every worker's metrics (``worker`` label) and the pool's gauges;
    ``/readyz``: ready while at least one worker is and the pool is not draining."""

    def __init__(
        self,
        pool: WorkerPool,
        health: HealthState,
        host: str,
        port: int,
        *,
        token: str | None = None,
    ) -> None:
        super().__init__(Metrics(), health, host, port, token=token)
        self.pool = pool

    async def arespond(self, method: str, path: str) -> tuple[int, str, bytes]:
        bare = path.split("?", 1)[0]
        if method in ("GET", "HEAD") and bare == "/metrics":
            text = await self.pool.metrics_text()
            return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
        if method in ("GET", "HEAD") and bare == "/readyz":
            ready = sum(w.ready for w in self.pool.workers)
            if self.health.ready and ready:
                body = f"ready {ready}/{self.pool.count}\n".encode()
                return 200, "text/plain; charset=utf-8", body
            why = "draining" if self.health.draining else f"workers ready {ready}/{self.pool.count}"
            return 503, "text/plain; charset=utf-8", f"{why}\n".encode()
        return self.respond(method, path)


def merge_expositions(texts: Mapping[int, str]) -> str:
    """Prometheus text expositions of several workers as one: each family's HELP / TYPE once,
    every sample with a ``worker="N"`` label (sum them with ``sum without (worker)``)."""
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for index in sorted(texts):
        family = ""
        for line in texts[index].splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                family = line.split(" ", 3)[2]
                head = heads.setdefault(family, [])
                if len(head) < 2 and line not in head:
                    head.append(line)
                samples.setdefault(family, [])
            elif line and not line.startswith("#"):
                samples.setdefault(family, []).append(_labelled(line, index))
    out: list[str] = []
    for family, lines in samples.items():
        out.extend(heads.get(family, []))
        out.extend(lines)
    return "\n".join(out) + ("\n" if out else "")


def _labelled(line: str, index: int) -> str:
    brace, space = line.find("{"), line.find(" ")
    label = f'worker="{index}"'
    if brace != -1 and (space == -1 or brace < space):
        rest = line[brace + 1 :]
        return f"{line[: brace + 1]}{label}{'' if rest.startswith('}') else ','}{rest}"
    return f"{line[:space]}{{{label}}}{line[space:]}"
