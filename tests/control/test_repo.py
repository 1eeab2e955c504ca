"""The control-plane repository: writes checked, validated, audited and counted."""

from __future__ import annotations

import pytest

from w3sipagent.control.errors import Conflict, Invalid, NotFound
from w3sipagent.control.repo import ControlRepo
from w3sipagent.control.schemas import (
    AgentIn,
    DestinationIn,
    DidIn,
    StoreIn,
    TenantIn,
    TenantSettings,
    TrunkIn,
)


async def provision(repo: ControlRepo, tid: str = "acme", did: str = "+39061234567") -> None:
    await repo.create_tenant(
        TenantIn.model_validate(
            {"id": tid, "hosts": [f"{tid}.example"], "api_key": {"env": "ACME_KEY"}}
        ),
        actor="t",
    )
    await repo.create_item("stores", tid, StoreIn(id="rome", name="Rome"), actor="t")
    await repo.create_item(
        "agents", tid, AgentIn(name="support", store_id="rome", voice="cedar"), actor="t"
    )
    await repo.create_item(
        "dids", tid, DidIn(number=did, store_id="rome", target_ref="support"), actor="t"
    )


async def test_provision_and_snapshot(repo: ControlRepo) -> None:
    v0 = await repo.version()
    await provision(repo)
    assert await repo.version() == v0 + 4
    snap = await repo.snapshot()
    t = snap.tenants["acme"]
    assert t.hosts == ["acme.example"]
    assert t.agents["support"].voice == "cedar"
    assert t.dids == {"+39061234567": "support"}
    route = snap.routes["+39061234567"]
    assert (route.tenant_id, route.store_id, route.target_ref) == ("acme", "rome", "support")


async def test_tenant_without_agent_is_skipped(repo: ControlRepo) -> None:
    await repo.create_tenant(TenantIn(id="empty"), actor="t")
    snap = await repo.snapshot()
    assert "empty" not in snap.tenants
    assert snap.skipped == {"empty": "no agent yet"}


async def test_references_are_checked(repo: ControlRepo) -> None:
    await provision(repo)
    with pytest.raises(Invalid) as e:
        await repo.create_item("dids", "acme", DidIn(number="+3906999", target_ref="x"), actor="t")
    assert e.value.loc == ("target_ref",)
    with pytest.raises(Invalid) as e:
        await repo.create_item("agents", "acme", AgentIn(name="b", store_id="paris"), actor="t")
    assert e.value.loc == ("store_id",)
    with pytest.raises(Conflict, match="target of DID"):
        await repo.delete_item("agents", "acme", "support", actor="t")
    with pytest.raises(Conflict, match="still used"):
        await repo.delete_item("stores", "acme", "rome", actor="t")
    # a failed write changes nothing
    assert [a.name for a in await repo.list_items("agents", "acme")] == ["support"]  # type: ignore[attr-defined]


async def test_whole_tenant_validated(repo: ControlRepo) -> None:
    await provision(repo)
    bad = TenantSettings(default_agent="nobody")
    with pytest.raises(Invalid) as e:
        await repo.update_tenant("acme", bad, actor="t")
    assert "nobody" in str(e.value)
    assert (await repo.get_tenant("acme")).default_agent is None


async def test_numbers_hosts_gateways_are_unique_without_naming_the_owner(
    repo: ControlRepo,
) -> None:
    await provision(repo, "acme")
    await repo.create_item("trunks", "acme", TrunkIn(name="gw", gateway="acme-gw"), actor="t")
    await repo.create_tenant(TenantIn(id="globex"), actor="t")
    await repo.create_item("agents", "globex", AgentIn(name="a"), actor="t")
    with pytest.raises(Conflict) as e:
        await repo.create_item("dids", "globex", DidIn(number="+39 06 1234567"), actor="t")
    assert "acme" not in str(e.value)
    with pytest.raises(Conflict) as e:
        await repo.update_tenant("globex", TenantSettings(hosts=["acme.example"]), actor="t")
    assert "acme'" not in str(e.value) and "not available" in str(e.value)
    with pytest.raises(Conflict) as e:
        await repo.create_item("trunks", "globex", TrunkIn(name="g", gateway="acme-gw"), actor="t")
    assert "not available" in str(e.value)
    with pytest.raises(NotFound):
        await repo.get_item("dids", "globex", "+39061234567")


async def test_audit_before_after_redacted(repo: ControlRepo) -> None:
    await provision(repo)
    await repo.create_item(
        "destinations", "acme", DestinationIn(name="human", uri="sip:100@pbx"), actor="admin"
    )
    await repo.replace_item(
        "dids",
        "acme",
        "+39061234567",
        DidIn(number="+39061234567", target_type="destination", target_ref="human"),
        actor="token:abc",
    )
    entries = await repo.audit(tenant_id="acme")
    last = entries[0]
    assert (last.actor, last.action, last.entity, last.did) == (
        "token:abc",
        "update",
        "did",
        "+39061234567",
    )
    assert last.before is not None and last.after is not None
    assert last.before["target_type"] == "ai_agent"
    assert last.after["target_ref"] == "human"
    created = next(e for e in entries if e.entity == "tenant")
    assert created.after is not None
    assert created.after["api_key"]["env"] == "ACME_KEY"  # a reference, not a secret


async def test_redact_masks_secret_values() -> None:
    from w3sipagent.control.audit import redact_doc

    doc = {"password": "hunter22", "tools": [{"auth_env": "TOK"}], "name": "x", "flag": True}
    assert redact_doc(doc) == {
        "password": "***",
        "tools": [{"auth_env": "***"}],
        "name": "x",
        "flag": True,
    }


async def test_delete_tenant_removes_everything(repo: ControlRepo) -> None:
    await provision(repo)
    await repo.delete_tenant("acme", actor="t")
    snap = await repo.snapshot()
    assert snap.tenants == {} and snap.routes == {}
    await provision(repo)  # the number and host are free again


async def test_readonly_file_tenant(db_url: str) -> None:
    repo = await ControlRepo.open(db_url, readonly=lambda: {"filed"})
    try:
        with pytest.raises(Conflict, match="config file"):
            await repo.create_tenant(TenantIn(id="filed"), actor="t")
    finally:
        await repo.close()


async def test_snapshot_rereads_only_changed_tenants(repo: ControlRepo) -> None:
    await provision(repo, "acme", "+39061234567")
    await provision(repo, "globex", "+39069999999")
    first = await repo.snapshot()
    assert first.reread == 2
    same = await repo.snapshot(first)
    assert same.reread == 0 and same.tenants["acme"] is first.tenants["acme"]
    await repo.replace_item(
        "dids",
        "acme",
        "+39061234567",
        DidIn(number="+39061234567", target_type="reject"),
        actor="t",
    )
    after = await repo.snapshot(same)
    assert after.reread == 1
    assert after.tenants["globex"] is first.tenants["globex"]
    assert after.routes["+39061234567"].target_type == "reject"
    assert after.routes["+39069999999"].tenant_id == "globex"
    await repo.delete_tenant("globex", actor="t")
    gone = await repo.snapshot(after)
    assert set(gone.tenants) == {"acme"} and "+39069999999" not in gone.routes
