"""SIP timer values (RFC 3261 §17 and Table 4, RFC 6026).

Every timer of the transaction layer is derived from :class:`TimerConfig`, so tests can run
the state machines with a short ``t1`` and an endpoint can be tuned for a given network::

    Timer  meaning                                    value
    A      INVITE request retransmit (UDP)            T1, doubling
    B      INVITE client transaction timeout          timeout (64*T1)
    C      INVITE waits for a final response          timer_c (180 s) after the last provisional
    D      wait for response retransmits              timer_d (32 s) for UDP, 0 for TCP/TLS
    E      non-INVITE request retransmit (UDP)        T1, doubling up to T2
    F      non-INVITE client transaction timeout      timeout (64*T1)
    G      INVITE final response retransmit (UDP)     T1, doubling up to T2
    H      wait for ACK of a non-2xx final response   timeout (64*T1)
    I      wait for ACK retransmits                   T4 for UDP, 0 for TCP/TLS
    J      wait for non-INVITE request retransmits    timeout (64*T1) for UDP, 0 for TCP/TLS
    K      wait for non-INVITE response retransmits   T4 for UDP, 0 for TCP/TLS
    L      INVITE server stays "Accepted" (RFC 6026)  timeout (64*T1)
    M      INVITE client stays "Accepted" (RFC 6026)  timeout (64*T1)

The UAS core retransmits a 2xx to INVITE (T1 doubling up to T2) until the ACK comes or
``ack_wait`` (64*T1) has passed. ``trying_delay`` is how long an INVITE server transaction
waits for the user agent before it sends ``100 Trying`` itself (RFC 3261 §17.2.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from w3sipagent.errors import ConfigError

__all__ = [
    "TimerConfig",
]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1, T2, T4 and the timeouts derived from them, in seconds.

    ``None`` for ``timeout`` and ``ack_wait`` means 64*T1; ``None`` for ``timer_c`` or
    ``trying_delay`` switches that timer off.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timeout: float | None = None
    ack_wait: float | None = None
    timer_c: float | None = 180.0
    timer_d: float = 32.0
    trying_delay: float | None = 0.2

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TimerConfig.{name}: must be > 0, got {getattr(self, name)!r}")
        if self.t2 < self.t1:
            raise ConfigError(f"TimerConfig.t2: must be >= t1 ({self.t1}), got {self.t2}")
        for name in ("timeout", "ack_wait", "timer_c", "trying_delay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"TimerConfig.{name}: must be >= 0 or None, got {value!r}")
        if self.timer_d < 0:
            raise ConfigError(f"TimerConfig.timer_d: must be >= 0, got {self.timer_d!r}")

    @property
    def transaction_timeout(self) -> float:
        """Timers B, F, H, J (UDP), L and M: ``timeout`` or 64*T1."""
        return 64 * self.t1 if self.timeout is None else self.timeout

    @property
    def ack_timeout(self) -> float:
        """How long the UAS core retransmits a 2xx waiting for its ACK: ``ack_wait`` or 64*T1."""
        return 64 * self.t1 if self.ack_wait is None else self.ack_wait
