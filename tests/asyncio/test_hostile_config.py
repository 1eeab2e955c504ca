"""The keys of the hostile-input bounds (issue 12 items 2-4): from the file to the user
agent's and the media's configuration; a bad value names the file and the key; what was
dropped or refused is in the metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from w3sipagent.agent.mappers import ua_config_from_settings
from w3sipagent.config import load_settings
from w3sipagent.errors import ConfigError
from w3sipagent.metrics import Metrics
from w3sipagent.records.cdr import CallRecord, Disposition

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


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


def test_dropped_rtp_and_refused_connections_are_metrics() -> None:
    m = Metrics()
    c = CallRecord(call_id="c1", tenant="acme", invite_at=T0)
    c.rtp = {"packets_received": 50, "foreign": 120, "oversize": 5}
    c.finish(Disposition.CALLER_HANGUP, when=T0 + timedelta(seconds=3))
    m.call_started("acme")
    m.call_ended(c)
    dropped = "w3sipagent_rtp_packets_dropped_total"
    assert m.registry.get_sample_value(dropped, {"tenant": "acme", "reason": "foreign"}) == 120
    assert m.registry.get_sample_value(dropped, {"tenant": "acme", "reason": "oversize"}) == 5
    refused = "w3sipagent_sip_connections_refused_total"
    assert m.registry.get_sample_value(refused, {}) == 0
    count = [0]
    m.watch_refused_connections(lambda: count[0])
    count[0] = 3
    assert m.registry.get_sample_value(refused, {}) == 3
    assert b"w3sipagent_sip_connections_refused_total 3.0" in m.render()
