"""``POST /v1/realtime/client_secrets`` of the local server: minting ephemeral keys.

The request is the SDK's ``ClientSecretCreateParams``: ``{"expires_after": {"anchor":
"created_at", "seconds": 10..7200}, "session": {"type": "realtime", ...}}`` (both
optional; 600 s by default). The answer is ``ClientSecretCreateResponse``:
``{"value": "ek_...", "expires_at": <unix>, "session": <the effective session>}``.
Only a standard key may mint (an ``ek_`` secret cannot mint another). The session is
validated as a ``session.update`` is (same codes and params), so a bad voice is a 400
``invalid_value`` here rather than later.
"""

from __future__ import annotations

import json
import time
from typing import Any

from w3sipagent.localai.realtime.auth import ClientSecrets, model_refusal
from w3sipagent.localai.realtime.config import apply_session_update, default_session
from w3sipagent.localai.realtime.errors import (
    RealtimeProtocolError,
    as_object,
    bad_value,
    check_keys,
    missing,
    number,
    unknown,
)

__all__ = ["DEFAULT_TTL_S", "mint_secret"]

DEFAULT_TTL_S = 600


def mint_secret(
    body: bytes,
    secrets: ClientSecrets,
    *,
    token: str,
    session_id: str,
    session_duration_s: float,
    default_model: str,
) -> dict[str, Any]:
    """Validate a client-secret request and remember the secret; returns the answer.

    Raises :class:`RealtimeProtocolError` (an HTTP 400 with the service's error).
    """
    try:
        req = json.loads(body or b"{}")
    except json.JSONDecodeError:
        raise RealtimeProtocolError(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    req = as_object("body", req)
    for key in req:
        if key not in ("expires_after", "session"):
            raise unknown(key)
    ttl = DEFAULT_TTL_S
    if "expires_after" in req:
        ea = as_object("expires_after", req["expires_after"])
        check_keys(ea, {"anchor", "seconds"}, "expires_after")
        if ea.get("anchor", "created_at") != "created_at":
            raise bad_value("expires_after.anchor", ea.get("anchor"), ["created_at"])
        if "seconds" in ea:
            ttl = int(number("expires_after.seconds", ea["seconds"], 10, 7200, integer=True))
    session_req = as_object("session", req.get("session", {"type": "realtime"}))
    if "type" not in session_req:
        raise missing("session.type")
    model = session_req.get("model", default_model)
    refused = model_refusal(model if isinstance(model, str) else None)
    if refused is not None:
        raise RealtimeProtocolError(refused.message, code="invalid_value", param="session.model")
    now = int(time.time())
    base = default_session(session_id, str(model), now + int(session_duration_s))
    session = apply_session_update(base, session_req, audio_sent=False)
    value = "ek_" + token
    secrets.add(value, now + ttl, session)
    return {"value": value, "expires_at": now + ttl, "session": session}
