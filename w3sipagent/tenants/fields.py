"""The field types of the tenant configuration: durations, networks, hosts, numbers, URIs.

Validators and ``Annotated`` types shared by :mod:`w3sipagent.tenants.models` and
:mod:`w3sipagent.config`: they normalise what a TOML file, a variable or a flag gives
(``"30s"``, ``"10.0.0.0/8, ::1"``, ``"+1 (555) 123-0000"``) and explain what is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = [
    "CODECS",
    "LIVE_MODELS",
    "LIVE_VOICES",
    "VOICES",
    "Duration",
    "Network",
    "NetworkList",
    "StrList",
    "StrictModel",
    "Voice",
    "check_env_name",
    "check_host",
    "check_http_url",
    "check_target_uri",
    "normalize_e164",
    "normalize_host",
    "parse_duration",
    "parse_network",
    "source_allowed",
    "split_list",
]

# ---------------------------------------------------------------- small types

VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
"""The Realtime GA voices."""

Voice = Literal[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"
]

LIVE_VOICES: tuple[str, ...] = (
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo",
    "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone",
    "tempo", "verse", "vesper", "willow",
)  # fmt: skip
"""The GPT-Live voices (a custom voice is ``{ id = "voice_…" }``)."""

LIVE_MODELS: tuple[str, ...] = ("gpt-live-1", "gpt-live-1.1")
"""The GPT-Live models."""

CODECS: tuple[str, ...] = ("PCMU", "PCMA", "G722", "opus")
"""Codec names a tenant may prefer, canonical spelling."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``1.5``, ``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"`` or ``"30d"``."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30, '30s', '5m', '2h' or '30d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError("must be a duration such as 30, '30s', '5m', '2h' or '30d'")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError("must be a duration such as 30, '30s', '5m', '2h' or '30d'")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A non-negative number of seconds, written as a number or with a unit."""


def split_list(value: object) -> object:
    """Accept ``"a, b"`` (environment variables) where a list is expected."""
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


def parse_network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR (``10.0.0.5``, ``10.0.0.0/8``, ``::1``) as a network."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an IP address or CIDR such as 10.0.0.0/8")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR: {value!r}") from None


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(parse_network)]
NetworkList = Annotated[list[Network], BeforeValidator(split_list)]
StrList = Annotated[list[str], BeforeValidator(split_list)]


def source_allowed(ip: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """True when ``ip`` lies in one of ``networks`` (IPv4-mapped IPv6 counts as IPv4)."""
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in n for n in networks if n.version == addr.version)


_HOST_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def normalize_host(value: str) -> str:
    """Lower-case host, no trailing dot, no port, IPv6 without brackets."""
    h = value.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def check_host(value: str) -> str:
    h = normalize_host(value)
    try:
        ipaddress.ip_address(h)
        return h
    except ValueError:
        pass
    if not h or len(h) > 253 or not _HOST_RE.match(h):
        raise ValueError(f"not a host name or IP address: {value!r}")
    return h


_VISUAL = re.compile(r"[\s\-.()/]")


def normalize_e164(
    number: str,
    *,
    country_code: str | None = None,
    international_prefix: str = "00",
    national_prefix: str = "0",
) -> str | None:
    """Normalize a dialled number or URI user part to E.164 (``+15551230000``), or None.

    Visual separators and URI parameters (``;npdi``) are dropped and ``%2B`` means ``+``.
    ``+D`` stays; ``00D`` (the international prefix) becomes ``+D``; with a
    ``country_code`` a national number loses its trunk prefix (``0``) and gains ``+CC``;
    without one, bare digits are taken as international. Anything that is not 1 to 15
    digits after that (``support``, ``*97``) gives None.
    """
    s = number.strip().split(";", 1)[0]
    s = s.replace("%2B", "+").replace("%2b", "+")
    s = _VISUAL.sub("", s)
    if s.startswith("+"):
        digits = s[1:]
    elif international_prefix and s.startswith(international_prefix):
        digits = s[len(international_prefix) :]
    elif country_code:
        rest = s[len(national_prefix) :] if national_prefix and s.startswith(national_prefix) else s
        digits = country_code + rest if rest.isdigit() else ""
    else:
        digits = s
    if not digits.isdigit() or not 1 <= len(digits) <= 15:
        return None
    return "+" + digits


_SIP_URI_RE = re.compile(r"^(sips?:[^\s@]+(@[^\s]+)?|tel:\+?[0-9A-Fa-f*#().\-;=]+)$")


def check_target_uri(value: str) -> str:
    v = value.strip()
    if not _SIP_URI_RE.match(v):
        raise ValueError(f"must be a sip:, sips: or tel: URI (got {v!r})")
    return v


_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_name(value: str) -> str:
    if not _ENV_NAME_RE.match(value):
        raise ValueError("must be an environment variable NAME (letters, digits, _)")
    return value


def check_http_url(value: str) -> str:
    v = value.strip()
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
        raise ValueError("must be an http:// or https:// URL")
    return v


class StrictModel(BaseModel):
    """Strict about unknown keys: a typo is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)
