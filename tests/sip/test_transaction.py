"""The four transaction machines driven directly through a recording sink."""

from __future__ import annotations

from typing import Any

import pytest

from w3sipagent.errors import ConfigError
from w3sipagent.sip.message import SipRequest, SipResponse, make_response, parse_message
from w3sipagent.sip.timers import TimerConfig
from w3sipagent.sip.transaction import (
    TABLES,
    Input,
    Kind,
    State,
    Transaction,
    build_cancel,
    build_non2xx_ack,
    client_key,
    is_rfc2543_key,
    response_input,
    server_key,
    to_tag_matches,
)

DEST = ("127.0.0.2", 5060)

INVITE = (
    b"INVITE sip:bob@127.0.0.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:p1.example.com;lr>\r\n"
    b"Route: <sip:p2.example.com;lr>\r\n"
    b'From: "Alice" <sip:alice@127.0.0.1>;tag=111\r\n'
    b"To: <sip:bob@127.0.0.2>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 4 INVITE\r\n"
    b"Contact: <sip:alice@127.0.0.1>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> SipRequest:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    return msg


def options() -> SipRequest:
    msg = parse_message(INVITE.replace(b"INVITE", b"OPTIONS"))
    assert isinstance(msg, SipRequest)
    return msg


class Sink:
    """Records what a transaction asks of its core."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int], str]] = []
        self.armed: list[float] = []
        self.responses: list[int] = []
        self.acks: list[SipRequest] = []
        self.timeouts: list[str] = []
        self.transport_errors = 0
        self.ended = False

    def transmit(self, data: bytes, destination: tuple[str, int], transport: str) -> None:
        self.sent.append((data, destination, transport))

    def arm_timer(self, tx: Transaction, deadline: float) -> None:
        self.armed.append(deadline)

    def response_received(self, tx: Transaction, response: SipResponse) -> None:
        self.responses.append(response.status)

    def ack_received(self, tx: Transaction, ack: SipRequest) -> None:
        self.acks.append(ack)

    def timed_out(self, tx: Transaction, timer: str) -> None:
        self.timeouts.append(timer)

    def transport_failed(self, tx: Transaction) -> None:
        self.transport_errors += 1

    def terminated(self, tx: Transaction) -> None:
        self.ended = True


def tx_of(
    kind: Kind, req: SipRequest, transport: str = "UDP", **timers: Any
) -> tuple[Transaction, Sink]:
    sink = Sink()
    tx = Transaction(1, kind, req, DEST, transport, TimerConfig(**timers), sink)
    tx.start(0.0)
    return tx, sink


def state(tx: Transaction) -> State:
    return tx.state


def run(tx: Transaction, until: float) -> None:
    while (d := tx.next_deadline()) is not None and d <= until:
        tx.handle_timers(d)


def resp(req: SipRequest, status: int, tag: str | None = "t9") -> SipResponse:
    return make_response(req, status, to_tag=tag)


# -- the tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_every_table_starts_from_init_and_can_terminate(kind: Kind) -> None:
    table = TABLES[kind]
    assert (State.INIT, Input.START) in table
    reachable = {State.INIT}
    changed = True
    while changed:
        changed = False
        for (state, _), (_, nxt) in table.items():
            if state in reachable and nxt not in reachable:
                reachable.add(nxt)
                changed = True
    assert State.TERMINATED in reachable
    assert all(state is not State.TERMINATED for state, _ in table)  # nothing leaves Terminated


def test_missing_entry_is_ignored_not_an_error() -> None:
    tx, sink = tx_of(Kind.NON_INVITE_CLIENT, options())
    assert tx.handle(Input.ACK, 0.1) is False
    assert state(tx) is State.TRYING and sink.timeouts == []


def test_response_input_classes() -> None:
    assert response_input(100) is Input.PROVISIONAL
    assert response_input(199) is Input.PROVISIONAL
    assert response_input(204) is Input.SUCCESS
    assert response_input(302) is Input.FAILURE
    assert response_input(699) is Input.FAILURE


# -- INVITE client ---------------------------------------------------------------------------------


def test_invite_client_udp_timer_a_doubles_without_cap_until_b() -> None:
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite(), t1=0.5, t2=4.0)
    sent_at = [0.0]
    while (d := tx.next_deadline()) is not None:
        n = len(sink.sent)
        tx.handle_timers(d)
        if len(sink.sent) > n:
            sent_at.append(d)
    assert sent_at == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert sink.timeouts == ["B"] and state(tx) is State.TERMINATED and sink.ended
    assert all(s[0] == bytes(invite()) for s in sink.sent)


def test_invite_client_2xx_goes_to_accepted_and_passes_retransmissions() -> None:
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite())
    assert tx.receive_response(resp(tx.request, 180), 0.1)
    assert state(tx) is State.PROCEEDING
    assert tx.receive_response(resp(tx.request, 200), 0.2)
    assert state(tx) is State.ACCEPTED
    assert tx.receive_response(resp(tx.request, 200), 0.3)
    assert sink.responses == [180, 200, 200]
    assert len(sink.sent) == 1  # no ACK for a 2xx from the transaction
    run(tx, 100)
    assert state(tx) is State.TERMINATED and sink.timeouts == []  # Timer M, silently


def test_invite_client_non2xx_ack_absorbs_retransmitted_final() -> None:
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite())
    tx.receive_response(resp(tx.request, 404), 0.1)
    assert state(tx) is State.COMPLETED
    tx.receive_response(resp(tx.request, 404), 0.2)
    assert sink.responses == [404]
    assert [d[0][:4] for d in sink.sent] == [b"INVI", b"ACK ", b"ACK "]
    assert sink.sent[1][0] == sink.sent[2][0]
    assert tx.next_deadline() == pytest.approx(32.1)  # Timer D
    run(tx, 40)
    assert state(tx) is State.TERMINATED


def test_invite_client_timer_c_after_provisional() -> None:
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite(), timer_c=5.0)
    tx.receive_response(resp(tx.request, 183), 1.0)
    assert tx.next_deadline() == 6.0
    tx.receive_response(resp(tx.request, 180), 2.0)  # restarts C
    run(tx, 7.5)
    assert sink.timeouts == ["C"] and state(tx) is State.PROCEEDING
    run(tx, 100)
    assert sink.timeouts == ["C", "B"] and state(tx) is State.TERMINATED


def test_timer_c_in_calling_and_transport_error() -> None:
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite(), timer_c=1.0)
    run(tx, 1.0)
    assert sink.timeouts == ["C"] and tx.terminated
    tx2, sink2 = tx_of(Kind.INVITE_CLIENT, invite())
    tx2.handle(Input.TRANSPORT_ERROR, 0.1)
    assert sink2.transport_errors == 1 and tx2.terminated


def test_invite_client_tcp_no_timer_a_and_no_wait_in_completed() -> None:
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite(), transport="tcp")
    assert tx.reliable and tx.transport == "TCP"
    assert tx.timers.keys() == {"B", "C"}
    tx.receive_response(resp(tx.request, 486), 0.1)
    assert state(tx) is State.TERMINATED and len(sink.sent) == 2


# -- non-INVITE client -----------------------------------------------------------------------------


def test_non_invite_client_timer_e_caps_at_t2_and_k_after_final() -> None:
    tx, sink = tx_of(Kind.NON_INVITE_CLIENT, options(), t1=0.5, t2=4.0, t4=5.0)
    run(tx, 8.0)
    assert len(sink.sent) == 5  # 0, .5, 1.5, 3.5, 7.5
    tx.receive_response(resp(tx.request, 100), 8.1)
    assert state(tx) is State.PROCEEDING
    run(tx, 11.5)
    assert len(sink.sent) == 6  # E fired at 11.5, reset to T2
    assert tx.next_deadline() == 15.5
    tx.receive_response(resp(tx.request, 200), 12.0)
    tx.receive_response(resp(tx.request, 200), 12.1)  # absorbed in Completed
    assert sink.responses == [100, 200]
    assert tx.timers == {"K": 17.0}
    run(tx, 17.0)
    assert tx.terminated


def test_non_invite_client_final_from_trying_and_transport_errors() -> None:
    tx, sink = tx_of(Kind.NON_INVITE_CLIENT, options())
    tx.receive_response(resp(tx.request, 503), 0.1)
    assert state(tx) is State.COMPLETED and sink.responses == [503]
    tx2, sink2 = tx_of(Kind.NON_INVITE_CLIENT, options())
    tx2.receive_response(resp(tx2.request, 180), 0.1)
    tx2.handle(Input.TRANSPORT_ERROR, 0.2)
    assert sink2.transport_errors == 1 and tx2.terminated
    tx3, _ = tx_of(Kind.NON_INVITE_CLIENT, options())
    run(tx3, 100)
    assert tx3.terminated


# -- INVITE server ---------------------------------------------------------------------------------


def test_invite_server_trying_then_non2xx_g_doubles_to_t2_then_h() -> None:
    tx, sink = tx_of(Kind.INVITE_SERVER, invite(), t1=0.5, t2=4.0)
    run(tx, 0.2)
    assert len(sink.sent) == 1 and sink.sent[0][0].startswith(b"SIP/2.0 100 Trying")
    tx.handle(Input.REQUEST, 0.3, tx.request)
    assert len(sink.sent) == 2 and sink.sent[1][0] == sink.sent[0][0]
    tx.receive_response(resp(tx.request, 480), 1.0)
    sent_at: list[float] = []
    while (d := tx.next_deadline()) is not None:
        n = len(sink.sent)
        tx.handle_timers(d)
        if len(sink.sent) > n:
            sent_at.append(d)
    assert sent_at == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert sink.timeouts == ["H"] and tx.terminated


def test_invite_server_ack_confirms_then_timer_i() -> None:
    tx, sink = tx_of(Kind.INVITE_SERVER, invite(), t4=5.0)
    tx.receive_response(resp(tx.request, 486), 0.0)
    tx.handle(Input.REQUEST, 0.1, tx.request)  # retransmitted INVITE: the 486 again
    assert len(sink.sent) == 2
    assert tx.handle(Input.ACK, 0.2)
    assert state(tx) is State.CONFIRMED and tx.timers == {"I": 5.2}
    assert tx.handle(Input.ACK, 0.3)  # absorbed
    assert tx.handle(Input.REQUEST, 0.3)  # absorbed
    assert len(sink.sent) == 2
    run(tx, 6)
    assert tx.terminated and sink.timeouts == []


def test_invite_server_accepted_absorbs_invite_and_passes_ack() -> None:
    tx, sink = tx_of(Kind.INVITE_SERVER, invite(), trying_delay=None)
    assert tx.timers == {}
    tx.receive_response(resp(tx.request, 200), 0.0)
    assert state(tx) is State.ACCEPTED
    tx.handle(Input.REQUEST, 0.1, tx.request)
    assert len(sink.sent) == 1  # absorbed: the UAS core retransmits 2xx, not the transaction
    ack = build_non2xx_ack(tx.request, resp(tx.request, 200))
    tx.handle(Input.ACK, 0.2, ack)
    assert sink.acks == [ack]
    assert tx.receive_response(resp(tx.request, 200), 0.3)  # a 2xx from the TU goes out
    assert len(sink.sent) == 2
    assert not tx.receive_response(resp(tx.request, 486), 0.4)  # no final after a 2xx
    run(tx, 100)
    assert tx.terminated


def test_invite_server_tcp_no_g_and_i_zero() -> None:
    tx, _sink = tx_of(Kind.INVITE_SERVER, invite(), transport="TLS")
    tx.receive_response(resp(tx.request, 603), 0.0)
    assert set(tx.timers) == {"H"}
    tx.handle(Input.ACK, 0.1)
    assert tx.terminated


def test_invite_server_transport_errors() -> None:
    tx, sink = tx_of(Kind.INVITE_SERVER, invite())
    tx.handle(Input.TRANSPORT_ERROR, 0.0)
    assert tx.terminated and sink.transport_errors == 1
    tx2, sink2 = tx_of(Kind.INVITE_SERVER, invite())
    tx2.receive_response(resp(tx2.request, 500), 0.0)
    tx2.handle(Input.TRANSPORT_ERROR, 0.0)
    assert tx2.terminated and sink2.transport_errors == 1


# -- non-INVITE server -----------------------------------------------------------------------------


def test_non_invite_server_trying_proceeding_completed_j() -> None:
    tx, sink = tx_of(Kind.NON_INVITE_SERVER, options())
    tx.handle(Input.REQUEST, 0.1)  # nothing to resend yet
    assert sink.sent == []
    tx.receive_response(resp(tx.request, 100, None), 0.2)
    tx.handle(Input.REQUEST, 0.3)
    assert len(sink.sent) == 2
    tx.receive_response(resp(tx.request, 200), 0.4)
    tx.handle(Input.REQUEST, 0.5)
    assert [d[0][:11] for d in sink.sent] == [b"SIP/2.0 100"] * 2 + [b"SIP/2.0 200"] * 2
    assert not tx.receive_response(resp(tx.request, 500), 0.6)  # discarded in Completed
    assert tx.timers == {"J": pytest.approx(32.4)}
    run(tx, 40)
    assert tx.terminated


def test_non_invite_server_final_from_trying_over_tcp_ends_at_once() -> None:
    tx, sink = tx_of(Kind.NON_INVITE_SERVER, options(), transport="TCP")
    tx.receive_response(resp(tx.request, 200), 0.0)
    assert tx.terminated and sink.ended and len(sink.sent) == 1
    tx2, sink2 = tx_of(Kind.NON_INVITE_SERVER, options())
    tx2.receive_response(resp(tx2.request, 180), 0.0)
    tx2.handle(Input.TRANSPORT_ERROR, 0.1)
    assert tx2.terminated and sink2.transport_errors == 1
    tx3, sink3 = tx_of(Kind.NON_INVITE_SERVER, options())
    tx3.receive_response(resp(tx3.request, 400), 0.0)
    tx3.handle(Input.TRANSPORT_ERROR, 0.1)
    assert sink3.transport_errors == 1


def test_repr_and_properties() -> None:
    tx, _ = tx_of(Kind.INVITE_SERVER, invite())
    assert repr(tx) == "<Transaction 1 INVITE server INVITE Proceeding>"
    assert not tx.is_client and not tx.terminated


# -- builders and keys -----------------------------------------------------------------------------


def test_non2xx_ack_construction_rfc3261_17_1_1_3() -> None:
    req = invite()
    ack = build_non2xx_ack(req, resp(req, 486, "zz"))
    text = bytes(ack).decode()
    assert text.startswith("ACK sip:bob@127.0.0.2 SIP/2.0\r\n")
    assert ack.headers.get_all("Via") == ["SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport"]
    assert ack.headers.get("From") == '"Alice" <sip:alice@127.0.0.1>;tag=111'
    assert ack.headers.get("To") == "<sip:bob@127.0.0.2>;tag=zz"
    assert ack.headers.get("CSeq") == "4 ACK" and ack.call_id == "c1"
    assert ack.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert ack.headers.get("Contact") is None and ack.body == b""


def test_cancel_construction_rfc3261_9_1() -> None:
    req = invite()
    cancel = build_cancel(req)
    assert cancel.method == "CANCEL" and cancel.uri == req.uri
    assert cancel.via.branch == "z9hG4bKabc"
    assert cancel.headers.get("To") == "<sip:bob@127.0.0.2>"
    assert cancel.headers.get("CSeq") == "4 CANCEL"
    assert len(cancel.headers.get_all("Route")) == 2


def test_server_keys_rfc3261_and_rfc2543() -> None:
    req = invite()
    key = server_key(req)
    assert key == ("z9hG4bKabc", "127.0.0.1", 5060, "INVITE")
    ack = build_non2xx_ack(req, resp(req, 486))
    assert server_key(ack) == key  # ACK matches the INVITE
    assert server_key(build_cancel(req)) != key
    assert server_key(build_cancel(req), "INVITE") == key
    assert not is_rfc2543_key(key)
    old = parse_message(INVITE.replace(b";branch=z9hG4bKabc", b";branch=1234"))
    assert isinstance(old, SipRequest)
    old_key = server_key(old)
    assert is_rfc2543_key(old_key)
    assert old_key[1:6] == ("sip:bob@127.0.0.2", "111", "c1", 4, "INVITE")
    assert client_key("z9hG4bKabc", "INVITE") != client_key("z9hG4bKabc", "CANCEL")


def test_to_tag_matching_for_rfc2543() -> None:
    tx, _ = tx_of(Kind.INVITE_SERVER, invite())
    ack = build_non2xx_ack(tx.request, resp(tx.request, 486, "t7"))
    assert to_tag_matches(tx, ack)  # no response sent yet: nothing to compare with
    tx.receive_response(resp(tx.request, 486, "t7"), 0.0)
    assert to_tag_matches(tx, ack)
    assert not to_tag_matches(tx, build_non2xx_ack(tx.request, resp(tx.request, 486, "other")))
    assert to_tag_matches(tx, tx.request)


# -- TimerConfig -----------------------------------------------------------------------------------


def test_timer_config_defaults_and_derived_values() -> None:
    cfg = TimerConfig()
    assert (cfg.t1, cfg.t2, cfg.t4) == (0.5, 4.0, 5.0)
    assert cfg.transaction_timeout == 32.0 and cfg.ack_timeout == 32.0
    short = TimerConfig(t1=0.01, t2=0.04, t4=0.05)
    assert short.transaction_timeout == pytest.approx(0.64)
    assert TimerConfig(timeout=3.0, ack_wait=2.0).transaction_timeout == 3.0
    assert TimerConfig(timeout=3.0, ack_wait=2.0).ack_timeout == 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t1": 0}, "t1: must be > 0"),
        ({"t4": -1}, "t4: must be > 0"),
        ({"t1": 5.0, "t2": 4.0}, "t2: must be >= t1"),
        ({"timeout": -1.0}, "timeout: must be >= 0"),
        ({"trying_delay": -0.1}, "trying_delay: must be >= 0"),
        ({"timer_d": -1.0}, "timer_d: must be >= 0"),
    ],
)
def test_timer_config_rejects_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TimerConfig(**kwargs)


# Odd values so that any hard-coded default (0.5 / 4 / 5 / 32 / 64*T1 / 180) would show.
ODD: dict[str, Any] = {
    "t1": 0.03,
    "t2": 0.1,
    "t4": 0.7,
    "timer_d": 1.3,
    "timeout": 2.9,
    "timer_c": 3.7,
}


def _fired(tx: Transaction, sink: Sink, until: float = 100.0) -> list[tuple[float, int, str]]:
    """(time, datagrams sent so far, timeouts) at each timer deadline until termination."""
    out: list[tuple[float, int, str]] = []
    while (d := tx.next_deadline()) is not None and d <= until:
        tx.handle_timers(d)
        out.append((round(d, 6), len(sink.sent), ",".join(sink.timeouts)))
    return out


def test_every_timer_follows_the_configuration() -> None:
    """Timers A-K (and C, L, M, 100 Trying) take their values from TimerConfig."""
    # A doubles from T1 without cap, B = timeout.
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite(), **ODD)
    fired = _fired(tx, sink)
    assert [t for t, _, _ in fired][:5] == [0.03, 0.09, 0.21, 0.45, 0.93]
    assert fired[-1] == (2.9, 7, "B") and tx.terminated
    # C after a provisional, then B again for the final answer.
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite(), **ODD)
    tx.receive_response(resp(tx.request, 180), 0.0)
    assert tx.timers == {"C": 3.7}
    # D = timer_d after a non-2xx (UDP).
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite(), **ODD)
    tx.receive_response(resp(tx.request, 486), 0.0)
    assert tx.timers == {"D": 1.3}
    # M = timeout after a 2xx.
    tx, sink = tx_of(Kind.INVITE_CLIENT, invite(), **ODD)
    tx.receive_response(resp(tx.request, 200), 0.0)
    assert tx.timers == {"M": 2.9}
    # E doubles from T1 capped at T2, F = timeout; K = T4 after the final.
    tx, sink = tx_of(Kind.NON_INVITE_CLIENT, options(), **ODD)
    fired = _fired(tx, sink, until=0.5)
    assert [t for t, _, _ in fired] == [0.03, 0.09, 0.19, 0.29, 0.39, 0.49]
    assert tx.timers["F"] == 2.9
    tx.receive_response(resp(tx.request, 200), 0.5)
    assert tx.timers == {"K": 0.5 + 0.7}
    # 100 Trying delay, G doubles from T1 capped at T2, H = timeout; I = T4 after the ACK.
    tx, sink = tx_of(Kind.INVITE_SERVER, invite(), trying_delay=0.011, **ODD)
    assert tx.timers == {"100": 0.011}
    tx.receive_response(resp(tx.request, 486), 0.0)
    assert tx.timers == {"G": 0.03, "H": 2.9}
    fired = _fired(tx, sink, until=0.5)
    assert [t for t, _, _ in fired] == [0.03, 0.09, 0.19, 0.29, 0.39, 0.49]
    tx.handle(Input.ACK, 0.5)
    assert tx.timers == {"I": 0.5 + 0.7}
    # L = timeout after a 2xx.
    tx, sink = tx_of(Kind.INVITE_SERVER, invite(), trying_delay=None, **ODD)
    tx.receive_response(resp(tx.request, 200), 0.0)
    assert tx.timers == {"L": 2.9}
    # J = timeout over UDP after a non-INVITE final response.
    tx, sink = tx_of(Kind.NON_INVITE_SERVER, options(), **ODD)
    tx.receive_response(resp(tx.request, 200), 0.0)
    assert tx.timers == {"J": 2.9}
