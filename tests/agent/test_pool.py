"""The pure parts of the worker pool: RTP slices, the shared ledger, merged metrics."""

from __future__ import annotations

import pytest

from w3sipagent.agent.pool import SlotLedger, rtp_slice
from w3sipagent.agent.poolmetrics import merge_expositions


def test_rtp_slices_are_disjoint_even_and_inside_the_range() -> None:
    slices = [rtp_slice(20000, 20999, i, 3) for i in range(3)]
    assert slices == [(20000, 20331), (20332, 20663), (20664, 20995)]
    assert all(lo % 2 == 0 for lo, _ in slices)
    with pytest.raises(ValueError, match="too small"):
        rtp_slice(20000, 20002, 0, 4)


def test_ledger_limits_across_workers() -> None:
    ledger = SlotLedger(max_calls=3)
    assert ledger.acquire(0, "a", "acme", 2, {}) == 0
    assert ledger.acquire(1, "b", "acme", 2, {}) == 0
    assert ledger.acquire(1, "b", "acme", 2, {}) == 0  # the same call again: still its slot
    assert ledger.acquire(0, "c", "acme", 2, {}) == 486
    assert ledger.acquire(0, "d", "globex", None, {}) == 0
    assert ledger.acquire(1, "e", "globex", None, {}) == 503
    assert ledger.of_worker(1) == ["b"]
    held = ledger.release("b")
    assert held is not None and held.worker == 1
    assert ledger.release("b") is None
    assert ledger.held("acme") == 1
    assert ledger.acquire(1, "c", "acme", 2, {}) == 0


def test_merged_metrics_label_each_worker_and_keep_one_header() -> None:
    w0 = (
        "# HELP calls_total Calls.\n# TYPE calls_total counter\n"
        'calls_total{tenant="acme"} 2.0\n'
        "# HELP up Up.\n# TYPE up gauge\nup 1.0\n"
    )
    w1 = (
        "# HELP calls_total Calls.\n# TYPE calls_total counter\n"
        'calls_total{tenant="acme"} 5.0\n'
        "# HELP up Up.\n# TYPE up gauge\nup 1.0\n"
    )
    assert merge_expositions({1: w1, 0: w0}).splitlines() == [
        "# HELP calls_total Calls.",
        "# TYPE calls_total counter",
        'calls_total{worker="0",tenant="acme"} 2.0',
        'calls_total{worker="1",tenant="acme"} 5.0',
        "# HELP up Up.",
        "# TYPE up gauge",
        'up{worker="0"} 1.0',
        'up{worker="1"} 1.0',
    ]
    assert merge_expositions({}) == ""


async def test_every_worker_knows_the_registration_contacts() -> None:
    """Worker 0 registers; a registrar's INVITE to ``reg-TENANT-NAME`` reaching another
    worker still resolves to that registration (and no longer after a reload drops it)."""
    from tests.asyncio.helpers import RawUac
    from w3sipagent.asyncio.useragent import AdmissionRequest, Reject, UserAgent, UserAgentConfig
    from w3sipagent.cli.workers import RegistrationContacts
    from w3sipagent.tenants.agents import AgentConfig
    from w3sipagent.tenants.models import RegistrationConfig, TenantConfig
    from w3sipagent.tenants.resolver import TenantTable

    seen: list[str | None] = []

    async def admit(req: AdmissionRequest) -> Reject:
        seen.append(req.registration)
        return Reject(404)

    def table(*names: str) -> TenantTable:
        regs = {
            n: RegistrationConfig.model_validate(
                {"registrar": "sip:127.0.0.1:5999", "domain": "pbx.example", "user": "1000"}
            )
            for n in names
        }
        main = AgentConfig(instructions="You are acme.", greeting="Greet.")
        tenant = TenantConfig(id="acme", hosts=[], agents={"main": main}, registrations=regs)
        return TenantTable({"acme": tenant})

    async with UserAgent(UserAgentConfig(host="127.0.0.1", port=0), admission=admit) as ua:
        contacts = RegistrationContacts(ua)
        contacts.apply(table("pbx"))
        uac = RawUac(ua.port)
        try:
            for n, expected in ((1, "acme/pbx"), (2, None)):
                uri = f"sip:reg-acme-pbx@127.0.0.1:{ua.port}"
                uac.send(uac.request("INVITE", uri=uri, call_id=f"reg-{n}", branch=f"z9hG4bKr{n}"))
                response = await uac.recv_response(any_call=True)
                assert response.status == 404 and seen[-1] == expected
                contacts.apply(table())  # the reload removed the registration
        finally:
            uac.close()
