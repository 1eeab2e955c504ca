"""The fault tests run AgentServices: the release property of tests/agent applies to them."""

from __future__ import annotations

from tests.agent.conftest import service_watch

__all__ = ["service_watch"]
