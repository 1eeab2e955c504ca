"""Tenants: configuration model, resolution of an INVITE to a tenant and agent, secrets.

Reloading lives in :mod:`w3sipagent.agent.reload` (it needs :mod:`w3sipagent.config`, which sits
above the tenant models); the masking of secret values in :mod:`w3sipagent.redact`.
"""

from __future__ import annotations

from w3sipagent.tenants.models import (
    AgentConfig,
    SecretRef,
    TenancySettings,
    TenantConfig,
    WebhookToolConfig,
    normalize_e164,
)
from w3sipagent.tenants.resolver import (
    CallRequest,
    Rejection,
    Resolution,
    TenantTable,
    registration_id,
)
from w3sipagent.tenants.secrets import RedactingFilter, resolve_api_key, resolve_secret

__all__ = [
    "AgentConfig",
    "CallRequest",
    "RedactingFilter",
    "Rejection",
    "Resolution",
    "SecretRef",
    "TenancySettings",
    "TenantConfig",
    "TenantTable",
    "WebhookToolConfig",
    "normalize_e164",
    "registration_id",
    "resolve_api_key",
    "resolve_secret",
]
