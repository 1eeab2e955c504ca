"""``w3sipagent freeswitch dialplan``: FreeSWITCH dialplan XML generated from the tenants.

Direct mode (default): one extension per tenant and agent, matching the agent's DIDs on
``destination_number`` in the public context, bridging to
``{absolute_codec_string='PCMU,PCMA',...}sofia/PROFILE/AGENT@TENANT_HOST;fs_path=sip:AGENT_ADDRESS``.
The Request-URI keeps the tenant's host (that is how the agent knows the tenant) while
``fs_path`` routes the INVITE to the agent's address without DNS. The codec list is quoted
with '...' because commas separate variables inside ``{}``.

A tenant without hosts keeps the dialled number as the Request-URI user
(``sofia/PROFILE/${destination_number}@AGENT_ADDRESS``): the agent resolves it by DID.

Register mode (``--mode register``): tenants with ``registrations`` are bridged with
``user/USER@$${domain}`` (the agent registered as a directory user of the default domain;
the output goes to the public context too, where trunk calls enter).

Every extension sets ``sip_h_X-W3-Caller-UUID=${uuid}`` before the bridge: the caller's
channel UUID reaches the agent in that header (``transfer_method = "esl"`` needs it).

Tenants that yield no extension (no DIDs; in register mode no registrations, or none whose
agent has a DID) are named on standard error and in an XML comment, with the reason: an
empty ``<include>`` never comes without one.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import typer

from w3sipagent.cli.common import EXIT_USAGE, ConfigOption, cli_errors, err_console, fail, load
from w3sipagent.config import Settings, parse_hostport
from w3sipagent.freeswitch.transfer import CALLER_UUID_HEADER
from w3sipagent.tenants.models import TenantConfig

app = typer.Typer(help="FreeSWITCH configuration generated from the tenants.", no_args_is_help=True)

CALLER_UUID_SET = f"sip_h_{CALLER_UUID_HEADER}=${{uuid}}"
"""Puts the caller's channel UUID into the INVITE to the agent (the ESL transfer's key)."""

FS_CODEC_NAMES = {"PCMU": "PCMU", "PCMA": "PCMA", "G722": "G722", "opus": "opus"}


class Mode(StrEnum):
    direct = "direct"
    register = "register"


def agent_address(settings: Settings, override: str | None = None) -> str:
    """Where FreeSWITCH reaches the agent: ``override``, ``sip.advertised`` or ``sip.listen``.

    A wildcard listen address (0.0.0.0 / ::) cannot be dialled: the caller must say which.
    """
    if override:
        host, port = parse_hostport(override, default_port=5060)
    elif settings.sip.advertised:
        host, port = parse_hostport(
            settings.sip.advertised, default_port=settings.sip.listen_address[1]
        )
    else:
        host, port = settings.sip.listen_address
        if host in ("0.0.0.0", "::", ""):
            fail(
                f"sip.listen is {settings.sip.listen}: FreeSWITCH needs the agent's real address",
                code=EXIT_USAGE,
                hint="pass --agent HOST:PORT (or set sip.advertised)",
            )
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


def codec_string(tenant: TenantConfig) -> str:
    """The tenant's codecs in FreeSWITCH spelling, in order (``PCMU,PCMA,G722``)."""
    return ",".join(FS_CODEC_NAMES[c] for c in tenant.codecs)


def did_regex(dids: list[str]) -> str:
    """A ``destination_number`` expression matching the E.164 DIDs with or without ``+``."""
    digits = sorted(d.lstrip("+") for d in dids)
    return "^\\+?(" + "|".join(re.escape(d) for d in digits) + ")$"


def dial_string(
    settings: Settings,
    tenant: TenantConfig,
    agent: str,
    address: str,
    *,
    profile: str = "external",
) -> str:
    """The bridge data for calls of ``tenant`` / ``agent`` (direct mode)."""
    variables = [f"absolute_codec_string='{codec_string(tenant)}'"]
    header = settings.tenancy.trusted_header
    if header:
        variables.append(f"sip_h_{header}={tenant.id}")
    prefix = "{" + ",".join(variables) + "}"
    if tenant.hosts:
        return f"{prefix}sofia/{profile}/{agent}@{tenant.hosts[0]};fs_path=sip:{address}"
    return f"{prefix}sofia/{profile}/${{destination_number}}@{address}"


def _agents_by_did(tenant: TenantConfig) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for did, agent in tenant.dids.items():
        groups.setdefault(agent or tenant.default_agent or "", []).append(did)
    return groups


def _action(app_name: str, data: str) -> str:
    return f"      <action application={quoteattr(app_name)} data={quoteattr(data)}/>"


def generate_dialplan(
    settings: Settings,
    address: str,
    *,
    profile: str = "external",
    mode: Mode = Mode.direct,
    fallback: str | None = None,
    call_timeout: int = 20,
    skipped: list[tuple[str, str]] | None = None,
) -> str:
    """The dialplan ``<include>`` for every tenant with DIDs (XML text).

    ``skipped`` receives ``(tenant, reason)`` for each tenant (or registration) that yields
    no extension.

    ``fallback``: a ``transfer`` target (``"1000 XML default"``) used when the agent does not
    answer or answers 503 (draining, full); without it the caller hears the failure.
    """
    skipped = [] if skipped is None else skipped
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<!-- Generated by `w3sipagent freeswitch dialplan` from "
        + escape(", ".join(str(f) for f in settings.files) or "the settings").replace("--", "- -")
        + f" ({mode.value} mode"
        + (f", agent at {escape(address)}" if address else "")
        + "). -->",
        "<include>",
    ]
    count = 0
    for tid, tenant in settings.tenants.items():
        if not tenant.dids:
            skipped.append((tid, "has no dids"))
            continue
        if mode is Mode.register:
            regs = list(tenant.registrations.items())
            if not regs:
                skipped.append((tid, "has no registrations"))
                continue
            for name, reg in regs:
                dids = [d for d, a in tenant.dids.items() if reg.agent in (None, a)]
                if not dids:
                    skipped.append(
                        (f"{tid}/{name}", f"registers agent {reg.agent}, which has no DID")
                    )
                    continue
                out.append(f"  <!-- tenant {escape(tid)}: registration {escape(name)} -->")
                out.append(f"  <extension name={quoteattr(f'w3sipagent-{tid}-{name}')}>")
                out.append(
                    f'    <condition field="destination_number" expression={quoteattr(did_regex(dids))}>'
                )
                out.append(_action("set", "hangup_after_bridge=true"))
                out.append(_action("set", f"call_timeout={call_timeout}"))
                out.append(_action("set", CALLER_UUID_SET))
                out.append(
                    _action(
                        "bridge",
                        f"{{absolute_codec_string='{codec_string(tenant)}'}}"
                        f"user/{reg.user}@$${{domain}}",
                    )
                )
                if fallback:
                    out.append(_action("transfer", fallback))
                out.append("    </condition>")
                out.append("  </extension>")
                count += 1
            continue
        for agent, dids in _agents_by_did(tenant).items():
            out.append(f"  <!-- tenant {escape(tid)}: agent {escape(agent)} -->")
            out.append(f"  <extension name={quoteattr(f'w3sipagent-{tid}-{agent}')}>")
            out.append(
                f'    <condition field="destination_number" expression={quoteattr(did_regex(dids))}>'
            )
            out.append(_action("set", "hangup_after_bridge=true"))
            out.append(_action("set", f"call_timeout={call_timeout}"))
            out.append(_action("set", CALLER_UUID_SET))
            if fallback:
                out.append(
                    _action(
                        "set",
                        "continue_on_fail=NORMAL_TEMPORARY_FAILURE,USER_BUSY,NO_ANSWER,"
                        "NO_ROUTE_DESTINATION,DESTINATION_OUT_OF_ORDER,RECOVERY_ON_TIMER_EXPIRE",
                    )
                )
            out.append(
                _action("bridge", dial_string(settings, tenant, agent, address, profile=profile))
            )
            if fallback:
                out.append(_action("transfer", fallback))
            out.append("    </condition>")
            out.append("  </extension>")
            count += 1
    for who, why in skipped:
        out.append(f"  <!-- skipped: tenant {escape(who)} {escape(why)} -->")
    if count == 0:
        out.append(
            "  <!-- no extension: "
            + (
                "no tenant has both DIDs and registrations (REGISTER mode bridges a DID to a "
                "registration)"
                if mode is Mode.register
                else "no tenant has DIDs"
            )
            + " -->"
        )
    out.append("</include>")
    return "\n".join(out) + "\n"


@app.command("dialplan")
@cli_errors
def dialplan(
    config: Path | None = ConfigOption,
    agent: str | None = typer.Option(
        None,
        "--agent",
        help="The agent's SIP address as FreeSWITCH reaches it, HOST:PORT "
        "(default: sip.advertised, else sip.listen).",
    ),
    profile: str = typer.Option("external", "--profile", help="The Sofia profile to bridge on."),
    mode: Mode = typer.Option(Mode.direct, "--mode", help="direct (fs_path) or register (user/)."),
    fallback: str | None = typer.Option(
        None,
        "--fallback",
        help="Transfer here when the agent does not answer, e.g. '1000 XML default'.",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the XML here (default: standard output)."
    ),
) -> None:
    """Generate the FreeSWITCH dialplan that bridges each tenant's DIDs to the agent.

    Put the result in conf/dialplan/public/ (both modes: trunk calls enter there) and run
    `reloadxml`. See docs/freeswitch.md.
    """
    settings = load(config)
    if not settings.tenants:
        fail("no tenants in the configuration", code=EXIT_USAGE, hint="add [tenants.NAME] tables")
    address = agent_address(settings, agent) if mode is Mode.direct else ""
    skipped: list[tuple[str, str]] = []
    xml = generate_dialplan(
        settings, address, profile=profile, mode=mode, fallback=fallback, skipped=skipped
    )
    for who, why in skipped:
        err_console.print(f"skipped: tenant {who} {why}")
    if "<extension" not in xml:
        err_console.print(
            "no extension generated: "
            + (
                "REGISTER mode needs tenants with both dids and registrations"
                if mode is Mode.register
                else "no tenant has dids"
            )
        )
    if output is None:
        typer.echo(xml, nl=False)
    else:
        output.write_text(xml, encoding="utf-8")
        err_console.print(f"wrote {output}")
