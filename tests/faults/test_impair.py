"""The seeded datagram impairments: what each knob does, and the same seed replays a run."""

from __future__ import annotations

import pytest

from w3sipagent.faults import Impairer, Impairment


def run(imp: Impairment, n: int = 2000) -> tuple[Impairer, list[list[tuple[float, bytes]]]]:
    imp_er = Impairer(imp)
    return imp_er, [imp_er.plan(bytes([i % 256]) * 172) for i in range(n)]


def test_the_same_seed_replays_the_same_decisions_and_another_seed_does_not() -> None:
    imp = Impairment(loss=0.2, jitter=0.03, reorder=0.1, duplicate=0.05, truncate=0.02, seed=3)
    assert run(imp)[1] == run(imp)[1]
    assert run(imp)[1] != run(imp.with_seed(4))[1]


def test_loss_drops_about_the_asked_share_and_counts_it() -> None:
    imp_er, plans = run(Impairment(loss=0.2, seed=1))
    lost = sum(1 for p in plans if not p)
    assert 0.17 < lost / len(plans) < 0.23
    assert imp_er.counts()["lost"] == lost and imp_er.counts()["seen"] == len(plans)


def test_burst_loss_loses_runs_of_burst_length() -> None:
    _, plans = run(Impairment(burst_loss=0.02, burst_length=4, seed=2))
    runs, current = [], 0
    for p in plans:
        if not p:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    assert runs and all(r % 4 == 0 for r in runs)  # back-to-back bursts join into multiples


def test_delay_jitter_reorder_duplicate_truncate() -> None:
    imp = Impairment(
        delay=0.01, jitter=0.03, reorder=0.1, reorder_delay=0.05, duplicate=0.1, truncate=0.1
    )
    imp_er, plans = run(imp)
    delays = [d for p in plans for d, _ in p]
    assert min(delays) >= 0.01 and max(delays) <= 0.01 + 0.03 + 0.05 + 0.001 + 1e-9
    held = sum(
        1 for p in plans if p and p[0][0] > 0.04 + 1e-9
    )  # only a reordered one waits that long
    assert held == imp_er.reordered > 100
    dups = [p for p in plans if len(p) == 2]
    assert len(dups) == imp_er.duplicated > 100 and all(a[1] == b[1] for a, b in dups)
    short = [data for p in plans for _, data in p if len(data) < 172]
    assert imp_er.truncated > 100 and all(1 <= len(d) < 172 for d in short)


def test_parse_takes_percentages_and_milliseconds_and_names_what_is_wrong() -> None:
    imp = Impairment.parse("loss=5%, jitter=30ms, reorder=0.1, delay=0.2s, seed=9")
    assert (imp.loss, imp.jitter, imp.reorder, imp.delay, imp.seed) == (0.05, 0.03, 0.1, 0.2, 9)
    assert Impairment.parse("none").clean and not imp.clean
    with pytest.raises(ValueError, match="lossy"):
        Impairment.parse("lossy=5%")
    with pytest.raises(ValueError, match=r"loss=.*probability"):
        Impairment.parse("loss=150%")
    with pytest.raises(ValueError, match="not a number"):
        Impairment.parse("jitter=fast")
