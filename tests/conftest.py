"""Shared fixtures: where the external test vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs reproducible examples (a random find there would fail a landing by chance);
# developers keep Hypothesis' random exploration, which is how new cases are found.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

ROOT = Path(__file__).resolve().parent.parent


def _vectors_dir() -> Path | None:
    env = os.environ.get("W3SIPAGENT_VECTORS")
    candidates = [Path(env)] if env else []
    candidates += [ROOT.parent / "shared" / "vectors", ROOT / "tests" / "vectors"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


VECTORS: Path | None = _vectors_dir()


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The shared/vectors folder (RFC 4475/5118, G.711, RTP, SDP, FreeSWITCH)."""
    if VECTORS is None:
        pytest.skip(
            "test vectors not found: expected ../shared/vectors beside the checkout "
            "or W3SIPAGENT_VECTORS=/path/to/vectors"
        )
    return VECTORS
