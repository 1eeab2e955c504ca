"""The bridge kicks the call when agent audio starts: first frame at once, then every ptime."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.agent.helpers import Rig, config, pacer_ticks, tone_ulaw, wait_until
from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.agent.memcall import MemoryCall
from w3sipagent.agent.scripted import ScriptedBackend, ScriptedReply
from w3sipagent.ai.session import AudioDelta

ULAW_SILENCE = b"\xff" * 160


async def test_first_frame_of_a_response_goes_out_with_the_delta() -> None:
    backend = ScriptedBackend()
    rig = Rig(backend, call=MemoryCall(silence=ULAW_SILENCE, kick=True))
    await rig.__aenter__()
    await rig.ready()
    loop = asyncio.get_running_loop()
    audio = tone_ulaw(100, amp=9000)
    for i in range(3):
        await asyncio.sleep(0.047)  # stimulus, not a wait: the next delta at another pacer phase
        n_sent = len(rig.call.sent)
        t = loop.time()
        rig.session.emit(AudioDelta(f"resp_{i}", f"item_{i}", audio))
        want = 5 * (i + 1)
        await wait_until(lambda w=want: len(rig.call.audio_frames()) >= w, what="sent")  # type: ignore[misc]
        frames = [f for f in rig.call.sent[n_sent:] if f.payload is not None]
        assert frames[0].at - t < 0.005  # not at the next 20 ms tick
        assert frames[0].deadline == frames[0].at  # sent out of turn by the kick
        # then the pacer, re-phased: exactly 20 ms apart from the kick, one frame each
        assert [
            pytest.approx(b.deadline - a.deadline, abs=1e-9) for a, b in itertools.pairwise(frames)
        ] == [0.020] * 4
        assert b"".join(f.payload or b"" for f in frames) == audio
        assert rig.bridge.playout.played_ms(f"item_{i}") == 100
    await rig.__aexit__()


async def test_barge_in_accounting_unchanged_with_the_kick() -> None:
    greeting = tone_ulaw(3000, amp=9000)
    reply = ScriptedReply(greeting, "A long greeting.", chunk_ms=100, pace=0.04)
    backend = ScriptedBackend(greeting=reply)
    rig = Rig(
        backend,
        call=MemoryCall(silence=ULAW_SILENCE, kick=True),
        cfg=config(interrupt=True),
        options=BridgeOptions(greeting="hi"),
    )
    await rig.__aenter__()
    await rig.ready()
    await wait_until(lambda: len(rig.call.audio_frames()) >= 25, what="500 ms played")
    loop = asyncio.get_running_loop()
    rig.session.speech_started()
    t_speech = loop.time()
    await wait_until(lambda: bool(rig.bridge.barge_ins), what="barge-in")
    await wait_until(lambda: bool(rig.session.truncates), what="truncate")
    await pacer_ticks(rig.call, 5)  # anything leaking after the cut would be sent by now
    frames = rig.call.audio_frames()
    ((item, ms),) = rig.session.truncates
    assert item == rig.bridge.barge_ins[0].item_id
    assert frames[0].deadline == frames[0].at  # the greeting started with a kick
    assert ms == 20 * len(frames)  # exactly what was sent, kicked frame included
    assert b"".join(f.payload or b"" for f in frames) == greeting[: 160 * len(frames)]
    assert frames[-1].at <= t_speech + 0.021
    await rig.__aexit__()
