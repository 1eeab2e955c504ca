"""A real FreeSWITCH 1.10.12 on 127.0.0.1 for the tests in this package.

The package from ``../shared/peers/freeswitch`` (or ``$W3SIPAGENT_PEERS/freeswitch``) is
installed with its ``install.sh`` and started with ``fsctl.sh`` **once per test session**
(a start costs 3-10 s; a config reset costs a ``reloadxml``). Each test module starts from
the pristine loopback config (``conf.loopback``), copies the files it tests into
``/opt/freeswitch/conf``, applies them (``reloadxml``, ``sofia profile NAME restart``) and
checks that FreeSWITCH logged no error or warning because of them (problem lines minus the
ones the pristine config logs for the same operation). FreeSWITCH is stopped at the end of
the session. Everything skips with a clear reason when the package is missing or we are not
root (installing it and binding its ports needs root), so a lone clone still passes.

Fixed ports (the packaged config): SIP internal 5060 (auth), external 5080 (no auth, context
``public``), event socket 8021 (password ``ClueCon``). Our side uses free ports.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import runner
from tests.interop.conftest import interop_log
from w3sipagent.freeswitch.esl import EslClient

__all__ = ["interop_log", "runner"]

_CORE_DB_BUSY = re.compile(r"switch_core_db\.c:\d+ SQLite is BUSY")
"""FreeSWITCH's warning when its own core database is busy (another FreeSWITCH thread holds
it while the machine is loaded): not a problem of the configuration under test."""

ROOT = Path(__file__).resolve().parents[2]
FS_HOME = Path("/opt/freeswitch")
LOG = FS_HOME / "log" / "freeswitch.log"
ESL_HOST, ESL_PORT, ESL_PASSWORD = "127.0.0.1", 8021, "ClueCon"
INTERNAL_PORT, EXTERNAL_PORT = 5060, 5080
RTP_END = 19999  # FreeSWITCH's RTP: 16384-19999, below tests/ports.py's blocks
DOMAIN = "127.0.0.1"  # the directory domain of the loopback config ($${domain})
USER_PASSWORD = "perfpeer9876"  # default_password of the loopback config (users 1000-1019)

# logged by each stock SIP profile when it starts (its own rtp-*-timeout-sec params)
PROFILE_START_WARNINGS = (
    "[WARNING] sofia.c:5328 rtp-timeout-sec deprecated use media_timeout variable.",
    "[WARNING] sofia.c:5335 rtp-hold-timeout-sec deprecated use media_hold_timeout variable.",
)
PROBLEM = re.compile(r"\[(ERR|WARNING|CRIT|ALERT)\]")


def _peer_dir() -> Path | None:
    env = os.environ.get("W3SIPAGENT_PEERS")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "peers"]:
        if (cand / "freeswitch" / "install.sh").is_file():
            return cand / "freeswitch"
    return None


PEER = _peer_dir()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents and "test_esl_parser" not in item.nodeid:
            item.add_marker(pytest.mark.interop)


def _problems(text: str) -> list[str]:
    """Error/warning lines, without their timestamp and CPU columns."""
    out = []
    for line in text.splitlines():
        m = PROBLEM.search(line)
        if m:
            out.append(line[m.start() :])
    return out


class FreeSwitch:
    """The running FreeSWITCH: its CLI, its log, its config directory."""

    def __init__(self, peer: Path) -> None:
        self.peer = peer
        self.conf = FS_HOME / "conf"
        self.baseline: dict[str, collections.Counter[str]] = {}
        self._dirty_profiles: set[str] = set()

    # --------------------------------------------------------------- control

    def ctl(self, *args: str, timeout: float = 60) -> str:
        out = subprocess.run(
            ["bash", str(self.peer / "fsctl.sh"), *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(
                f"fsctl.sh {' '.join(args)}: {out.returncode}\n{out.stdout}{out.stderr}"
            )
        return out.stdout

    def cli(self, command: str) -> str:
        """``fs_cli -x COMMAND`` (synchronous; tests use :class:`EslClient`)."""
        return self.ctl("cli", command, timeout=20)

    def running(self) -> bool:
        return subprocess.run(
            ["bash", str(self.peer / "fsctl.sh"), "status"], capture_output=True, timeout=20
        ).returncode == 0  # fmt: skip

    # --------------------------------------------------------------- log

    def mark(self) -> int:
        return LOG.stat().st_size if LOG.exists() else 0

    def log_since(self, mark: int) -> str:
        with LOG.open("rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace")

    def wait_log(self, mark: int, pattern: str, timeout: float = 15) -> str:
        end = time.monotonic() + timeout
        while True:
            text = self.log_since(mark)
            if re.search(pattern, text):
                return text
            if time.monotonic() > end:
                raise AssertionError(f"FreeSWITCH log: no {pattern!r} within {timeout} s")
            time.sleep(0.05)

    def new_problems(self, mark: int, operation: str) -> list[str]:
        """Problem lines logged since ``mark`` that the pristine config does not log too."""
        left = collections.Counter(self.baseline.get(operation, collections.Counter()))
        out = []
        for line in _problems(self.log_since(mark)):
            if _CORE_DB_BUSY.search(line):
                continue  # FreeSWITCH's own core database busy under load: not our config
            if left[line] > 0:
                left[line] -= 1
            else:
                out.append(line)
        return out

    # --------------------------------------------------------------- config

    def reset_conf(self) -> None:
        """The pristine loopback config, applied (profiles changed since are restarted)."""
        shutil.rmtree(self.conf)
        shutil.copytree(FS_HOME / "conf.loopback", self.conf, symlinks=True)
        self.suite_settings()
        self.reloadxml()
        for name in sorted(self._dirty_profiles):
            self.restart_profile(name)
        self._dirty_profiles.clear()

    def suite_settings(self) -> None:
        """The suite's one change to the loopback config: FreeSWITCH's RTP ports below the
        blocks of the suite's port plan (tests/ports.py); read at start only."""
        switch = self.conf / "autoload_configs" / "switch.conf.xml"
        switch.write_text(
            switch.read_text().replace(
                '<param name="rtp-end-port" value="32768"/>',
                f'<param name="rtp-end-port" value="{RTP_END}"/>',
            )
        )

    def put(self, rel: str, text: str) -> Path:
        """Write ``text`` to ``conf/REL``."""
        path = self.conf / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def reloadxml(self) -> list[str]:
        """``reloadxml``; the problems it logged beyond the pristine config's."""
        mark = self.mark()
        out = self.cli("reloadxml")
        assert "+OK" in out, out
        self.wait_log(mark, r"Timezone reloaded")
        return self.new_problems(mark, "reloadxml")

    def restart_profile(self, name: str) -> list[str]:
        """``sofia profile NAME restart`` and wait until it runs again; its new problems."""
        self._dirty_profiles.add(name)
        while True:
            mark = self.mark()
            out = self.cli(f"sofia profile {name} restart")
            wait = re.search(r"Please wait (\d+) seconds", out)
            if not wait:
                break
            time.sleep(int(wait[1]) + 0.5)  # "must be up for at least 10 seconds"
        self.wait_log(mark, rf"Started Profile {re.escape(name)}\b")
        end = time.monotonic() + 15
        while not re.search(
            rf"^\s*{re.escape(name)}\s+profile\s.*RUNNING", self.cli("sofia status"), re.M
        ):
            assert time.monotonic() < end, f"profile {name} not running again"
            time.sleep(0.1)
        return self.new_problems(mark, "restart")

    def merge_profile_settings(self, profile: str, settings_xml: str) -> bool:
        """Set each ``<param>`` of ``settings_xml`` in ``sip_profiles/PROFILE.xml``'s settings;
        whether the file changed (then the profile needs a restart)."""
        path = self.conf / "sip_profiles" / f"{profile}.xml"
        text = path.read_text()
        for name, value in re.findall(r'<param name="([^"]+)" value="([^"]*)"/>', settings_xml):
            line = f'<param name="{name}" value="{value}"/>'
            pattern = re.compile(rf'<param name="{re.escape(name)}" value="[^"]*"/>')
            if pattern.search(text):
                text = pattern.sub(line, text)
            else:
                text = text.replace("</settings>", f"    {line}\n  </settings>", 1)
        changed = text != path.read_text()
        path.write_text(text)
        return changed


@pytest.fixture(scope="session")
def freeswitch_session() -> Iterator[FreeSwitch]:
    """Installed and started once; stopped at the end of the session."""
    if PEER is None:
        pytest.skip("freeswitch: ../shared/peers/freeswitch not found (or W3SIPAGENT_PEERS)")
    if os.geteuid() != 0:
        pytest.skip("freeswitch: installing and starting it needs root (see its README)")
    fs = FreeSwitch(PEER)
    out = subprocess.run(
        ["bash", str(PEER / "install.sh")], capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        pytest.skip(f"freeswitch: install.sh failed ({out.returncode}): {out.stderr[-500:]}")
    if fs.running():
        fs.ctl("stop")  # a leftover of an earlier run: start from a known config
    fs.ctl("reset-config")
    fs.suite_settings()
    start_mark = fs.mark()
    fs.ctl("start")
    try:
        started = fs.log_since(start_mark)
        # the pristine profiles log these on every (re)start; the start just did
        for line in PROFILE_START_WARNINGS:
            assert line in started, line
        fs.baseline["restart"] = collections.Counter(PROFILE_START_WARNINGS)
        mark = fs.mark()
        fs.cli("reloadxml")
        fs.wait_log(mark, r"Timezone reloaded")
        fs.baseline["reloadxml"] = collections.Counter(_problems(fs.log_since(mark)))
        yield fs
    finally:
        fs.ctl("stop")


@pytest.fixture(scope="module")
def freeswitch(freeswitch_session: FreeSwitch) -> FreeSwitch:
    """The session's FreeSWITCH with the pristine config (reset at the start of each module)."""
    freeswitch_session.reset_conf()
    return freeswitch_session


@pytest.fixture
async def esl(freeswitch: FreeSwitch) -> AsyncIterator[EslClient]:
    """An event-socket connection (subscribed to the CHANNEL_* events)."""
    client = EslClient(
        ESL_HOST,
        ESL_PORT,
        ESL_PASSWORD,
        events=[
            "CHANNEL_CREATE",
            "CHANNEL_ANSWER",
            "CHANNEL_BRIDGE",
            "CHANNEL_EXECUTE",
            "CHANNEL_HANGUP_COMPLETE",
        ],
    )
    await client.connect()
    yield client
    await client.api("hupall NORMAL_CLEARING")
    await client.close()
