"""A loopback-only network namespace per test, deleted afterwards.

The RFC 4475 torture messages name TEST-NET addresses and example domains in Via and
Contact; a user agent under test may try to answer or BYE them. Inside a namespace that
has only ``lo`` nothing can leave the machine. Tests skip with a clear reason when
namespaces cannot be created (not root, no ``ip``, a container without CAP_SYS_ADMIN).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """The name of a fresh namespace with ``lo`` up and no other interface."""
    if shutil.which("ip") is None:
        pytest.skip("netns: the ip command (iproute2) is not installed")
    # W3SIPAGENT_NETNS_PREFIX: runs sharing a machine tell their namespaces apart
    name = f"{os.environ.get('W3SIPAGENT_NETNS_PREFIX', 'w3s')}-{secrets.token_hex(4)}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"netns: 'ip netns add' is not permitted here: {made.stderr.strip()}")
    try:
        up = _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        assert up.returncode == 0, up.stderr
        links = _ip("netns", "exec", name, "ip", "-o", "link", "show")
        names = [line.split(":")[1].strip() for line in links.stdout.splitlines() if ":" in line]
        assert names == ["lo"], f"namespace {name} has more than lo: {names}"
        yield name
    finally:
        _ip("netns", "del", name)
