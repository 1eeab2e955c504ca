"""Alembic revisions (loaded by Alembic from their files)."""
