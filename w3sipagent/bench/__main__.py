"""``python -m w3sipagent.bench NAME [args]``: run ``w3sipagent.bench.NAME_bench``.

Each ``<name>_bench`` module has ``main(argv) -> int``; e.g. ``sip`` and ``codec``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _available() -> list[str]:
    here = str(Path(__file__).resolve().parent)
    return sorted(
        m.name[: -len("_bench")] for m in pkgutil.iter_modules([here]) if m.name.endswith("_bench")
    )


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the named benchmark."""
    args = sys.argv[1:] if argv is None else argv
    names = _available()
    if not args or args[0] not in names:
        print(f"usage: python -m w3sipagent.bench {{{','.join(names)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"w3sipagent.bench.{args[0]}_bench")
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    raise SystemExit(main())
