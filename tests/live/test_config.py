"""Per-agent ``backend``: live agents' settings, their session config, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from w3sipagent.ai.session import AudioFormat, HistoryItem
from w3sipagent.config import load_settings
from w3sipagent.errors import ConfigError
from w3sipagent.tenants import AgentConfig

LIVE = """
[tenants.acme]
hosts = ["acme.example"]
api_key = { env = "ACME_KEY" }
[tenants.acme.agents.support]
backend = "live"
instructions = "Be brief."
voice = { id = "voice_123abc" }
delegation = { model = "gpt-5.4", reasoning_effort = "low", service_tier = "flex" }
history = [{ role = "system", text = "VIP caller" }, { role = "assistant", text = "Welcome back." }]
"""


def load_error(tmp_path: Path, text: str) -> str:
    p = tmp_path / "w3sipagent.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_settings(p, {}, environ={}, discover=False)
    return str(ei.value).replace(str(p), "FILE")


def test_live_agent_from_file_gives_a_live_session_config(tmp_path: Path) -> None:
    p = tmp_path / "w3sipagent.toml"
    p.write_text(LIVE)
    s = load_settings(p, {}, environ={}, discover=False)
    agent = s.tenants["acme"].agents["support"]
    assert agent.backend == "live" and agent.model == "gpt-live-1"
    cfg = agent.session_config(AudioFormat.PCMU)
    assert cfg.backend == "live" and cfg.model == "gpt-live-1" and cfg.voice == "voice_123abc"
    assert cfg.turn_detection is None and cfg.transcription_model is None
    assert cfg.model_owns_turns and cfg.playout_lead_ms
    assert (cfg.tool_model, cfg.tool_reasoning_effort, cfg.tool_service_tier) == (
        "gpt-5.4",
        "low",
        "flex",
    )
    assert cfg.history == (
        HistoryItem("system", "VIP caller"),
        HistoryItem("assistant", "Welcome back."),
    )


def test_realtime_default_unchanged() -> None:
    agent = AgentConfig.model_validate({"voice": "cedar"})
    cfg = agent.session_config(AudioFormat.PCMA)
    assert agent.backend == "realtime" and cfg.backend == "realtime"
    assert cfg.model == "gpt-realtime" and not cfg.model_owns_turns
    assert cfg.turn_detection is not None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "turn_detection = { silence_duration_ms = 300 }",
            "FILE: tenant 'acme': agents.support.turn_detection: not a setting of a live agent "
            "(GPT-Live decides turns, transcription and pace by itself): remove it",
        ),
        (
            "speed = 1.2",
            "FILE: tenant 'acme': agents.support.speed: not a setting of a live agent "
            "(GPT-Live decides turns, transcription and pace by itself): remove it (got 1.2)",
        ),
        (
            'model = "gpt-realtime"',
            "FILE: tenant 'acme': agents.support.model: must be one of gpt-live-1, gpt-live-1.1 "
            "(got 'gpt-realtime')",
        ),
        (
            'voice = "nova"',
            "FILE: tenant 'acme': agents.support.voice: must be one of alloy, ash, ballad, beacon, "
            "bossa, cedar, cinder, coral, delta, echo, gleam, marin, meridian, quartz, ripple, "
            "sage, shida, shimmer, stone, tempo, verse, vesper, willow (got 'nova')",
        ),
    ],
)
def test_live_agent_rejects_what_gpt_live_does_not_have(
    tmp_path: Path, line: str, expected: str
) -> None:
    text = LIVE.replace('voice = { id = "voice_123abc" }', "") + line + "\n"
    assert load_error(tmp_path, text) == expected


def test_realtime_agent_rejects_live_settings(tmp_path: Path) -> None:
    text = LIVE.replace('backend = "live"', "").replace('voice = { id = "voice_123abc" }', "")
    msg = load_error(tmp_path, text)
    assert msg.startswith("FILE: tenant 'acme': agents.support.delegation: only a live agent")
    # a custom voice is a setting of both back ends (Realtime GA takes { id } too)
    text = LIVE.replace('backend = "live"', "").replace("delegation = {", "#")
    p = tmp_path / "w3sipagent.toml"
    p.write_text(text)
    agent = load_settings(p, {}, environ={}, discover=False).tenants["acme"].agents["support"]
    assert agent.session_config(AudioFormat.PCMU).voice == "voice_123abc"
