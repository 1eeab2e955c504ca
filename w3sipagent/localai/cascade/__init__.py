"""The local imitation of the HTTP endpoints a cascaded backend uses (speech-to-text →
model → text-to-speech, plus embeddings): see :mod:`.app` and docs/knowledge.md."""

from __future__ import annotations

from w3sipagent.localai.cascade.app import CascadeServer, InjectedError, serve_cascade
from w3sipagent.localai.cascade.embeddings import embed
from w3sipagent.localai.cascade.model import Pacing

__all__ = ["CascadeServer", "InjectedError", "Pacing", "embed", "serve_cascade"]
