"""The local AI server's GPT-Live side: ``/v1/live/sessions`` over WebSocket.

It plays the same scenario files as the Realtime imitation (:mod:`w3sipagent.localai.scenario`)
with the shared speech, VAD, audio and recorder parts; :mod:`.validate` holds the strict
``session.start`` checks. It never imports the client it imitates (:mod:`w3sipagent.live`).
"""

from __future__ import annotations

from w3sipagent.localai.live.app import LiveServer
from w3sipagent.localai.live.ports import LiveServerOptions
from w3sipagent.localai.live.session import LiveServerSession
from w3sipagent.localai.live.validate import LiveRequestError, check_start, check_update

__all__ = [
    "LiveRequestError",
    "LiveServer",
    "LiveServerOptions",
    "LiveServerSession",
    "check_start",
    "check_update",
]
