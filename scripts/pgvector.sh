#!/usr/bin/env bash
# Builds and installs the pgvector extension for Debian 12's PostgreSQL 15 from Debian's own
# source (trixie's pgvector 0.8.0 source package; bookworm has no pgvector package), so that
# the knowledge tests can run the database-side search (docs/knowledge.md). Safe to run again:
# quick when the extension is already installed. Needs root for apt-get and make install.
#
#   scripts/pgvector.sh            # install when missing
#   PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config scripts/pgvector.sh
#
# Without network (or without root) it says why and exits 1: the tests that need pgvector are
# then skipped with that reason, the blob-search tests run as always.
set -euo pipefail

VERSION=0.8.0
URL="http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_${VERSION}.orig.tar.gz"
SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
pgmajor=$(basename "$(dirname "$(dirname "$PG_CONFIG")")")
CACHE=${PGVECTOR_CACHE:-/tmp}

installed() {
  local share lib
  share=$("$PG_CONFIG" --sharedir 2>/dev/null) || return 1
  lib=$("$PG_CONFIG" --pkglibdir 2>/dev/null) || return 1
  [ -f "$share/extension/vector.control" ] && [ -f "$lib/vector.so" ] \
    && grep -q "default_version = '${VERSION}'" "$share/extension/vector.control"
}

if [ ! -x "/usr/lib/postgresql/$pgmajor/bin/postgres" ]; then
  echo "pgvector: no PostgreSQL $pgmajor server (/usr/lib/postgresql/$pgmajor/bin/postgres)" >&2
  exit 1
fi
if [ -x "$PG_CONFIG" ] && installed; then
  echo "pgvector: ${VERSION} already installed for PostgreSQL $pgmajor"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "pgvector: not installed, and installing needs root" >&2
  exit 1
fi

# The server headers (PGXS). Pinned to the installed server's version so that apt does not
# upgrade the running server's binaries as a side effect.
if [ ! -f "$("$PG_CONFIG" --includedir-server 2>/dev/null)/postgres.h" ]; then
  server=$(dpkg-query -W -f='${Version}' "postgresql-$pgmajor" 2>/dev/null || true)
  apt-get update -qq || true
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "postgresql-server-dev-$pgmajor${server:+=$server}" >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "postgresql-server-dev-$pgmajor" >/dev/null || {
      echo "pgvector: cannot install postgresql-server-dev-$pgmajor (no network?)" >&2
      exit 1
    }
  fi
fi

tarball="$CACHE/pgvector_${VERSION}.orig.tar.gz"
if ! echo "$SHA256  $tarball" | sha256sum -c --quiet - >/dev/null 2>&1; then
  tmp="$tarball.part.$$"
  if ! curl -fsSL --retry 2 -o "$tmp" "$URL"; then
    rm -f "$tmp"
    echo "pgvector: cannot download $URL (no network?)" >&2
    exit 1
  fi
  mv "$tmp" "$tarball"
fi
if ! echo "$SHA256  $tarball" | sha256sum -c --quiet -; then
  echo "pgvector: $tarball does not have the pinned sha256 $SHA256" >&2
  rm -f "$tarball"
  exit 1
fi

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar -xzf "$tarball" -C "$build"
# OPTFLAGS="": no -march=native, as Debian builds it (a binary that runs on any x86-64).
make -s -C "$build/pgvector-${VERSION}" USE_PGXS=1 PG_CONFIG="$PG_CONFIG" OPTFLAGS="" \
  -j"$(nproc)" >/dev/null
make -s -C "$build/pgvector-${VERSION}" USE_PGXS=1 PG_CONFIG="$PG_CONFIG" OPTFLAGS="" \
  install >/dev/null
installed || {
  echo "pgvector: installed files not found after make install" >&2
  exit 1
}
echo "pgvector: ${VERSION} installed for PostgreSQL $pgmajor"
