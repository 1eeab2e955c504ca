"""Both sides of the Realtime protocol use the event names of the official SDK.

``tests/fixtures/openai_realtime_events.json`` lists the ``type`` of every member of
``RealtimeClientEvent`` and ``RealtimeServerEvent`` in the ``openai`` Python SDK (its
``_source`` names the repository, paths and commit; ``extract_openai_realtime_events.py``
beside it regenerates it). The client (:mod:`w3sipagent.realtime.events`) and the local
server (:mod:`w3sipagent.localai.realtime.events`, and every event its code emits) are
checked against that one list, so neither can drift from the service unnoticed.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from w3sipagent.localai.realtime import events as server_events
from w3sipagent.realtime import events as client_events

FIXTURE = Path(__file__).parent / "fixtures" / "openai_realtime_events.json"
SDK: dict[str, Any] = json.loads(FIXTURE.read_text())
SDK_CLIENT = set(SDK["client_events"])
SDK_SERVER = set(SDK["server_events"])
LOCALAI = Path(server_events.__file__).resolve().parents[1]
OTHER_PROTOCOLS = ("live", "cascade")
"""Sub-packages of the local server that speak GPT-Live or the cascade's HTTP APIs, not Realtime."""


def test_fixture_names_its_source_and_is_well_formed() -> None:
    src = SDK["_source"]
    assert src["repository"] == "https://github.com/openai/openai-python"
    assert re.fullmatch(r"[0-9a-f]{40}", src["commit"])
    assert "realtime_client_event.py" in src["client_events"]
    assert "realtime_server_event.py" in src["server_events"]
    for key in ("client_events", "server_events"):
        names = SDK[key]
        assert names == sorted(set(names))
        assert all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", n) for n in names), names
    assert len(SDK_CLIENT) == 11 and len(SDK_SERVER) == 46
    assert not SDK_CLIENT & SDK_SERVER


def test_client_sends_and_parses_exactly_the_sdk_events() -> None:
    assert set(client_events.CLIENT_EVENTS) == SDK_CLIENT
    assert set(client_events.SERVER_EVENTS) == SDK_SERVER


def test_local_server_accepts_every_sdk_client_event_and_sends_only_sdk_events() -> None:
    assert set(server_events.CLIENT_EVENTS) == SDK_CLIENT
    assert len(server_events.CLIENT_EVENTS) == len(SDK_CLIENT)
    assert set(server_events.SERVER_EVENTS) <= SDK_SERVER, (
        set(server_events.SERVER_EVENTS) - SDK_SERVER
    )
    assert len(set(server_events.SERVER_EVENTS)) == len(server_events.SERVER_EVENTS)


def emitted_types(root: Path) -> tuple[set[str], list[str]]:
    """Event types in ``emit({"type": ...})`` calls under ``root``, and the calls whose
    type is not a literal (``file:line``)."""
    found: set[str] = set()
    opaque: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in OTHER_PROTOCOLS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "emit"
            ):
                continue
            arg = node.args[0] if node.args else None
            literal = None
            if isinstance(arg, ast.Dict):
                for k, v in zip(arg.keys, arg.values, strict=True):
                    if (
                        isinstance(k, ast.Constant)
                        and k.value == "type"
                        and isinstance(v, ast.Constant)
                        and isinstance(v.value, str)
                    ):
                        literal = v.value
            if literal is None:
                opaque.append(f"{path.relative_to(root)}:{node.lineno}")
            else:
                found.add(literal)
    return found, opaque


def test_every_event_the_local_server_emits_is_listed() -> None:
    found, opaque = emitted_types(LOCALAI)
    assert opaque == []  # every emit names its event type literally, so this scan sees all
    assert found == set(server_events.SERVER_EVENTS)


def test_the_scan_sees_a_planted_event(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "async def f(self, t):\n"
        "    await self.emit({'type': 'response.audio.delta', 'delta': ''})\n"
        "    await self.host.emit({'type': t})\n"
    )
    found, opaque = emitted_types(tmp_path)
    assert found == {"response.audio.delta"} and not found <= SDK_SERVER
    assert opaque == ["m.py:3"]
