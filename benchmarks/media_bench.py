"""Media engine benchmark (see :mod:`w3sipagent.bench.media_bench`).

.venv/bin/python benchmarks/media_bench.py --calls 100,300,500 --seconds 10 --loop both
"""

from __future__ import annotations

from w3sipagent.bench.media_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
