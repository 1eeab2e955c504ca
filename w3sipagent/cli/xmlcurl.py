"""``w3sipagent freeswitch xml-curl``: the FreeSWITCH side of routing by the agent's API
(mod_xml_curl's dialplan binding), printed to paste."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import typer

from w3sipagent.cli.common import ConfigOption, cli_errors, load

# No double hyphen inside the comments: FreeSWITCH would refuse its whole configuration.
TEMPLATE = """\
<!-- conf/autoload_configs/xml_curl.conf.xml: FreeSWITCH asks the agent where each call goes.
     Load the module: <load module="mod_xml_curl"/> in modules.conf.xml, then `reload mod_xml_curl`.
     The password is an admin API token (`w3sipagent api-token create` with its admin option):
     keep this file readable by FreeSWITCH only. -->
<configuration name="xml_curl.conf" description="routing by the agent">
  <bindings>
    <binding name="w3sipagent">
      <param name="gateway-url" value={url} bindings="dialplan"/>
      <param name="gateway-credentials" value={credentials}/>
      <param name="auth-scheme" value="basic"/>
      <param name="timeout" value="{timeout}"/>
      <param name="disable-100-continue" value="true"/>
    </binding>
  </bindings>
</configuration>

<!-- The agent answers FreeSWITCH's dialplan lookup for every context. For a number it
     knows it returns the extension that bridges to the agent (or the transfer destination,
     or a rejection); for any other call it answers "not found" and FreeSWITCH goes on with
     its own XML dialplan (conf/dialplan/*), so nothing else needs to change.
     Trunks: to let the agent tell the tenant by gateway, tag calls from each gateway, e.g. in
     the gateway's <variables>:  <variable name="sip_h_X-W3-Gateway" value="GATEWAY" direction="inbound"/>
     (the agent honours that header only from tenancy.trusted_sources). -->
"""


@cli_errors
def xml_curl(
    config: Path | None = ConfigOption,
    url: str | None = typer.Option(
        None,
        "--url",
        help="The agent API's base URL as FreeSWITCH reaches it (default: http://api.listen).",
    ),
    user: str = typer.Option("freeswitch", "--user", help="The user part of the credentials."),
    token: str = typer.Option(
        "ADMIN_TOKEN", "--token", help="The admin token to write (default: a placeholder)."
    ),
    timeout: int = typer.Option(2, "--timeout", help="Seconds FreeSWITCH waits for the agent."),
) -> None:
    """Print the xml_curl.conf.xml binding that routes calls by the agent's API."""
    settings = load(config)
    base = url or f"http://{settings.api.listen or '127.0.0.1:8080'}"
    typer.echo(
        TEMPLATE.format(
            url=quoteattr(base.rstrip("/") + "/api/freeswitch/dialplan"),
            credentials=quoteattr(f"{user}:{token}"),
            timeout=timeout,
        ),
        nl=False,
    )
