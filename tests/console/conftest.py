"""The console's API tests reuse the API fixtures (a fresh control-plane database)."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("fastapi") is None:  # the API's dependencies are not installed
    collect_ignore_glob = ["test_*.py"]
else:
    from tests.api.conftest import api, db_url, pg_cluster

    __all__ = ["api", "db_url", "pg_cluster"]
