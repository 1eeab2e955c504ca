"""Pacer.rephase: a kicked stream's next tick is one period after the kick, never earlier."""

from __future__ import annotations

import itertools

import pytest

from tests.asyncio.test_pacer import Counter, FakeLoop, make


@pytest.mark.parametrize("offset", [0.0003, 0.0041, 0.0099, 0.0137, 0.0199])
def test_rephase_next_tick_one_period_after_now(offset: float) -> None:
    loop = FakeLoop()
    pacer = make(loop, slots=10)
    a, other = Counter(loop), Counter(loop)
    pacer.add(a)
    pacer.add(other)
    start = loop.now
    loop.run_until(start + 0.1 + offset)
    n_before = len(a.deadlines)
    kick_at = loop.now
    nxt = pacer.rephase(a, kick_at)
    assert nxt == pytest.approx(kick_at + 0.020, abs=pacer.tick / 2 + 1e-9)
    loop.run_until(kick_at + 1.0)
    after = a.deadlines[n_before:]
    # no tick before the new phase (no double packet), none missing after it
    assert after[0] == pytest.approx(nxt)
    assert len(after) in (49, 50)
    # deadlines still start + n * tick: computed from the grid, never accumulated
    for d in after:
        n = (d - start) / pacer.tick
        assert n == pytest.approx(round(n), abs=1e-6)
    assert all(b - a_ == pytest.approx(0.020, abs=1e-9) for a_, b in itertools.pairwise(after))
    # the other stream is untouched
    assert all(
        b - a_ == pytest.approx(0.020, abs=1e-9)
        for a_, b in zip(other.deadlines, other.deadlines[1:], strict=False)
    )
    assert len(pacer) == 2


def test_rephase_then_remove_and_unknown_stream() -> None:
    loop = FakeLoop()
    pacer = make(loop)
    a = Counter(loop)
    assert pacer.rephase(a, loop.now) == 0.0  # not in the pacer: left alone
    pacer.add(a)
    loop.run_until(loop.now + 0.05)
    n = len(a.deadlines)
    pacer.rephase(a, loop.now)
    pacer.remove(a)
    loop.run_until(loop.now + 0.1)
    assert len(a.deadlines) == n and len(pacer) == 0


def test_rephased_stream_is_told_of_a_skip() -> None:
    stall = {"on": False}
    loop = FakeLoop(lambda i: 0.5 if stall["on"] else 0.0)
    pacer = make(loop, max_catchup=1)
    a = Counter(loop)
    pacer.add(a)
    loop.run_until(loop.now + 0.05)
    pacer.rephase(a, loop.now)
    stall["on"] = True
    loop.run_until(loop.now + 0.021)
    stall["on"] = False
    loop.run_until(loop.now + 0.1)
    assert a.skipped > 0 and len(a.deadlines) > 3
