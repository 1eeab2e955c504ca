"""Keeping secret values out of logs: a process-wide set of values to mask.

A shared utility at the bottom of the package (standard library only): the tenant secret
resolver registers every value it reads with :data:`REDACTOR`, and :mod:`w3sipagent.logs`
masks them in log records (:class:`RedactingFilter`) and SIP traces.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["MASK", "MIN_SECRET_LEN", "REDACTOR", "RedactingFilter", "Redactor"]

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
