"""A throwaway PostgreSQL cluster for tests, from Debian's postgresql binaries.

``PostgresCluster.start()`` runs ``initdb`` (as the ``postgres`` user when we are root),
starts the server on 127.0.0.1 and a free port with its unix socket in a temp dir, and
``create_database()`` gives a fresh empty database per test. Use the ``pg_cluster``
fixture (session scope) from any conftest::

    from postgres import pg_cluster  # noqa: F401  (tests/ is on sys.path)

Tests are skipped, with the reason, only when no ``/usr/lib/postgresql/*/bin/initdb`` exists.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb and pg_ctl, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    for initdb in reversed(found):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def _free_port() -> int:
    from tests.ports import free_port

    return free_port()  # below the ephemeral range: nothing of ours takes it before initdb's server


class PostgresCluster:
    """One initdb'ed, running PostgreSQL server (trust auth, loopback only)."""

    def __init__(
        self,
        bindir: Path,
        *,
        listen: str = "127.0.0.1",
        trust: tuple[str, ...] = (),
        settings: tuple[str, ...] = (),
    ) -> None:
        self.bindir = bindir
        self.listen = listen
        """``listen_addresses``: 127.0.0.1, or more (``127.0.0.1,10.0.0.1``)."""
        self.trust = trust
        """Networks (CIDR) besides loopback whose connections are trusted (pg_hba.conf)."""
        self.settings = settings
        """Server settings (``name=value``) after the defaults, e.g. ``shared_buffers=256MB``."""
        self.base = Path(tempfile.mkdtemp(prefix="w3sipagent-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "server.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        self._n = itertools.count(1)

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> None:
        """initdb + pg_ctl start; raises RuntimeError with the server's words on failure."""
        self.sock.mkdir()
        if self._as_postgres:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        r = self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip() or r.stdout.strip()}")
        if self.trust:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.writelines(f"host all all {cidr} trust\n" for cidr in self.trust)
        self.port = _free_port()
        opts = (
            f"-h {self.listen} -p {self.port} -k {self.sock} -F "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c shared_buffers=16MB -c max_connections=50"
        ) + "".join(f" -c {setting}" for setting in self.settings)
        r = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )
        if r.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()} {tail}")

    def create_database(self, *, owner: str | None = None) -> str:
        """A fresh empty database; returns its SQLAlchemy asyncpg URL.

        With ``owner`` the database belongs to that role (created as a plain login role,
        not a superuser, when missing) and the URL connects as it: a user who may create
        tables but not, for example, extensions that are not trusted (pgvector).
        """
        name = f"w3test_{os.getpid()}_{next(self._n)}"
        user = owner or "postgres"
        if owner is not None and not self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{owner}'"):
            self.sql(f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
        args = ["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        if owner is not None:
            args += ["-O", owner]
        r = self._run(*args, name)
        if r.returncode != 0:
            raise RuntimeError(f"createdb failed: {r.stderr.strip()}")
        return f"postgresql+asyncpg://{user}@127.0.0.1:{self.port}/{name}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement as the superuser with psql; its output (tuples only)."""
        r = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-tAc", statement,
        )  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def has_extension(self, name: str) -> bool:
        """Whether the server could create extension ``name`` (its files are installed)."""
        return bool(self.sql(f"SELECT 1 FROM pg_available_extensions WHERE name = '{name}'"))

    def stop(self) -> None:
        """Stop the server and delete its files."""
        if self.port:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A running throwaway PostgreSQL server for the whole test session."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
            "install Debian's postgresql package to run the PostgreSQL tests"
        )
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()
