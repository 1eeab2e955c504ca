"""Hostile RTP against a running agent (issue 12 item 3): oversized PCMU packets from the
caller's own RTP address do not grow the AI input nor the recording beyond the call."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import wait_until
from tests.agent.test_service import ENV, Recorder, store, tenants
from tests.asyncio.helpers import fast_config
from w3sipagent.agent.service import AgentService
from w3sipagent.asyncio.useragent import UserAgent
from w3sipagent.codecs.g711 import ulaw_decode
from w3sipagent.config import Settings
from w3sipagent.records.store import CdrStore
from w3sipagent.rtp.packet import RtpPacket
from w3sipagent.tenants import TenantTable
from w3sipagent.tenants.models import RecordingConfig

__all__ = ["store"]  # the agent rig's CDR store fixture


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'cdr.db'}"


@pytest.fixture
async def rig(
    store: CdrStore, tmp_path: Path
) -> AsyncIterator[tuple[AgentService, UserAgent, Recorder]]:
    """tests/agent/test_service.py's rig, with acme's calls recorded."""
    table = tenants()
    acme = table.get("acme")
    assert acme is not None
    recorded = acme.model_copy(update={"recording": RecordingConfig(enabled=True)})
    globex = table.get("globex")
    assert globex is not None
    ai = Recorder()
    settings = Settings(records={"recordings_dir": str(tmp_path / "rec")})  # type: ignore[arg-type]
    svc = AgentService(
        settings,
        tenants=TenantTable({"acme": recorded, "globex": globex}),
        store=store,
        ai_factory=ai,
        ua_config=fast_config(),
        environ=dict(ENV),
    )
    await svc.start()
    caller = UserAgent(fast_config())
    await caller.start()
    yield svc, caller, ai
    await caller.close(timeout=0)
    await svc.close(timeout=0)


async def test_big_payloads_do_not_amplify_ai_input_or_recording(rig: Any, store: CdrStore) -> None:
    svc, caller, ai = rig
    call = await caller.dial(
        "sip:support@acme.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    loop = asyncio.get_running_loop()
    await wait_until(lambda: len(ai.made) == 1, what="the AI session")
    session = ai.made[0][4]
    ep = call.endpoint
    assert ep is not None and ep.send_address is not None
    await wait_until(lambda: len(session.audio) >= 1600, timeout=10, what="caller audio at AI")
    start, n0 = loop.time(), len(session.audio)
    sock = ep.allocation.rtp  # from the caller's own RTP address: it is the latched source
    for i in range(5):  # 1 s of PCMU each (the issue: 65,000 bytes, 8.1 s)
        sock.sendto(
            bytes(RtpPacket(0, 30000 + i, 999_999 + 8000 * i, 0xBAD, b"\x10" * 8000)),
            ep.send_address,
        )
        await asyncio.sleep(0.05)  # paced: a burst would overflow the 32 KB receive buffer
    await wait_until(
        lambda: svc.bridges[call.call_id].call.stats().get("oversize") == 5,
        what="5 oversized packets counted",
    )
    await asyncio.sleep(0.5)  # half a second more of the call (the measured span)
    elapsed_ms = (loop.time() - start) * 1000
    grown_ms = (len(session.audio) - n0) / 8  # PCMU: 8 bytes a millisecond
    assert grown_ms <= elapsed_ms + 100  # the call's own audio, not 5 s more
    await call.hangup()
    await wait_until(lambda: not svc.bridges, what="bridge ended")
    await store.flush()
    cdr = await store.get_cdr(call.call_id)
    assert cdr is not None and cdr.recording_path and cdr.end_at and cdr.answer_at
    with wave.open(cdr.recording_path) as w:
        recorded = w.getnframes() / w.getframerate()
    assert recorded <= (cdr.end_at - cdr.answer_at).total_seconds() + 0.5
    assert cdr.rtp["oversize"] == 5


async def test_foreign_datagrams_neither_steal_the_audio_nor_reach_the_ai(
    rig: Any, store: CdrStore
) -> None:
    svc, caller, ai = rig
    call = await caller.dial(
        "sip:support@acme.example", proxy=("127.0.0.1", svc.port), codecs=["PCMU/8000"]
    )
    await wait_until(lambda: len(ai.made) == 1, what="the AI session")
    session = ai.made[0][4]
    ep = call.endpoint
    assert ep is not None and ep.send_address is not None
    await wait_until(lambda: len(session.audio) >= 1600, timeout=10, what="caller audio at AI")
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    intruder.setblocking(False)
    try:
        intruder.sendto(b"x", ep.send_address)  # the one byte
        for i in range(20):  # and a flood of RTP with a payload nobody else sends
            pkt = RtpPacket(0, 100 + i, 160 * i, 0x0BAD, b"\x42" * 160)
            intruder.sendto(bytes(pkt), ep.send_address)
            await asyncio.sleep(0.01)  # paced, so the kernel keeps them all
        agent = svc.bridges[call.call_id].call
        await wait_until(lambda: agent.stats()["foreign"] == 21, what="21 foreign packets")
        received = ep.snapshot().packets_received
        await wait_until(
            lambda: ep.snapshot().packets_received >= received + 10,
            what="the agent's audio still reaching the caller",
        )
        with contextlib.suppress(BlockingIOError):
            assert intruder.recv(2048) == b"", "the agent sent audio to the intruder"
        assert b"\x42" * 160 not in bytes(session.audio)
    finally:
        intruder.close()
    await call.hangup()
    await wait_until(lambda: not svc.bridges, what="bridge ended")
    await store.flush()
    cdr = await store.get_cdr(call.call_id)
    assert cdr is not None and cdr.recording_path
    with wave.open(cdr.recording_path) as w:
        frames = w.readframes(w.getnframes())
    left = b"".join(frames[i : i + 2] for i in range(0, len(frames), 4))  # the caller's side
    assert ulaw_decode(b"\x42" * 160) not in left
    assert cdr.rtp["foreign"] == 21
