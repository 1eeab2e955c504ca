"""The control-plane HTTP API (FastAPI): tenants, stores, agents, DIDs, trunks, destinations,
CDRs, active calls, usage, and FreeSWITCH routing. Built by :func:`create_app`."""

from __future__ import annotations

from w3sipagent.api.app import create_app
from w3sipagent.api.context import ApiContext

__all__ = ["ApiContext", "create_app"]
