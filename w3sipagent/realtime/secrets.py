"""Per-tenant temporary credentials: Realtime client secrets, and hanging a call up.

:func:`mint_client_secret` posts ``{"expires_after": {"anchor": "created_at",
"seconds": N}, "session": {...}}`` to ``{base}/realtime/client_secrets`` with the
tenant's standard key and returns the ephemeral ``ek_...`` key
(:class:`ClientSecret`); a session started with it gets that configuration. The
WebRTC client uses one per call, so the tenant's key never reaches the media path.
:func:`hangup_call` ends a WebRTC or SIP call (``POST {base}/realtime/calls/{id}/hangup``).
Keys never appear in exceptions or ``repr``; the service's masked key fragments neither.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx

from w3sipagent.ai import session as ai
from w3sipagent.ai.redaction import redact
from w3sipagent.errors import AIError
from w3sipagent.realtime.session_object import session_object

__all__ = ["DEFAULT_HTTP_BASE_URL", "ClientSecret", "hangup_call", "mint_client_secret"]

DEFAULT_HTTP_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True)
class ClientSecret:
    """An ephemeral key: ``value`` (``ek_...``), ``expires_at`` (unix seconds) and the
    effective ``session`` the service reported."""

    value: str = field(repr=False)
    expires_at: int
    session: dict[str, Any] = field(repr=False)


def http_base(base_url: str) -> str:
    """The HTTP API base of ``base_url`` (a ``ws``/``wss`` URL is converted)."""
    base = base_url.rstrip("/")
    if base.startswith("ws://") or base.startswith("wss://"):
        base = "http" + base[2:]
    return base


def refused(what: str, resp: httpx.Response, api_key: str) -> AIError:
    """The AIError of a refused HTTP request: status, the service's code, a hint."""
    detail = ""
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        err = resp.json()["error"]
        detail = f" ({err.get('code') or err.get('type')})"
        if resp.status_code not in (401, 403) and err.get("message"):
            detail += f": {str(err['message'])[:200]}"
    hint = ": check the API key" if resp.status_code in (401, 403) else ""
    return AIError(redact(f"{what}: HTTP {resp.status_code}{detail}{hint}", api_key))


async def mint_client_secret(
    config: ai.AISessionConfig,
    *,
    api_key: str,
    base_url: str = DEFAULT_HTTP_BASE_URL,
    expires_after_s: int = 600,
    with_formats: bool = False,
    timeout: float = 10.0,
    trust_env: bool = True,
) -> ClientSecret:
    """Mint an ephemeral key for a session configured as ``config`` (model included).

    ``expires_after_s``: 10..7200 (the service's bounds); a session started with the
    key outlives it. ``with_formats`` adds the audio formats to the session (False for
    WebRTC, which carries Opus). Raises AIError (no key in it).
    """
    if not 10 <= expires_after_s <= 7200:
        raise AIError(f"expires_after_s must be 10..7200, not {expires_after_s}")
    base = http_base(base_url)
    url = f"{base}/realtime/client_secrets"
    body = {
        "expires_after": {"anchor": "created_at", "seconds": expires_after_s},
        "session": session_object(config, with_model=True, with_formats=with_formats),
    }
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=trust_env) as http:
            resp = await http.post(url, json=body, headers={"Authorization": f"Bearer {api_key}"})
    except httpx.HTTPError as exc:
        raise AIError(redact(f"cannot reach {url}: {type(exc).__name__}: {exc}", api_key)) from None
    if resp.status_code != 200:
        raise refused(f"{url} refused the client secret", resp, api_key)
    try:
        data = resp.json()
        return ClientSecret(str(data["value"]), int(data["expires_at"]), dict(data["session"]))
    except (ValueError, KeyError, TypeError):
        raise AIError(f"{url}: malformed client secret answer") from None


async def hangup_call(
    call_id: str,
    *,
    api_key: str,
    base_url: str = DEFAULT_HTTP_BASE_URL,
    timeout: float = 5.0,
    trust_env: bool = True,
) -> None:
    """End a WebRTC or SIP call on the service. Raises AIError (no key in it)."""
    url = f"{http_base(base_url)}/realtime/calls/{call_id}/hangup"
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=trust_env) as http:
            resp = await http.post(url, headers={"Authorization": f"Bearer {api_key}"})
    except httpx.HTTPError as exc:
        raise AIError(redact(f"cannot reach {url}: {type(exc).__name__}: {exc}", api_key)) from None
    if resp.status_code not in (200, 204):
        raise refused(f"{url} refused the hang-up", resp, api_key)
