"""A local, protocol-faithful stand-in for the OpenAI Realtime API (GA interface).

WebSocket (``/v1/realtime``) and WebRTC (``POST /v1/realtime/calls``) on one
port; scripted answers from a :class:`Scenario`; energy VAD; espeak-ng speech
(tones without it); everything a client sent kept in :class:`SessionRecording`.
See docs/realtime-server.md.
"""

from __future__ import annotations

from w3sipagent.realtime.server.app import RealtimeServer, serve_realtime
from w3sipagent.realtime.server.protocol import RealtimeProtocolError
from w3sipagent.realtime.server.recorder import (
    CancelRecord,
    ReceivedEvent,
    SessionRecording,
    TruncateRecord,
)
from w3sipagent.realtime.server.scenario import (
    FunctionCall,
    Injection,
    Scenario,
    Turn,
    bundled_scenarios,
    load_scenario,
)
from w3sipagent.realtime.server.session import ServerOptions, ServerSession
from w3sipagent.realtime.server.tts import Synthesizer
from w3sipagent.realtime.server.vad import EnergyVad

__all__ = [
    "CancelRecord",
    "EnergyVad",
    "FunctionCall",
    "Injection",
    "RealtimeProtocolError",
    "RealtimeServer",
    "ReceivedEvent",
    "Scenario",
    "ServerOptions",
    "ServerSession",
    "SessionRecording",
    "Synthesizer",
    "TruncateRecord",
    "Turn",
    "bundled_scenarios",
    "load_scenario",
    "serve_realtime",
]
