"""The real import graph of w3sipagent/ against the allow-table in tests/layers.py.

Every import counts: module level, inside functions, under ``TYPE_CHECKING``, relative
(``from .. import agent``) and dynamic with a constant name (``__import__("x")``,
``importlib.import_module("x")``). In the pure core any dynamic import is a failure, and so
is a use of the randomness, clock or code-running names of ``layers.PURE_FORBIDDEN_USES``.
The tests at the end plant bad imports in a copy of the package: each must be reported.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import layers

ROOT = Path(__file__).resolve().parent.parent
PKG = "w3sipagent"

# Edges the lead removes at merge, when the slices that fix them land (issue 11):
# realtime/server -> sip.ids (IdSource moves to a neutral module), tenants/reload -> config
# and logs -> tenants.secrets (reload and redaction move so no arrow runs back up).
KNOWN_VIOLATIONS: list[tuple[str, str]] = []


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name (``<dynamic>`` when it cannot be known)
    line: int
    dynamic: bool = False
    use: bool = False  # not an import: a name of layers.PURE_FORBIDDEN_USES used here


@dataclass(frozen=True)
class Violation:
    importer: str
    target: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}: {self.rule}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name."""
    return {module_name(root, p): p for p in sorted((root / PKG).rglob("*.py"))}


def _resolve_from(mod: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = mod.split(".") if is_package else mod.split(".")[:-1]
    if level - 1 > len(base):
        raise ValueError(f"{mod}: relative import beyond the top package")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _dynamic_name(call: ast.Call) -> str | None:
    """The module a ``__import__`` / ``import_module`` call names (None: not such a call)."""
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    if name not in ("__import__", "import_module"):
        return None
    arg = call.args[0] if call.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return "<dynamic>"


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) is not None:
        return f"{base}.{node.attr}"
    return None


# (line, level, module, names) of ``from`` imports; level -1: ``import``; -2: dynamic;
# -3: a use of a forbidden name (checked in the pure core only)
_Raw = tuple[int, int, str | None, tuple[str, ...]]


@functools.cache
def _raw_imports(text: str) -> tuple[_Raw, ...]:
    """The imports of a source text, unresolved (cached: the planted copies share texts)."""
    out: list[_Raw] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            out.append((node.lineno, -1, None, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.level, node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Call) and (name := _dynamic_name(node)) is not None:
            out.append((node.lineno, -2, name, ()))
        if isinstance(node, ast.Name | ast.Attribute):
            used = _dotted(node)
            if used in layers.PURE_FORBIDDEN_USES:
                out.append((node.lineno, -3, used, ()))
    return tuple(out)


def imports_of(mod: str, path: Path, known: set[str]) -> list[Import]:
    """Every import in one file, resolved to the modules it loads."""
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for line, level, module, names in _raw_imports(path.read_text()):
        if level == -1:
            out += [Import(mod, name, line) for name in names]
        elif level == -2:
            out.append(Import(mod, module or "", line, dynamic=True))
        elif level == -3:
            out.append(Import(mod, module or "", line, use=True))
        else:
            src = _resolve_from(mod, is_package, level, module)
            for a in names:
                sub = f"{src}.{a}" if src else a
                out.append(Import(mod, sub if sub in known else src, line))
    return list(dict.fromkeys(out))  # ``from x import a, b`` is one import of x


def graph(root: Path) -> list[Import]:
    mods = modules(root)
    known = set(mods)
    return [imp for mod, path in mods.items() for imp in imports_of(mod, path, known)]


def _full(name: str) -> str:
    return PKG if name == "__init__" else f"{PKG}.{name}"


def unit_of(mod: str) -> str | None:
    """The allow-table row (a member name) whose module prefix is longest for ``mod``."""
    best: str | None = None
    for _, members, _ in layers.LAYERS:
        for m in members:
            full = _full(m)
            exact = m in ("__init__", "__main__")
            matches = mod == full or (not exact and mod.startswith(full + "."))
            if matches and (best is None or len(_full(best)) < len(full)):
                best = m
    return best


LAYER_OF = {m: layer for layer, members, _ in layers.LAYERS for m in members}
ALLOWED = {layer: {layer, *below} for layer, _, below in layers.LAYERS}


def _forbidden_stdlib(target: str) -> bool:
    return any(target == f or target.startswith(f + ".") for f in layers.PURE_FORBIDDEN)


def check(imports: list[Import]) -> list[Violation]:
    out: list[Violation] = []
    for imp in imports:
        src = unit_of(imp.importer)
        if src is None:
            continue  # reported once per module by violations()
        pure = LAYER_OF[src] == layers.PURE
        if imp.use:
            if pure:
                out.append(
                    Violation(imp.importer, imp.target, imp.line, "randomness, clock or exec")
                )
            continue
        if imp.dynamic and pure:
            out.append(Violation(imp.importer, imp.target, imp.line, "dynamic import in the core"))
        if pure and _forbidden_stdlib(imp.target):
            out.append(Violation(imp.importer, imp.target, imp.line, "I/O, clock or randomness"))
        if imp.target != PKG and not imp.target.startswith(PKG + "."):
            continue
        dst = unit_of(imp.target)
        if dst is None:
            out.append(Violation(imp.importer, imp.target, imp.line, "imported module in no layer"))
            continue
        if dst == "cli" and src not in ("cli", layers.CLI_ENTRY):
            out.append(Violation(imp.importer, imp.target, imp.line, "nothing imports cli"))
        elif LAYER_OF[dst] not in ALLOWED[LAYER_OF[src]]:
            rule = f"layer {LAYER_OF[src]} may not import layer {LAYER_OF[dst]}"
            out.append(Violation(imp.importer, imp.target, imp.line, rule))
        elif (src, dst) in layers.NEVER:
            out.append(Violation(imp.importer, imp.target, imp.line, f"{src} never imports {dst}"))
    return out


def violations(root: Path = ROOT) -> list[Violation]:
    unplaced = [Violation(m, "", 0, "module in no layer") for m in modules(root) if not unit_of(m)]
    return unplaced + check(graph(root))


# -- the tree ---------------------------------------------------------------------------


def test_every_module_is_in_a_layer() -> None:
    assert [m for m in modules(ROOT) if unit_of(m) is None] == []


def test_the_tree_keeps_to_the_table() -> None:
    found = [v for v in violations() if (v.importer, v.target) not in KNOWN_VIOLATIONS]
    assert found == [], "\n".join(map(str, found))


def test_known_violations_are_still_real() -> None:
    """Each entry of KNOWN_VIOLATIONS is removed once its import is gone (none are left)."""
    real = {(v.importer, v.target) for v in violations()}
    fixed = [kv for kv in KNOWN_VIOLATIONS if kv not in real]
    assert fixed == [], "fixed: remove them from KNOWN_VIOLATIONS"


def test_graph_sees_the_imports_that_exist() -> None:
    """The resolver finds known edges of each kind (absolute, relative, lazy, typing-only)."""
    edges = {(i.importer, i.target) for i in graph(ROOT)}
    assert ("w3sipagent.__main__", "w3sipagent.cli.app") in edges
    assert ("w3sipagent.errors", "w3sipagent.sip.message") in edges  # under TYPE_CHECKING
    assert ("w3sipagent.demo_assets", "w3sipagent.codecs.resample") in edges  # in a function
    assert ("w3sipagent.asyncio.useragent", "asyncio") in edges
    assert len(edges) > 500


def test_relative_imports_resolve() -> None:
    assert _resolve_from("w3sipagent.sip.ids", False, 2, None) == "w3sipagent"
    assert _resolve_from("w3sipagent.sip.ids", False, 1, "message") == "w3sipagent.sip.message"
    assert _resolve_from("w3sipagent.sip", True, 1, "message") == "w3sipagent.sip.message"
    assert _resolve_from("w3sipagent.sip.ids", False, 2, "agent") == "w3sipagent.agent"
    with pytest.raises(ValueError):
        _resolve_from("w3sipagent.ids", False, 3, None)


# -- the doc shows the same table -------------------------------------------------------

DOC = ROOT / "docs" / "architecture.md"


def _doc_layers_section() -> str:
    text = DOC.read_text()
    start = text.index("## Layers")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _names(cell: str) -> tuple[str, ...]:
    return tuple(re.findall(r"`([^`]+)`", cell))


def _table_rows(section: str, header: str) -> list[list[str]]:
    lines = section[section.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_doc_shows_the_same_allow_table() -> None:
    section = _doc_layers_section()
    doc_layers = tuple(
        (layer.strip("`* "), _names(members), _names(below))
        for layer, members, below in _table_rows(section, "| layer |")
    )
    assert doc_layers == layers.LAYERS
    doc_never = tuple(
        (a, b)
        for importer, imported in _table_rows(section, "| module |")
        for a in _names(importer)
        for b in _names(imported)
    )
    assert sorted(doc_never) == sorted(layers.NEVER)
    pure = section[section.index("- The pure core imports none of") :]
    pure, uses = pure[: pure.index("no dynamic import")].split("uses none of")
    assert sorted(_names(pure)) == sorted(layers.PURE_FORBIDDEN)
    assert sorted(_names(uses)) == sorted(layers.PURE_FORBIDDEN_USES)


# -- the test of the test: planted violations are reported ------------------------------

PLANTS = [
    # (file under w3sipagent/, code appended, importer, target reported)
    ("sip/ids.py", "from .. import asyncio\n", "w3sipagent.sip.ids", "w3sipagent.asyncio"),
    ("sip/ids.py", "from .. import agent\n", "w3sipagent.sip.ids", "w3sipagent.agent"),
    ("sip/ids.py", "__import__('asyncio')\n", "w3sipagent.sip.ids", "asyncio"),
    ("sip/ids.py", "import w3sipagent.agent\n", "w3sipagent.sip.ids", "w3sipagent.agent"),
    ("sip/ids.py", "import asyncio\n", "w3sipagent.sip.ids", "asyncio"),
    (
        "sip/ids.py",
        "def f() -> None:\n    from time import monotonic\n",
        "w3sipagent.sip.ids",
        "time",
    ),
    (
        "sip/ids.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..agent import bridge\n",
        "w3sipagent.sip.ids",
        "w3sipagent.agent.bridge",
    ),
    (
        "rtp/packet.py",
        "import importlib\nimportlib.import_module(name='socket')\n",
        "w3sipagent.rtp.packet",
        "<dynamic>",
    ),
    ("codecs/base.py", "import random as r\n", "w3sipagent.codecs.base", "random"),
    ("codecs/base.py", "x = np.random.default_rng()\n", "w3sipagent.codecs.base", "np.random"),
    ("sip/auth.py", "def f() -> bytes:\n    return os.urandom(4)\n", "w3sipagent.sip.auth", "os.urandom"),
    ("rtp/rtcp.py", "exec('import time')\n", "w3sipagent.rtp.rtcp", "exec"),
    ("sdp.py", "from .asyncio import transport\n", "w3sipagent.sdp", "w3sipagent.asyncio.transport"),
    ("agent/tools.py", "import w3sipagent.cli\n", "w3sipagent.agent.tools", "w3sipagent.cli"),
    ("demo_assets/__init__.py", "from ..cli import app\n", "w3sipagent.demo_assets", "w3sipagent.cli.app"),
    ("realtime/events.py", "from ..sip import message\n", "w3sipagent.realtime.events", "w3sipagent.sip.message"),
    ("realtime/client.py", "import w3sipagent.rtp.packet\n", "w3sipagent.realtime.client", "w3sipagent.rtp.packet"),
    ("realtime/client.py", "from ..agent import bridge\n", "w3sipagent.realtime.client", "w3sipagent.agent.bridge"),
    ("localai/__init__.py", "from w3sipagent.sip import ids\n", "w3sipagent.localai", "w3sipagent.sip.ids"),
    ("ai/session.py", "from w3sipagent import realtime\n", "w3sipagent.ai.session", "w3sipagent.realtime"),
    ("tenants/models.py", "import w3sipagent.agent.bridge\n", "w3sipagent.tenants.models", "w3sipagent.agent.bridge"),
    ("logs.py", "from w3sipagent.records import cdr\n", "w3sipagent.logs", "w3sipagent.records.cdr"),
    ("asyncio/call.py", "import importlib\nimportlib.import_module('w3sipagent.agent')\n", "w3sipagent.asyncio.call", "w3sipagent.agent"),
    ("newpkg/__init__.py", "x = 1\n", "w3sipagent.newpkg", ""),
]  # fmt: skip


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[Violation]]:
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(ROOT / PKG, root / PKG, ignore=shutil.ignore_patterns("__pycache__"))
    return root, set(violations(root))


@pytest.mark.parametrize(
    ("file", "code", "importer", "target"), PLANTS, ids=[f"{p[0]}:{p[3]}" for p in PLANTS]
)
def test_a_planted_import_is_reported(
    tmp_path: Path,
    pristine: tuple[Path, set[Violation]],
    file: str,
    code: str,
    importer: str,
    target: str,
) -> None:
    src, before = pristine
    shutil.copytree(src / PKG, tmp_path / PKG)
    planted = tmp_path / PKG / file
    planted.parent.mkdir(parents=True, exist_ok=True)
    with planted.open("a") as f:
        f.write("\n" + code)
    new = [v for v in violations(tmp_path) if v not in before]
    if target:
        assert any(v.importer == importer and v.target == target for v in new), new
    else:
        assert [v.rule for v in new if v.importer == importer] == ["module in no layer"], new


def test_the_copy_has_the_same_verdict_as_the_tree(pristine: tuple[Path, set[Violation]]) -> None:
    assert pristine[1] == set(violations())
