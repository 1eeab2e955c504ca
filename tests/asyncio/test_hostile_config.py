"""The keys of the hostile-input bounds (issue 12 items 2-4): from the file to the user
agent's and the media's configuration; a bad value names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from w3sipagent.agent.mappers import ua_config_from_settings
from w3sipagent.config import load_settings
from w3sipagent.errors import ConfigError


def test_keys_reach_the_user_agent_and_media_config(tmp_path: Path) -> None:
    p = tmp_path / "w3sipagent.toml"
    p.write_text(
        "[sip]\ntcp_max_connections = 100\ntcp_max_per_source = 7\n"
        'tcp_idle_timeout = "90s"\ntcp_message_timeout = 4\n'
        "[rtp]\nrelatch_packets = 8\nmax_packet_ms = 100\n"
    )
    c = ua_config_from_settings(load_settings(p, {}, environ={}, discover=False))
    assert (c.tcp_max_connections, c.tcp_max_per_source) == (100, 7)
    assert (c.tcp_idle_timeout, c.tcp_message_timeout) == (90.0, 4.0)
    assert (c.media.relatch_packets, c.media.max_packet_ms) == (8, 100)


def test_defaults() -> None:
    c = ua_config_from_settings(load_settings(None, {}, environ={}, discover=False))
    assert (c.tcp_max_connections, c.tcp_max_per_source) == (1024, 64)
    assert (c.tcp_idle_timeout, c.tcp_message_timeout) == (300.0, 10.0)
    assert (c.media.relatch_packets, c.media.max_packet_ms) == (5, None)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[sip]\ntcp_max_connections = 0\n", "tcp_max_connections"),
        ("[sip]\ntcp_max_per_source = 2000\n", "tcp_max_per_source"),
        ("[sip]\ntcp_message_timeout = 0\n", "tcp_message_timeout"),
        ("[rtp]\nrelatch_packets = 0\n", "relatch_packets"),
        ("[rtp]\nmax_packet_ms = 5\n", "max_packet_ms"),
    ],
)
def test_bad_value_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_settings(p, {}, environ={}, discover=False)
    assert "bad.toml" in str(ei.value) and key in str(ei.value)
