"""OpenAI Realtime API (GA interface) sessions for the bridge.

- :class:`RealtimeClient`: WebSocket transport (``wss://api.openai.com/v1/realtime``).
- :class:`~w3sipagent.realtime.webrtc.RealtimeWebRTCClient`: WebRTC transport (aiortc,
  the ``webrtc`` extra), imported lazily.
- :func:`open_session`: pick the transport by name (per tenant).
- :func:`mint_client_secret`: a per-tenant ephemeral key (``ek_...``) for a session;
  :func:`hangup_call`: end a WebRTC or SIP call on the service.
- :class:`RealtimeRefused`: the AIError of a session the service refused at set-up.
- :mod:`w3sipagent.realtime.events`: the typed GA events; :mod:`.protocol`: the sans-IO core.

See docs/realtime.md.
"""

from __future__ import annotations

from typing import Any, Literal

from w3sipagent.ai.session import AISessionConfig
from w3sipagent.errors import AIError
from w3sipagent.realtime.client import DEFAULT_BASE_URL, RealtimeClient, RealtimeSessionBase
from w3sipagent.realtime.secrets import ClientSecret, hangup_call, mint_client_secret
from w3sipagent.realtime.session import RealtimeRefused

__all__ = [
    "DEFAULT_BASE_URL",
    "ClientSecret",
    "RealtimeClient",
    "RealtimeRefused",
    "RealtimeSessionBase",
    "hangup_call",
    "mint_client_secret",
    "open_session",
]


def open_session(
    config: AISessionConfig,
    *,
    api_key: str,
    transport: Literal["websocket", "webrtc"] = "websocket",
    base_url: str | None = None,
    **options: Any,
) -> RealtimeSessionBase:
    """A not yet started Realtime session over ``transport``; ``options`` go to the class.

    ``base_url`` defaults to ``wss://api.openai.com/v1`` (WebSocket) or
    ``https://api.openai.com/v1`` (WebRTC). Raises AIError for an unknown transport or
    when aiortc is not installed for WebRTC.
    """
    if transport == "websocket":
        return RealtimeClient(
            config, api_key=api_key, base_url=base_url or DEFAULT_BASE_URL, **options
        )
    if transport == "webrtc":
        try:
            from w3sipagent.realtime.webrtc import DEFAULT_HTTP_BASE_URL, RealtimeWebRTCClient
        except ImportError as exc:
            raise AIError(
                f"WebRTC transport needs aiortc (pip install 'w3sipagent[webrtc]'): {exc}"
            ) from None
        return RealtimeWebRTCClient(
            config, api_key=api_key, base_url=base_url or DEFAULT_HTTP_BASE_URL, **options
        )
    raise AIError(f"unknown Realtime transport {transport!r}: use 'websocket' or 'webrtc'")
