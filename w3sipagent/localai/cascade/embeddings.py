"""Deterministic text embeddings for ``POST /v1/embeddings``: no model, no randomness.

A text becomes a *hashed bag of features*, L2-normalised:

- every word (lower-cased, letters and digits, a plural ``s`` folded: ``hours`` → ``hour``)
  that is not a stop word, weight 1.0;
- every pair of neighbouring words (stop words included: ``opening hours``), weight 0.5;
- every character trigram of each word (``#op``, ``ope``, ``pen``…), weight 0.2, so related
  forms of a word (``open`` / ``opening``) still meet.

A feature seen ``n`` times weighs ``weight * (1 + ln n)`` (sublinear, so one word
repeated does not outweigh several words shared). Each feature is hashed (BLAKE2b, 8 bytes) to one of ``dims`` slots with a sign from
another bit of the hash. The same text always gives the same vector (on every machine:
no process-seeded ``hash()``), and texts that share words have a high cosine similarity,
so "When are you open tonight?" ranks a passage about opening hours above one about
parking. It is a test double, not a semantic model: synonyms without shared letters do
not meet.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import re

import numpy as np
import numpy.typing as npt

__all__ = ["MODEL_DIMS", "STOP_WORDS", "embed", "encode_base64", "features", "token_count"]

MODEL_DIMS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
"""The native width of the service's embedding models; any other model name gets 1536."""
DEFAULT_DIMS = 1536

_STOP = """a an and are as at be but by can do does for from had has have how i if in is it its
me my no not of on or our so that the their there these this to us was we what when where
which who why will with you your"""
STOP_WORDS = frozenset(_STOP.split())

_WEIGHTS = {"w": 1.0, "b": 0.5, "c": 0.2}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _words(text: str) -> list[str]:
    out = []
    for w in _WORD.findall(text.lower()):
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def features(text: str) -> dict[str, float]:
    """The weighted features of ``text`` (see the module docstring)."""
    words = _words(text)
    counts: dict[str, int] = {}
    for w in words:
        keys = [] if w in STOP_WORDS else ["w:" + w]
        padded = f"#{w}#"
        keys += ["c:" + padded[i : i + 3] for i in range(len(padded) - 2)]
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    for a, b in itertools.pairwise(words):
        key = f"b:{a} {b}"
        counts[key] = counts.get(key, 0) + 1
    return {k: _WEIGHTS[k[0]] * (1.0 + math.log(n)) for k, n in counts.items()}


def embed(text: str, dims: int = DEFAULT_DIMS) -> npt.NDArray[np.float32]:
    """The unit vector of ``text`` in ``dims`` dimensions (all zeros for a text without words)."""
    vec = np.zeros(dims, dtype=np.float64)
    for feat, weight in features(text).items():
        h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
        vec[h % dims] += weight if (h >> 63) & 1 else -weight
    norm = float(np.linalg.norm(vec))
    if norm > 0:
        vec /= norm
    return vec.astype(np.float32)


def encode_base64(vec: npt.NDArray[np.float32]) -> str:
    """``encoding_format = "base64"``: the little-endian float32 bytes, base64."""
    return base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii")


def token_count(text: str) -> int:
    """A token estimate for ``usage`` (about 4 characters a token, at least one a word)."""
    return max(len(text.split()), (len(text) + 3) // 4)
