"""Tenant model pieces: E.164 normalization, durations, agent → AI session config."""

from __future__ import annotations

from pathlib import Path

import pytest

from w3sipagent.ai.session import AudioFormat
from w3sipagent.tenants.models import AgentConfig, TenantConfig, normalize_e164, parse_duration


@pytest.mark.parametrize(
    ("number", "kwargs", "expected"),
    [
        ("+15551230000", {}, "+15551230000"),
        ("+1 (555) 123-0000", {}, "+15551230000"),
        ("0015551230000", {}, "+15551230000"),
        ("15551230000", {}, "+15551230000"),
        ("%2B442071234567", {}, "+442071234567"),
        ("+442071234567;npdi;rn=+44", {}, "+442071234567"),
        ("02071234567", {"country_code": "44"}, "+442071234567"),
        ("2071234567", {"country_code": "44"}, "+442071234567"),
        ("01144207", {"international_prefix": "011"}, "+44207"),
        ("support", {}, None),
        ("*97", {}, None),
        ("+", {}, None),
        ("+1234567890123456", {}, None),  # 16 digits
        ("", {}, None),
    ],
)
def test_normalize_e164(number: str, kwargs: dict[str, str], expected: str | None) -> None:
    assert normalize_e164(number, **kwargs) == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("30d", 2592000.0),
        ("45", 45.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "-1", True, None, [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(value)


def test_agent_session_config() -> None:
    agent = AgentConfig.model_validate(
        {
            "voice": "cedar",
            "instructions": "Be brief.",
            "language": "de",
            "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
            "tools": [
                {
                    "name": "crm",
                    "description": "CRM",
                    "url": "https://crm/x",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                }
            ],
        }
    )
    cfg = agent.session_config(AudioFormat.PCMA)
    assert cfg.voice == "cedar" and cfg.instructions == "Be brief." and cfg.model == "gpt-realtime"
    assert cfg.input_format is AudioFormat.PCMA and cfg.output_format is AudioFormat.PCMA
    assert cfg.turn_detection is not None and cfg.turn_detection.type == "semantic_vad"
    assert cfg.turn_detection.eagerness == "high" and cfg.turn_detection.idle_timeout_ms is None
    assert (
        cfg.transcription_model == "gpt-4o-mini-transcribe" and cfg.transcription_language == "de"
    )
    assert [t.name for t in cfg.tools] == ["crm"] and cfg.tools[0].parameters["properties"]["q"][
        "type"
    ] == "string"


def test_agent_no_vad_no_transcription_and_guard() -> None:
    agent = AgentConfig.model_validate(
        {"turn_detection": {"type": "none"}, "transcription": {"enabled": False}}
    )
    cfg = agent.session_config(AudioFormat.PCM24K)
    assert cfg.turn_detection is None and cfg.transcription_model is None
    guarded = AgentConfig.model_validate({"turn_detection": {"min_interrupt_ms": 300}})
    td = guarded.session_config(AudioFormat.PCMU).turn_detection
    assert td is not None and td.interrupt_response is False  # the bridge decides barge-in itself


def test_instructions_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "prompt.md"
    f.write_text("Opening hours: 9-17.")
    agent = AgentConfig.model_validate({"instructions": "Be brief.", "instructions_file": str(f)})
    assert agent.prompt() == "Be brief.\n\nOpening hours: 9-17."


def test_tenant_defaults_and_helpers() -> None:
    t = TenantConfig.model_validate(
        {
            "id": "acme",
            "agents": {"support": {}, "sales": {}},
            "dids": "+1 555 123 0000, +15551230001",
            "codecs": ["pcma", "OPUS"],
            "transfers": {"human": "sip:100@pbx"},
            "dtmf": {"0": "transfer:human", "*": "message:caller wants the menu", "b": "hangup"},
            "fallback": {"transfer": "sip:fallback@pbx"},
        }
    )
    assert t.default_agent == "support" and t.default is t.agents["support"]
    assert list(t.dids) == ["+15551230000", "+15551230001"]
    assert t.codecs == ["PCMA", "opus"]
    assert (
        t.dtmf_action("0") == "transfer:human"
        and t.dtmf_action("B") == "hangup"
        and t.dtmf_action("5") is None
    )
    assert t.fallback_uri() == "sip:fallback@pbx"
    assert t.max_call_duration == 3600.0 and t.recording.enabled is False
    assert t.usage_caps.minutes_per_day is None


def test_agent_ga_session_fields() -> None:
    agent = AgentConfig.model_validate(
        {
            "voice": {"id": "voice_1234abcd"},
            "transcription": {"prompt": "Lumen, Sancerre"},
            "stored_prompt": {"id": "pmpt_abc", "version": "3", "variables": {"city": "Lyon"}},
            "tracing": {"workflow_name": "phone", "metadata": {"tenant": "acme"}},
            "include": ["item.input_audio_transcription.logprobs"],
        }
    )
    cfg = agent.session_config(AudioFormat.PCMU)
    assert cfg.voice == "voice_1234abcd" and cfg.transcription_prompt == "Lumen, Sancerre"
    assert cfg.prompt is not None and (cfg.prompt.id, cfg.prompt.version) == ("pmpt_abc", "3")
    assert cfg.prompt.variables == {"city": "Lyon"}
    assert cfg.tracing == {"workflow_name": "phone", "metadata": {"tenant": "acme"}}
    assert cfg.include == ("item.input_audio_transcription.logprobs",)
    auto = AgentConfig.model_validate({"tracing": "auto"}).session_config(AudioFormat.PCMU)
    assert auto.tracing == "auto" and auto.prompt is None and auto.include == ()


@pytest.mark.parametrize(
    "bad",
    [
        {"voice": {"id": "alloy"}},
        {"voice": {"id": "voice_x", "name": "y"}},
        {"stored_prompt": {"id": "prompt_1"}},
        {"tracing": "on"},
        {"include": ["item.everything"]},
        {"transcription": {"prompt": 3}},
    ],
)
def test_agent_ga_session_fields_validated(bad: dict[str, object]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AgentConfig.model_validate(bad)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('voice = { id = "alloy" }', "agents.support.voice.id: must match"),
        ('voice = "bob"', "agents.support.voice: must be one of alloy"),
        ('stored_prompt = { id = "prompt_1" }', "agents.support.stored_prompt.id: must match"),
        ('include = ["everything"]', "agents.support.include.0: must be one of"),
    ],
)
def test_ga_fields_config_errors_name_file_tenant_and_key(
    tmp_path: Path, line: str, key: str
) -> None:
    from w3sipagent.config import load_settings
    from w3sipagent.errors import ConfigError

    p = tmp_path / "w3sipagent.toml"
    p.write_text(
        '[tenants.acme]\nhosts = ["acme.example"]\napi_key = { env = "ACME_KEY" }\n'
        f"[tenants.acme.agents.support]\n{line}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(p, {}, environ={}, discover=False)
    assert str(info.value).startswith(f"{p}: tenant 'acme': {key}")
