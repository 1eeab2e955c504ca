"""Every shipped file of freeswitch/ loaded together into the real FreeSWITCH: no error or
warning of ours in its log; the trunk gateway registers (to a registrar of ours on
127.0.0.1) and the transfer-target extension runs (it is not shadowed by the stock
``1000``-``1019`` handling). The calls through the dialplans are in test_bridge_mode.py and
test_register_mode.py.
"""

from __future__ import annotations

import asyncio
import re
import socket

from tests.freeswitch.conftest import ROOT, FreeSwitch
from w3sipagent.freeswitch.esl import EslClient

FS_DIR = ROOT / "freeswitch"


class Registrar(asyncio.DatagramProtocol):
    """Answers every request 200 OK (a SIP trunk's registrar and OPTIONS ping, reduced to
    that) and keeps the REGISTERs."""

    def __init__(self) -> None:
        self.registers: list[str] = []
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode("utf-8", "replace")
        if text.startswith("SIP/2.0"):
            return
        if text.startswith("REGISTER "):
            self.registers.append(text)
        keep = [
            line
            for line in text.split("\r\n")
            if re.match(r"(?i)(via|from|to|call-id|cseq|contact):", line)
        ]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(
            line + (";tag=reg" if line.lower().startswith("to:") else "") for line in keep
        )
        reply += "\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
        sendto = getattr(self.transport, "sendto")  # noqa: B009 - a datagram transport
        sendto(reply.encode(), addr)


async def test_all_shipped_files_load_and_run(freeswitch: FreeSwitch, esl: EslClient) -> None:
    fs = freeswitch
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    trunk_port = sock.getsockname()[1]
    transport, registrar = await loop.create_datagram_endpoint(Registrar, sock=sock)
    try:
        vars_xml = fs.conf / "vars.xml"
        extra = "".join(
            f'  <X-PRE-PROCESS cmd="set" data="{k}={v}"/>\n'
            for k, v in {
                "trunk_username": "acme-trunk",
                "trunk_password": "trunk-secret",
                "w3sipagent_globex_password": "globex-secret",
            }.items()
        )
        vars_xml.write_text(vars_xml.read_text().replace("</include>", extra + "</include>"))
        for rel in (
            "dialplan/public/05_w3sipagent_transfers.xml",
            "dialplan/public/10_w3sipagent.xml",
            "dialplan/public/20_w3sipagent_register.xml",
            "directory/default/w3sipagent.xml",
        ):
            fs.put(rel, (FS_DIR / rel).read_text())
        # the example trunk, pointed at our registrar instead of sip.trunk.example
        trunk = (FS_DIR / "sip_profiles/external/trunk-example.xml").read_text()
        fs.put(
            "sip_profiles/external/trunk-example.xml",
            trunk.replace("sip.trunk.example", f"127.0.0.1:{trunk_port}"),
        )
        settings = (FS_DIR / "sip_profiles/agent-profile-settings.xml").read_text()
        problems = fs.reloadxml()
        for profile in ("external", "internal"):
            fs.merge_profile_settings(profile, settings)
            problems += fs.restart_profile(profile)
        assert problems == []

        # the gateway registers with the credentials from vars.xml
        end = loop.time() + 15
        while "REGED" not in (status := await esl.api("sofia status gateway trunk-example")):
            assert loop.time() < end, f"{status}\n{registrar.registers}"
            await asyncio.sleep(0.1)
        assert registrar.registers
        assert "acme-trunk" in registrar.registers[-1]

        # extension 100 of the transfer targets runs: it bridges user/1000, not registered
        out = await esl.bgapi("originate loopback/100/public &park", timeout=15)
        assert "USER_NOT_REGISTERED" in out, out
    finally:
        transport.close()
