"""The pure protocol core imports no event loop, socket, clock or randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "w3sipagent"
PURE = ["sip", "sdp.py", "sdp", "rtp", "codecs"]
FORBIDDEN = {"asyncio", "socket", "time", "random", "secrets", "selectors", "threading", "uuid"}


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for name in PURE:
        p = PKG / name
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(p.rglob("*.py")))
    return files


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_pure_core_imports_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            top = n.split(".")[0]
            assert top not in FORBIDDEN, f"{path}: imports {n}"
            assert not n.startswith("w3sipagent.asyncio"), f"{path}: imports {n}"


def test_pure_core_exists() -> None:
    assert len(_pure_files()) >= 2
