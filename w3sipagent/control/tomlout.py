"""Writing a tenant document as TOML (``tenants export``): tables for mappings, inline
arrays and inline tables inside arrays; None values are left out (the default applies)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, Mapping):
        inner = ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items() if x is not None)
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _table(path: tuple[str, ...], doc: Mapping[str, Any], out: list[str]) -> None:
    scalars = [(k, v) for k, v in doc.items() if v is not None and not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in doc.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        out.append("")
        out.append("[" + ".".join(_key(p) for p in path) + "]")
    for k, v in scalars:
        out.append(f"{_key(str(k))} = {_value(v)}")
    for k, v in tables:
        if not v:
            out.append(f"{_key(str(k))} = {{}}")
    for k, v in tables:
        if v:
            _table((*path, str(k)), v, out)


def dumps(doc: Mapping[str, Any], header: str = "") -> str:
    """``doc`` as TOML text (``header`` lines first, as comments)."""
    out = [f"# {line}" if line else "#" for line in header.splitlines()]
    _table((), doc, out)
    return "\n".join(out).strip("\n") + "\n"
