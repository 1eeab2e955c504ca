"""Dialogs (RFC 3261 §12): creation on both sides, route sets, targets, CSeq, requests."""

from __future__ import annotations

import pytest

from w3sipagent.sip.dialog import (
    TARGET_REFRESH_METHODS,
    Dialog,
    DialogError,
    DialogState,
    record_route,
    uri_address,
)
from w3sipagent.sip.message import SipRequest, SipResponse, make_response, parse_message
from w3sipagent.sip.uri import SipUri

INVITE = (
    b"INVITE sip:agent@10.0.0.2:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
    b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
    b"Record-Route: <sip:10.9.9.9;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Caller" <sip:+15551230000@10.0.0.1>;tag=ftag\r\n'
    b"To: <sip:agent@10.0.0.2>\r\n"
    b"Call-ID: dlg-1\r\n"
    b"CSeq: 101 INVITE\r\n"
    b"Contact: <sip:gw@10.0.0.1:5060;transport=udp>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite(data: bytes = INVITE) -> SipRequest:
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def answer(req: SipRequest, status: int = 200, tag: str = "ttag") -> SipResponse:
    return make_response(
        req, status, to_tag=tag, headers=[("Contact", "<sip:agent@10.0.0.2:5080>")]
    )


def uas_dialog() -> Dialog:
    req = invite()
    return Dialog.uas(req, answer(req))


def uac_dialog(status: int = 200) -> Dialog:
    req = invite()
    resp = make_response(
        req, status, to_tag="rtag", headers=[("Contact", "<sip:callee@10.0.0.3:5062>")]
    )
    return Dialog.uac(req, resp)


def test_uas_dialog_from_invite_and_2xx() -> None:
    d = uas_dialog()
    assert d.id == ("dlg-1", "ttag", "ftag")
    assert d.state is DialogState.CONFIRMED and not d.is_uac
    assert d.local_uri == "<sip:agent@10.0.0.2>"
    assert d.remote_uri == '"Caller" <sip:+15551230000@10.0.0.1>'
    assert d.remote_target == "sip:gw@10.0.0.1:5060;transport=udp"
    # UAS: route set in Record-Route order
    assert d.route_set == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
        "<sip:10.9.9.9;lr>",
    ]
    assert d.remote_seq == 101 and d.local_seq is None
    assert d.local_contact == "<sip:agent@10.0.0.2:5080>"
    assert not d.secure


def test_uac_dialog_reverses_route_set_and_uses_response_contact() -> None:
    req = invite()
    resp = answer(req)
    resp.headers.set("Contact", "<sip:callee@10.0.0.3:5062>")
    d = Dialog.uac(req, resp)
    assert d.id == ("dlg-1", "ftag", "ttag") and d.is_uac
    assert d.route_set == [
        "<sip:10.9.9.9;lr>",
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]
    assert d.remote_target == "sip:callee@10.0.0.3:5062"
    assert d.local_seq == 101 and d.remote_seq is None and d.invite_seq == 101
    assert d.local_contact == "<sip:gw@10.0.0.1:5060;transport=udp>"


def test_early_dialog_from_1xx_confirmed_by_2xx_with_route_recomputed() -> None:
    req = invite()
    ringing = make_response(req, 180, to_tag="rtag", headers=[("Contact", "<sip:early@10.0.0.3>")])
    d = Dialog.uac(req, ringing)
    assert d.state is DialogState.EARLY
    ok = make_response(req, 200, to_tag="rtag", headers=[("Contact", "<sip:final@10.0.0.3>")])
    ok.headers.remove("Record-Route")
    ok.headers.add("Record-Route", "<sip:only.example.com;lr>")
    d.receive_response("INVITE", ok)
    assert d.state.value == "confirmed"
    assert d.route_set == ["<sip:only.example.com;lr>"]
    assert d.remote_target == "sip:final@10.0.0.3"


def test_early_dialog_ends_on_failure_and_any_on_481_or_408() -> None:
    req = invite()
    d = Dialog.uac(req, make_response(req, 183, to_tag="rtag"))
    d.receive_response("INVITE", make_response(req, 486, to_tag="rtag"))
    assert d.state is DialogState.TERMINATED
    for status in (481, 408):
        c = uac_dialog()
        c.receive_response("BYE", make_response(req, status, to_tag="rtag"))
        assert c.state is DialogState.TERMINATED
    c = uac_dialog()
    c.receive_response("INFO", make_response(req, 415, to_tag="rtag"))
    assert c.state is DialogState.CONFIRMED


def test_local_cseq_counts_and_ack_reuses_invite_number() -> None:
    d = uac_dialog()
    bye_seqs = [d.create_request(m).cseq.seq for m in ("INFO", "UPDATE", "INVITE")]
    assert bye_seqs == [102, 103, 104]
    ack = d.create_ack()
    assert ack.cseq.seq == 104 and ack.cseq.method == "ACK" and ack.method == "ACK"
    assert d.create_ack(101).cseq.seq == 101
    assert d.local_seq == 104  # ACK does not count


def test_uas_first_request_starts_local_cseq_at_1() -> None:
    d = uas_dialog()
    bye = d.create_request("BYE")
    assert bye.cseq.seq == 1 and bye.cseq.method == "BYE"
    with pytest.raises(DialogError, match="CSeq number of the INVITE"):
        d.create_ack()


@pytest.mark.parametrize(
    "method", ["BYE", "INVITE", "REFER", "NOTIFY", "INFO", "UPDATE", "OPTIONS"]
)
def test_in_dialog_request_construction_loose_routing(method: str) -> None:
    d = uas_dialog()
    req = d.create_request(method, body=b"hello", content_type="text/plain", headers=[("X-A", "1")])
    text = bytes(req).decode()
    assert text.startswith(f"{method} sip:gw@10.0.0.1:5060;transport=udp SIP/2.0\r\n")
    assert req.headers.get_all("Route") == d.route_set
    assert req.headers.get("From") == "<sip:agent@10.0.0.2>;tag=ttag"
    assert req.headers.get("To") == '"Caller" <sip:+15551230000@10.0.0.1>;tag=ftag'
    assert req.call_id == "dlg-1" and req.cseq.method == method
    assert req.headers.get("Via") is None  # the core adds it
    assert req.headers.get("Max-Forwards") == "70"
    assert req.headers.get("X-A") == "1"
    assert req.headers.get("Content-Type") == "text/plain" and req.body == b"hello"
    assert (req.headers.get("Contact") is not None) == (method in TARGET_REFRESH_METHODS)
    assert d.next_hop() == SipUri.parse("sip:p2.example.com;lr")


def test_strict_routing_puts_first_route_in_request_uri() -> None:
    d = uas_dialog()
    d.route_set = ["<sip:strict.example.com;maddr=10.1.1.1>", "<sip:p1.example.com;lr>"]
    req = d.create_request("BYE")
    assert req.uri == "sip:strict.example.com;maddr=10.1.1.1"
    assert req.headers.get_all("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:gw@10.0.0.1:5060;transport=udp>",
    ]
    d.route_set = ["<sip:strict.example.com?X=1>"]
    assert d.create_request("BYE").uri == "sip:strict.example.com"


def test_empty_route_set_sends_to_remote_target() -> None:
    d = uas_dialog()
    d.route_set = []
    req = d.create_request("BYE")
    assert req.uri == "sip:gw@10.0.0.1:5060;transport=udp"
    assert req.headers.get("Route") is None
    assert uri_address(d.next_hop()) == ("10.0.0.1", 5060)


def test_remote_cseq_lower_is_500_and_target_refresh() -> None:
    d = uas_dialog()
    reinvite = invite(
        INVITE.replace(b"CSeq: 101", b"CSeq: 102")
        .replace(b"To: <sip:agent@10.0.0.2>", b"To: <sip:agent@10.0.0.2>;tag=ttag")
        .replace(b"sip:gw@10.0.0.1:5060;transport=udp", b"sip:gw2@10.0.0.1:5064")
    )
    assert d.receive_request(reinvite) is None
    assert d.remote_seq == 102 and d.remote_target == "sip:gw2@10.0.0.1:5064"
    stale = invite(INVITE.replace(b"INVITE", b"INFO").replace(b"CSeq: 101", b"CSeq: 100"))
    assert d.receive_request(stale) == 500
    assert d.remote_seq == 102
    ack = invite(INVITE.replace(b"INVITE", b"ACK").replace(b"CSeq: 101", b"CSeq: 1"))
    assert d.receive_request(ack) is None and d.remote_seq == 102
    info = invite(INVITE.replace(b"INVITE", b"INFO").replace(b"CSeq: 101", b"CSeq: 102"))
    assert d.receive_request(info) is None  # equal is not lower


def test_uac_first_remote_request_sets_remote_cseq() -> None:
    d = uac_dialog()
    bye = invite(INVITE.replace(b"INVITE", b"BYE").replace(b"CSeq: 101", b"CSeq: 5"))
    assert d.remote_seq is None
    assert d.receive_request(bye) is None and d.remote_seq == 5


def test_target_refresh_from_2xx_to_reinvite_and_update() -> None:
    d = uac_dialog()
    req = invite()
    resp = make_response(req, 200, to_tag="rtag", headers=[("Contact", "<sip:moved@10.0.0.8>")])
    d.receive_response("UPDATE", resp)
    assert d.remote_target == "sip:moved@10.0.0.8"
    resp.headers.set("Contact", "<sip:ignored@10.0.0.9>")
    d.receive_response("INFO", resp)  # not a target refresh
    assert d.remote_target == "sip:moved@10.0.0.8"


def test_secure_dialog_and_sips_next_hop_port() -> None:
    req = invite(INVITE.replace(b"INVITE sip:agent", b"INVITE sips:agent"))
    d = Dialog.uas(req, answer(req), transport="tls")
    assert d.secure
    assert uri_address(SipUri.parse("sips:x@[2001:db8::1]")) == ("2001:db8::1", 5061)
    assert uri_address(SipUri.parse("sip:x@pbx.example.com")) is None


def test_creation_errors() -> None:
    req = invite()
    with pytest.raises(DialogError, match="To has no tag"):
        Dialog.uas(req, make_response(req, 200))
    with pytest.raises(DialogError, match="To has no tag"):
        Dialog.uac(req, make_response(req, 200))
    no_contact = invite(INVITE.replace(b"Contact: <sip:gw@10.0.0.1:5060;transport=udp>\r\n", b""))
    with pytest.raises(DialogError, match="no Contact"):
        Dialog.uas(no_contact, answer(no_contact))
    no_from_tag = invite(INVITE.replace(b";tag=ftag", b""))
    with pytest.raises(DialogError, match="From has no tag"):
        Dialog.uac(no_from_tag, answer(no_from_tag))
    # no Contact in the 2xx: the Request-URI stays the target
    bare = make_response(req, 200, to_tag="r")
    assert Dialog.uac(req, bare).remote_target == "sip:agent@10.0.0.2:5080"


def test_misuse_and_termination() -> None:
    d = uac_dialog()
    with pytest.raises(DialogError, match="use create_ack"):
        d.create_request("ACK")
    with pytest.raises(DialogError, match="build_cancel"):
        d.create_request("cancel")
    d.terminate()
    with pytest.raises(DialogError, match="terminated"):
        d.create_request("BYE")
    assert repr(d) == "<Dialog UAC terminated dlg-1 ftag/rtag>"
    e = Dialog.uac(invite(), make_response(invite(), 180, to_tag="x"))
    e.confirm()
    assert e.state is DialogState.CONFIRMED
    assert isinstance(DialogError("x"), ValueError)


def test_record_route_splits_lines_and_commas() -> None:
    assert record_route(invite()) == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
        "<sip:10.9.9.9;lr>",
    ]


def test_to_without_tag_in_early_uas_request_for_a_tagless_peer() -> None:
    req = invite(INVITE.replace(b";tag=ftag", b""))
    d = Dialog.uas(req, answer(req, 183))
    assert d.state is DialogState.EARLY and d.remote_tag == ""
    bye = d.create_request("BYE")
    assert bye.headers.get("To") == '"Caller" <sip:+15551230000@10.0.0.1>'
