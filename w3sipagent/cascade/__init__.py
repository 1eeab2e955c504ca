"""The cascaded AI back end: our own VAD → speech-to-text → model → text-to-speech.

:class:`CascadeSession` implements :class:`~w3sipagent.ai.session.AISession` over three
OpenAI-compatible HTTP stages (docs/backends-cascade.md).
"""

from __future__ import annotations

from w3sipagent.cascade.config import CascadeSettings, ListenSettings, StageEndpoint
from w3sipagent.cascade.session import CascadeSession
from w3sipagent.cascade.text import Segment, SentenceSplitter, heard_text

__all__ = [
    "CascadeSession",
    "CascadeSettings",
    "ListenSettings",
    "Segment",
    "SentenceSplitter",
    "StageEndpoint",
    "heard_text",
]
