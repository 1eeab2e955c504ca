"""Network impairments for datagrams, drawn from a seeded RNG so a run can be replayed.

:class:`Impairment` says what a path does to the datagrams crossing it (the knobs of Linux
``netem``, which this machine's kernel lacks): independent loss, burst loss, a fixed delay
plus uniform jitter, reordering (a datagram held back so later ones overtake it),
duplication and truncation. :class:`Impairer` applies one to a stream of datagrams: for each
one it returns the copies to deliver and the delay of each (nothing when lost). The same
seed and the same datagrams give the same decisions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

__all__ = ["Impairer", "Impairment"]


@dataclass(frozen=True, slots=True)
class Impairment:
    """What a path does to datagrams. Probabilities are 0..1, times are seconds.

    - ``loss``: each datagram is dropped with this probability;
    - ``burst_loss`` / ``burst_length``: a burst of ``burst_length`` datagrams in a row is
      lost, starting at a datagram with probability ``burst_loss``;
    - ``delay`` + ``jitter``: each datagram waits ``delay`` plus a uniform draw in
      ``[0, jitter]`` (jitter alone reorders datagrams closer together than it);
    - ``reorder`` / ``reorder_delay``: a datagram is held ``reorder_delay`` more, so the
      ones sent after it overtake it;
    - ``duplicate``: a second copy is delivered too (1 ms later);
    - ``truncate``: the datagram is cut to a random length (1 byte up to one less than its
      size);
    - ``seed``: the RNG seed (the same seed and the same traffic give the same run).
    """

    loss: float = 0.0
    burst_loss: float = 0.0
    burst_length: int = 3
    delay: float = 0.0
    jitter: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.04
    duplicate: float = 0.0
    truncate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("loss", "burst_loss", "reorder", "duplicate", "truncate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"impairment {name}={value!r}: a probability from 0 to 1")
        for name in ("delay", "jitter", "reorder_delay"):
            value = getattr(self, name)
            if not 0.0 <= value <= 60.0:
                raise ValueError(f"impairment {name}={value!r}: seconds from 0 to 60")
        if not 1 <= self.burst_length <= 1000:
            raise ValueError(f"impairment burst_length={self.burst_length!r}: 1 to 1000")

    @property
    def clean(self) -> bool:
        """True when the path does nothing to datagrams."""
        return (
            self.loss == self.burst_loss == self.reorder == self.duplicate == 0.0
            and self.truncate == self.delay == self.jitter == 0.0
        )

    def with_seed(self, seed: int) -> Impairment:
        """The same impairment with another seed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["seed"] = seed
        return Impairment(**values)

    @classmethod
    def parse(cls, spec: str) -> Impairment:
        """``"loss=5%,jitter=30ms,reorder=10%,seed=7"`` -> an Impairment.

        Probabilities take a fraction or a percentage, times seconds or ``ms``; ``""`` or
        ``"none"`` is a clean path. Unknown names and bad values raise ValueError naming them.
        """
        spec = spec.strip()
        if spec in ("", "none"):
            return cls()
        names = {f.name: f.type for f in fields(cls)}
        values: dict[str, float | int] = {}
        for part in spec.split(","):
            name, sep, raw = part.partition("=")
            name, raw = name.strip(), raw.strip()
            if not sep or name not in names:
                known = ", ".join(names)
                raise ValueError(
                    f"impairment {part.strip()!r}: expected NAME=VALUE, NAME one of {known}"
                )
            try:
                if name in ("seed", "burst_length"):
                    values[name] = int(raw)
                elif raw.endswith("%"):
                    values[name] = float(raw[:-1]) / 100.0
                elif raw.endswith("ms"):
                    values[name] = float(raw[:-2]) / 1000.0
                elif raw.endswith("s"):
                    values[name] = float(raw[:-1])
                else:
                    values[name] = float(raw)
            except ValueError:
                raise ValueError(f"impairment {name}={raw!r}: not a number") from None
        return cls(**values)  # type: ignore[arg-type]


class Impairer:
    """Applies one :class:`Impairment` to a stream of datagrams, counting what it did."""

    def __init__(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self._rng = random.Random(impairment.seed)
        self._burst_left = 0
        self.seen = 0
        self.lost = 0
        self.delivered = 0
        self.reordered = 0
        self.duplicated = 0
        self.truncated = 0

    def plan(self, data: bytes) -> list[tuple[float, bytes]]:
        """The copies of ``data`` to deliver, each with its delay in seconds ([] = lost)."""
        imp, rng = self.impairment, self._rng
        self.seen += 1
        # every draw happens for every datagram: a decision never shifts the later ones
        lost = rng.random() < imp.loss
        burst = rng.random() < imp.burst_loss
        jitter = rng.random() * imp.jitter
        reorder = rng.random() < imp.reorder
        duplicate = rng.random() < imp.duplicate
        truncate = rng.random() < imp.truncate
        cut = rng.random()
        if burst and self._burst_left == 0:
            self._burst_left = imp.burst_length
        if self._burst_left:
            self._burst_left -= 1
            lost = True
        if lost:
            self.lost += 1
            return []
        delay = imp.delay + jitter
        if reorder:
            delay += imp.reorder_delay
            self.reordered += 1
        if truncate and len(data) > 1:
            data = data[: 1 + int(cut * (len(data) - 1))]
            self.truncated += 1
        out = [(delay, data)]
        if duplicate:
            out.append((delay + 0.001, data))
            self.duplicated += 1
        self.delivered += len(out)
        return out

    def counts(self) -> dict[str, int]:
        """What happened so far: seen, lost, delivered, reordered, duplicated, truncated."""
        return {
            "seen": self.seen,
            "lost": self.lost,
            "delivered": self.delivered,
            "reordered": self.reordered,
            "duplicated": self.duplicated,
            "truncated": self.truncated,
        }
