"""Placeholder: wired once the user agent lands."""

from __future__ import annotations

from w3sipagent.cli.common import fail


def demo() -> None:
    """Not available yet."""
    fail("not available yet")
