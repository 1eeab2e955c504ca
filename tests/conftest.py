"""Shared fixtures: Hypothesis profiles, the test vectors, the release check after every test,
and how pytest-xdist shares the suite among worker processes (scripts/test.sh runs it with
``-n N --dist loadfile``): see :func:`pytest_xdist_make_scheduler`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


SERIAL_DIRS = ("tests/freeswitch/",)
"""Folders whose tests form one unit of work under xdist: they run one after the other in one
worker. The single FreeSWITCH of the machine (fixed ports, one config, a session fixture that
installs and starts it) serves one worker."""


def work_unit(nodeid: str) -> str:
    """The xdist unit of work of a test: its folder in :data:`SERIAL_DIRS`, else its file
    (module fixtures such as a started server or a fixed port range serve one worker)."""
    path = nodeid.split("::", 1)[0]
    return next((d for d in SERIAL_DIRS if path.startswith(d)), path)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the folders of :data:`SERIAL_DIRS` as single units.

    (xdist's own ``--dist loadgroup`` marks tests by rewriting their node ids, which pytest
    9.2 no longer honours: pytest-xdist issue 1386. Units from node ids need no marks.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SuiteScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return SuiteScheduling(config, log)


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
