"""`w3sipagent doctor` against local services on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import invoke, write_config
from w3sipagent.cli.doctor import check_realtime, realtime_ws_url, sip_options


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def config(tmp_path: Path, sip_port: int, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f"""
[sip]
listen = "127.0.0.1:{sip_port}"
max_calls = 4
[rtp]
port_min = 41000
port_max = 41019
[metrics]
listen = "127.0.0.1:0"
[records]
database_url = "sqlite+aiosqlite:///doc.db"
{extra}
""",
    )


@pytest.fixture
def options_responder(request: pytest.FixtureRequest) -> Iterator[tuple[int, list[bytes]]]:
    """A UDP peer answering OPTIONS with 200 OK (copying Via/From/To/Call-ID/CSeq).

    Parametrize it indirectly with a number of seconds to have it answer that late.
    """
    delay: float = getattr(request, "param", 0.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            got.append(data)
            lines = data.decode().split("\r\n")
            keep = [
                ln
                for ln in lines
                if ln.split(":", 1)[0] in ("Via", "From", "To", "Call-ID", "CSeq")
            ]
            resp = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
            if delay and stop.wait(delay):
                return
            sock.sendto(resp.encode(), addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield sock.getsockname()[1], got
    stop.set()
    t.join()
    sock.close()


def test_all_ok_with_freeswitch(runner, tmp_path: Path, options_responder) -> None:  # type: ignore[no-untyped-def]
    port, got = options_responder
    cfg = config(tmp_path, free_port())
    result = invoke(
        runner, "doctor", "-c", str(cfg), "--freeswitch", f"127.0.0.1:{port}", "--timeout", "2"
    )
    assert result.exit_code == 0, result.output
    assert "200 OK" in result.output
    assert len(got) == 1
    req = got[0].decode()
    assert req.startswith(f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n")
    assert "\r\nCSeq: 1 OPTIONS\r\n" in req
    assert "Realtime API" in result.output and "default URL not contacted" in result.output


def test_sip_port_in_use_fails(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        cfg = config(tmp_path, busy.getsockname()[1])
        result = invoke(runner, "doctor", "-c", str(cfg))
    finally:
        busy.close()
    assert result.exit_code == 1
    assert "in use (udp)" in result.output


def test_freeswitch_silent_fails(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        cfg = config(tmp_path, free_port())
        result = invoke(
            runner,
            "doctor",
            "-c",
            str(cfg),
            "--freeswitch",
            f"127.0.0.1:{silent.getsockname()[1]}",
            "--timeout",
            "0.3",
        )
    finally:
        silent.close()
    assert result.exit_code == 1
    assert "no answer to OPTIONS" in result.output


def test_bad_config_is_a_failed_check(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, "[sip]\nlisten = 'nowhere'\n")
    result = invoke(runner, "doctor", "-c", str(cfg))
    assert result.exit_code == 1
    # the table wraps the detail where the path's length says (longer under pytest-xdist)
    rows = [line.split("│") for line in result.output.splitlines() if line.count("│") == 5]
    detail = " ".join(row[3].strip() for row in rows)
    assert rows[0][1].strip() == "configuration" and "the port is missing" in detail


def test_realtime_url() -> None:
    assert realtime_ws_url("wss://api.openai.com/v1", "gpt-realtime") == (
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    )
    assert realtime_ws_url("wss://api.openai.com/v1/realtime/", "m") == (
        "wss://api.openai.com/v1/realtime?model=m"
    )
    assert (
        realtime_ws_url("http://127.0.0.1:8765/v1", "m")
        == "ws://127.0.0.1:8765/v1/realtime?model=m"
    )


async def test_realtime_check_against_local_server() -> None:
    from w3sipagent.localai import RealtimeServer

    async with RealtimeServer(port=0, api_keys=["sk-good-key-1"], tts_engine="tone") as srv:
        url = realtime_ws_url(f"ws://127.0.0.1:{srv.port}/v1", "gpt-realtime")
        ok = await check_realtime(url, "sk-good-key-1", 3.0)
        bad = await check_realtime(url, "sk-wrong-key-9", 3.0)
        none = await check_realtime(url, None, 3.0)
    assert ok.status == "ok" and "session.created" in ok.detail
    assert bad.status == "fail" and "refused (invalid_api_key)" in bad.detail
    assert "sk-wrong-key-9" not in bad.detail + bad.fix
    assert none.status == "fail"


def test_doctor_realtime_flag(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from w3sipagent.localai import RealtimeServer

    ready = threading.Event()
    stop = threading.Event()
    port_box: list[int] = []

    def run() -> None:
        async def main() -> None:
            async with RealtimeServer(port=0, tts_engine="tone") as srv:
                port_box.append(srv.port)
                ready.set()
                await asyncio.to_thread(stop.wait)

        asyncio.run(main())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        cfg = config(tmp_path, free_port())
        result = invoke(
            runner,
            "doctor",
            "-c",
            str(cfg),
            "--realtime-url",
            f"ws://127.0.0.1:{port_box[0]}/v1",
            env={"W3SIPAGENT_REALTIME__API_KEY": "sk-local-123"},
        )
    finally:
        stop.set()
        t.join(10)
    assert result.exit_code == 0, result.output
    assert "session.created" in result.output


@pytest.mark.parametrize("options_responder", [0.15], indirect=True)
async def test_sip_options_round_trip(options_responder) -> None:  # type: ignore[no-untyped-def]
    """The round trip is the time from the request to its answer: the peer's 150 ms at least."""
    port, got = options_responder
    t0 = time.monotonic()
    code, reason, ms = await sip_options(("127.0.0.1", port), 2.0)
    elapsed_ms = (time.monotonic() - t0) * 1000
    assert (code, reason) == (200, "OK")
    assert len(got) == 1
    assert 150 <= ms <= elapsed_ms
