"""Scenarios bundled with the local Realtime server (TOML files)."""
