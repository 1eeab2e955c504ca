"""The public API of the SIP core: every name in ``__all__`` is importable."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "w3sipagent.sip",
    "w3sipagent.sip.auth",
    "w3sipagent.sip.core",
    "w3sipagent.sip.dialog",
    "w3sipagent.sip.events",
    "w3sipagent.sip.framing",
    "w3sipagent.sip.headers",
    "w3sipagent.sip.message",
    "w3sipagent.sip.timers",
    "w3sipagent.sip.transaction",
    "w3sipagent.sip.uri",
]


@pytest.mark.parametrize("module", MODULES)
def test_every_name_in_all_imports(module: str) -> None:
    mod = importlib.import_module(module)
    names = mod.__all__
    assert len(names) == len(set(names)), "duplicate names in __all__"
    namespace: dict[str, object] = {}
    exec(f"from {module} import *", namespace)  # what a user's star import does
    missing = [n for n in names if n not in namespace or getattr(mod, n) is not namespace[n]]
    assert missing == []


def test_package_exports_the_whole_core() -> None:
    import w3sipagent.sip as sip

    for module in MODULES[1:]:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            if module == "w3sipagent.sip.auth" and name in (
                "parse_auth_params",
                "parse_challenges",
            ):
                # headers.py's generic parsers own these names at package level
                assert getattr(sip, name) is getattr(
                    importlib.import_module("w3sipagent.sip.headers"), name
                )
                continue
            assert getattr(sip, name) is getattr(mod, name), f"{module}.{name} not re-exported"
    for name in ("SipCore", "CoreConfig", "Dialog", "DigestClient", "DigestServer", "TimerConfig",
                 "RequestReceived", "Transaction", "build_cancel", "MalformedRequest"):  # fmt: skip
        assert name in sip.__all__
