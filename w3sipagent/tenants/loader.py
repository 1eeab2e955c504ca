"""Reading the TOML config file and the files it includes, remembering where each key came from.

The main file may say ``include = ["tenants.d/*.toml"]`` (globs relative to the main file);
an included file holds only ``[tenants.NAME]`` tables. A tenant defined twice is an error.
Every key read is remembered with its file so that errors and ``config check`` can name it.
"""

from __future__ import annotations

import glob
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w3sipagent.errors import ConfigError
from w3sipagent.tenants.models import TenantConfig

Origins = dict[tuple[str, ...], str]
"""Dotted key path → where it was set: ``file:PATH``, ``env:NAME`` or ``flag``."""


@dataclass
class ConfigDocument:
    """The merged content of the config file and its includes."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: Origins = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    """Every file read, main file first (what a reload watches)."""
    include_globs: list[str] = field(default_factory=list)
    """Absolute include patterns (re-expanded by the reload watcher to see new files)."""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def record_origins(data: Any, prefix: tuple[str, ...], origin: str, origins: Origins) -> None:
    """Remember ``origin`` for ``prefix`` and every key below it.

    A value is recorded under its own path; a table under ``(*path, "*")`` (so that a
    table does not claim the defaults of keys it does not set) and its keys below it.
    """
    if isinstance(data, Mapping):
        if prefix:
            origins[(*prefix, "*")] = origin
        for k, v in data.items():
            record_origins(v, (*prefix, str(k)), origin, origins)
    else:
        origins[prefix] = origin


def expand_include(base: Path, pattern: str) -> tuple[str, list[Path]]:
    """The absolute pattern and the files it matches, sorted (a literal path must exist)."""
    p = Path(pattern).expanduser()
    absolute = str(p if p.is_absolute() else base / p)
    if glob.has_magic(absolute):
        return absolute, sorted(Path(m) for m in glob.glob(absolute) if Path(m).is_file())
    return absolute, [Path(absolute)]


def read_config_file(path: Path) -> ConfigDocument:
    """Read ``path`` and the files it includes. Raises :class:`ConfigError` naming the file."""
    path = Path(path)
    data = _read_toml(path)
    doc = ConfigDocument(files=[path])
    origin = f"file:{path}"
    include = data.pop("include", [])
    if isinstance(include, str):
        include = [include]
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        raise ConfigError(f"{path}: include: must be a list of file names or globs")
    tenants = data.get("tenants", {})
    if not isinstance(tenants, dict):
        raise ConfigError(f"{path}: tenants: must be tables [tenants.NAME]")
    doc.data = data
    record_origins(data, (), origin, doc.origins)
    for pattern in include:
        absolute, files = expand_include(path.parent, pattern)
        doc.include_globs.append(absolute)
        for inc in files:
            if inc.resolve() == path.resolve() or inc in doc.files:
                continue
            _merge_included(doc, inc)
    return doc


def _merge_included(doc: ConfigDocument, inc: Path) -> None:
    extra = _read_toml(inc)
    doc.files.append(inc)
    other = sorted(set(extra) - {"tenants"})
    if other:
        raise ConfigError(
            f"{inc}: {other[0]}: an included file may only hold [tenants.NAME] tables"
        )
    tenants = extra.get("tenants", {})
    if not isinstance(tenants, dict):
        raise ConfigError(f"{inc}: tenants: must be tables [tenants.NAME]")
    merged = doc.data.setdefault("tenants", {})
    for name, table in tenants.items():
        if name in merged:
            first = doc.origins.get(("tenants", name, "*"), "?").removeprefix("file:")
            raise ConfigError(f"{inc}: tenant '{name}': already defined in {first}")
        merged[name] = table
        record_origins(table, ("tenants", name), f"file:{inc}", doc.origins)


def ownership_conflicts(tenants: Mapping[str, TenantConfig]) -> list[tuple[str, str, str]]:
    """Hosts, DIDs and registrations claimed by two tenants: (tenant, key, message) each."""
    problems: list[tuple[str, str, str]] = []
    hosts: dict[str, str] = {}
    dids: dict[str, str] = {}
    regs: dict[tuple[str, str], str] = {}
    for tid, t in tenants.items():
        for h in t.hosts:
            if h in hosts:
                problems.append((tid, "hosts", f"{h!r} is already a host of tenant '{hosts[h]}'"))
            hosts.setdefault(h, tid)
        for d in t.dids:
            if d in dids:
                problems.append((tid, "dids", f"{d} is already a DID of tenant '{dids[d]}'"))
            dids.setdefault(d, tid)
        for name, r in t.registrations.items():
            key = (r.registrar.lower(), r.user)
            if key in regs:
                problems.append(
                    (
                        tid,
                        f"registrations.{name}",
                        f"{r.user} at {r.registrar} is already registered by tenant '{regs[key]}'",
                    )
                )
            regs.setdefault(key, tid)
    return problems
