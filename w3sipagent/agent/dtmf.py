"""DTMF from the caller: digit actions and digits collected into one message (pure).

A digit mapped in the tenant's ``dtmf`` table is an action (:class:`DtmfAction`):
``transfer:NAME``, ``hangup`` or ``message:TEXT``. Other digits are collected: digits
pressed within ``collect_timeout`` of each other reach the model as one message
(:func:`keypad_message`). :class:`DtmfCollector` takes the clock time of each press and
says when the collected digits are due; the caller of it arms the timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DtmfAction", "DtmfCollector", "keypad_message"]


@dataclass(frozen=True, slots=True)
class DtmfAction:
    """The action mapped to a digit: ``kind`` transfer / hangup / message (or unknown)."""

    digit: str
    kind: str
    arg: str

    @classmethod
    def parse(cls, digit: str, action: str) -> DtmfAction:
        kind, _, arg = action.partition(":")
        return cls(digit, kind, arg)


def keypad_message(digits: str) -> str:
    """What the model is told about collected digits."""
    return f"The caller pressed {digits} on the keypad."


class DtmfCollector:
    """Digits pressed by the caller (see the module docstring)."""

    def __init__(self, actions: Mapping[str, str], collect_timeout: float) -> None:
        self.actions = actions
        self.collect_timeout = collect_timeout
        self._digits = ""
        self._deadline: float | None = None

    @property
    def digits(self) -> str:
        """The digits collected and not yet flushed."""
        return self._digits

    @property
    def deadline(self) -> float | None:
        """When the collected digits are due (None: nothing collected)."""
        return self._deadline

    def press(self, digit: str, now: float) -> DtmfAction | None:
        """A digit at clock time ``now``: its action, or None when it was collected (then
        the collection is due at :attr:`deadline`, ``collect_timeout`` after this press)."""
        acts = self.actions
        action = acts.get(digit) or acts.get(digit.upper())
        if action is not None:
            return DtmfAction.parse(digit, action)
        self._digits += digit
        self._deadline = now + self.collect_timeout
        return None

    def due(self, now: float) -> str | None:
        """The collected digits when they are due at ``now`` (then forgotten), else None."""
        if self._deadline is None or now < self._deadline:
            return None
        return self.flush()

    def flush(self) -> str:
        """The collected digits, now (possibly empty); the collection starts over."""
        digits, self._digits = self._digits, ""
        self._deadline = None
        return digits
