"""Resolving secret references at call time, and keeping secret values out of logs.

Config never holds an API key or password inline: it holds a :class:`SecretRef` (an
environment variable NAME or a file PATH). :func:`resolve_secret` reads the value when a
call needs it, so a rotated key is picked up by the next call without a reload. Errors name
the reference, never the value. Every value resolved is registered with the process-wide
:data:`REDACTOR`; :class:`RedactingFilter` masks those values in any log record.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from pydantic import SecretStr

from w3sipagent.errors import ConfigError
from w3sipagent.tenants.models import SecretRef, TenantConfig

MASK = "***"
MIN_SECRET_LEN = 6
"""Values shorter than this are not registered for masking (they would mask ordinary words)."""


class Redactor:
    """Remembers secret values and replaces them in text. Thread-safe."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Register a secret value to be masked."""
        if len(value) >= MIN_SECRET_LEN:
            with self._lock:
                self._values.add(value)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***``."""
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for v in values:
            if v in text:
                text = text.replace(v, MASK)
        return text

    def clear(self) -> None:
        """Forget all values (tests)."""
        with self._lock:
            self._values.clear()


REDACTOR = Redactor()
"""The process-wide redactor every resolved secret is registered with."""


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in messages and arguments.

    Install on handlers: ``handler.addFilter(RedactingFilter())``.
    """

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._redactor.redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text)
        return True


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
