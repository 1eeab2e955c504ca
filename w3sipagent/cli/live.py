"""The rich live table of active calls that ``w3sipagent serve`` shows on a terminal."""

from __future__ import annotations

from rich.table import Table

from w3sipagent.agent.service import AgentService
from w3sipagent.metrics import HealthState


def calls_table(service: AgentService, health: HealthState | None = None) -> Table:
    """Active calls: tenant, caller, codec, duration, state, last turn latency."""
    calls = service.live_calls()
    title = f"w3sipagent: {len(calls)} active call(s)"
    if health is not None and health.draining:
        title += " [yellow](draining: new calls get 503)[/]"
    t = Table(title=title, caption=_caption(service, len(calls)))
    for col in ("tenant", "caller", "codec", "duration", "state", "last turn", "stages p50"):
        t.add_column(col, overflow="fold")
    for c in calls:
        secs = int(c.duration_s)
        t.add_row(
            c.tenant,
            c.caller,
            c.codec,
            f"{secs // 60}:{secs % 60:02d}",
            c.state,
            "-" if c.last_turn_ms is None else f"{c.last_turn_ms:.0f} ms",
            _stages(c.stages_ms),
        )
    return t


_SHORT = {
    "end_of_turn": "eot",
    "transcript_final": "stt",
    "model_first_token": "llm",
    "first_sentence": "sent",
    "tts_first_byte": "tts",
    "first_rtp": "rtp",
}


def _stages(stages: dict[str, float]) -> str:
    """``eot 500 · stt 507 · … · rtp 518`` (ms from the caller's speech end), or ``-``."""
    if not stages:
        return "-"
    return " · ".join(f"{_SHORT.get(k, k)} {v:.0f}" for k, v in stages.items())


def _caption(service: AgentService, active: int) -> str:
    done = service.stats.bridged - active
    port = service.ua.port if service.ua is not None else 0
    regs = service.registration_statuses()
    shown = " · ".join(f"{rid} {st.state}" for rid, st in list(regs.items())[:4])
    more = f" (+{len(regs) - 4})" if len(regs) > 4 else ""
    line = f"SIP :{port} · calls ended {done} · Ctrl-C drains and stops"
    return line + (f"\nregistrations: {shown}{more}" if regs else "")
