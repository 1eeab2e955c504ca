"""An answered INVITE whose dialog the SIP core could not build (a Contact it cannot
parse) is forgotten once the call ends. Found by the fuzzer (benchmarks/fuzz_bench.py):
the call table kept such calls, with their jitter buffers and queues, for good: the
agent's memory grew with every one (about 0.6 kB per fuzzed message)."""

from __future__ import annotations

import gc
import random
import socket

import pytest

from tests.netns.fuzz import Target, join, seed_message
from tests.wait import wait_until
from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.useragent import UserAgent, UserAgentConfig


def calls_alive() -> int:
    gc.collect()
    return sum(isinstance(o, Call) for o in gc.get_objects())


@pytest.mark.parametrize("contact", [b"garbage<", b"<sip:>", b"*", b"<sip:fuzz@127.0.0.1:9>"])
async def test_call_with_an_unparsable_contact_is_forgotten(contact: bytes) -> None:
    ua = UserAgent(
        UserAgentConfig(host="127.0.0.1", port=0, t1=0.02, rtp_port_min=42000, rtp_port_max=42099)
    )
    await ua.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        alive_before = calls_alive()
        head, body = seed_message(
            random.Random(1), Target("127.0.0.1", ua.port, sock.getsockname()[1]), "INVITE"
        )
        head = [b"Contact: " + contact if h.startswith(b"Contact:") else h for h in head]
        sock.sendto(join(head, body), ("127.0.0.1", ua.port))
        answers: list[bytes] = []

        def answered() -> bool:
            try:
                answers.append(sock.recv(65535))
            except BlockingIOError:
                pass
            return any(a.startswith(b"SIP/2.0 200") for a in answers)

        await wait_until(answered, 5, "the 200 OK")
        # never ACKed: the call ends when the ACK wait (64 x T1) runs out
        await wait_until(lambda: not ua.calls and ua.ports.in_use == 0, 10, "the call ended")
        # its BYE transaction (unanswered) holds it a little longer: 64 x T1 = 1.3 s
        await wait_until(lambda: calls_alive() == alive_before, 5, "the call forgotten")
    finally:
        sock.close()
        await ua.close(timeout=0)
