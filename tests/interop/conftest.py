"""Fixtures that run real SIP peers on 127.0.0.1: baresip (caller / answerer) and Kamailio.

The recipes come from tests/peers (or ``W3SIPAGENT_PEERS``): each instance gets a copy of its
folder in a temporary directory, with ``@WORKDIR@``, the SIP / control / RTP ports and the
recording folder (``snd_path``, one per instance) replaced. Every test here is marked
``interop`` and skips with a clear reason when a binary (baresip, kamailio, espeak-ng, sox)
is missing; missing recipes are a failure.

Only 127.0.0.1 is used; ports are picked free at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ports import free_port, rtp_block  # below the ephemeral range (tests/ports.py)

ROOT = Path(__file__).resolve().parents[2]


PEERS = Path(os.environ.get("W3SIPAGENT_PEERS") or ROOT / "tests" / "peers")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.interop)


def need(*binaries: str) -> None:
    """Skip the test unless every binary is on PATH; missing recipes are a failure."""
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"interop: {', '.join(missing)} not installed (apt-get install baresip-core "
                    "kamailio espeak-ng sox, see tests/peers/README.md)")  # fmt: skip
    if not (PEERS / "baresip-caller" / "config").is_file():
        pytest.fail(f"interop: peer recipes not found in {PEERS} (tests/peers or W3SIPAGENT_PEERS)")


# ----------------------------------------------------------------- speech


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken sentence (espeak-ng), 8 kHz mono s16, 0.3 s lead-in, padded to ~6 s."""
    need("espeak-ng", "sox")
    d = tmp_path_factory.mktemp("speech")
    raw = d / "raw.wav"
    out = d / "speech8k_pad.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(raw),
         "Hello, I would like to book a table for two tonight."],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    subprocess.run(
        ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out),
         "pad", "0.3", "3"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return out


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float samples (first channel) and the sample rate of a 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        data = w.readframes(w.getnframes())
    assert width == 2, f"{path}: {width * 8}-bit WAV"
    samples = np.frombuffer(data, dtype="<i2").astype(np.float64)
    if ch > 1:
        samples = samples.reshape(-1, ch)[:, 0]
    return samples, rate


def rms_db(samples: np.ndarray) -> float:
    """RMS level in dBFS (16-bit full scale); -120 for silence."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples))))
    return 20.0 * float(np.log10(max(rms, 1e-3) / 32768.0))


def resample_to(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear-interpolation resampling (enough for envelope comparisons)."""
    if rate == target or samples.size == 0:
        return samples
    n = int(samples.size * target / rate)
    out: np.ndarray = np.interp(
        np.linspace(0, samples.size - 1, n), np.arange(samples.size), samples
    )
    return out


def envelope(samples: np.ndarray, rate: int, window_s: float = 0.02) -> np.ndarray:
    """RMS per window (20 ms) of a signal."""
    n = max(1, int(rate * window_s))
    usable = samples[: samples.size // n * n]
    if usable.size == 0:
        return np.zeros(0)
    env: np.ndarray = np.sqrt(np.mean(np.square(usable.reshape(-1, n)), axis=1))
    return env


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Highest normalised correlation of two envelopes over lags 0..max_lag (b later than a)."""
    best, best_lag = -1.0, 0
    for lag in range(0, max_lag + 1):
        x = a[: max(0, min(a.size, b.size - lag))]
        y = b[lag : lag + x.size]
        if x.size < 10 or float(np.std(x)) == 0.0 or float(np.std(y)) == 0.0:
            continue
        c = float(np.corrcoef(x, y)[0, 1])
        if c > best:
            best, best_lag = c, lag
    return best, best_lag


# ----------------------------------------------------------------- baresip


class BaresipCtrl:
    """A ctrl_tcp client: netstring-framed JSON commands, responses and events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._responses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._token = 0
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        buf = b""
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                return
            buf += chunk
            while b":" in buf:
                n, _, rest = buf.partition(b":")
                if not n.isdigit() or len(rest) < int(n) + 1:
                    break
                msg = json.loads(rest[: int(n)].decode("utf-8", "replace"))
                buf = rest[int(n) + 1 :]
                if msg.get("event"):
                    self.events.append(msg)
                    self._changed.set()
                elif msg.get("response"):
                    fut = self._responses.pop(str(msg.get("token")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)

    async def command(self, cmd: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run a command (``dial``, ``hangup``, ``sndcode``, ``accept``...) and return its response."""
        self._token += 1
        token = str(self._token)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = fut
        msg = json.dumps({"command": cmd, "params": params, "token": token}).encode()
        self.writer.write(b"%d:%s," % (len(msg), msg))
        await self.writer.drain()
        return await asyncio.wait_for(fut, timeout)

    async def wait_event(
        self, kind: str, timeout: float = 10.0, *, since: int = 0
    ) -> dict[str, Any]:
        """The first event of type ``kind`` (``CALL_ESTABLISHED``...) at index >= ``since``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for ev in self.events[since:]:
                if ev.get("type") == kind:
                    return ev
            remaining = end - loop.time()
            if remaining <= 0:
                kinds = [e.get("type") for e in self.events]
                raise TimeoutError(f"baresip: no {kind} within {timeout} s (events: {kinds})")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def types(self) -> list[str]:
        """Event types seen so far."""
        return [str(e.get("type")) for e in self.events]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@dataclass
class Baresip:
    """A running baresip process and its control connection."""

    name: str
    directory: Path
    sip_port: int
    ctrl_port: int
    rec_dir: Path
    proc: asyncio.subprocess.Process
    ctrl: BaresipCtrl
    log_path: Path

    @property
    def uri(self) -> str:
        """The SIP URI that reaches this instance directly."""
        user = "tester" if "caller" in self.name else "answer"
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    def recordings(self) -> tuple[Path | None, Path | None]:
        """(sent ``-enc.wav``, received ``-dec.wav``) of the latest call, if any."""
        enc = sorted(self.rec_dir.glob("dump-*-enc.wav"))
        dec = sorted(self.rec_dir.glob("dump-*-dec.wav"))
        return (enc[-1] if enc else None, dec[-1] if dec else None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _set_key(config: str, key: str, value: str) -> str:
    pattern = re.compile(rf"^{re.escape(key)}\s+.*$", re.MULTILINE)
    if pattern.search(config):
        return pattern.sub(f"{key}\t\t{value}", config)
    return config + f"\n{key}\t\t{value}\n"


BaresipFactory = Callable[..., Awaitable[Baresip]]


@pytest.fixture
async def baresip(tmp_path: Path, speech_wav: Path) -> AsyncIterator[BaresipFactory]:
    """``await baresip("baresip-caller" | "baresip-answer", codecs=..., answermode=...)``."""
    need("baresip")
    started: list[Baresip] = []

    async def start(
        recipe: str = "baresip-caller",
        *,
        codecs: str | None = None,
        answermode: str | None = None,
        name: str | None = None,
        extra_account: str = "",
    ) -> Baresip:
        name = name or f"{recipe}-{len(started)}"
        d = tmp_path / name
        shutil.copytree(PEERS / recipe, d / "conf")
        shutil.copy(speech_wav, d / "speech8k_pad.wav")
        rec = d / "rec"
        rec.mkdir()
        sip_port, ctrl_port = free_port(), free_port()
        lo, hi = rtp_block()
        cfg = (d / "conf" / "config").read_text().replace("@WORKDIR@", str(d))
        cfg = _set_key(cfg, "sip_listen", f"127.0.0.1:{sip_port}")
        cfg = _set_key(cfg, "ctrl_tcp_listen", f"127.0.0.1:{ctrl_port}")
        cfg = _set_key(cfg, "rtp_ports", f"{lo}-{hi}")
        cfg = _set_key(cfg, "snd_path", str(rec))
        cfg = _set_key(cfg, "audio_source", f"aufile,{d / 'speech8k_pad.wav'}")
        (d / "conf" / "config").write_text(cfg)
        user = "tester" if "caller" in recipe else "answer"
        acct = f"<sip:{user}@127.0.0.1>;regint=0"
        if codecs:
            acct += f";audio_codecs={codecs}"
        mode = answermode or ("auto" if "answer" in recipe else None)
        if mode:
            acct += f";answermode={mode}"
        (d / "conf" / "accounts").write_text(acct + extra_account + "\n")
        log_path = d / "baresip.log"
        logf = open(log_path, "wb")  # noqa: SIM115 - owned by the process
        proc = await asyncio.create_subprocess_exec(
            "baresip", "-f", str(d / "conf"),
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        logf.close()
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while True:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", ctrl_port)
                break
            except OSError:
                if proc.returncode is not None or loop.time() > end:
                    raise RuntimeError(
                        f"baresip {name} did not start: {log_path.read_text(errors='replace')}"
                    ) from None
                await asyncio.sleep(0.05)
        inst = Baresip(name, d, sip_port, ctrl_port, rec, proc, BaresipCtrl(r, w), log_path)
        started.append(inst)
        return inst

    yield start
    for inst in started:
        with contextlib.suppress(Exception):
            await inst.ctrl.command("quit", timeout=1.0)
        await inst.ctrl.close()
        await _stop(inst.proc)


async def _stop(proc: asyncio.subprocess.Process, grace: float = 2.0) -> None:
    """Terminate a process we started (its own session) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    else:
        # children of the session (kamailio's workers) may outlive the leader
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


# ----------------------------------------------------------------- kamailio


@dataclass
class Kamailio:
    """A running Kamailio (registrar + dispatcher) on 127.0.0.1."""

    port: int
    rundir: Path
    proc: asyncio.subprocess.Process
    log_path: Path
    agents: tuple[int, ...] = field(default_factory=tuple)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kamcmd(self, *args: str) -> str:
        """Run kamcmd against this instance's control socket."""
        out = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.rundir / 'kam' / 'kamailio_ctl'}", *args],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return out.stdout + out.stderr


KamailioFactory = Callable[..., Awaitable[Kamailio]]


@pytest.fixture
async def kamailio(tmp_path: Path) -> AsyncIterator[KamailioFactory]:
    """``await kamailio(agents=(port1, port2), ping_interval=1)``: a started Kamailio."""
    need("kamailio", "kamcmd")
    started: list[Kamailio] = []

    async def start(agents: tuple[int, ...] = (), ping_interval: int = 1) -> Kamailio:
        d = tmp_path / f"kamailio-{len(started)}"
        (d / "kam").mkdir(parents=True)
        port = free_port()
        cfg = (PEERS / "kamailio" / "kamailio.cfg").read_text().replace("@WORKDIR@", str(d))
        cfg = cfg.replace("127.0.0.1:25060", f"127.0.0.1:{port}")
        cfg = re.sub(r'"ds_ping_interval", \d+', f'"ds_ping_interval", {ping_interval}', cfg)
        cfg = cfg.replace("children=2", "children=1")
        (d / "kamailio.cfg").write_text(cfg)
        lines = [f"1 sip:127.0.0.1:{p} 0 0" for p in agents] or ["1 sip:127.0.0.1:9 0 0"]
        (d / "dispatcher.list").write_text(
            "# setid destination flags priority\n" + "\n".join(lines) + "\n"
        )
        log_path = d / "kamailio.log"
        logf = open(log_path, "wb")  # noqa: SIM115 - owned by the process
        proc = await asyncio.create_subprocess_exec(
            "kamailio", "-f", str(d / "kamailio.cfg"), "-DD", "-E", "-Y", str(d / "kam"),
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        logf.close()
        inst = Kamailio(port, d, proc, log_path, agents)
        started.append(inst)
        await _wait_sip(port, proc, log_path)
        return inst

    yield start
    for inst in started:
        await _stop(inst.proc, grace=3.0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(inst.proc.pid, signal.SIGKILL)


async def _wait_sip(port: int, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    """Wait until something answers an OPTIONS on 127.0.0.1:port (UDP)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    me = sock.getsockname()[1]
    try:
        n = 0
        while True:
            n += 1
            msg = (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKprobe{n};rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n"
                f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{me}\r\nCSeq: {n} OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(msg.encode(), ("127.0.0.1", port))
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.2)
                if data.startswith(b"SIP/2.0 "):
                    return
            except TimeoutError:
                pass
            if proc.returncode is not None or loop.time() > end:
                raise RuntimeError(
                    f"kamailio did not start: {log_path.read_text(errors='replace')[-3000:]}"
                )
    finally:
        sock.close()


@pytest.fixture
def interop_log(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines a test wants printed (measured outcomes) when run with -s / on failure."""
    lines: list[str] = []
    yield lines
    if lines:
        print(f"\n[{request.node.name}]\n  " + "\n  ".join(lines))
