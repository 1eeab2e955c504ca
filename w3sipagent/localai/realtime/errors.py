"""The service's errors for invalid client events, and the checks that raise them.

:class:`RealtimeProtocolError` becomes an ``error`` server event; the helpers build it
with the service's codes and messages (``missing_required_parameter``,
``unknown_parameter``, ``invalid_type``, ``invalid_value``, ``*_above_max_value``...).
"""

from __future__ import annotations

from typing import Any

from w3sipagent.errors import W3SipError


class RealtimeProtocolError(W3SipError, ValueError):
    """A client event the service would reject; becomes an ``error`` server event."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = "invalid_value",
        param: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.type = type

    def to_error(self, client_event_id: str | None) -> dict[str, Any]:
        """The ``error`` object of an error server event."""
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": client_event_id,
        }


def quote_list(values: tuple[str, ...] | list[str]) -> str:
    q = [f"'{v}'" for v in values]
    return ", ".join(q[:-1]) + ", and " + q[-1] if len(q) > 2 else " and ".join(q)


def missing(param: str) -> RealtimeProtocolError:
    """The service's error for a missing required parameter."""
    return RealtimeProtocolError(
        f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param
    )


def unknown(param: str) -> RealtimeProtocolError:
    """The service's error for a parameter it does not know."""
    return RealtimeProtocolError(
        f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param
    )


def bad_value(
    param: str, value: Any, allowed: tuple[str, ...] | list[str]
) -> RealtimeProtocolError:
    """The service's error for a value outside an enumeration."""
    return RealtimeProtocolError(
        f"Invalid value: '{value}'. Supported values are: {quote_list(allowed)}.",
        code="invalid_value",
        param=param,
    )


def bad_type(param: str, expected: str, value: Any) -> RealtimeProtocolError:
    """The service's error for a value of the wrong JSON type."""
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a decimal",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }
    got = names.get(type(value), "a value")
    return RealtimeProtocolError(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        code="invalid_type",
        param=param,
    )


def number(param: str, v: Any, lo: float, hi: float, *, integer: bool) -> float:
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or (integer and not isinstance(v, int))
    ):
        raise bad_type(param, "an integer" if integer else "a decimal", v)
    kind = "integer" if integer else "decimal"
    if v < lo:
        raise RealtimeProtocolError(
            f"Invalid '{param}': {kind} below minimum value. Expected a value >= {lo:g}, but got {v} instead.",
            code=f"{kind}_below_min_value",
            param=param,
        )
    if v > hi:
        raise RealtimeProtocolError(
            f"Invalid '{param}': {kind} above maximum value. Expected a value <= {hi:g}, but got {v} instead.",
            code=f"{kind}_above_max_value",
            param=param,
        )
    return float(v)


def check_keys(obj: dict[str, Any], allowed: set[str] | frozenset[str], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            raise unknown(f"{prefix}.{key}")


def as_object(param: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise bad_type(param, "an object", v)
    return v
