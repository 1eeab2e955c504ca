"""Resolving secret references at call time, and keeping secret values out of logs.

Config never holds an API key or password inline: it holds a :class:`SecretRef` (an
environment variable NAME or a file PATH). :func:`resolve_secret` reads the value when a
call needs it, so a rotated key is picked up by the next call without a reload. Errors name
the reference, never the value. Every value resolved is registered with the process-wide
:data:`~w3sipagent.redact.REDACTOR` (re-exported here with :class:`RedactingFilter`), which
masks those values in any log record.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import SecretStr

from w3sipagent.errors import ConfigError
from w3sipagent.redact import MASK, REDACTOR, RedactingFilter, Redactor
from w3sipagent.tenants.models import SecretRef, TenantConfig

__all__ = [
    "MASK",
    "REDACTOR",
    "RedactingFilter",
    "Redactor",
    "resolve_api_key",
    "resolve_header",
    "resolve_secret",
]


def resolve_secret(
    ref: SecretRef,
    *,
    what: str = "secret",
    environ: Mapping[str, str] | None = None,
    redactor: Redactor = REDACTOR,
) -> SecretStr:
    """Read the value ``ref`` points to (stripped of surrounding whitespace).

    Raises :class:`ConfigError` naming ``what`` and the reference (never the value) when
    the variable is unset or empty, or the file is missing, unreadable or empty.
    """
    env = os.environ if environ is None else environ
    if ref.env is not None:
        raw = env.get(ref.env)
        if raw is None:
            raise ConfigError(f"{what}: environment variable {ref.env} is not set")
        value = raw.strip()
        if not value:
            raise ConfigError(f"{what}: environment variable {ref.env} is empty")
    else:
        assert ref.file is not None
        try:
            value = ref.file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(f"{what}: file {ref.file} not found") from None
        except (PermissionError, IsADirectoryError):
            raise ConfigError(f"{what}: file {ref.file} cannot be read") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{what}: file {ref.file} is not UTF-8 text") from None
        if not value:
            raise ConfigError(f"{what}: file {ref.file} is empty")
    redactor.add(value)
    return SecretStr(value)


def resolve_api_key(
    tenant: TenantConfig,
    default: SecretStr | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> SecretStr | None:
    """The tenant's API key, read now; else ``default`` (the deployment's key), else None.

    A tenant with its own reference never falls back to the default: if its reference
    cannot be read that is an error, not a silent use of someone else's key.
    """
    if tenant.api_key is not None:
        return resolve_secret(
            tenant.api_key, what=f"tenant '{tenant.id}': api_key", environ=environ
        )
    if default is not None:
        REDACTOR.add(default.get_secret_value())
    return default


def resolve_header(
    env_name: str | None,
    header: str,
    prefix: str,
    *,
    what: str,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, str] | None:
    """An auth header (name, prefix + value of ``env_name``) or None when no variable is set up."""
    if env_name is None:
        return None
    value = resolve_secret(SecretRef(env=env_name), what=what, environ=environ)
    return header, prefix + value.get_secret_value()
