"""The OpenAI Realtime (GA) protocol side of the local AI server.

:mod:`.app` serves ``/v1/realtime`` (WebSocket, :mod:`.ws`) and ``/v1/realtime/calls``
(WebRTC, :mod:`.webrtc`); :mod:`.session` is the protocol engine, :mod:`.config`
validates session configuration, :mod:`.events` names the GA events it accepts and
sends. Nothing here imports the client it imitates (:mod:`w3sipagent.realtime`).
"""
