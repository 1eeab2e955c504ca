"""A local AI server: offline stand-ins for the AI backends the agent talks to.

Today it imitates the OpenAI Realtime API (GA interface, :mod:`.realtime`): WebSocket
(``/v1/realtime``) and WebRTC (``POST /v1/realtime/calls``) on one port. The parts every
imitated protocol shares sit here: scripted answers from a :class:`Scenario`, energy VAD,
espeak-ng speech (tones without it), and everything a client sent kept in
:class:`SessionRecording`. It never imports the clients it imitates, nor ``sip/``, ``rtp/``
or ``agent/``. See docs/realtime-server.md.
"""

from __future__ import annotations

from w3sipagent.localai.realtime.app import RealtimeServer, serve_realtime
from w3sipagent.localai.realtime.errors import RealtimeProtocolError
from w3sipagent.localai.realtime.ports import ServerOptions
from w3sipagent.localai.realtime.session import ServerSession
from w3sipagent.localai.recorder import (
    CancelRecord,
    ReceivedEvent,
    SessionRecording,
    TruncateRecord,
)
from w3sipagent.localai.scenario import (
    FunctionCall,
    Injection,
    Scenario,
    Turn,
    bundled_scenarios,
    load_scenario,
)
from w3sipagent.localai.tts import Synthesizer
from w3sipagent.localai.vad import EnergyVad

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
