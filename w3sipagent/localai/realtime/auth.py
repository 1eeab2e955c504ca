"""Who may use the local Realtime server, and how refusals look, as the service does them.

- Keys: ``Authorization: Bearer <key>`` (or the browser subprotocol
  ``openai-insecure-api-key.<key>``): a standard key (any non-empty one, or one of
  ``api_keys``), or an ephemeral ``ek_...`` client secret this server minted and that
  has not expired (:class:`ClientSecrets`).
- A WebSocket is refused *after* the upgrade (101): an ``error`` event, then a close
  frame: 3000 for ``invalid_api_key``; 4000 for ``invalid_model``, ``missing_model``
  and the beta header ``OpenAI-Beta: realtime=v1`` (``beta_api_shape_disabled``).
  The error message quotes the key masked (``sk-abc***xyz``), as the service does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.datastructures import Headers

__all__ = [
    "MODELS",
    "ClientSecrets",
    "Refusal",
    "bearer_key",
    "check_key",
    "mask_key",
    "model_refusal",
]

#: The Realtime models the local server accepts (the GA and 2026 names).
MODELS = frozenset(
    {
        "gpt-realtime",
        "gpt-realtime-2025-08-28",
        "gpt-realtime-mini",
        "gpt-realtime-mini-2025-10-06",
        "gpt-realtime-mini-2025-12-15",
        "gpt-realtime-1.5",
        "gpt-realtime-2",
        "gpt-realtime-2.1",
        "gpt-realtime-2.1-mini",
        "gpt-4o-realtime-preview",
        "gpt-4o-mini-realtime-preview",
    }
)

CLOSE_AUTH = 3000
CLOSE_INVALID = 4000


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused request: the HTTP status, or the WebSocket close code, and the error."""

    status: int
    close_code: int
    message: str
    code: str | None
    param: str | None = None
    type: str = "invalid_request_error"

    def error(self) -> dict[str, Any]:
        """The ``error`` object (of an HTTP body or an ``error`` event)."""
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": None,
        }


def mask_key(key: str) -> str:
    """A key as the service quotes it in errors: ``sk-abc***xyz`` (nothing for short keys)."""
    if len(key) < 12:
        return "***"
    return f"{key[:6]}***{key[-3:]}"


def bearer_key(headers: Headers, subprotocols: list[str]) -> str:
    """The key of a request: the Bearer token, else the browser subprotocol's."""
    auth = headers.get("Authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not key:
        for sp in subprotocols:
            if sp.startswith("openai-insecure-api-key."):
                key = sp[len("openai-insecure-api-key.") :]
    return key


@dataclass
class _Secret:
    expires_at: float
    session: dict[str, Any]


@dataclass
class ClientSecrets:
    """The ephemeral ``ek_...`` keys minted by ``POST /v1/realtime/client_secrets``."""

    clock: Callable[[], float] = time.time
    _secrets: dict[str, _Secret] = field(default_factory=dict)

    def add(self, value: str, expires_at: float, session: dict[str, Any]) -> None:
        now = self.clock()
        for k in [k for k, s in self._secrets.items() if s.expires_at <= now]:
            del self._secrets[k]
        self._secrets[value] = _Secret(expires_at, session)

    def session_of(self, value: str) -> dict[str, Any] | None:
        """The session configuration of a live secret (None: unknown or expired)."""
        s = self._secrets.get(value)
        if s is None or s.expires_at <= self.clock():
            return None
        return s.session


def check_key(
    key: str,
    api_keys: frozenset[str] | None,
    secrets: ClientSecrets,
    *,
    ephemeral_ok: bool = True,
) -> Refusal | None:
    """None when ``key`` may be used; ``ephemeral_ok`` False refuses ``ek_`` secrets."""
    if not key:
        return Refusal(
            401,
            CLOSE_AUTH,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_api_key",
        )
    if key.startswith("ek_"):
        if ephemeral_ok and secrets.session_of(key) is not None:
            return None
    elif api_keys is None or key in api_keys:
        return None
    return Refusal(
        401,
        CLOSE_AUTH,
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    )


def model_refusal(model: str | None) -> Refusal | None:
    """None for a known model; ``missing_model`` / ``invalid_model`` otherwise."""
    if not model:
        return Refusal(
            400, CLOSE_INVALID, "Missing required parameter: 'model'.", "missing_model", "model"
        )
    if model not in MODELS:
        return Refusal(
            400,
            CLOSE_INVALID,
            f"The model '{model}' does not exist or you do not have access to it.",
            "invalid_model",
            "model",
        )
    return None


def beta_refusal(headers: Headers) -> Refusal | None:
    """``OpenAI-Beta: realtime=v1`` is refused: the beta interface is gone."""
    values = ",".join(headers.get_all("OpenAI-Beta"))
    if "realtime=v1" in values.replace(" ", ""):
        return Refusal(
            400,
            CLOSE_INVALID,
            "The beta Realtime API shape is no longer supported. Remove the "
            "'OpenAI-Beta: realtime=v1' header to use the GA interface.",
            "beta_api_shape_disabled",
            None,
        )
    return None
