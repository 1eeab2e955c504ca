"""Keeping API keys out of logs and exceptions (AI backend clients and the local AI server).

:func:`redact` removes a known secret from a text, :func:`strip_masked_keys` the masked
key fragments OpenAI quotes in its own errors ("Incorrect API key provided:
sk-abc***xyz"); :class:`RedactCredentials` is a
logging filter for websockets' debug handshake log, which prints every header: it
masks ``Authorization`` and the browser-style ``openai-insecure-api-key.<key>``
subprotocol.
"""

from __future__ import annotations

import logging
import re

_SUBPROTOCOL_KEY = re.compile(r"(openai-insecure-api-key\.)[^,\s]+")
# a key as the service quotes it back: a prefix, a run of asterisks, a suffix
_MASKED_KEY = re.compile(r"[A-Za-z0-9_\-]*\*{3,}[A-Za-z0-9_\-]*")


def strip_masked_keys(text: str) -> str:
    """``text`` without the masked key fragments (``sk-abc***xyz``) a service quotes."""
    return _MASKED_KEY.sub("[redacted]", text)


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (and of a long prefix of it) and every
    masked key fragment removed."""
    if secret:
        text = text.replace(secret, "[redacted]")
        if len(secret) > 12:
            text = text.replace(secret[:12], "[redacted]")
    return strip_masked_keys(text)


class RedactCredentials(logging.Filter):
    """Masks credentials in websockets' ``"%s: %s"`` header log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2:
            name = str(args[0]).lower()
            if name == "authorization":
                record.args = (args[0], "[redacted]")
            elif name == "sec-websocket-protocol":
                record.args = (args[0], _SUBPROTOCOL_KEY.sub(r"\1[redacted]", str(args[1])))
        return True


def wire_logger(name: str) -> logging.Logger:
    """A logger for a websockets connection with :class:`RedactCredentials` attached."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactCredentials) for f in logger.filters):
        logger.addFilter(RedactCredentials())
    return logger
