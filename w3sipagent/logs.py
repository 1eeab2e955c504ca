"""Logging for a running agent: JSON lines, secret masking, and a per-call SIP message trace.

- :class:`JsonFormatter`: one JSON object per record (``ts``, ``level``, ``logger``, ``msg``
  plus any ``extra=`` fields such as ``call_id`` / ``tenant``), secrets masked.
- :func:`setup_logging`: the process' root handler (JSON unless on a terminal, by default).
- :func:`redact_sip`: a SIP message with its credentials masked: the digest ``response`` /
  ``cnonce`` of ``Authorization`` and ``Proxy-Authorization``, any other credential scheme
  whole, headers whose name says token / secret / key / password, SDP ``a=crypto`` keys
  and every secret value registered with :data:`w3sipagent.redact.REDACTOR`.
- :class:`SipTrace`: writes each SIP message sent or received as a JSON line (one file, or
  one file per Call-ID), redacted with :func:`redact_sip`, each file rotated at a size cap.
- :func:`clean_text`: text without lone surrogates (what a SIP value with invalid UTF-8
  becomes), so every line is valid UTF-8 and strict JSON.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from w3sipagent.redact import REDACTOR, RedactingFilter, Redactor

MASK = "***"

_STD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with no lone surrogate: bytes smuggled in by ``surrogateescape`` (a Call-ID
    with invalid UTF-8) decoded as UTF-8 with U+FFFD for what is invalid, any other
    surrogate replaced by U+FFFD. Text without surrogates is returned as is."""
    if _SURROGATE.search(text) is None:
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``extra`` fields become keys; secrets masked."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STD_ATTRS or key.startswith("_"):
                continue
            out[key] = value if isinstance(value, int | float | bool | type(None)) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        for key, value in out.items():
            if isinstance(value, str):
                out[key] = self._redactor.redact(clean_text(value))
        return json.dumps(out, ensure_ascii=False, default=str)


QUIET_LOGGERS = ("alembic", "aiosqlite", "websockets", "httpx", "httpcore")
"""Third-party loggers kept at WARNING: their INFO lines say nothing an operator needs."""


def setup_logging(
    level: str = "INFO",
    json_logs: bool | None = None,
    *,
    stream: IO[str] | None = None,
    redactor: Redactor = REDACTOR,
) -> logging.Handler:
    """Install one handler on the root logger and return it (replacing earlier ones of ours).

    ``json_logs`` None: JSON unless ``stream`` is a terminal. Every handler gets a
    :class:`RedactingFilter`, so a resolved secret never reaches a log line.
    """
    stream = stream if stream is not None else sys.stderr
    if json_logs is None:
        json_logs = not (hasattr(stream, "isatty") and stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.set_name("w3sipagent")
    if json_logs:
        handler.setFormatter(JsonFormatter(redactor))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "w3sipagent":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in QUIET_LOGGERS:  # library chatter at INFO (alembic's plugin set-up lines)
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler


# ---------------------------------------------------------------- SIP redaction

_AUTH_HEADERS = ("authorization", "proxy-authorization")
_SECRET_NAME = re.compile(r"(token|secret|password|passwd|api[-_]?key|x-auth)", re.I)
_DIGEST_SECRET_PARAMS = re.compile(r'\b(response|cnonce)\s*=\s*("[^"]*"|[^,\s]+)', re.I)
_CRYPTO_KEY = re.compile(r"(inline:)[^\s|]+", re.I)


def _redact_header_value(name: str, value: str) -> str:
    lname = name.strip().lower()
    if lname in _AUTH_HEADERS:
        scheme, _, params = value.strip().partition(" ")
        if scheme.lower() == "digest":
            return (
                scheme + " " + _DIGEST_SECRET_PARAMS.sub(lambda m: f'{m.group(1)}="{MASK}"', params)
            )
        return f"{scheme} {MASK}" if params else MASK
    if _SECRET_NAME.search(lname):
        return MASK
    return value


def redact_sip(message: bytes | str, redactor: Redactor = REDACTOR) -> str:
    """The SIP message as text with its secrets masked (see the module docstring).

    Header lines are matched by name (long form, case-insensitive; folded continuation lines
    of a masked header are dropped); the body is scanned for SDP ``a=crypto`` keys. Invalid
    UTF-8 is replaced, never raised on.
    """
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    head, sep, body = text.partition("\r\n\r\n")
    if not sep:
        head, sep, body = text.partition("\n\n")
    newline = "\r\n" if "\r\n" in head else "\n"
    lines = head.split(newline)
    out: list[str] = lines[:1]
    masking = False
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not masking:
                out.append(line)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            out.append(line)
            masking = False
            continue
        clean = _redact_header_value(name, value)
        masking = clean is not value
        out.append(f"{name}:{' ' if not clean.startswith(' ') else ''}{clean}" if masking else line)
    body = _CRYPTO_KEY.sub(lambda m: m.group(1) + MASK, body)
    return redactor.redact(newline.join(out) + sep + body)


_CALL_ID = re.compile(r"^(?:call-id|i)\s*:\s*(.+?)\s*$", re.I | re.M)
_CSEQ = re.compile(r"^cseq\s*:\s*(.+?)\s*$", re.I | re.M)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]")


def sip_summary(message: bytes | str) -> dict[str, Any]:
    """Call-ID, CSeq and method / status of a SIP message, from its text (best effort)."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    first = text.split("\n", 1)[0].strip()
    head = text.split("\r\n\r\n", 1)[0]
    out: dict[str, Any] = {}
    if first.startswith("SIP/2.0 "):
        parts = first.split(" ", 2)
        out["status"] = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    else:
        out["method"] = first.split(" ", 1)[0]
    m = _CALL_ID.search(head)
    out["call_id"] = m.group(1) if m else None
    m = _CSEQ.search(head)
    out["cseq"] = m.group(1) if m else None
    return out


class SipTrace:
    """Writes every SIP message sent or received as one JSON line, secrets masked.

    ``path`` a file: all calls in it (each line has ``call_id``). ``per_call=True``: ``path``
    is a folder holding one ``<call-id>.jsonl`` per call. Lines::

        {"ts": "...", "dir": "in", "transport": "UDP", "peer": "127.0.0.1:5060",
         "call_id": "...", "method": "INVITE", "cseq": "1 INVITE", "message": "INVITE ..."}

    Thread-safe; writes are line-buffered so a crash loses at most the line being written.
    A file that would grow past ``max_bytes`` is rotated first (``NAME`` → ``NAME.1`` →
    ``NAME.2``…), keeping ``files`` files in all (the current one included).
    """

    def __init__(
        self,
        path: Path,
        *,
        per_call: bool = False,
        redactor: Redactor = REDACTOR,
        max_open_files: int = 64,
        max_bytes: int = 50_000_000,
        files: int = 3,
    ) -> None:
        if max_bytes < 1 or files < 1:
            raise ValueError("SipTrace: max_bytes and files must be >= 1")
        self.path = Path(path)
        self.per_call = per_call
        self.max_bytes = max_bytes
        self.files = files
        self._redactor = redactor
        self._lock = threading.Lock()
        self._files: dict[str, IO[str]] = {}
        self._sizes: dict[str, int] = {}
        self._max_open = max_open_files
        self.lines = 0
        self.rotations = 0
        if per_call:
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def file_for(self, call_id: str | None) -> Path:
        """The file a message of ``call_id`` goes to."""
        if not self.per_call:
            return self.path
        name = _SAFE_NAME.sub("_", call_id or "no-call-id")[:120]
        return self.path / f"{name}.jsonl"

    def record(
        self,
        direction: Literal["in", "out"],
        message: bytes | str,
        peer: tuple[str, int],
        transport: str = "UDP",
        *,
        when: float | None = None,
    ) -> None:
        """Trace one message received from (``in``) or sent to (``out``) ``peer``."""
        summary = sip_summary(message)
        line = {
            "ts": datetime.fromtimestamp(time.time() if when is None else when, UTC).isoformat(
                timespec="microseconds"
            ),
            "dir": direction,
            "transport": transport.upper(),
            "peer": f"{peer[0]}:{peer[1]}",
            **{k: clean_text(v) if isinstance(v, str) else v for k, v in summary.items()},
            "message": clean_text(redact_sip(message, self._redactor)),
        }
        text = json.dumps(line, ensure_ascii=False) + "\n"
        size = len(text.encode("utf-8"))
        target = self.file_for(summary.get("call_id"))
        key = str(target)
        with self._lock:
            fh = self._files.get(key)
            if fh is None:
                if len(self._files) >= self._max_open:
                    oldest = next(iter(self._files))
                    self._files.pop(oldest).close()
                    self._sizes.pop(oldest, None)
                fh = target.open("a", encoding="utf-8", buffering=1)
                self._files[key] = fh
                self._sizes[key] = target.stat().st_size
            if self._sizes[key] and self._sizes[key] + size > self.max_bytes:
                fh.close()
                self._rotate(target)
                fh = self._files[key] = target.open("a", encoding="utf-8", buffering=1)
                self._sizes[key] = 0
            fh.write(text)
            self._sizes[key] += size
            self.lines += 1

    def _rotate(self, target: Path) -> None:
        """``NAME.(files-1)`` dropped, ``NAME.i`` → ``NAME.(i+1)``, ``NAME`` → ``NAME.1``."""
        self.rotations += 1
        if self.files == 1:
            target.unlink(missing_ok=True)
            return
        for i in range(self.files - 1, 0, -1):
            older = target.with_name(f"{target.name}.{i}")
            if i == self.files - 1:
                older.unlink(missing_ok=True)
            newer = target.with_name(f"{target.name}.{i - 1}") if i > 1 else target
            if newer.exists():
                newer.replace(older)

    def close(self) -> None:
        """Close the open files."""
        with self._lock:
            for fh in self._files.values():
                fh.close()
            self._files.clear()
            self._sizes.clear()


__all__ = [
    "JsonFormatter",
    "SipTrace",
    "redact_sip",
    "setup_logging",
    "sip_summary",
]
