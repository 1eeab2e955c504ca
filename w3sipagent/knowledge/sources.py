"""A knowledge base's files: found, read (text, Markdown, PDF text), hashed and chunked.

PDF text comes from pypdf (pure Python, BSD, maintained; the optional extra
``w3sipagent[knowledge]``); without it a PDF is reported as an error of its own and the
other files are still synced. Text files are read as UTF-8 (invalid bytes replaced).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from w3sipagent.errors import W3SipError

__all__ = [
    "KnowledgeError",
    "SourceFile",
    "chunk_text",
    "content_hash",
    "extract_text",
    "find_files",
    "fingerprint",
]


class KnowledgeError(W3SipError):
    """A knowledge base operation failed (a file, the embedding service, the database)."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file of the knowledge base: where it is, and the name the model sees."""

    path: Path
    name: str


def find_files(paths: list[Path], extensions: list[str]) -> tuple[list[SourceFile], list[str]]:
    """The files under ``paths`` with one of ``extensions`` (folders searched recursively),
    sorted, each once; and the problems (a path that does not exist)."""
    found: dict[Path, SourceFile] = {}
    problems: list[str] = []
    exts = {e.lower() for e in extensions}
    for root in paths:
        if root.is_file():
            p = root.resolve()
            found.setdefault(p, SourceFile(p, root.name))
        elif root.is_dir():
            for f in sorted(root.rglob("*")):
                if f.is_file() and f.suffix.lower() in exts and not f.name.startswith("."):
                    p = f.resolve()
                    found.setdefault(p, SourceFile(p, f.relative_to(root).as_posix()))
        else:
            problems.append(f"{root}: no such file or folder")
    return sorted(found.values(), key=lambda s: str(s.path)), problems


def fingerprint(files: list[SourceFile]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime ns, size) of each file: a cheap check whether anything changed."""
    out = []
    for f in files:
        try:
            st = f.path.stat()
        except OSError:
            continue
        out.append((str(f.path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def content_hash(data: bytes) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def extract_text(name: str, data: bytes) -> str:
    """The text of a file's bytes (PDF through pypdf); raises :class:`KnowledgeError`."""
    if name.lower().endswith(".pdf"):
        try:
            from pypdf import PdfReader
            from pypdf.errors import PyPdfError
        except ImportError:
            raise KnowledgeError(
                f"{name}: reading PDF needs pypdf (pip install 'w3sipagent[knowledge]')"
            ) from None
        try:
            reader = PdfReader(io.BytesIO(data))
            return "\n\n".join(page.extract_text() or "" for page in reader.pages)
        except (PyPdfError, ValueError, KeyError) as exc:
            raise KnowledgeError(f"{name}: unreadable PDF ({type(exc).__name__})") from None
    return data.decode("utf-8", "replace")


_BLANK = re.compile(r"\n\s*\n")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def _split_long(text: str, size: int, overlap: int) -> list[str]:
    """A paragraph longer than ``size``: windows at word boundaries, ``overlap`` shared."""
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        out.append(text[start:end].strip())
        if end >= len(text):
            break
        nxt = end - overlap
        space = text.find(" ", nxt, end)
        start = space + 1 if overlap and space >= 0 else max(nxt, start + 1)
    return [c for c in out if c]


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Passages of at most about ``size`` characters: paragraphs packed together, a long
    paragraph cut at word boundaries; consecutive passages share ``overlap`` characters."""
    paragraphs = []
    for para in _BLANK.split(text):
        p = "\n".join(_SPACE.sub(" ", line).strip() for line in para.splitlines()).strip()
        if p:
            paragraphs.append(p)
    pieces: list[str] = []
    for p in paragraphs:
        pieces += [p] if len(p) <= size else _split_long(p, size, overlap)
    chunks: list[str] = []
    cur = ""
    for piece in pieces:
        if cur and len(cur) + 2 + len(piece) > size:
            chunks.append(cur)
            tail = cur[-overlap:] if overlap else ""
            cut = tail.find(" ")
            tail = tail[cut + 1 :] if cut >= 0 else ""
            cur = f"{tail}\n\n{piece}" if tail and len(tail) + 2 + len(piece) <= size else piece
        else:
            cur = f"{cur}\n\n{piece}" if cur else piece
    if cur:
        chunks.append(cur)
    return chunks
