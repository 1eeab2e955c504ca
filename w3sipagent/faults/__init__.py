"""Fault injection for testing an agent the way a bad network and a bad AI service would.

- :mod:`w3sipagent.faults.impair`: seeded datagram impairments (loss, burst loss, delay,
  jitter, reordering, duplication, truncation);
- :mod:`w3sipagent.faults.relay`: :class:`ImpairingRelay`, SIP/UDP and RTP between a peer
  and an agent through those impairments;
- :mod:`w3sipagent.faults.aiproxy`: :class:`FaultProxy`, a TCP proxy in front of an AI
  service (WebSocket or HTTP) that stalls, reads slowly, goes half-open, closes without a
  close frame or injects garbage frames.

docs/testing-faults.md shows how to use them against a running agent.
"""

from w3sipagent.faults.aiproxy import AIFault, FaultPlan, FaultProxy
from w3sipagent.faults.impair import Impairer, Impairment
from w3sipagent.faults.relay import ImpairingRelay, Impairments

__all__ = [
    "AIFault",
    "FaultPlan",
    "FaultProxy",
    "Impairer",
    "ImpairingRelay",
    "Impairment",
    "Impairments",
]
