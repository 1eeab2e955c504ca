"""``[cascade]`` agent configuration: validation, per-stage keys, the demo's tenant file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from w3sipagent.cli.demo import AGENT, TENANT, demo_config
from w3sipagent.config import load_settings
from w3sipagent.errors import ConfigError
from w3sipagent.tenants import AgentConfig
from w3sipagent.tenants.cascade import CascadeConfig


def test_stage_keys_are_references_and_urls_are_checked() -> None:
    with pytest.raises(ValidationError, match="never the key"):
        CascadeConfig.model_validate({"stt": {"model": "whisper-1", "api_key": "sk-inline"}})
    with pytest.raises(ValidationError, match="URL"):
        CascadeConfig.model_validate({"llm": {"model": "m", "base_url": "ftp://x"}})
    with pytest.raises(ValidationError):
        CascadeConfig.model_validate({"listen": {"silence_ms": 10}})
    assert AgentConfig().cascade is None


def test_to_settings_reads_each_stage_key_and_defaults() -> None:
    cfg = CascadeConfig.model_validate(
        {
            "stt": {
                "base_url": "http://whisper.local:9000/v1",
                "model": "whisper-large",
                "api_key": "env:WHISPER_KEY",
            },
            "listen": {"silence_ms": 700, "barge_in_ms": 300},
            "filler": "One moment please.",
        }
    )
    s = cfg.to_settings(
        default_base_url="https://api.openai.com/v1",
        default_key="sk-tenant",
        voice="cedar",
        environ={"WHISPER_KEY": "wk-123"},
    )
    assert (s.stt.base_url, s.stt.model, s.stt.api_key) == (
        "http://whisper.local:9000/v1",
        "whisper-large",
        "wk-123",
    )
    assert (s.llm.base_url, s.llm.model, s.llm.api_key) == (
        "https://api.openai.com/v1",
        "gpt-4.1-mini",
        "sk-tenant",
    )
    assert s.tts.model == "gpt-4o-mini-tts" and s.voice == "cedar"
    assert (s.listen.silence_ms, s.listen.barge_in_ms) == (700, 300)
    assert s.filler == "One moment please."
    assert "wk-123" not in repr(s)
    with pytest.raises(ConfigError, match="WHISPER_KEY"):
        cfg.to_settings(default_base_url="http://x/v1", default_key="k", voice="v", environ={})


def test_demo_config_with_a_cascade_agent_loads(tmp_path: Path) -> None:
    text = demo_config(
        tmp_path,
        "ws://127.0.0.1:9/v1",
        "http://127.0.0.1:9/t",
        codec="PCMU",
        cascade_url="http://127.0.0.1:9/v1",
    )
    path = tmp_path / "w3sipagent.toml"
    path.write_text(text)
    settings = load_settings(path, environ={}, discover=False)
    agent = settings.tenants[TENANT].agents[AGENT]
    assert agent.cascade is not None
    assert agent.cascade.llm.base_url == "http://127.0.0.1:9/v1"


def test_transcription_delay_is_passed_on_and_checked() -> None:
    cfg = CascadeConfig.model_validate(
        {"stt": {"model": "gpt-realtime-whisper"}, "stt_mode": "stream", "delay": "medium"}
    )
    s = cfg.to_settings(default_base_url="http://x/v1", default_key="k", voice="v", environ={})
    assert s.transcription_delay == "medium" and s.stt_mode == "stream"
    assert (
        CascadeConfig()
        .to_settings(default_base_url="http://x/v1", default_key="k", voice="v", environ={})
        .transcription_delay
        is None
    )
    with pytest.raises(ValidationError, match="'minimal', 'low', 'medium', 'high' or 'xhigh'"):
        CascadeConfig.model_validate({"delay": "fast"})
