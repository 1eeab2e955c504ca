"""The Call object: CallLike conformance, frame source/sink, PCM playout accounting."""

from __future__ import annotations

import asyncio

from tests.asyncio.conftest import UaFactory
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import CallLike


class _Counter:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.calls = 0

    def next_frame(self) -> bytes | None:
        self.calls += 1
        return self.payload


async def test_call_is_calllike_and_frames_flow(make_ua: UaFactory) -> None:
    received: list[bytes | None] = []
    answered: list[Call] = []

    async def handler(call: Call) -> None:
        answered.append(call)
        call.set_frame_sink(lambda payload, _next=None: received.append(payload))
        await call.wait_ended()

    server = await make_ua(handler=handler)
    client = await make_ua()
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}", codecs=["PCMA/8000"])
    assert isinstance(call, CallLike)
    source = _Counter(b"\x55" * 160)
    call.set_frame_source(source)
    await asyncio.sleep(0.3)
    assert 10 <= source.calls <= 20  # one frame per 20 ms from the shared pacer
    assert answered[0].media.encoding == "PCMA"
    assert sum(1 for p in received if p == b"\x55" * 160) >= 8
    stats = answered[0].stats()
    assert int(stats["packets_received"]) >= 8  # type: ignore[call-overload]
    await call.hangup()
    await call.hangup()  # idempotent
    assert call.end is not None and call.end.reason == "local_hangup"


async def test_play_waits_until_sent_and_clear_drops(make_ua: UaFactory) -> None:
    server = await make_ua(handler=lambda call: call.wait_ended())
    client = await make_ua()
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await call.play(bytes(160 * 2 * 10))  # 10 frames of 8 kHz PCM
    assert 0.15 < loop.time() - start < 0.5
    call.send_audio(bytes(160 * 2 * 50))
    assert call.clear_audio() == 50
    await call.hangup()
    # after the end, play returns at once
    await asyncio.wait_for(call.play(bytes(320)), 0.5)


async def test_lost_frame_reaches_the_sink_with_the_next_packet_for_fec(
    make_ua: UaFactory,
) -> None:
    """The jitter buffer's lost-frame slot carries the next packet's payload (Opus in-band
    FEC); the call hands it to the frame sink as ``sink(None, next_payload)``."""
    from w3sipagent.rtp.jitter import JitterBuffer
    from w3sipagent.rtp.packet import RtpPacket

    got: list[tuple[bytes | None, bytes | None]] = []

    def sink(payload: bytes | None, next_payload: bytes | None = None) -> None:
        got.append((payload, next_payload))

    server = await make_ua()
    client = await make_ua()
    call = await client.dial(f"sip:a@127.0.0.1:{server.port}", codecs=["PCMA/8000"])
    call.set_frame_sink(sink)
    jb = JitterBuffer(clock_rate=8000)
    for seq in (0, 1, 3):  # 2 is lost; 3 arrives: the slot of 2 carries it
        jb.push(RtpPacket(8, seq, 160 * seq, 7, bytes([seq]) * 160), seq * 0.02)
        for frame in jb.pop(seq * 0.02):
            call._on_frame(frame)
    assert got == [
        (bytes([0]) * 160, None),
        (bytes([1]) * 160, None),
        (None, bytes([3]) * 160),
        (bytes([3]) * 160, None),
    ]
    await call.hangup()
