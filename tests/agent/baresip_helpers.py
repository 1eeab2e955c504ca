"""Run baresip (Debian's baresip-core) as a real SIP peer on 127.0.0.1 for agent tests.

The recipes are the peer folders in tests/peers (``baresip-*``, see their
README): a folder is copied to a temporary directory, ``@WORKDIR@`` replaced, and the SIP,
control and RTP ports and the recording folder (``snd_path``) made private to the instance.
Control is baresip's ``ctrl_tcp`` (netstring JSON); events are collected as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import wave
from pathlib import Path
from typing import Any

from tests.ports import free_port, rtp_block

PEERS = Path(os.environ.get("W3SIPAGENT_PEERS") or Path(__file__).parents[1] / "peers")
BARESIP = shutil.which("baresip")


def missing() -> str | None:
    """Why baresip peers cannot run here, or None."""
    if BARESIP is None:
        return "baresip is not installed (apt-get install baresip-core)"
    if not (PEERS / "baresip-caller" / "config").is_file():
        return f"no baresip peer recipes in {PEERS}"
    return None


def write_wav(path: Path, pcm: bytes, rate: int = 8000) -> Path:
    """A mono 16-bit WAV (baresip's aufile source)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


class Baresip:
    """One baresip process from recipe ``kind`` (``baresip-caller``, ``baresip-answer``).

    ``account``: the account line (None keeps the recipe's); ``config``: extra or
    replaced config keys (``{"call_max_calls": "0"}``); ``wav``: the microphone.
    """

    def __init__(
        self,
        kind: str,
        workdir: Path,
        *,
        account: str | None = None,
        wav: Path | None = None,
        config: dict[str, str] | None = None,
        rtp_base: int | None = None,
    ) -> None:
        self.dir = workdir / kind
        self.sip_port = free_port()
        self.ctrl_port = free_port()
        self.rec_dir = self.dir / "rec"
        self.rec_dir.mkdir(parents=True)
        text = (PEERS / kind / "config").read_text().replace("@WORKDIR@", str(workdir))
        values = {
            "sip_listen": f"127.0.0.1:{self.sip_port}",
            "ctrl_tcp_listen": f"127.0.0.1:{self.ctrl_port}",
            "rtp_ports": "{}-{}".format(*rtp_block(100))
            if rtp_base is None
            else f"{rtp_base}-{rtp_base + 98}",
            "snd_path": str(self.rec_dir),
            **({"audio_source": f"aufile,{wav}"} if wav is not None else {}),
            **(config or {}),
        }
        for key, value in values.items():
            line = f"{key}\t\t{value}"
            text, n = re.subn(rf"^{key}\s.*$", line, text, flags=re.MULTILINE)
            if n == 0:
                text += f"\n{line}\n"
        (self.dir / "config").write_text(text)
        shutil.copy(PEERS / kind / "contacts", self.dir / "contacts")
        acc = account if account is not None else (PEERS / kind / "accounts").read_text()
        (self.dir / "accounts").write_text(acc.strip() + "\n")
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._token = 0

    @property
    def uri_host(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    async def start(self, timeout: float = 5.0) -> None:
        """Start the process and connect to its control port."""
        self.proc = await asyncio.create_subprocess_exec(
            str(BARESIP),
            "-f",
            str(self.dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.ctrl_port
                )
                break
            except OSError:
                if loop.time() > end or self.proc.returncode is not None:
                    raise RuntimeError(f"baresip in {self.dir} did not start") from None
                await asyncio.sleep(0.05)
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            head = await self._reader.readuntil(b":")
            body = await self._reader.readexactly(int(head[:-1]) + 1)
            msg = json.loads(body[:-1])
            if msg.get("event"):
                self.events.append(msg)

    def command(self, cmd: str, params: str = "") -> None:
        """Send a ctrl_tcp command (``dial``, ``hangup``, ``quit``...)."""
        assert self._writer is not None
        self._token += 1
        msg = json.dumps({"command": cmd, "params": params, "token": str(self._token)})
        data = msg.encode()
        self._writer.write(b"%d:%s," % (len(data), data))

    def has(self, event_type: str) -> bool:
        return any(e.get("type") == event_type for e in self.events)

    def recordings(self, suffix: str) -> list[Path]:
        """The sndfile dumps (``-dec.wav``: what it received, ``-enc.wav``: what it sent)."""
        return sorted(self.rec_dir.glob(f"*{suffix}"))

    async def stop(self) -> None:
        """Quit (then terminate) the process; close the control connection."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self.command("quit")
                await self._writer.drain()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 2)
            except TimeoutError:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 2)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
        if self._writer is not None:
            self._writer.close()
