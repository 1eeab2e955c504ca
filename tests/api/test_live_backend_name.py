"""The console's live table names the back end as the agent's configuration does."""

from __future__ import annotations

from w3sipagent.agent.scripted import ScriptedSession
from w3sipagent.api.live import backend_name
from w3sipagent.cascade.session import CascadeSession
from w3sipagent.live.client import LiveClient
from w3sipagent.live.webrtc import LiveWebRTCClient
from w3sipagent.realtime.client import RealtimeClient
from w3sipagent.realtime.webrtc import RealtimeWebRTCClient


def test_backend_names_are_the_configuration_names() -> None:
    cases: dict[type, str] = {
        RealtimeClient: "realtime",
        RealtimeWebRTCClient: "realtime/webrtc",
        LiveClient: "live",
        LiveWebRTCClient: "live/webrtc",
        CascadeSession: "cascade",
        ScriptedSession: "ScriptedSession",  # not a configured back end: its class
    }
    for cls, name in cases.items():
        assert backend_name(object.__new__(cls)) == name, cls
