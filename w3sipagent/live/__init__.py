"""OpenAI GPT-Live sessions (``/v1/live/sessions``) for the bridge.

- :class:`LiveClient`: the WebSocket transport, an :class:`~w3sipagent.ai.session.AISession`.
- :class:`~w3sipagent.live.webrtc.LiveWebRTCClient`: WebRTC (aiortc), imported lazily.
- :mod:`w3sipagent.live.protocol`: the sans-IO core (``session.start``, events, tools
  through Responses delegation, utterances derived from the audio).
- :func:`open_session`: a not yet started session (what the service's factory calls).

See docs/backends.md.
"""

from __future__ import annotations

from typing import Any

from w3sipagent.ai.session import AISessionConfig
from w3sipagent.errors import AIError
from w3sipagent.live.client import DEFAULT_BASE_URL, LiveClient
from w3sipagent.live.protocol import DEFAULT_MODEL, LIVE_MODELS, LIVE_VOICES, LiveProtocol

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "LIVE_MODELS",
    "LIVE_VOICES",
    "LiveClient",
    "LiveProtocol",
    "open_session",
]


def open_session(
    config: AISessionConfig,
    *,
    api_key: str,
    transport: str = "websocket",
    base_url: str | None = None,
    **options: Any,
) -> LiveClient:
    """A not yet started GPT-Live session over ``transport`` (``websocket`` or ``webrtc``);
    ``options`` go to the class. Raises AIError for an unknown transport or when aiortc is
    not installed for WebRTC."""
    if transport == "websocket":
        return LiveClient(config, api_key=api_key, base_url=base_url or DEFAULT_BASE_URL, **options)
    if transport == "webrtc":
        try:
            from w3sipagent.live.webrtc import DEFAULT_HTTP_BASE_URL, LiveWebRTCClient
        except ImportError as exc:
            raise AIError(
                f"WebRTC transport needs aiortc (pip install 'w3sipagent[webrtc]'): {exc}"
            ) from None
        return LiveWebRTCClient(
            config, api_key=api_key, base_url=base_url or DEFAULT_HTTP_BASE_URL, **options
        )
    raise AIError(f"unknown GPT-Live transport {transport!r}: use 'websocket' or 'webrtc'")
