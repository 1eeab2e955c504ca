"""The bridge driven by an in-memory call and the scripted (non-Realtime) AI session.

These tests prove that the bridge works through the AISession interface alone: the scripted
session has no network, no Realtime wire format, and records what the bridge asked of it.
"""

from __future__ import annotations

import asyncio
import itertools
import json

from tests.agent.helpers import Rig, config, pacer_ticks, rms, tone_ulaw, ulaw_frames, wait_until
from w3sipagent.agent.bridge import BridgeOptions, choose_ai_format
from w3sipagent.agent.memcall import MemoryCall
from w3sipagent.agent.scripted import ScriptedBackend, ScriptedReply, ScriptedSession
from w3sipagent.agent.tools import ToolRegistry, builtin_tools
from w3sipagent.ai.session import AudioDelta, AudioFormat, CallerTranscript, SpeechStopped
from w3sipagent.asyncio.call_api import MediaFormat, TransferOutcome
from w3sipagent.records.cdr import Disposition


def test_ai_format_avoids_transcoding() -> None:
    assert choose_ai_format("PCMU") is AudioFormat.PCMU
    assert choose_ai_format("pcma") is AudioFormat.PCMA
    assert choose_ai_format("G722") is AudioFormat.PCM24K
    assert choose_ai_format("opus") is AudioFormat.PCM24K


def test_session_config_says_who_cuts_and_the_guard_hands_it_to_the_bridge() -> None:
    from dataclasses import replace

    from w3sipagent.agent.bridge import bridge_session_config

    server = config(interrupt=True)
    assert server.interrupts_itself and server.detects_turns
    assert not config(interrupt=False).interrupts_itself
    no_vad = replace(server, turn_detection=None)
    assert not no_vad.interrupts_itself and not no_vad.detects_turns
    assert no_vad.without_self_interrupt() is no_vad
    guarded = bridge_session_config(server, AudioFormat.PCMA, min_interrupt_ms=200)
    assert not guarded.interrupts_itself and guarded.detects_turns
    assert guarded.input_format is AudioFormat.PCMA is guarded.output_format
    assert bridge_session_config(server, AudioFormat.PCMU).interrupts_itself  # no guard


async def test_caller_audio_passthrough_with_nothing_lost_before_ready() -> None:
    backend = ScriptedBackend(start_delay=0.4)
    sent = ulaw_frames(600, amp=6000)
    async with Rig(backend) as rig:
        await rig.call.play(sent[:10])  # 200 ms before the session is ready
        assert rig.bridge.session is None
        await rig.ready()
        await rig.call.play(sent[10:])
        s = rig.session
        assert bytes(s.audio) == b"".join(sent)  # passthrough: bytes untouched, in order
        assert s.audio_chunks == len(sent)  # one send_audio per frame, never batched
        assert s.audio_before_start == 0  # the bridge held them until start() returned
        assert s.config.input_format is AudioFormat.PCMU
        assert s.config.output_format is AudioFormat.PCMU
    cdr = rig.bridge.cdr
    assert cdr.codec == "PCMU" and cdr.ai_format == "audio/pcmu"
    assert cdr.disposition is Disposition.CALLER_HANGUP and cdr.hangup_by == "caller"


async def test_greeting_first_and_heard_byte_exact() -> None:
    greeting = tone_ulaw(1000, amp=9000)
    backend = ScriptedBackend(greeting=ScriptedReply(greeting, "Hello, Acme here."))
    async with Rig(backend, options=BridgeOptions(greeting="Greet the caller.")) as rig:
        await rig.ready()
        await wait_until(lambda: len(rig.call.audio_frames()) >= 50, what="greeting played")
        assert rig.session.responses_requested == ["Greet the caller."]
        heard = b"".join(f.payload or b"" for f in rig.call.audio_frames())
        assert heard == greeting  # framing only, no transcoding
        assert rms(heard) > 3000
        frames = rig.call.audio_frames()
        gaps = [b.deadline - a.deadline for a, b in itertools.pairwise(frames)]
        assert max(gaps) < 0.021  # contiguous: one frame per tick
    tr = rig.bridge.cdr.transcript
    assert [(e.speaker, e.text) for e in tr] == [("agent", "Hello, Acme here.")]
    assert rig.bridge.cdr.usage.output_audio_tokens == 20


async def _barge(interrupt: bool) -> tuple[Rig, float]:
    greeting = tone_ulaw(3000, amp=9000)
    reply = ScriptedReply(greeting, "A long greeting.", chunk_ms=100, pace=0.04)
    backend = ScriptedBackend(greeting=reply)
    rig = Rig(backend, cfg=config(interrupt=interrupt), options=BridgeOptions(greeting="hi"))
    await rig.__aenter__()
    await rig.ready()
    await wait_until(lambda: len(rig.call.audio_frames()) >= 25, what="500 ms played")
    loop = asyncio.get_running_loop()
    rig.session.speech_started()
    t_speech = loop.time()
    await wait_until(lambda: bool(rig.bridge.barge_ins), what="barge-in")
    await wait_until(lambda: bool(rig.session.truncates), what="truncate")
    await pacer_ticks(rig.call, 5)  # anything leaking after the cut would be sent by now
    return rig, t_speech


async def test_barge_in_truncates_at_what_was_sent_and_stops_within_a_frame() -> None:
    for interrupt in (True, False):
        rig, t_speech = await _barge(interrupt)
        s = rig.session
        frames = rig.call.audio_frames()
        sent_ms = 20 * len(frames)
        ((item, ms),) = s.truncates
        assert item == rig.bridge.barge_ins[0].item_id
        assert ms == sent_ms  # exactly what the pacer took, nothing after
        assert frames[-1].at <= t_speech + 0.021  # at most one frame after speech started
        late = [f for f in rig.call.sent if f.at > t_speech + 0.021 and f.payload]
        assert late == []
        # the server cancels by itself with interrupt_response; otherwise the bridge does
        assert s.cancels == (0 if interrupt else 1)
        rid = rig.bridge.barge_ins[0]
        assert rid.cancelled is (not interrupt)
        # late deltas of the cancelled response are dropped
        cut_item = rig.bridge.playout.item(item)
        assert cut_item is not None and cut_item.response_id is not None
        tr = rig.bridge.cdr.transcript
        n_tr = len(tr)
        s.emit(AudioDelta(cut_item.response_id, item, tone_ulaw(200)))
        s.emit(CallerTranscript("u-late", "after the late delta", True))
        await wait_until(lambda: len(tr) == n_tr + 1, what="events handled")  # noqa: B023
        await pacer_ticks(rig.call, 4)
        assert len(rig.call.audio_frames()) == len(frames)
        ev = [e for e in rig.bridge.cdr.events if e["kind"] == "barge_in"]
        assert ev and ev[0]["heard_ms"] == ms
        await rig.__aexit__()


async def test_no_truncate_once_the_item_was_heard_completely() -> None:
    backend = ScriptedBackend(greeting=ScriptedReply(tone_ulaw(200), "Hi."))
    async with Rig(backend, options=BridgeOptions(greeting="hi")) as rig:
        await rig.ready()
        await wait_until(lambda: len(rig.call.audio_frames()) >= 10, what="played")
        await wait_until(
            lambda: rig.session.response_active is None and not rig.bridge.playout.busy,
            what="greeting over",
        )
        await pacer_ticks(rig.call, 1)  # the last frame's tick is over: heard completely
        item = rig.session.speech_started()
        rig.session.emit(CallerTranscript(item, "Hm.", True))  # handled after SpeechStarted
        await wait_until(lambda: len(rig.bridge.cdr.transcript) == 2, what="speech handled")
        assert rig.session.truncates == [] and rig.session.cancels == 0
        assert rig.bridge.barge_ins == []


async def test_interruption_guard_ignores_short_noises_and_cuts_real_speech() -> None:
    reply = ScriptedReply(tone_ulaw(4000), "Long.", chunk_ms=100, pace=0.05)
    backend = ScriptedBackend(greeting=reply)
    opts = BridgeOptions(greeting="hi", min_interrupt_ms=150)
    async with Rig(backend, options=opts) as rig:
        await rig.ready()
        s = rig.session
        assert s.config.turn_detection is not None
        assert s.config.turn_detection.interrupt_response is False  # the bridge decides
        await wait_until(lambda: len(rig.call.audio_frames()) >= 10, what="playing")
        s.speech_started()
        s.emit(SpeechStopped(0, None))  # a noise shorter than the guard
        await wait_until(
            lambda: any(e["kind"] == "false_interruption" for e in rig.bridge.cdr.events),
            what="false interruption",
        )
        n = len(rig.call.audio_frames())
        await pacer_ticks(rig.call, 10)  # 200 ms: longer than the guard
        assert rig.bridge.barge_ins == [] and s.truncates == []
        assert len(rig.call.audio_frames()) >= n + 10  # still talking
        s.speech_started()
        await wait_until(lambda: bool(rig.bridge.barge_ins), what="guarded barge-in")
        cut = rig.bridge.barge_ins[0]
        assert cut.cut_at - cut.speech_at >= 0.150  # not before the 150 ms guard
        await wait_until(lambda: s.cancels == 1, what="cancel")
        assert len(s.truncates) == 1 and s.cancels == 1


async def test_barge_in_off_means_the_agent_is_heard_to_the_end() -> None:
    """With ``BridgeOptions.barge_in`` off the agent is not cut by the caller's speech."""
    reply = ScriptedReply(tone_ulaw(1500, amp=8000), "Please listen.", chunk_ms=100, pace=0.05)
    opts = BridgeOptions(greeting="hi", barge_in=False)
    async with Rig(
        ScriptedBackend(greeting=reply), options=opts, cfg=config(interrupt=False)
    ) as rig:
        await rig.ready()
        s = rig.session
        await wait_until(lambda: len(rig.call.audio_frames()) >= 10, what="playing")
        s.speech_started()  # the caller talks over the agent and goes on talking
        await wait_until(lambda: len(rig.call.audio_frames()) >= 75, what="whole answer")
        heard = b"".join(f.payload or b"" for f in rig.call.audio_frames()[:75])
        assert rms(heard) > 3000  # all 1.5 s of the answer reached the caller
        assert rig.bridge.barge_ins == [] and s.truncates == [] and s.cancels == 0
        assert not any(e["kind"] == "barge_in" for e in rig.bridge.cdr.events)


async def test_dtmf_reaches_the_model_and_digit_actions() -> None:
    backend = ScriptedBackend()
    opts = BridgeOptions(
        dtmf_collect_timeout=0.1,
        dtmf_actions={"0": "transfer:human", "9": "message:The caller wants the menu."},
        transfers={"human": "sip:reception@pbx.example"},
    )
    call = MemoryCall(transfer=TransferOutcome("busy", 486, notifications=(486,)))
    async with Rig(backend, call=call, options=opts) as rig:
        await rig.ready()
        s = rig.session
        rig.call.press("3")
        await wait_until(lambda: bool(s.messages), what="dtmf message")
        assert s.messages == [("system", "The caller pressed 3 on the keypad.")]
        assert s.responses_requested == [None]
        rig.call.press("1")
        rig.call.press("2")
        await wait_until(lambda: len(s.messages) == 2, what="second message")
        assert "pressed 12" in s.messages[1][1]
        rig.call.press("9")
        await wait_until(lambda: len(s.messages) == 3, what="mapped message")
        assert s.messages[2][1] == "The caller wants the menu."
        rig.call.press("0")
        await wait_until(lambda: len(s.messages) == 4, what="transfer failure told")
        assert rig.call.transfers == ["sip:reception@pbx.example"]
        assert "busy" in s.messages[3][1]
    cdr = rig.bridge.cdr
    assert (
        cdr.transfer is not None and cdr.transfer.outcome == "busy" and cdr.transfer.status == 486
    )
    assert cdr.disposition is Disposition.CALLER_HANGUP


async def test_end_call_waits_for_the_last_words() -> None:
    bye = tone_ulaw(600)
    reply = ScriptedReply(bye, "Goodbye!", tool=("end_call", '{"reason": "done"}'))
    backend = ScriptedBackend(greeting=reply)
    tools = ToolRegistry(builtin_tools({}))
    async with Rig(
        backend, options=BridgeOptions(greeting="hi", end_call_tail=0.05), tools=tools
    ) as rig:
        cdr = await rig.done()
    frames = rig.call.audio_frames()
    assert b"".join(f.payload or b"" for f in frames) == bye  # every word played
    assert rig.call.hangups and rig.call.ended is not None
    assert cdr.disposition is Disposition.COMPLETED and cdr.hangup_by == "agent"
    assert cdr.reason == "end_call: done"
    (tc,) = cdr.tool_calls
    assert tc.name == "end_call" and tc.arguments == {"reason": "done"}
    assert rig.backend.sessions[0].tool_results[0][2] is False  # no new response


async def test_transfer_tool_reports_each_real_outcome() -> None:
    dests = {"sales": "sip:sales@pbx.example", "support": "sip:2000@pbx.example"}
    outcomes = [
        TransferOutcome("succeeded", 200, notifications=(100, 200)),
        TransferOutcome("accepted", 200),
        TransferOutcome("unknown", 200),
        TransferOutcome("busy", 486),
        TransferOutcome("rejected", 603),
        TransferOutcome("failed", 480),
        TransferOutcome("timed_out"),
    ]
    for outcome in outcomes:
        reply = ScriptedReply(
            tone_ulaw(100), "Transferring.", tool=("transfer_call", '{"destination": "sales"}')
        )
        backend = ScriptedBackend(greeting=reply)
        call = MemoryCall(transfer=outcome)
        async with Rig(
            backend,
            call=call,
            options=BridgeOptions(greeting="hi"),
            tools=ToolRegistry(builtin_tools(dests)),
        ) as rig:
            await wait_until(lambda: bool(rig.call.transfers), what="transfer")
            if outcome.status in ("succeeded", "accepted", "unknown"):
                cdr = await rig.done()
                # "transferred" only when the peer confirmed it; otherwise the caller left
                # us without a verdict
                expected = (
                    Disposition.TRANSFERRED
                    if outcome.status == "succeeded"
                    else Disposition.TRANSFER_UNKNOWN
                )
                assert cdr.disposition is expected
                assert cdr.transfer is not None and cdr.transfer.outcome == outcome.status
            else:
                _call_id, output, respond = (await rig.tool_results())[0]
                assert json.loads(output)["status"] == outcome.status
                assert json.loads(output).get("sip_code") == outcome.code
                assert respond is True  # the agent tells the caller
                assert rig.task is not None and not rig.task.done()  # the call goes on
        assert rig.call.transfers == ["sip:sales@pbx.example"]


async def test_transfer_tool_refuses_raw_uris_and_unknown_names() -> None:
    dests = {"sales": "sip:sales@pbx.example"}
    for args in (
        '{"destination": "sip:+441234567890@evil.example"}',
        '{"destination": "boss"}',
        "{}",
    ):
        reply = ScriptedReply(b"", "", tool=("transfer_call", args))
        backend = ScriptedBackend(greeting=reply)
        async with Rig(
            backend, options=BridgeOptions(greeting="hi"), tools=ToolRegistry(builtin_tools(dests))
        ) as rig:
            out = json.loads((await rig.tool_results())[0][1])
            assert "allowed: sales" in out["error"]
            assert rig.call.transfers == []


async def test_send_dtmf_tool() -> None:
    reply = ScriptedReply(b"", "", tool=("send_dtmf", '{"digits": "12#"}'))
    backend = ScriptedBackend(greeting=reply)
    async with Rig(
        backend, options=BridgeOptions(greeting="hi"), tools=ToolRegistry(builtin_tools({}))
    ) as rig:
        await rig.tool_results()
        assert rig.call.dtmf_sent == ["12#"]
        assert json.loads(rig.session.tool_results[0][1]) == {"status": "sent", "digits": "12#"}


async def test_reconnect_reseeds_the_conversation() -> None:
    greeting = ScriptedReply(tone_ulaw(100), "Welcome to Acme.")
    backend = ScriptedBackend(greeting=greeting)
    async with Rig(backend, options=BridgeOptions(greeting="hi", reconnect_timeout=1.0)) as rig:
        await rig.ready()
        await wait_until(lambda: len(rig.bridge.cdr.transcript) == 1, what="greeting text")
        s = rig.session
        s.emit(CallerTranscript("u1", "I need a plumber.", True))
        await wait_until(lambda: len(rig.bridge.cdr.transcript) == 2, what="caller text")
        s.drop("server closed the WebSocket: code 1011")
        await rig.ready(2)
        second = rig.backend.configs[1]
        assert [(h.role, h.text) for h in second.history] == [
            ("assistant", "Welcome to Acme."),
            ("user", "I need a plumber."),
        ]
        await rig.call.play(ulaw_frames(100))
        assert len(rig.backend.sessions[1].audio) == 800  # audio goes to the new session
    kinds = [e["kind"] for e in rig.bridge.cdr.events]
    assert "ai_lost" in kinds and "ai_reconnected" in kinds
    assert rig.bridge.cdr.disposition is Disposition.CALLER_HANGUP


def _fail_all(cfg, n):  # type: ignore[no-untyped-def]
    return ScriptedSession(cfg, fail_start="HTTP 401: check the API key")


async def test_ai_unavailable_plays_fallback_wav_then_transfers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import wave

    from tests.agent.helpers import tone_pcm

    wav = tmp_path / "sorry.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(tone_pcm(400, 16000, 8000))
    backend = ScriptedBackend(_fail_all)
    opts = BridgeOptions(
        fallback_wav=wav, fallback_uri="sip:operator@pbx.example", end_call_tail=0.01
    )
    async with Rig(backend, options=opts) as rig:
        cdr = await rig.done()
    assert len(backend.sessions) == 2  # one retry
    heard = b"".join(f.payload or b"" for f in rig.call.audio_frames())
    assert 400 * 8 <= len(heard) <= 440 * 8  # the prompt (+ resampler tail), one frame a tick
    assert rms(heard[: 400 * 8]) > 3000  # in the call's codec
    assert rig.call.transfers == ["sip:operator@pbx.example"]
    assert cdr.disposition is Disposition.FALLBACK
    assert cdr.transfer is not None and cdr.transfer.outcome == "succeeded"
    assert any(e["kind"] == "fallback" for e in cdr.events)


async def test_ai_unavailable_without_fallback_hangs_up_as_ai_error() -> None:
    backend = ScriptedBackend(_fail_all)
    async with Rig(backend, options=BridgeOptions(reconnect_attempts=0)) as rig:
        cdr = await rig.done()
    assert len(backend.sessions) == 1
    assert rig.call.hangups and cdr.disposition is Disposition.AI_ERROR
    assert cdr.reason == "ai_error: AI unavailable" and cdr.hangup_by == "agent"
    failed = [e for e in cdr.events if e["kind"] == "ai_connect_failed"]
    assert failed and "401" in failed[0]["error"]


async def test_drop_then_failed_reconnect_falls_back() -> None:
    def make(cfg, n):  # type: ignore[no-untyped-def]
        return ScriptedSession(cfg) if n == 0 else ScriptedSession(cfg, fail_start="refused")

    backend = ScriptedBackend(make)
    async with Rig(backend, options=BridgeOptions(fallback_uri="sip:op@pbx.example")) as rig:
        await rig.ready()
        rig.session.fail("server_error", "fatal")
        cdr = await rig.done()
    assert cdr.disposition is Disposition.FALLBACK and rig.call.transfers == ["sip:op@pbx.example"]


async def test_usage_cap_gets_the_fallback_without_ai() -> None:
    backend = ScriptedBackend()
    opts = BridgeOptions(ai_enabled=False, fallback_uri="sip:op@pbx.example")
    async with Rig(backend, options=opts) as rig:
        cdr = await rig.done()
    assert backend.sessions == [] and cdr.disposition is Disposition.FALLBACK
    assert any(e.get("reason") == "usage cap reached" for e in cdr.events)


async def test_timeouts_end_the_call_cleanly() -> None:
    cases = [
        (BridgeOptions(max_duration=0.2, housekeeping_interval=0.02), "max_duration"),
        (BridgeOptions(caller_silence_timeout=0.2, housekeeping_interval=0.02), "caller_silence"),
        (BridgeOptions(), "rtp_timeout"),
    ]
    for opts, reason in cases:
        async with Rig(ScriptedBackend(), options=opts) as rig:
            await rig.ready()
            if reason == "rtp_timeout":
                rig.call.rtp_timeout()
            cdr = await rig.done()
        assert cdr.disposition is Disposition.TIMEOUT and cdr.reason == reason
        assert cdr.hangup_by == "system" and rig.call.hangups
        assert rig.backend.sessions[0].closed


async def test_cdr_collects_transcript_usage_latency_and_rtp() -> None:
    replies = [ScriptedReply(tone_ulaw(300), "We open at nine.", first_audio_delay=0.05)]
    backend = ScriptedBackend(replies=replies)
    async with Rig(backend) as rig:
        await rig.ready()
        s = rig.session
        await rig.call.play(ulaw_frames(200, amp=7000))
        item = s.speech_started(item_id="u1")
        await rig.call.play(ulaw_frames(100, amp=7000))
        s.speech_stopped(item, "When do you open?")
        await wait_until(lambda: len(rig.call.audio_frames()) >= 15, what="answer played")
    cdr = rig.bridge.cdr
    assert [(e.speaker, e.text) for e in cdr.transcript] == [
        ("caller", "When do you open?"),
        ("agent", "We open at nine."),
    ]
    assert cdr.transcript[0].at <= cdr.transcript[1].at
    (lat,) = cdr.turn_latencies_ms
    assert 50 <= lat <= 120  # 50 ms model delay + at most one pacer period + slack
    turn = next(e for e in cdr.events if e["kind"] == "turn")
    assert turn["to_first_rtp_ms"] is not None and turn["to_first_rtp_ms"] <= 25
    assert cdr.usage.total_tokens > 0
    assert cdr.rtp["packets_received"] == 15 and cdr.rtp["packets_sent"] == 15


async def test_g722_call_uses_24k_pcm_both_ways() -> None:
    from tests.agent.helpers import tone_pcm
    from w3sipagent.codecs import get_codec

    call = MemoryCall(MediaFormat("G722", 8000, payload_type=9))
    backend = ScriptedBackend(greeting=ScriptedReply(tone_pcm(400, 24000, 8000), "Hi."))
    async with Rig(backend, call=call, options=BridgeOptions(greeting="hi")) as rig:
        await rig.ready()
        s = rig.session
        assert s.config.input_format is AudioFormat.PCM24K
        codec = get_codec("G722", 8000)
        enc = codec.encoder()
        frames = [enc.encode(tone_pcm(20, 16000, 6000)) for _ in range(20)]
        await rig.call.play(frames)
        assert len(s.audio) == 20 * 960  # 20 ms at 24 kHz s16le per frame
        assert rms(bytes(s.audio[960 * 5 :]), AudioFormat.PCM24K) > 2000
        await wait_until(lambda: len(rig.call.audio_frames()) >= 20, what="greeting")
        dec = codec.decoder()
        pcm = b"".join(dec.decode(f.payload or b"") for f in rig.call.audio_frames())
        assert rms(pcm[len(pcm) // 4 :], AudioFormat.PCM24K) > 2000


async def test_opus_lost_frame_is_rebuilt_from_the_next_packets_fec() -> None:
    """A lost Opus frame whose next packet arrived reaches the AI rebuilt from that packet's
    in-band FEC (close to what was lost), not guessed by PLC."""
    import numpy as np

    from w3sipagent.codecs import get_codec

    fmt = MediaFormat("opus", 48000, 2, payload_type=111, fmtp="useinbandfec=1")
    t = np.arange(48000 * 6 // 10) / 48000
    x = (8000 * np.sin(2 * np.pi * (200 * t + 1500 * t * t))).astype("<i2")  # 200 Hz rising
    enc = get_codec("opus", 48000, 2, "useinbandfec=1").encoder()
    packets = [enc.encode(x[i * 960 : (i + 1) * 960].tobytes()) for i in range(30)]
    lost, frame = 20, 960  # bytes of 20 ms at 24 kHz s16le

    async def heard(fec: bool | None) -> np.ndarray:
        async with Rig(ScriptedBackend(), call=MemoryCall(fmt)) as rig:
            await rig.ready()
            for i, p in enumerate(packets):
                if i == lost and fec is not None:
                    rig.call.feed(None, packets[i + 1] if fec else None)
                else:
                    rig.call.feed(p)
            audio = bytes(rig.session.audio)
        assert len(audio) == 30 * frame
        return np.frombuffer(audio[lost * frame : (lost + 1) * frame], "<i2").astype(float)

    clean, fec, plc = await heard(None), await heard(True), await heard(False)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))

    assert corr(fec, clean) > 0.8, corr(fec, clean)
    assert corr(fec, clean) > corr(plc, clean) + 0.1, (corr(fec, clean), corr(plc, clean))


async def test_bridge_never_touches_a_network(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The scripted session is the only AI here: the bridge needs nothing but AISession.

    Attempts are recorded, not raised: an exception inside a bridge task would only end
    the call as FAILED, so the test asserts what was attempted and how the call ended."""
    import socket

    attempts: list[str] = []

    def connect(self: socket.socket, address: object) -> None:
        attempts.append(f"connect {address!r}")
        raise OSError("no network in this test")

    def getaddrinfo(host: object, *a: object, **k: object) -> list[object]:
        attempts.append(f"getaddrinfo {host!r}")
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    greeting = tone_ulaw(100)
    backend = ScriptedBackend(greeting=ScriptedReply(greeting, "Hi."))
    async with Rig(backend, options=BridgeOptions(greeting="hi")) as rig:
        await wait_until(lambda: len(rig.call.audio_frames()) >= 5, what="greeting")
        assert rig.bridge.session is rig.session  # the scripted session is live
    monkeypatch.undo()
    assert attempts == []
    assert b"".join(f.payload or b"" for f in rig.call.audio_frames()) == greeting
    cdr = rig.bridge.cdr
    assert cdr.disposition is Disposition.CALLER_HANGUP, (cdr.disposition, cdr.reason)
    assert [(e.speaker, e.text) for e in cdr.transcript] == [("agent", "Hi.")]


async def test_recording_after_the_announcement_caller_left_agent_right(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import wave

    import numpy as np

    from tests.agent.helpers import tone_pcm

    ann = tmp_path / "ann.wav"
    with wave.open(str(ann), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone_pcm(300, 8000, 3000, 1000.0))
    out = tmp_path / "rec" / "call.wav"
    greeting = ScriptedReply(tone_ulaw(400, amp=9000, hz=440.0), "Hi.")
    backend = ScriptedBackend(greeting=greeting)
    opts = BridgeOptions(greeting="hi", recording_path=out, announcement=ann)
    async with Rig(backend, options=opts) as rig:
        await rig.ready()
        await wait_until(lambda: len(rig.call.audio_frames()) >= 35, what="announcement + greeting")
        first = rig.call.audio_frames()[:15]
        assert rms(b"".join(f.payload or b"" for f in first)) > 1000  # the announcement first
        assert rig.session.responses_requested == ["hi"]
        await rig.call.play(ulaw_frames(300, amp=7000))
        await wait_until(lambda: not rig.bridge.playout.busy, what="greeting played")
    cdr = rig.bridge.cdr
    assert cdr.recording_path == str(out)
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left, right = x[:, 0].astype(float), x[:, 1].astype(float)
    assert np.sqrt(np.mean(left**2)) > 500  # the caller's tone
    assert np.sqrt(np.mean(right**2)) > 500  # the agent's greeting
    # the announcement (1 kHz) is not in the recording: it played before recording began
    spec = np.abs(np.fft.rfft(right))
    freqs = np.fft.rfftfreq(len(right), 1 / 8000)
    assert spec[np.argmin(np.abs(freqs - 440))] > 5 * spec[np.argmin(np.abs(freqs - 1000))]
