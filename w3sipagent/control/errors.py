"""Errors of the control plane, each mapped to one HTTP status by the API."""

from __future__ import annotations

__all__ = ["Conflict", "ControlError", "Invalid", "NotFound"]


class ControlError(Exception):
    """Base: ``str(error)`` is safe to show to the caller (no secret, no other tenant)."""


class NotFound(ControlError):
    """No such object in the caller's tenant (→ 404)."""


class Conflict(ControlError):
    """The object exists, is taken, or is still referenced (→ 409)."""


class Invalid(ControlError):
    """The input is wrong: ``loc`` names the field (→ 422)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}")
        self.loc = loc
        self.message = message
