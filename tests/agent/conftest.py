"""Every agent test that runs an AgentService is checked for the release property: one
CDR per admitted call, no AI session open, no RTP port or call left (see :mod:`.leaks`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.leaks import ServiceWatch, check_released


@pytest.fixture(autouse=True)
def service_watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceWatch]:
    """Follows the services the test builds; after the test (and its fixtures, which close
    them) fails it when one still holds something."""
    watch = ServiceWatch()
    watch.install(monkeypatch)
    yield watch
    check_released(watch)
