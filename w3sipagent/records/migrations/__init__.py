"""Alembic migrations of the records database, run programmatically at start."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent
"""The Alembic script location (shipped as package data)."""
