"""Calls through the impairing relay (issue 12): the project's softphone calls an
AgentService through :class:`~w3sipagent.faults.ImpairingRelay`; SIP and RTP are impaired
both ways. The call never drops (it lasts until the caller hangs up and ends in that CDR),
and the audio each side receives keeps a measured similarity with the clean signal
(benchmarks/impair_bench.py makes the same measurement; docs/performance.md has the table).

Floors, and why they would fail if concealment or jitter buffering broke:

- with 5 % and 20 % loss the 10 ms level envelope keeps a correlation of at least 0.9 with
  the clean signal both ways (measured 0.97-1.0); the same seeded losses with every
  concealed frame replaced by silence (the ablation) score clearly less: at least 0.05 per
  direction and 0.15 both together (measured 0.67-0.89 at 20 %);
- Opus at 20 % loss stays within 0.04 of the clean call's waveform correlation (in-band
  FEC; libopus PLC alone loses 0.05-0.08);
- with 30 ms jitter plus 10 % reordering, and with duplicates, no packet is lost on the way,
  so every concealed frame is a jitter buffer failure: at most 4 on either side (the
  adaptive hold learns from the first 1-2 late packets; ~10 packets are reordered).
"""

from __future__ import annotations

import pytest

from benchmarks.impair_bench import Row, measure
from tests.asyncio.helpers import rtp_range

SECONDS = 1.5


_ROWS: dict[tuple[str, str, bool], Row] = {}


async def call(codec: str, condition: str, *, conceal: bool = True) -> Row:
    """One call's figures (each codec x condition is placed once per test session: the
    runs are seeded, so tests that look at the same call share it)."""
    key = (codec, condition, conceal)
    if key not in _ROWS:
        _ROWS[key] = await measure(
            codec, condition, seconds=SECONDS, conceal=conceal, rtp_range=rtp_range()
        )
    row = _ROWS[key]
    # the call lasted until the caller hung up, and ended in its CDR
    assert row.disposition == "caller_hangup/remote_bye", row
    return row


@pytest.mark.parametrize(
    ("codec", "condition"), [("PCMU", "loss5"), ("PCMU", "loss20"), ("opus", "loss20")]
)
async def test_under_loss_the_concealed_audio_keeps_its_envelope_both_ways(
    codec: str, condition: str
) -> None:
    row = await call(codec, condition)
    assert row.rtp_lost > 0 and row.agent_concealed > 0 and row.caller_concealed > 0, row
    assert row.to_ai_envelope >= 0.9 and row.to_caller_envelope >= 0.9, row


async def test_opus_fec_keeps_the_waveform_close_to_the_clean_call() -> None:
    """Opus at 20 % loss loses little waveform correlation against the same call without
    loss (measured 0.015 to the AI, 0.008 to the caller with 4 s calls); with libopus PLC
    alone (no in-band FEC offered) it loses 0.08 and 0.05: FEC that stopped working, or a
    jitter buffer that no longer hands the next packet to the decoder, fails this."""
    clean, lossy = await call("opus", "clean"), await call("opus", "loss20")
    assert lossy.rtp_lost > 0 and clean.rtp_lost == 0
    assert clean.to_ai_waveform - lossy.to_ai_waveform <= 0.04, (clean, lossy)
    assert clean.to_caller_waveform - lossy.to_caller_waveform <= 0.04, (clean, lossy)


@pytest.mark.parametrize("codec", ["PCMU", "opus"])
async def test_concealment_is_what_holds_the_figures_up(codec: str) -> None:
    """The same seeded 20 % loss with concealed frames left silent scores clearly lower:
    each direction by at least 0.05 of envelope correlation, both together by at least 0.15
    (measured 0.10-0.30 per direction; how many losses fall inside the speech varies a little
    from run to run, the seeded drops being per packet, not per moment)."""
    with_plc = await call(codec, "loss20")
    silent = await call(codec, "loss20", conceal=False)
    assert silent.rtp_lost > 0
    to_ai = with_plc.to_ai_envelope - silent.to_ai_envelope
    to_caller = with_plc.to_caller_envelope - silent.to_caller_envelope
    assert to_ai >= 0.05 and to_caller >= 0.05, (with_plc, silent)
    assert to_ai + to_caller >= 0.15, (with_plc, silent)


@pytest.mark.parametrize(
    ("codec", "condition"),
    [("PCMU", "jitter30+reorder10"), ("opus", "jitter30+reorder10"), ("PCMU", "dup10")],
)
async def test_jitter_reordering_and_duplicates_conceal_nothing(codec: str, condition: str) -> None:
    row = await call(codec, condition)
    assert row.rtp_lost == 0
    if condition == "dup10":
        assert row.to_ai_waveform >= 0.99 and row.to_caller_waveform >= 0.99, row
    else:
        assert row.rtp_reordered >= 10
    # the adaptive hold learns the reordering from its first late packets (1-2 per side),
    # a buffer that did not reorder would conceal every reordered packet
    assert row.agent_concealed <= 4 and row.caller_concealed <= 4, row
    assert row.to_ai_envelope >= 0.98 and row.to_caller_envelope >= 0.98, row
