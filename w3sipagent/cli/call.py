"""``w3sipagent call URI``: a softphone for testing a deployment.

It plays a WAV (or silence), records what it hears to a WAV, sends DTMF, hangs up after N
seconds or when the far end does, and prints a summary: codec, packets, loss, jitter, time
to first agent audio. :func:`place_call` is the same softphone as a coroutine (the demo and
the load benchmark use it). The command and the coroutine stay in one file (just over 500
lines): they share the call summary and its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from w3sipagent.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    cli_errors,
    console,
    err_console,
    fail,
    hostport_flag,
    port_range_flag,
    run_async,
)
from w3sipagent.config import parse_hostport

CODEC_SPECS = {
    "PCMU": "PCMU/8000",
    "PCMA": "PCMA/8000",
    "G722": "G722/8000",
    "opus": "opus/48000/2",
}
RECORD_RATE = 8000
"""Recordings are written at 8 kHz mono (what a phone line carries)."""


class Codec(StrEnum):
    PCMU = "PCMU"
    PCMA = "PCMA"
    G722 = "G722"
    opus = "opus"


@dataclass
class CallSummary:
    """What one softphone call did."""

    uri: str
    answered: bool = False
    status: int | None = None
    reason: str = ""
    codec: str | None = None
    setup_ms: float | None = None
    duration_s: float = 0.0
    first_audio_ms: float | None = None
    """Answer → first inbound frame above the speech level (the agent's greeting)."""
    packets_sent: int = 0
    packets_received: int = 0
    lost: int = 0
    jitter_ms: float = 0.0
    ended_by: str = ""
    end_reason: str = ""
    recording: Path | None = None
    heard_speech_s: float = 0.0
    """Seconds of inbound audio above the speech level."""
    call_id: str = ""
    dtmf_sent: str = ""
    transferred_to: str | None = None
    """The Refer-To of a REFER the far end sent (with ``accept_refer``)."""
    turns_spoken: int = 0
    stats: dict[str, object] = field(default_factory=dict)

    @property
    def loss_pct(self) -> float:
        """Inbound packet loss in percent."""
        total = self.packets_received + self.lost
        return 100.0 * self.lost / total if total else 0.0


def read_wav_pcm(path: Path, rate: int) -> bytes:
    """A WAV file (16-bit PCM, mono or stereo, any rate) as mono PCM16 at ``rate``."""
    from w3sipagent.codecs.resample import Resampler

    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
            channels, src_rate = w.getnchannels(), w.getframerate()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{path}: not a PCM WAV file ({e})") from None
    if channels == 2:
        import numpy as np

        a = np.frombuffer(data, dtype="<i2").reshape(-1, 2).astype(np.int32)
        data = ((a[:, 0] + a[:, 1]) // 2).astype("<i2").tobytes()
    elif channels != 1:
        raise ValueError(f"{path}: {channels} channels; use mono or stereo")
    if src_rate != rate:
        data = Resampler(src_rate, rate).process(data)
    return data


def level_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 in dBFS (-120 for silence)."""
    import numpy as np

    n = len(pcm) // 2
    if n == 0:
        return -120.0
    a = np.frombuffer(pcm[: 2 * n], dtype="<i2").astype(np.float64)
    rms = math.sqrt(float(np.dot(a, a)) / n)
    return 20 * math.log10(rms / 32768.0) if rms > 0 else -120.0


def local_address_towards(host: str) -> str:
    """The local IP the kernel would use to reach ``host`` (no packet is sent)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.connect((host, 9))
        return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1" if fam == socket.AF_INET else "::1"
    finally:
        s.close()


Progress = Callable[[str], None]


async def place_call(
    uri: str,
    *,
    proxy: tuple[str, int] | None = None,
    codec: str = "PCMU",
    play: bytes | Path | None = None,
    record: Path | None = None,
    dtmf: str = "",
    dtmf_after: float = 3.0,
    duration: float = 30.0,
    answer_timeout: float = 30.0,
    bind_host: str | None = None,
    rtp_ports: tuple[int, int] = (40000, 40999),
    speech_dbfs: float = -45.0,
    from_uri: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    turns: list[bytes] | None = None,
    turn_gap: float = 0.8,
    turn_timeout: float = 20.0,
    interrupt: dict[int, float] | None = None,
    accept_refer: bool = False,
    progress: Progress | None = None,
    hang_up_on: asyncio.Event | None = None,
) -> CallSummary:
    """Place one call, play/record, and return its :class:`CallSummary`.

    ``play``: PCM16 at 8 kHz (bytes) or a WAV path, started at answer; ``duration``: hang
    up this many seconds after the answer unless the far end hangs up first.

    ``hang_up_on``: hang up as soon as this event is set (still at ``duration`` at the latest).

    ``turns`` (PCM16 at 8 kHz each) makes a conversation instead: each one is spoken once
    the far end spoke and then stayed quiet for ``turn_gap`` seconds (or after
    ``turn_timeout``); a turn ``i`` in ``interrupt`` is said over the far end instead,
    that many seconds after it started speaking (a barge-in). ``accept_refer``: answer a REFER 202 and report the transfer as
    done (NOTIFY 100 then 200, like a PBX with confirm-blind-transfer), else decline it.
    """
    from w3sipagent.asyncio.useragent import (
        CallRejected,
        DialTimeout,
        UserAgent,
        UserAgentConfig,
    )

    say = progress or (lambda _msg: None)
    target_host = proxy[0] if proxy else _uri_host(uri)
    host = bind_host or local_address_towards(target_host)
    allowed = ("127.0.0.0/8", "::1/128", target_host if ":" not in target_host else "::1/128")
    config = UserAgentConfig(
        host=host,
        port=0,
        transports=("udp",),
        rtp_port_min=rtp_ports[0],
        rtp_port_max=rtp_ports[1],
        codecs=(CODEC_SPECS[codec],),
        allowed_sources=tuple(dict.fromkeys(allowed)),
        user_agent="w3sipagent-softphone",
        contact_user="softphone",
    )
    summary = CallSummary(uri=uri)
    ua = UserAgent(config)
    if accept_refer:
        ua.on_request("REFER", _refer_acceptor(ua, summary, say))
    await ua.start()
    try:
        say(f"calling {uri}" + (f" via {proxy[0]}:{proxy[1]}" if proxy else "") + f" ({codec})")
        start = time.monotonic()
        try:
            call = await ua.dial(
                uri, proxy=proxy, timeout=answer_timeout, from_uri=from_uri, headers=headers
            )
        except CallRejected as e:
            summary.status, summary.reason = e.status, e.reason
            say(f"rejected: {e.status} {e.reason}")
            return summary
        except DialTimeout:
            summary.reason = f"no answer within {answer_timeout:g} s"
            say(summary.reason)
            return summary
        answered = time.monotonic()
        summary.answered, summary.status = True, 200
        summary.call_id = call.call_id
        summary.setup_ms = (answered - start) * 1000
        summary.codec = call.media.encoding
        say(f"answered in {summary.setup_ms:.0f} ms, codec {summary.codec}")
        rate = RECORD_RATE
        pcm_out = read_wav_pcm(play, call.sample_rate) if isinstance(play, Path) else None
        if isinstance(play, bytes):
            pcm_out = _resample(play, RECORD_RATE, call.sample_rate)
        heard: list[bytes] = []
        far = {"spoke": False, "last_loud": 0.0, "first_loud": 0.0}

        async def listen() -> None:
            async for frame in call.audio(sample_rate=rate):
                heard.append(frame)
                if level_dbfs(frame) > speech_dbfs:
                    if not far["spoke"]:
                        far["first_loud"] = time.monotonic()
                    far["spoke"], far["last_loud"] = True, time.monotonic()
                    summary.heard_speech_s += len(frame) / 2 / rate
                    if summary.first_audio_ms is None:
                        summary.first_audio_ms = (time.monotonic() - answered) * 1000
                        say(f"first agent audio after {summary.first_audio_ms:.0f} ms")

        async def far_end_done() -> None:
            deadline = time.monotonic() + turn_timeout
            while time.monotonic() < deadline:
                if far["spoke"] and time.monotonic() - float(far["last_loud"]) >= turn_gap:
                    return
                await asyncio.sleep(0.05)

        async def far_end_speaking(seconds: float) -> None:
            deadline = time.monotonic() + turn_timeout
            while time.monotonic() < deadline:
                if far["spoke"] and time.monotonic() - float(far["first_loud"]) >= seconds:
                    return
                await asyncio.sleep(0.02)

        async def talk() -> None:
            if pcm_out:
                await call.play(pcm_out)
            for i, utterance in enumerate(turns or []):
                over = (interrupt or {}).get(i)
                await (far_end_done() if over is None else far_end_speaking(over))
                far["spoke"] = False
                say(f"caller speaks turn {i + 1}" + (" over the agent" if over else ""))
                await call.play(_resample(utterance, RECORD_RATE, call.sample_rate))
                summary.turns_spoken = i + 1

        async def keys() -> None:
            if dtmf:
                await asyncio.sleep(dtmf_after)
                say(f"sending DTMF {dtmf}")
                await call.send_dtmf(dtmf)
                summary.dtmf_sent = dtmf

        tasks = [asyncio.create_task(t()) for t in (listen, talk, keys)]
        ended = asyncio.ensure_future(call.wait_ended())
        waits: set[asyncio.Future[Any]] = {ended}
        if hang_up_on is not None:
            waits.add(asyncio.ensure_future(hang_up_on.wait()))
        done, _ = await asyncio.wait(waits, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        for other in waits - {ended}:
            other.cancel()
        if ended in done:
            end = ended.result()
            summary.ended_by, summary.end_reason = "far end", end.reason
            say(f"far end hung up ({end.reason})")
        else:
            ended.cancel()
            asked = hang_up_on is not None and hang_up_on.is_set()
            summary.ended_by = "us"
            summary.end_reason = "asked to hang up" if asked else "duration reached"
            say("hanging up" if asked else f"hanging up after {duration:g} s")
            await call.hangup()
        summary.duration_s = time.monotonic() - answered
        stats = call.stats()
        summary.stats = stats
        summary.packets_sent = int(_num(stats, "packets_sent"))
        summary.packets_received = int(_num(stats, "packets_received"))
        summary.lost = int(_num(stats, "lost"))
        summary.jitter_ms = float(_num(stats, "jitter_ms"))
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            with wave.open(str(record), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(b"".join(heard))
            summary.recording = record
        return summary
    finally:
        await ua.close(drain=False)


def _refer_acceptor(ua: object, summary: CallSummary, say: Progress) -> Callable[[Any, Any], int]:
    """A REFER handler: 202, then NOTIFY 100 Trying and, a moment later, 200 OK."""
    from w3sipagent.asyncio.useragent import UserAgent

    assert isinstance(ua, UserAgent)

    async def notify(call: object, cseq: str, frag: bytes, state: str) -> None:
        from w3sipagent.asyncio.call import Call

        assert isinstance(call, Call)
        with contextlib.suppress(Exception):
            await ua.request_in_dialog(
                call,
                "NOTIFY",
                headers=[("Event", f"refer;id={cseq}"), ("Subscription-State", state)],
                body=frag,
                content_type="message/sipfrag;version=2.0",
            )

    async def complete(call: object, cseq: str) -> None:
        await notify(call, cseq, b"SIP/2.0 100 Trying\r\n", "active;expires=60")
        await asyncio.sleep(0.5)
        await notify(call, cseq, b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
        await asyncio.sleep(0.2)
        with contextlib.suppress(Exception):
            await call.hangup("transferred")  # type: ignore[attr-defined]

    tasks: set[asyncio.Task[None]] = set()

    def handler(call: object, request: object) -> int:
        from w3sipagent.sip.message import SipRequest

        if call is None or not isinstance(request, SipRequest):
            return 481
        summary.transferred_to = (request.headers.get("Refer-To") or "").strip("<> ")
        cseq = (request.headers.get("CSeq") or "1").split()[0]
        say(f"far end transfers us to {summary.transferred_to}")
        task = ua.spawn(complete(call, cseq))  # ends with the user agent at the latest
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return 202

    return handler


def _resample(pcm: bytes, src: int, dst: int) -> bytes:
    if src == dst:
        return pcm
    from w3sipagent.codecs.resample import Resampler

    return Resampler(src, dst).process(pcm)


def _num(stats: dict[str, object], key: str) -> float:
    v = stats.get(key)
    return float(v) if isinstance(v, int | float) else 0.0


def _uri_host(uri: str) -> str:
    from w3sipagent.sip.uri import SipUri

    try:
        host = SipUri.parse(uri).host
    except ValueError as e:
        fail(f"not a SIP URI: {uri!r} ({e})", code=EXIT_USAGE)
    return host.strip("[]")


def summary_table(s: CallSummary) -> Table:
    """The summary as a two-column table."""
    t = Table(title="call summary", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    rows = [
        ("URI", s.uri),
        (
            "result",
            f"answered ({s.codec})" if s.answered else f"not answered: {s.status or ''} {s.reason}",
        ),
    ]
    if s.answered:
        rows += [
            ("set-up", f"{s.setup_ms:.0f} ms"),
            ("duration", f"{s.duration_s:.1f} s, ended by {s.ended_by} ({s.end_reason})"),
            (
                "first agent audio",
                "none heard"
                if s.first_audio_ms is None
                else f"{s.first_audio_ms:.0f} ms after answer",
            ),
            ("speech heard", f"{s.heard_speech_s:.1f} s"),
            ("packets", f"sent {s.packets_sent}, received {s.packets_received}"),
            ("loss", f"{s.lost} ({s.loss_pct:.2f} %)"),
            ("jitter", f"{s.jitter_ms:.2f} ms"),
        ]
        if s.dtmf_sent:
            rows.append(("DTMF sent", s.dtmf_sent))
        if s.transferred_to:
            rows.append(("transferred to", s.transferred_to))
        if s.recording is not None:
            rows.append(("recording", str(s.recording)))
    for k, v in rows:
        t.add_row(k, v)
    return t


@cli_errors
def call(
    uri: str = typer.Argument(..., help="Who to call, e.g. sip:support@acme.example."),
    proxy: str | None = typer.Option(
        None,
        "--proxy",
        help="Send the INVITE to HOST:PORT while keeping the URI (reach sip:support@acme.example "
        "without DNS).",
    ),
    codec: Codec = typer.Option(Codec.PCMU, "--codec", help="The codec to offer."),
    play: Path | None = typer.Option(
        None, "--play", help="A WAV file to play when answered (default: silence)."
    ),
    record: Path | None = typer.Option(
        None, "--record", help="Write what the far end says to this WAV (8 kHz mono)."
    ),
    dtmf: str = typer.Option("", "--dtmf", help="DTMF digits to send, e.g. 123#."),
    dtmf_after: float = typer.Option(
        3.0, "--dtmf-after", min=0, help="Send the DTMF this many seconds after the answer."
    ),
    duration: float = typer.Option(
        30.0, "--duration", "-d", min=0.1, help="Hang up after this many seconds."
    ),
    answer_timeout: float = typer.Option(
        30.0, "--answer-timeout", min=0.1, help="Give up when nobody answers within this."
    ),
    bind: str | None = typer.Option(
        None, "--bind", help="Local address (default: the one that routes to the target)."
    ),
    rtp_ports: str = typer.Option("40000-40999", "--rtp-ports", help="Local RTP ports MIN-MAX."),
    from_uri: str | None = typer.Option(None, "--from", help="The From URI."),
    accept_refer: bool = typer.Option(
        False,
        "--accept-refer",
        help="Play the PBX when the far end transfers us: answer its REFER 202, report the "
        "transfer done (NOTIFY 100, then 200) and show the Refer-To. Default: decline it.",
    ),
) -> None:
    """Call a SIP URI like a phone would: play, record, DTMF, then print a summary.

    Exit 0 when the call was answered, 1 when it was rejected or not answered.
    """
    hostport_flag(proxy, "--proxy")
    target = parse_hostport(proxy, default_port=5060) if proxy else None
    if target is None and not _is_ip(_uri_host(uri)):
        fail(
            f"{uri}: the host is not an IP address and there is no DNS here",
            code=EXIT_USAGE,
            hint="add --proxy HOST:PORT (the agent's or FreeSWITCH's address)",
        )
    if dtmf and any(d not in "0123456789*#ABCDabcd" for d in dtmf):
        fail(f"--dtmf: {dtmf!r} holds a character that is not a DTMF digit", code=EXIT_USAGE)
    if play is not None and not play.is_file():
        fail(f"--play: {play} not found", code=EXIT_USAGE)
    ports = port_range_flag(rtp_ports)

    def say(msg: str) -> None:
        err_console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}", soft_wrap=True)

    summary = run_async(
        place_call(
            uri,
            proxy=target,
            codec=codec.value,
            play=play,
            record=record,
            dtmf=dtmf.upper(),
            dtmf_after=dtmf_after,
            duration=duration,
            answer_timeout=answer_timeout,
            bind_host=bind,
            rtp_ports=(ports["rtp.port_min"], ports["rtp.port_max"]),
            from_uri=from_uri,
            accept_refer=accept_refer,
            progress=say,
        )
    )
    console.print(summary_table(summary))
    if not summary.answered:
        raise typer.Exit(EXIT_FAILED)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
