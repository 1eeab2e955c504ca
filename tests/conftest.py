"""Shared fixtures: Hypothesis profiles and the test vectors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.leaks import ServiceWatch, check_released

# CI runs reproducible examples (a random find there would fail a landing by chance);
# developers keep Hypothesis' random exploration, which is how new cases are found.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

ROOT = Path(__file__).resolve().parent.parent

# The test vectors (RFC 4475/5118, G.711, RTP, SDP, FreeSWITCH) ship in tests/vectors (see its
# SOURCES.md); W3SIPAGENT_VECTORS=/path points the suite at another copy of the same layout.
VECTORS: Path = Path(os.environ.get("W3SIPAGENT_VECTORS") or ROOT / "tests" / "vectors")


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The test vectors folder; a missing folder or file fails the test that needs it."""
    if not VECTORS.is_dir():
        pytest.fail(f"test vectors not found at {VECTORS} (tests/vectors, or W3SIPAGENT_VECTORS)")
    return VECTORS


@pytest.fixture(autouse=True)
def release_watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceWatch]:
    """The release property after every test (see :mod:`tests.leaks`): the services and
    user agents the test built are followed; after the test and its fixtures (which close
    them) it fails when one still holds a call, a port, an AI session, a socket, a task."""
    watch = ServiceWatch()
    watch.install(monkeypatch)
    yield watch
    check_released(watch)
