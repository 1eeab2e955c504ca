"""Where each setting came from, and the layers merged over the config file.

The mechanics under :func:`w3sipagent.config.load_settings`: the environment and flag
layers (:func:`env_layer`, :func:`flag_layer`) set into the file's data (:func:`deep_set`),
the origin of every value (:func:`origin_of`), a pydantic error turned into one line per
problem naming the file or variable, the tenant and the key
(:func:`format_validation_error`), and relative paths anchored at the file that named them
(:func:`anchor_paths`, :func:`anchor_sqlite_url`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from w3sipagent.tenants.loader import Origins

__all__ = [
    "CONFIG_PATH_ENV",
    "ENV_PREFIX",
    "anchor_paths",
    "anchor_sqlite_url",
    "deep_set",
    "env_layer",
    "flag_layer",
    "format_validation_error",
    "leaves",
    "origin_of",
    "problem_line",
]

ENV_PREFIX = "W3SIPAGENT_"
CONFIG_PATH_ENV = "W3SIPAGENT_CONFIG"


# ---------------------------------------------------------------- origins


def leaves(data: Any, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict) and data:
        for k, v in data.items():
            yield from leaves(v, (*prefix, str(k)))
    else:
        yield prefix, data


def origin_of(loc: tuple[str, ...], origins: Origins, *, tables: bool = True) -> str | None:
    """The origin of ``loc`` or of the nearest enclosing value (or table, with ``tables``)."""
    for n in range(len(loc), 0, -1):
        o = origins.get(loc[:n])
        if o is None and tables:
            o = origins.get((*loc[:n], "*"))
        if o is not None:
            return o
    return None


# ---------------------------------------------------------------- layers


def deep_set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    old = node.get(path[-1])
    if isinstance(old, dict) and isinstance(value, dict):
        deep_merge(old, value)
    else:
        node[path[-1]] = value


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for k, v in extra.items():
        deep_set(base, (k,), v)


def env_layer(
    environ: Mapping[str, str], sections: Collection[str]
) -> list[tuple[tuple[str, ...], Any, str]]:
    """(path, value, env var name) for every ``W3SIPAGENT_…`` variable naming one of
    ``sections`` (``W3SIPAGENT_CONFIG`` names the file, not a setting)."""
    out: list[tuple[tuple[str, ...], Any, str]] = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() == CONFIG_PATH_ENV:
            continue
        path = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split("__"))
        if not path or path[0] not in sections or any(not p for p in path):
            continue
        raw = environ[name]
        value: Any = raw
        if raw.strip()[:1] in ("[", "{"):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        out.append((path, value, name))
    return out


def flag_layer(overrides: Mapping[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []

    def walk(prefix: tuple[str, ...], value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk((*prefix, *str(k).split(".")), v)
        else:
            out.append((prefix, value))

    for k, v in overrides.items():
        walk(tuple(str(k).split(".")), v)
    return out


# ---------------------------------------------------------------- messages

_SECRET_WORDS = ("key", "password", "secret", "token", "auth")


def _where(origin: str | None, main: str) -> str:
    if origin is None:
        return main
    if origin.startswith("file:"):
        return origin[5:]
    if origin.startswith("env:"):
        return f"environment {origin[4:]}"
    return "command-line flag"


def problem_line(
    origins: Origins,
    loc: tuple[str, ...],
    main: str,
    tenant: str | None,
    key: str,
    msg: str,
) -> str:
    parts = [_where(origin_of(loc, origins), main)]
    if tenant is not None:
        parts.append(f"tenant '{tenant}'")
    if key:
        parts.append(key)
    return ": ".join([*parts, msg])


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def format_validation_error(err: ValidationError, origins: Origins, main: str) -> list[str]:
    """One line per pydantic error: where, tenant, dotted key, what is wrong (got …)."""
    lines: list[str] = []
    for e in err.errors(include_url=False):
        loc = tuple(
            str(p) for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p[:1].isupper()))
        )
        etype = e["type"]
        msg = e["msg"]
        if etype == "literal_error":
            expected = str(e.get("ctx", {}).get("expected", ""))
            choices = expected.replace("'", "").replace(" or ", ", ")
            msg = f"must be one of {choices}"
        elif etype == "missing":
            msg = "required key is missing"
        elif etype == "extra_forbidden":
            msg = "unknown key"
        elif etype == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif etype == "string_pattern_mismatch":
            msg = f"must match {e.get('ctx', {}).get('pattern', '')}"
        else:
            msg = msg[:1].lower() + msg[1:]
        value = e.get("input")
        secret = any(w in p.lower() for p in loc for w in _SECRET_WORDS)
        if (
            etype not in ("missing", "extra_forbidden")
            and not secret
            and isinstance(value, str | int | float | bool)
            and "(got" not in msg
            and repr(value) not in msg
        ):
            msg += f" (got {_short(value)})"
        tenant = loc[1] if len(loc) >= 2 and loc[0] == "tenants" else None
        key = ".".join(loc[2:] if tenant is not None else loc)
        lines.append(problem_line(origins, loc, main, tenant, key, msg))
    return lines


# ---------------------------------------------------------------- relative paths


def anchor_sqlite_url(url: str, origin: str | None) -> str:
    """A relative SQLite file named in a config file (``origin`` ``file:PATH``) is relative
    to that file: ``url`` with its database path anchored there (else ``url`` as is)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    db = u.database
    if (
        origin
        and origin.startswith("file:")
        and u.get_backend_name() == "sqlite"
        and db
        and db != ":memory:"
        and not db.startswith("file:")
        and not Path(db).is_absolute()
    ):
        path = Path(origin[5:]).parent / db
        return u.set(database=str(path)).render_as_string(hide_password=False)
    return url


def anchor_paths(model: BaseModel, loc: tuple[str, ...], origins: Origins) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        sub = (*loc, name)
        if isinstance(value, Path):
            origin = origin_of(sub, origins)
            if origin and origin.startswith("file:") and not value.is_absolute():
                object.__setattr__(model, name, Path(origin[5:]).parent / value)
        elif isinstance(value, BaseModel):
            anchor_paths(value, sub, origins)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, BaseModel):
                    anchor_paths(v, (*sub, str(k)), origins)
        elif isinstance(value, list):
            origin = origin_of(sub, origins)
            for i, v in enumerate(value):
                if isinstance(v, BaseModel):
                    anchor_paths(v, sub, origins)
                elif (
                    isinstance(v, Path)
                    and origin
                    and origin.startswith("file:")
                    and not v.is_absolute()
                ):
                    value[i] = Path(origin[5:]).parent / v
