"""``python -m w3sipagent``: the same as the ``w3sipagent`` command."""

from __future__ import annotations

from w3sipagent.cli.app import main

main()
