"""w3sipagent's test suite (a package, so test folders named like stdlib modules cannot shadow them)."""
