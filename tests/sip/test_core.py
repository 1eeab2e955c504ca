"""Two SipCores driven against each other in memory with a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from w3sipagent.errors import TransactionError
from w3sipagent.sip.core import InvalidDestination, response_destination
from w3sipagent.sip.dialog import DialogState
from w3sipagent.sip.events import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    MalformedRequest,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimedOut,
    TransportFailed,
)
from w3sipagent.sip.headers import Via
from w3sipagent.sip.message import SipRequest, parse_message
from w3sipagent.sip.timers import TimerConfig
from w3sipagent.sip.transaction import State

from .helpers import ALICE, BOB, FAST, Network, make_core, pair, request

CONTACT_B = ("Contact", f"<sip:bob@{BOB[0]}:{BOB[1]}>")


def times(sent: list) -> list[float]:  # type: ignore[type-arg]
    return [round(s.time, 6) for s in sent]


def responses(events: list[SipEvent]) -> list[ResponseReceived]:
    return [e for e in events if isinstance(e, ResponseReceived)]


def only(events: list, kind: type):  # type: ignore[no-untyped-def, type-arg]
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, events
    return found[0]


def invite_to_bob(net: Network, a, b, now: float = 0.0) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    ctx = a.send_request(request("INVITE", body=b"v=0\r\n"), BOB, now)
    net.pump()
    ev = only(net.take(BOB), RequestReceived)
    return ctx, ev.transaction


# -- INVITE: 1xx / 2xx / ACK -----------------------------------------------------------------------


def test_invite_ringing_ok_ack_creates_dialogs_on_both_sides() -> None:
    net, a, b = pair()
    ctx, stx = invite_to_bob(net, a, b)
    assert b.send_response(stx, b.create_response(stx, 180, headers=[CONTACT_B]), 0.0)
    net.pump()
    ringing = only(net.take(ALICE), ResponseReceived)
    assert ringing.response.status == 180 and ringing.transaction == ctx
    assert ringing.dialog is not None and ringing.dialog.state is DialogState.EARLY
    ok = b.create_response(
        stx, 200, headers=[CONTACT_B], body=b"v=0\r\n", content_type="application/sdp"
    )
    assert b.send_response(stx, ok, 0.1)
    net.pump()
    answered = only(net.take(ALICE), ResponseReceived)
    dialog = answered.dialog
    assert dialog is ringing.dialog and dialog.state is DialogState.CONFIRMED
    assert dialog.remote_target == "sip:bob@127.0.0.2:5070"
    # the 180 and the 200 carry the same To tag
    assert ringing.response.to.tag == answered.response.to.tag == "b1"
    a.send_ack(dialog.create_ack(), BOB)
    net.pump()
    ack = only(net.take(BOB), AckReceived)
    assert ack.transaction == stx and ack.request.cseq.seq == 1
    # the ACK for a 2xx is a new transaction: new branch
    assert ack.request.via.branch != parse_message(net.sent("INVITE")[0].data).via.branch
    uas = b.dialog(("call-1", "b1", "ft1"))
    assert uas is not None and uas.state is DialogState.CONFIRMED
    assert uas.remote_target == "sip:alice@127.0.0.1:5060"
    net.advance(40)
    assert len(net.sent("SIP/2.0 200")) == 1  # ACKed: never retransmitted
    assert net.take(ALICE) == [] and net.take(BOB) == []
    assert a.get_timer() is None and b.get_timer() is None  # every transaction ended


def test_invite_rejected_gets_ack_in_transaction_same_branch() -> None:
    net, a, b = pair()
    ctx, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 486), 0.0)
    net.pump()
    busy = only(net.take(ALICE), ResponseReceived)
    assert busy.response.status == 486 and busy.dialog is None
    acks = net.sent("ACK")
    assert len(acks) == 1
    ack = acks[0].message
    invite = net.sent("INVITE")[0].message
    assert ack.via.branch == invite.via.branch
    assert ack.to.tag == busy.response.to.tag == "b1"
    assert ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert ack.uri == invite.uri
    assert b.transaction_state(stx) is State.CONFIRMED
    assert net.take(BOB) == []  # the ACK for a non-2xx stays inside the transaction
    net.advance(40)
    assert len(net.sent("SIP/2.0 486")) == 1
    assert b.transaction_state(stx) is State.TERMINATED
    assert a.transaction_state(ctx) is State.TERMINATED


def test_lost_ack_for_non2xx_final_is_recovered_by_timer_g() -> None:
    net, a, b = pair()
    net.drop_if = lambda s: (
        s.first_line.startswith("ACK")
        and not any(x.first_line.startswith("ACK") for x in net.wire[:-1])
    )
    _ctx, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 603), 0.0)
    net.advance(10)
    assert times(net.sent("SIP/2.0 603")) == [0.0, 0.5]
    assert times(net.sent("ACK")) == [0.0, 0.5]  # re-sent by the client transaction
    assert len([e for e in net.take(ALICE) if isinstance(e, ResponseReceived)]) == 1
    assert b.transaction_state(stx) in (State.CONFIRMED, State.TERMINATED)


def test_ack_never_comes_for_non2xx_timer_g_then_h() -> None:
    net = Network()
    b = net.add(BOB, make_core(BOB))
    raw = (
        b"INVITE sip:bob@127.0.0.2:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.9:5099;branch=z9hG4bKnoack\r\n"
        b"From: <sip:x@127.0.0.9>;tag=1\r\nTo: <sip:bob@127.0.0.2>\r\n"
        b"Call-ID: noack\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    b.receive_datagram(raw, ("127.0.0.9", 5099), 0.0)
    stx = only([b.next_event()], RequestReceived).transaction
    b.send_response(stx, b.create_response(stx, 404), 0.0)
    net.run_until(40)
    sent = net.sent("SIP/2.0 404")
    assert times(sent) == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(s.destination == ("127.0.0.9", 5099) for s in sent)
    timeout = only(net.take(BOB), TransactionTimedOut)
    assert timeout.transaction == stx and timeout.timer == "H"
    assert [t for t, e in net.events[BOB]] == []


# -- retransmission timings ------------------------------------------------------------------------


def test_timer_a_retransmits_invite_then_timer_b_times_out() -> None:
    net = Network()
    a = net.add(ALICE, make_core(ALICE))
    ctx = a.send_request(request("INVITE"), BOB, 0.0)  # nobody at BOB
    net.run_until(40)
    assert times(net.sent("INVITE")) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    [(when, event)] = net.events[ALICE]
    assert event == TransactionTimedOut(ctx, "B") and when == 32.0
    assert a.get_timer() is None


def test_timer_e_caps_at_t2_then_timer_f_times_out() -> None:
    net = Network()
    a = net.add(ALICE, make_core(ALICE))
    ctx = a.send_request(request("OPTIONS"), BOB, 0.0)
    net.run_until(40)
    assert times(net.sent("OPTIONS")) == [
        0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    [(when, event)] = net.events[ALICE]
    assert event == TransactionTimedOut(ctx, "F") and when == 32.0


def test_timer_e_is_t2_in_proceeding() -> None:
    net, a, b = pair()
    net.drop_if = lambda s: s.first_line.startswith("OPTIONS") and len(net.sent("OPTIONS")) > 1
    a.send_request(request("OPTIONS"), BOB, 0.0)
    net.pump()
    stx = only(net.take(BOB), RequestReceived).transaction
    b.send_response(stx, b.create_response(stx, 183), 0.0)
    net.run_until(13)
    # in Proceeding the request goes again every T2
    assert times(net.sent("OPTIONS")) == [0.0, 0.5, 4.5, 8.5, 12.5]


def test_short_t1_scales_every_timer() -> None:
    net = Network()
    a = net.add(ALICE, make_core(ALICE, TimerConfig(t1=0.01, t2=0.08)))
    ctx = a.send_request(request("INVITE"), BOB, 0.0)
    net.run_until(1)
    assert times(net.sent("INVITE")) == [0.0, 0.01, 0.03, 0.07, 0.15, 0.31, 0.63]
    assert net.events[ALICE] == [(0.64, TransactionTimedOut(ctx, "B"))]


# -- absorption of retransmissions -----------------------------------------------------------------


def test_retransmitted_non_invite_request_gets_the_last_response_again() -> None:
    net, a, b = pair()
    net.drop = {2}  # lose Bob's first 200
    ctx = a.send_request(request("OPTIONS"), BOB, 0.0)
    net.pump()
    stx = only(net.take(BOB), RequestReceived).transaction
    b.send_response(stx, b.create_response(stx, 200), 0.0)
    net.run_until(10)
    assert times(net.sent("OPTIONS")) == [0.0, 0.5]
    assert times(net.sent("SIP/2.0 200")) == [0.0, 0.5]
    assert net.take(BOB) == []  # the retransmission never reached Bob's user agent
    ok = only(net.take(ALICE), ResponseReceived)
    assert ok.transaction == ctx and ok.response.status == 200


def test_retransmitted_invite_resends_provisional_and_trying_timer() -> None:
    net, a, _b = pair()
    net.drop = {2}  # lose the automatic 100 Trying
    a.send_request(request("INVITE"), BOB, 0.0)
    net.run_until(0.6)
    # Bob's UA was silent: the transaction sent 100 Trying after 200 ms (lost), then
    # answered the retransmitted INVITE with it again.
    assert times(net.sent("SIP/2.0 100")) == [0.2, 0.5]
    assert len(net.take(BOB)) == 1
    net.run_until(10)
    assert times(net.sent("INVITE")) == [0.0, 0.5]  # a 1xx stops Timer A


def test_no_trying_when_the_user_agent_answers_in_time() -> None:
    net, a, b = pair()
    _, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 180, headers=[CONTACT_B]), 0.1)
    net.run_until(1)
    assert net.sent("SIP/2.0 100") == []


def test_2xx_retransmitted_until_ack_then_stops() -> None:
    net, a, b = pair()
    first_ack: list[object] = []

    def lose_first_ack(s):  # type: ignore[no-untyped-def]
        if s.first_line.startswith("ACK") and not first_ack:
            first_ack.append(s)
            return True
        return False

    net.drop_if = lose_first_ack
    _, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 200, headers=[CONTACT_B]), 0.0)
    net.pump()
    dialog = only(net.take(ALICE), ResponseReceived).dialog
    a.send_ack(dialog.create_ack(), BOB)
    net.run_until(40)
    assert times(net.sent("SIP/2.0 200")) == [0.0, 0.5]
    assert times(net.sent("ACK")) == [0.0, 0.5]  # the core re-sent the ACK by itself
    assert net.take(ALICE) == []  # the retransmitted 2xx did not reach Alice's UA again
    ack = only(net.take(BOB), AckReceived)
    assert ack.transaction == stx


def test_2xx_never_acked_gives_ack_timed_out_at_64_t1() -> None:
    net, a, b = pair()
    net.drop_if = lambda s: s.first_line.startswith("ACK")
    _, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 200, headers=[CONTACT_B]), 0.0)
    net.pump()
    dialog = only(net.take(ALICE), ResponseReceived).dialog
    a.send_ack(dialog.create_ack(), BOB)
    net.run_until(40)
    assert times(net.sent("SIP/2.0 200")) == [
        0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    timeouts = [(t, e) for t, e in net.events[BOB] if isinstance(e, AckTimedOut)]
    assert len(timeouts) == 1
    when, event = timeouts[0]
    assert when == 32.0 and event.transaction == stx
    assert event.dialog is not None and event.dialog.id == ("call-1", "b1", "ft1")


def test_2xx_retransmission_reaches_the_ua_until_it_acks() -> None:
    net, a, b = pair()
    _, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 200, headers=[CONTACT_B]), 0.0)
    net.run_until(0.6)  # Alice's UA has not ACKed yet
    oks = [e for e in net.take(ALICE) if isinstance(e, ResponseReceived)]
    assert [e.response.status for e in oks] == [200, 200]
    assert oks[0].dialog is oks[1].dialog


# -- CANCEL ----------------------------------------------------------------------------------------


def test_cancel_matches_the_invite_and_gets_200_and_487() -> None:
    net, a, b = pair()
    ctx, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 180, headers=[CONTACT_B]), 0.0)
    net.pump()
    net.take(ALICE)
    cancel_tx = a.cancel(ctx, 0.1)
    assert cancel_tx is not None
    net.pump()
    cancel = net.sent("CANCEL")[0].message
    invite = net.sent("INVITE")[0].message
    assert cancel.via.branch == invite.via.branch and cancel.cseq.seq == invite.cseq.seq
    assert cancel.uri == invite.uri and cancel.to.tag is None
    event = only(net.take(BOB), CancelReceived)
    assert event.transaction == stx and event.request.method == "CANCEL"
    statuses = {(e.transaction, e.response.status) for e in responses(net.take(ALICE))}
    assert statuses == {(cancel_tx, 200), (ctx, 487)}
    assert len(net.sent("ACK")) == 1  # ACK for the 487
    # Bob's UA is too late: the transaction no longer takes a final response
    assert not b.send_response(stx, b.create_response(stx, 200, headers=[CONTACT_B]), 0.2)
    # the early dialog died with the 487
    assert a.dialogs == []


def test_cancel_before_any_provisional_waits_for_one() -> None:
    net, a, b = pair(TimerConfig(trying_delay=None))
    ctx, stx = invite_to_bob(net, a, b)
    assert a.cancel(ctx, 0.0) is None
    net.pump()
    assert net.sent("CANCEL") == []
    b.send_response(stx, b.create_response(stx, 183, headers=[CONTACT_B]), 0.1)
    net.pump()
    assert len(net.sent("CANCEL")) == 1
    assert any(isinstance(e, CancelReceived) for e in net.take(BOB))


def test_cancel_without_invite_gets_481() -> None:
    net, a, _b = pair()
    cancel = request("CANCEL")
    a.send_request(cancel, BOB, 0.0)
    net.pump()
    assert net.take(BOB) == []
    assert only(net.take(ALICE), ResponseReceived).response.status == 481


def test_cancel_of_answered_invite_only_answers_the_cancel() -> None:
    net, a, b = pair()
    ctx, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 180, headers=[CONTACT_B]), 0.0)
    b.send_response(stx, b.create_response(stx, 200, headers=[CONTACT_B]), 0.0)
    net.pump()
    net.take(ALICE)
    assert a.cancel(ctx, 0.0) is None  # already Accepted: nothing to cancel
    assert a.cancel(999, 0.0) is None


# -- RFC 2543 matching -----------------------------------------------------------------------------

RFC2543_INVITE = (
    "INVITE sip:bob@127.0.0.2:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.9:5099\r\n"
    "From: <sip:old@127.0.0.9>;tag=9\r\nTo: <sip:bob@127.0.0.2>\r\n"
    "Call-ID: rfc2543\r\nCSeq: 7 INVITE\r\nContact: <sip:old@127.0.0.9:5099>\r\n"
    "Content-Length: 0\r\n\r\n"
)


def _raw(method: str, to_tag: str | None = None) -> bytes:
    text = RFC2543_INVITE.replace("INVITE sip:", f"{method} sip:").replace(
        "CSeq: 7 INVITE", f"CSeq: 7 {method}"
    )
    if to_tag:
        text = text.replace("To: <sip:bob@127.0.0.2>", f"To: <sip:bob@127.0.0.2>;tag={to_tag}")
    return text.encode()


def test_rfc2543_retransmission_ack_and_cancel_match_by_fallback_rule() -> None:
    net = Network()
    b = net.add(BOB, make_core(BOB))
    src = ("127.0.0.9", 5099)
    b.receive_datagram(_raw("INVITE"), src, 0.0)
    stx = only([b.next_event()], RequestReceived).transaction
    b.send_response(stx, b.create_response(stx, 180), 0.0)
    b.receive_datagram(_raw("INVITE"), src, 0.1)  # retransmission: absorbed, 180 again
    assert b.next_event() is None
    b.receive_datagram(_raw("CANCEL"), src, 0.2)
    assert only([b.next_event()], CancelReceived).transaction == stx
    net.pump()
    assert [s.first_line for s in net.outside] == [
        "SIP/2.0 180 Ringing", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK",
        "SIP/2.0 487 Request Terminated",
    ]  # fmt: skip
    assert b.transaction_state(stx) is State.COMPLETED
    tag = net.outside[-1].message.to.tag
    b.receive_datagram(_raw("ACK", to_tag="wrong"), src, 0.3)  # To tag differs: no match
    assert b.transaction_state(stx) is State.COMPLETED
    b.receive_datagram(_raw("ACK", to_tag=tag), src, 0.3)
    assert b.transaction_state(stx) is State.CONFIRMED
    assert b.next_event() is None


# -- TCP -------------------------------------------------------------------------------------------


def test_tcp_no_retransmissions_and_immediate_termination() -> None:
    net, a, b = pair()
    ctx = a.send_request(request("OPTIONS"), BOB, 0.0, "tcp")
    net.pump()
    assert net.sent("OPTIONS")[0].transport == "TCP"
    assert net.sent("OPTIONS")[0].message.via.transport == "TCP"
    stx = only(net.take(BOB), RequestReceived).transaction
    net.run_until(5)
    assert len(net.sent("OPTIONS")) == 1  # no Timer E over TCP
    b.send_response(stx, b.create_response(stx, 200), 5.0)
    net.pump()
    assert only(net.take(ALICE), ResponseReceived).transaction == ctx
    # Timers J and K are zero over TCP: both transactions are gone at once
    assert b.transaction_state(stx) is State.TERMINATED
    assert a.transaction_state(ctx) is State.TERMINATED
    assert a.get_timer() is None and b.get_timer() is None


def test_tcp_invite_timeout_without_retransmissions() -> None:
    net = Network()
    a = net.add(ALICE, make_core(ALICE))
    ctx = a.send_request(request("INVITE"), BOB, 0.0, "TCP")
    net.run_until(40)
    assert times(net.sent("INVITE")) == [0.0]
    assert net.events[ALICE] == [(32.0, TransactionTimedOut(ctx, "B"))]


def test_tcp_rejected_invite_ack_and_termination() -> None:
    net, a, b = pair()
    ctx = a.send_request(request("INVITE"), BOB, 0.0, "TCP")
    net.pump()
    stx = only(net.take(BOB), RequestReceived).transaction
    b.send_response(stx, b.create_response(stx, 480), 0.0)
    net.pump()
    assert len(net.sent("ACK")) == 1
    assert a.transaction_state(ctx) is State.TERMINATED  # Timer D = 0
    assert b.transaction_state(stx) is State.TERMINATED  # Timer I = 0
    net.run_until(40)
    assert len(net.sent("SIP/2.0 480")) == 1  # no Timer G over TCP


def test_connection_lost_fails_transactions() -> None:
    _net, a, _b = pair()
    ctx = a.send_request(request("INVITE"), BOB, 0.0, "TCP")
    a.connection_lost(BOB, "tcp", 1.0)
    assert a.next_event() == TransportFailed(ctx)
    assert a.transaction_state(ctx) is State.TERMINATED


# -- §18.2 response routing ------------------------------------------------------------------------


def _options_from(via: str) -> bytes:
    return (
        "OPTIONS sip:bob@127.0.0.2:5070 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "From: <sip:x@example.com>;tag=1\r\nTo: <sip:bob@127.0.0.2>\r\n"
        "Call-ID: route\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("via", "transport", "destination", "stamped"),
    [
        # sent-by differs from the source: received added, sent-by port used at the source IP
        ("SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bK1", "UDP", ("10.0.0.9", 5080),
         "SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bK1;received=10.0.0.9"),
        # no port: 5060
        ("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2", "UDP", ("10.0.0.9", 5060),
         "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2;received=10.0.0.9"),
        # rport: back to the source port, rport and received filled in (RFC 3581)
        ("SIP/2.0/UDP 192.0.2.1:5080;rport;branch=z9hG4bK3", "UDP", ("10.0.0.9", 40000),
         "SIP/2.0/UDP 192.0.2.1:5080;rport=40000;branch=z9hG4bK3;received=10.0.0.9"),
        # sent-by equals the source: nothing stamped
        ("SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bK4", "UDP", ("10.0.0.9", 5062),
         "SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bK4"),
        # TCP: back over the connection it came on
        ("SIP/2.0/TCP 192.0.2.1:5080;branch=z9hG4bK5", "TCP", ("10.0.0.9", 40000),
         "SIP/2.0/TCP 192.0.2.1:5080;branch=z9hG4bK5;received=10.0.0.9"),
        # a host name in sent-by is never resolved
        ("SIP/2.0/UDP pbx.example.com:5090;branch=z9hG4bK6", "UDP", ("10.0.0.9", 5090),
         "SIP/2.0/UDP pbx.example.com:5090;branch=z9hG4bK6;received=10.0.0.9"),
    ],
)  # fmt: skip
def test_response_routing_rfc3261_18_2_2(
    via: str, transport: str, destination: tuple[str, int], stamped: str
) -> None:
    b = make_core(BOB)
    b.receive_datagram(_options_from(via), ("10.0.0.9", 40000), 0.0, transport)
    event = b.next_event()
    assert isinstance(event, RequestReceived)
    assert event.request.headers.get("Via") == stamped
    b.send_response(event.transaction, b.create_response(event.transaction, 200), 0.0)
    [(data, dest, tr)] = b.datagrams_to_send(0.0)
    assert dest == destination and tr == transport
    assert parse_message(data).headers.get("Via") == stamped


def test_stamping_keeps_the_other_vias_in_place() -> None:
    data = _options_from(
        "SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKp1, SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKp0"
    ).replace(b"Call-ID", b"Via: SIP/2.0/UDP 192.0.2.8;branch=z9hG4bKq\r\nCall-ID")
    b = make_core(BOB)
    b.receive_datagram(data, ("10.0.0.9", 5080), 0.0)
    event = b.next_event()
    assert isinstance(event, RequestReceived)
    assert event.request.headers.get_lines("Via") == [
        "SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKp1;received=10.0.0.9, "
        "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKp0",
        "SIP/2.0/UDP 192.0.2.8;branch=z9hG4bKq",
    ]
    assert next(name for name, _ in event.request.headers) == "Via"


def test_response_destination_function() -> None:
    via = Via.parse("SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK1")
    assert response_destination(via, ("2001:db8::9", 6000), "UDP") == ("2001:db8::9", 5070)
    assert response_destination(via, ("2001:db8::9", 6000), "TLS") == ("2001:db8::9", 6000)


# -- dialogs through the core ----------------------------------------------------------------------


def _established(net: Network, a, b):  # type: ignore[no-untyped-def]
    _, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 200, headers=[CONTACT_B]), 0.0)
    net.pump()
    dialog = only(net.take(ALICE), ResponseReceived).dialog
    a.send_ack(dialog.create_ack(), BOB)
    net.pump()
    net.take(BOB)
    return dialog, b.dialog(("call-1", "b1", "ft1"))


def test_bye_in_dialog_reaches_the_dialog_and_ends_it() -> None:
    net, a, b = pair()
    uac, uas = _established(net, a, b)
    bye = uac.create_request("BYE")
    assert bye.cseq.seq == 2
    ctx = a.send_request(bye, BOB, 1.0)
    net.pump()
    event = only(net.take(BOB), RequestReceived)
    assert event.dialog is uas and uas.state is DialogState.TERMINATED
    assert b.dialogs == []
    b.send_response(event.transaction, b.create_response(event.transaction, 200), 1.0)
    net.pump()
    ok = only(net.take(ALICE), ResponseReceived)
    assert ok.transaction == ctx and ok.dialog is uac
    assert uac.state is DialogState.TERMINATED and a.dialogs == []


def test_mid_dialog_request_with_lower_cseq_gets_500() -> None:
    net, a, b = pair()
    uac, uas = _established(net, a, b)
    info = uac.create_request("INFO")  # CSeq 2
    a.send_request(info, BOB, 1.0)
    net.pump()
    assert only(net.take(BOB), RequestReceived).dialog is uas
    old = uac.create_request("INFO")
    old.headers.set("CSeq", "1 INFO")
    a.send_request(old, BOB, 2.0)
    net.pump()
    assert net.take(BOB) == []
    statuses = [e.response.status for e in responses(net.take(ALICE))]
    assert 500 in statuses
    assert uas.remote_seq == 2


def test_request_for_unknown_dialog_gets_481() -> None:
    net, a, _b = pair()
    a.send_request(request("BYE", to_tag="nope"), BOB, 0.0)
    net.pump()
    assert net.take(BOB) == []
    assert only(net.take(ALICE), ResponseReceived).response.status == 481


def test_unknown_dialog_passes_up_when_checks_are_off() -> None:
    net, a, _b = pair(reject_unknown_dialogs=False)
    a.send_request(request("NOTIFY", to_tag="nope"), BOB, 0.0)
    net.pump()
    event = only(net.take(BOB), RequestReceived)
    assert event.dialog is None


def test_reinvite_refreshes_target_and_gets_its_own_ack() -> None:
    net, a, b = pair()
    uac, uas = _established(net, a, b)
    reinvite = uac.create_request("INVITE", body=b"v=0\r\n")
    reinvite.headers.set("Contact", "<sip:alice@127.0.0.1:5999>")
    a.send_request(reinvite, BOB, 1.0)
    net.pump()
    event = only(net.take(BOB), RequestReceived)
    assert event.dialog is uas and uas.remote_target == "sip:alice@127.0.0.1:5999"
    b.send_response(
        event.transaction, b.create_response(event.transaction, 200, headers=[CONTACT_B]), 1.0
    )
    net.pump()
    ok = only(net.take(ALICE), ResponseReceived)
    assert ok.dialog is uac
    a.send_ack(uac.create_ack(), BOB)
    net.pump()
    ack = only(net.take(BOB), AckReceived)
    assert ack.request.cseq.seq == 2 and ack.transaction == event.transaction


def test_forked_early_dialogs_are_separate_and_die_with_the_failure() -> None:
    net = Network()
    a = net.add(ALICE, make_core(ALICE))
    ctx = a.send_request(request("INVITE"), BOB, 0.0)
    [(data, _, _)] = a.datagrams_to_send(0.0)
    inv = parse_message(data)
    assert isinstance(inv, SipRequest)
    from w3sipagent.sip.message import make_response

    for tag in ("f1", "f2"):
        r = make_response(inv, 180, to_tag=tag, headers=[("Contact", f"<sip:{tag}@127.0.0.2>")])
        a.receive_datagram(bytes(r), BOB, 0.1)
    assert {d.remote_tag for d in a.dialogs} == {"f1", "f2"}
    a.receive_datagram(bytes(make_response(inv, 486, to_tag="f2")), BOB, 0.2)
    assert a.dialogs == []
    statuses = [e.response.status for e in responses(list(iter(a.next_event, None)))]
    assert statuses == [180, 180, 486]
    assert ctx == 1


# -- bad input and misuse --------------------------------------------------------------------------


def test_malformed_request_is_answered_with_its_status(vectors) -> None:  # type: ignore[no-untyped-def]
    b = make_core(BOB)
    for name, status in (("badvers.dat", 505), ("badinv01.dat", 400), ("clerr.dat", 400)):
        b.receive_datagram((vectors / "rfc4475" / name).read_bytes(), ("127.0.0.9", 5099), 0.0)
        event = b.next_event()
        assert isinstance(event, MalformedRequest), name
        assert event.error.status == status and event.answered, name
        [(data, dest, _)] = b.datagrams_to_send(0.0)
        assert data.startswith(f"SIP/2.0 {status} ".encode()), name
        assert dest[0] == "127.0.0.9"  # the source IP; the port per the Via (or the source)


def test_malformed_response_is_dropped_silently(vectors) -> None:  # type: ignore[no-untyped-def]
    b = make_core(BOB)
    b.receive_datagram((vectors / "rfc4475" / "bigcode.dat").read_bytes(), ("127.0.0.9", 5099), 0.0)
    assert b.next_event() is None and b.datagrams_to_send(0.0) == []


def test_garbage_is_reported_not_answered() -> None:
    b = make_core(BOB)
    b.receive_datagram(b"\x00\xffnot sip at all", ("127.0.0.9", 5099), 0.0)
    event = b.next_event()
    assert isinstance(event, MalformedRequest) and not event.answered
    assert b.datagrams_to_send(0.0) == []


def test_keepalives_and_stray_responses_are_ignored() -> None:
    _net, _a, b = pair()
    b.receive_datagram(b"\r\n\r\n", ALICE, 0.0)
    inv = request("INVITE")
    inv.headers.insert(0, "Via", "SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKstray")
    from w3sipagent.sip.message import make_response

    b.receive_datagram(bytes(make_response(inv, 200, to_tag="x")), ALICE, 0.0)
    two_vias = make_response(inv, 200, to_tag="x")
    two_vias.headers.add("Via", "SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKz")
    b.receive_datagram(bytes(two_vias), ALICE, 0.0)
    assert b.next_event() is None and b.datagrams_to_send(0.0) == []


def test_response_with_extra_via_is_discarded() -> None:
    _net, a, _b = pair()
    a.send_request(request("OPTIONS"), BOB, 0.0)
    [(data, _, _)] = a.datagrams_to_send(0.0)
    from w3sipagent.sip.message import make_response

    inv = parse_message(data)
    assert isinstance(inv, SipRequest)
    resp = make_response(inv, 200)
    resp.headers.add("Via", "SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKz")
    a.receive_datagram(bytes(resp), BOB, 0.0)
    assert a.next_event() is None
    a.receive_datagram(bytes(make_response(inv, 200)), BOB, 0.0)
    assert isinstance(a.next_event(), ResponseReceived)


def test_misuse_raises_specific_errors() -> None:
    a = make_core(ALICE)
    with pytest.raises(InvalidDestination, match="resolves no names"):
        a.send_request(request("OPTIONS"), ("bob.example.com", 5060), 0.0)
    with pytest.raises(InvalidDestination, match="port"):
        a.send_request(request("OPTIONS"), ("127.0.0.2", 0), 0.0)
    with pytest.raises(TransactionError, match="send_ack"):
        a.send_request(request("ACK"), BOB, 0.0)
    with pytest.raises(TransactionError, match="needs an ACK"):
        a.send_ack(request("BYE"), BOB)
    with pytest.raises(TransactionError, match="no transaction"):
        a.create_response(42, 200)
    no_branch = request("OPTIONS")
    no_branch.headers.add("Via", "SIP/2.0/UDP 127.0.0.1")
    with pytest.raises(TransactionError, match="no branch"):
        a.send_request(no_branch, BOB, 0.0)
    opts = request("OPTIONS")
    a.send_request(opts, BOB, 0.0)
    with pytest.raises(TransactionError, match="is running"):
        a.send_request(opts, BOB, 0.0)
    assert not a.send_response(1, a.create_response(1, 200), 0.0)  # a client transaction
    assert not a.send_response(77, a.create_response(1, 200), 0.0)
    assert isinstance(InvalidDestination("x"), ValueError)


def test_timer_c_reports_then_gives_up() -> None:
    net, a, b = pair(TimerConfig(timer_c=10.0, trying_delay=None))
    ctx, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 180, headers=[CONTACT_B]), 1.0)
    net.run_until(100)
    timeouts = [(t, e) for t, e in net.events[ALICE] if isinstance(e, TransactionTimedOut)]
    assert timeouts == [
        (10.0, TransactionTimedOut(ctx, "C")),
        (42.0, TransactionTimedOut(ctx, "B")),
    ]


def test_identifiers_come_from_the_id_source() -> None:
    a = make_core(ALICE, prefix="a")
    assert a.new_branch() == "z9hG4bKa1"
    assert a.new_tag() == "a2" and a.new_call_id() == "a3"


def test_server_header_and_queries() -> None:
    net, a, b = pair(server_header="w3sipagent/test")
    ctx, stx = invite_to_bob(net, a, b)
    assert b.transaction_request(stx).method == "INVITE"  # type: ignore[union-attr]
    assert b.transaction_request(999) is None
    r = b.create_response(stx, 486)
    assert r.headers.get("Server") == "w3sipagent/test"
    r2 = b.create_response(stx, 486, headers=[("Server", "other")])
    assert r2.headers.get_all("Server") == ["other"]
    assert a.transaction_state(ctx) is State.CALLING or a.transaction_state(ctx) is State.PROCEEDING


def test_add_and_remove_dialog() -> None:
    net, a, b = pair()
    _uac, uas = _established(net, a, b)
    b.remove_dialog(uas)
    assert b.dialog(uas.id) is None and uas.state is DialogState.TERMINATED
    b.add_dialog(uas)
    assert b.dialog(uas.id) is uas


def test_configured_timeout_and_ack_wait_end_the_core_timers() -> None:
    """``timeout`` ends a client transaction (Timer F) and ``ack_wait`` the 2xx
    retransmission (AckTimedOut) at the configured times, not at 64*T1."""
    timers = TimerConfig(t1=FAST.t1, t2=FAST.t2, t4=FAST.t4, timeout=5.0, ack_wait=2.0)
    net, a, b = pair(timers)
    net.drop_if = lambda s: s.first_line.startswith("ACK")
    nobody = ("127.0.0.3", 5080)
    ctx = a.send_request(request("OPTIONS", dst=nobody, call_id="lost"), nobody, 0.0)
    _, stx = invite_to_bob(net, a, b)
    b.send_response(stx, b.create_response(stx, 200, headers=[CONTACT_B]), 0.0)
    net.pump()
    dialog = only(
        [e for e in net.take(ALICE) if isinstance(e, ResponseReceived)], ResponseReceived
    ).dialog
    a.send_ack(dialog.create_ack(), BOB)
    net.run_until(40)
    assert (5.0, TransactionTimedOut(ctx, "F")) in net.events[ALICE]
    assert [t for t, e in net.events[BOB] if isinstance(e, AckTimedOut)] == [2.0]
    assert times(net.sent("SIP/2.0 200")) == [0.0, 0.5, 1.5]


def test_ack_for_2xx_reusing_the_invite_branch_reaches_the_ua() -> None:
    net = Network()
    b = net.add(BOB, make_core(BOB))
    src = ("127.0.0.9", 5099)
    b.receive_datagram(
        RFC2543_INVITE.replace("5099\r\n", "5099;branch=z9hG4bKsame\r\n", 1).encode(), src, 0.0
    )
    stx = only([b.next_event()], RequestReceived).transaction
    ok = b.create_response(stx, 200, headers=[CONTACT_B])
    b.send_response(stx, ok, 0.0)
    assert ok.to.tag is not None
    ack = _raw("ACK", to_tag=ok.to.tag).replace(b"5099\r\n", b"5099;branch=z9hG4bKsame\r\n", 1)
    b.receive_datagram(ack, src, 0.1)
    event = only([b.next_event()], AckReceived)
    assert event.transaction == stx and event.source == src
    b.receive_datagram(ack, src, 0.2)  # a second ACK: nothing waits for it any more
    assert b.next_event() is None
    net.run_until(40)
    assert len([s for s in net.outside if s.first_line.startswith("SIP/2.0 200")]) == 1


def test_max_forwards_added_when_missing() -> None:
    a = make_core(ALICE)
    opts = request("OPTIONS")
    opts.headers.remove("Max-Forwards")
    a.send_request(opts, BOB, 0.0)
    ack = request("ACK", to_tag="x")
    ack.headers.remove("Max-Forwards")
    a.send_ack(ack, BOB)
    sent = [parse_message(d) for d, _, _ in a.datagrams_to_send(0.0)]
    assert [m.max_forwards for m in sent] == [70, 70]


def test_mid_dialog_request_with_bad_contact_gets_400() -> None:
    net, a, b = pair()
    uac, uas = _established(net, a, b)
    reinvite = uac.create_request("INVITE")
    reinvite.headers.set("Contact", "<not a uri>")
    a.send_request(reinvite, BOB, 1.0)
    net.pump()
    assert net.take(BOB) == []
    assert only(net.take(ALICE), ResponseReceived).response.status == 400
    assert uas.remote_target == "sip:alice@127.0.0.1:5060"


def test_no_dialog_when_the_messages_cannot_make_one() -> None:
    net, a, b = pair()
    inv = request("INVITE")
    inv.headers.set("From", "<sip:alice@127.0.0.1>")  # no From tag
    a.send_request(inv, BOB, 0.0)
    net.pump()
    stx = only(net.take(BOB), RequestReceived).transaction
    ok = b.create_response(stx, 200, headers=[("Contact", "<bad uri>")])
    assert b.send_response(stx, ok, 0.0)
    net.pump()
    assert b.dialogs == []  # the 2xx Contact does not parse: no UAS dialog, still retransmitted
    answered = only(net.take(ALICE), ResponseReceived)
    assert answered.response.status == 200 and answered.dialog is None and a.dialogs == []


def test_2xx_sent_again_by_the_ua_restarts_its_retransmission() -> None:
    net, a, b = pair()
    net.drop_if = lambda s: s.first_line.startswith("SIP/2.0 200")
    _, stx = invite_to_bob(net, a, b)
    ok = b.create_response(stx, 200, headers=[CONTACT_B])
    assert b.send_response(stx, ok, 0.0)
    net.run_until(1.0)
    assert b.send_response(stx, ok, 1.0)  # Accepted takes another 2xx from the UA
    net.run_until(40)
    sent = times(net.sent("SIP/2.0 200"))
    assert sent[:4] == [0.0, 0.5, 1.0, 1.5]
    timeouts = [(t, e) for t, e in net.events[BOB] if isinstance(e, AckTimedOut)]
    assert [t for t, _ in timeouts] == [33.0]  # one waiter: the second replaced the first


def test_handle_timer_without_get_timer_skips_stopped_waiters() -> None:
    net, a, b = pair()
    _uac, _ = _established(net, a, b)
    b.handle_timer(0.5)  # the 2xx waiter was stopped by the ACK: nothing happens
    assert b.datagrams_to_send(0.5) == [] and b.next_event() is None


def test_malformed_request_that_cannot_be_answered_is_still_reported(
    vectors: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import w3sipagent.sip.core as core_module
    from w3sipagent.errors import SipParseError

    def broken(*args: object, **kwargs: object) -> None:
        raise SipParseError("cannot build")

    monkeypatch.setattr(core_module, "make_response", broken)
    b = make_core(BOB)
    b.receive_datagram(
        (vectors / "rfc4475" / "badinv01.dat").read_bytes(), ("127.0.0.9", 5099), 0.0
    )
    event = b.next_event()
    assert isinstance(event, MalformedRequest) and not event.answered
    assert b.datagrams_to_send(0.0) == []


def test_stamping_replaces_a_received_the_client_put_itself() -> None:
    b = make_core(BOB)
    via = "SIP/2.0/UDP 192.0.2.1:5080;received=1.1.1.1;rport;branch=z9hG4bKr"
    b.receive_datagram(_options_from(via), ("10.0.0.9", 40000), 0.0)
    event = b.next_event()
    assert isinstance(event, RequestReceived)
    assert event.request.headers.get("Via") == (
        "SIP/2.0/UDP 192.0.2.1:5080;received=10.0.0.9;rport=40000;branch=z9hG4bKr"
    )
    assert event.request.via.received == "10.0.0.9" and event.request.via.rport == 40000
    assert event.request.from_.tag == "1"  # typed values still readable after the edit


def test_garbage_without_reply_headers_is_dropped_not_answered() -> None:
    """A datagram like b"\\r\\n\\r\\nOPTIONS" cannot be answered (no Via to route a reply): drop it."""
    core = make_core(("127.0.0.1", 5060))
    for junk in (b"\r\n\r\nOPTIONS", b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", b"INVITE\r\n\r\n"):
        core.receive_datagram(junk, ("127.0.0.1", 40000), now=0.0)
        assert core.datagrams_to_send(0.0) == []
        event = core.next_event()
        assert isinstance(event, MalformedRequest)
        assert event.answered is False
