"""The docs name only commands, flags and settings that exist: every ``w3sipagent …`` command
line and every ``section.key`` setting in docs/*.md and the READMEs is checked against the
CLI and the settings model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel

from w3sipagent.cli.app import app
from w3sipagent.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [
        *(ROOT / "docs").glob("*.md"),
        ROOT / "freeswitch" / "README.md",
        ROOT / "docker" / "README.md",
        ROOT / "README.md",
    ]
)
SECTIONS = ("sip", "rtp", "realtime", "records", "metrics", "logging", "tenancy", "control", "api")
COMMAND = re.compile(r"w3sipagent((?: +[a-z][a-z-]*)+)((?: +[^\s`|]+)*)")
SETTING = re.compile(r"`((?:" + "|".join(SECTIONS) + r")\.[a-z_]+(?:\.[a-z_]+)?)(?:[ =][^`]*)?`")


NOT_SETTINGS = {"realtime.session"}
"""Dotted names in the docs that are not settings (the Realtime API's object type)."""
ROOT_COMMAND = typer.main.get_command(app)


def snippets(text: str) -> list[str]:
    """Inline code spans and the lines of fenced code blocks."""
    out = re.findall(r"`([^`\n]+)`", text)
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        out.extend(block.splitlines())
    return out


def resolve(words: list[str]) -> tuple[Any, list[str]] | None:
    """The (sub)command named by the leading words, and the words left over."""
    cmd: Any = ROOT_COMMAND
    rest = list(words)
    while rest and getattr(cmd, "commands", None):
        sub = cmd.commands.get(rest[0])
        if sub is None:
            break
        cmd, rest = sub, rest[1:]
    return None if cmd is ROOT_COMMAND else (cmd, rest)


def flags_of(cmd: Any) -> set[str]:
    names: set[str] = {"--help"}
    for p in cmd.params:
        names.update(o for o in [*p.opts, *p.secondary_opts] if o.startswith("-"))
    return names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_and_flags_exist(path: Path) -> None:
    problems: list[str] = []
    for snip in snippets(path.read_text(encoding="utf-8")):
        for m in COMMAND.finditer(snip):
            words = m.group(1).split()
            found = resolve(words)
            if found is None:
                if words[0] not in ("is", "the", "and", "or", "with", "a"):  # prose
                    problems.append(f"unknown command: w3sipagent {' '.join(words)}")
                continue
            cmd, _ = found
            known = flags_of(cmd)
            tail = m.group(0)
            for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", tail):
                base = flag.split("=")[0]
                if base not in known:
                    problems.append(f"w3sipagent {' '.join(words)}: no option {base}")
    assert not problems, f"{path.name}: " + "; ".join(sorted(set(problems)))


def test_docs_do_name_commands() -> None:
    """The extraction finds the command lines (a check that finds nothing passes vacuously)."""
    found = [
        m.group(1).split()[0]
        for path in DOCS
        for snip in snippets(path.read_text(encoding="utf-8"))
        for m in COMMAND.finditer(snip)
    ]
    assert len(found) > 40
    assert {"serve", "call", "demo", "dial", "cdr", "config", "freeswitch", "doctor"} <= set(found)


def setting_exists(key: str) -> bool:
    model: type[BaseModel] = Settings
    for part in key.split("."):
        fields = model.model_fields
        name = next(
            (n for n, f in fields.items() if part in (n, f.alias)),
            None,
        )
        if name is None:
            return False
        ann = fields[name].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return True
    return True


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_settings_named_in_docs_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    keys = {m.group(1) for m in SETTING.finditer(text)} - NOT_SETTINGS
    missing = sorted(k for k in keys if not setting_exists(k))
    assert not missing, f"{path.name} names settings that do not exist: {missing}"


def test_the_checks_can_fail() -> None:
    assert resolve(["serve"]) is not None and resolve(["nosuch"]) is None
    serve = resolve(["serve"])
    assert serve is not None and "--sip" in flags_of(serve[0])
    assert "--nosuch" not in flags_of(serve[0])
    assert setting_exists("sip.listen") and setting_exists("logging.json")
    assert not setting_exists("sip.lissten")


def test_docker_files_name_real_settings_and_extras() -> None:
    compose = (ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8")
    names = re.findall(r"\bW3SIPAGENT_([A-Z_]+?)__([A-Z_]+)\b", compose)
    assert names
    for section, key in names:
        assert setting_exists(f"{section.lower()}.{key.lower()}"), f"{section}__{key}"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    extras = re.search(r'pip install [^\n]*"\.\[([a-z,]+)\]"', dockerfile)
    assert extras is not None
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for extra in extras.group(1).split(","):
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.M), extra
    assert "USER w3sipagent" in dockerfile  # not root
