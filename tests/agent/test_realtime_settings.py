"""realtime.* settings reach the WebSocket client the agent opens per call."""

from __future__ import annotations

from pathlib import Path

from w3sipagent.agent.mappers import default_ai_factory
from w3sipagent.ai.session import AISessionConfig
from w3sipagent.config import load_settings
from w3sipagent.realtime.client import RealtimeClient


def test_keepalive_and_append_size_reach_the_client(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(
        '[realtime]\nbase_url = "ws://127.0.0.1:9/v1"\nping_interval = "7s"\n'
        'ping_timeout = "25s"\nappend_ms = 60\n'
    )
    settings = load_settings(cfg, environ={}, discover=False)
    session = default_ai_factory(settings)("t", "sk-x", "websocket", AISessionConfig())
    assert isinstance(session, RealtimeClient)
    assert (session.ping_interval, session.ping_timeout) == (7.0, 25.0)
    assert session.append_ms == 60  # its protocol gathers 20 ms frames into 60 ms appends


def test_defaults_and_off(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("[realtime]\nping_interval = 0\n")
    settings = load_settings(cfg, environ={}, discover=False)
    assert settings.realtime.ping_timeout == 15.0 and settings.realtime.append_ms == 0
    session = default_ai_factory(settings)("t", "sk-x", "websocket", AISessionConfig())
    assert isinstance(session, RealtimeClient)
    assert session.ping_interval is None
