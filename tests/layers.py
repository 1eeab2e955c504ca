"""The one allow-table of w3sipagent's layers (docs/architecture.md shows the same).

Names are modules or packages under ``w3sipagent/`` (``__init__`` is the package itself,
``sip`` is ``w3sipagent/sip/`` and everything in it). A module belongs to the row naming
its longest prefix; a module in no row is an error, so a new package has to be placed.
A layer may import itself and the layers it lists, nothing else; ``NEVER`` narrows that.
tests/test_layering.py builds the real import graph and checks it against these tables.
"""

from __future__ import annotations

# layer, its members, the layers it may import (besides itself); lowest first
# fmt: off
LAYERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("base", ("__init__", "idsource"), ()),
    ("core", ("errors", "sip", "sdp", "rtp", "codecs"), ("base",)),
    ("util", ("ids", "logs", "redact"), ("base", "core")),
    ("io", ("asyncio", "faults"), ("base", "core", "util")),
    ("ai", ("ai", "realtime", "live", "localai", "cascade"), ("base", "core", "util")),
    ("data", ("records", "tenants", "knowledge"), ("base", "core", "util", "ai")),
    ("settings", ("config", "configsources", "metrics"), ("base", "core", "io", "util", "ai", "data")),
    ("pbx", ("freeswitch",), ("base", "core", "io", "util", "data", "settings")),
    ("control", ("control",), ("base", "core", "util", "ai", "data", "settings", "pbx")),
    ("api", ("api",), ("base", "core", "util", "ai", "data", "settings", "pbx", "control")),
    ("agent", ("agent",), ("base", "core", "io", "util", "ai", "data", "settings", "pbx", "control")),
    ("tools", ("demo_assets",), ("base", "core", "io", "util", "ai", "data", "settings", "pbx", "control", "api", "agent")),
    ("cli", ("cli",), ("base", "core", "io", "util", "ai", "data", "settings", "pbx", "control", "api", "agent", "tools")),
    ("entry", ("__main__",), ("cli",)),
)
# fmt: on

# (importer, imported): forbidden even where the layers above allow it
NEVER: tuple[tuple[str, str], ...] = (
    ("ai", "sip"),
    ("ai", "rtp"),
    ("ai", "realtime"),
    ("ai", "localai"),
    ("ai", "live"),
    ("realtime", "sip"),
    ("realtime", "rtp"),
    ("realtime", "localai"),
    ("realtime", "live"),
    ("live", "sip"),
    ("live", "rtp"),
    ("live", "localai"),
    ("live", "realtime"),
    ("localai", "sip"),
    ("localai", "rtp"),
    ("localai", "realtime"),
    ("localai", "live"),
    ("cascade", "sip"),
    ("cascade", "rtp"),
    ("cascade", "realtime"),
    ("cascade", "localai"),
    ("cascade", "live"),
    ("live", "cascade"),
)

# The layer whose modules do no I/O, read no clock and draw no randomness.
PURE = "core"

# Modules the pure core may not import (a dotted name also forbids its submodules).
PURE_FORBIDDEN: tuple[str, ...] = (
    "asyncio",
    "concurrent",
    "datetime",
    "http",
    "importlib",
    "multiprocessing",
    "random",
    "sched",
    "secrets",
    "select",
    "selectors",
    "signal",
    "socket",
    "socketserver",
    "ssl",
    "subprocess",
    "threading",
    "time",
    "urllib.request",
    "uuid",
)

# Names the pure core may not use (randomness, clocks, running code from strings).
PURE_FORBIDDEN_USES: tuple[str, ...] = (
    "compile",
    "eval",
    "exec",
    "np.random",
    "numpy.random",
    "os.getrandom",
    "os.urandom",
)

# The only module that may import ``cli``.
CLI_ENTRY = "__main__"
