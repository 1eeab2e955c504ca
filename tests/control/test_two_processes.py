"""Two agent processes sharing one database: a change made through one reaches the other's
next call by polling the change counter; a call in progress keeps its snapshot."""

from __future__ import annotations

from pathlib import Path

from tests.agent.helpers import wait_until
from w3sipagent.agent.reload import TenantRegistry
from w3sipagent.config import Settings, load_settings
from w3sipagent.control.repo import ControlRepo
from w3sipagent.control.schemas import AgentIn, DidIn, TenantIn
from w3sipagent.tenants.resolver import CallRequest, Rejection, Resolution


def settings_for(db_url: str, source: str = "database", path: Path | None = None) -> Settings:
    return load_settings(
        path,
        {"records.database_url": db_url, "control.source": source, "control.poll_interval": 0.05},
        environ={},
        discover=False,
    )


def call_to(number: str) -> CallRequest:
    return CallRequest(request_uri_host="10.0.0.5", source_ip="127.0.0.1", request_uri_user=number)


async def test_change_through_one_process_reaches_the_other(db_url: str) -> None:
    a = await ControlRepo.open(db_url)
    b = await ControlRepo.open(db_url)  # its own engine: another process, another machine
    reg_b = TenantRegistry(settings_for(db_url))
    reg_b.attach_control(b)
    reg_b.start()
    try:
        assert isinstance(reg_b.table.resolve(call_to("+390611")), Rejection)
        await a.create_tenant(TenantIn(id="acme"), actor="a")
        await a.create_item("agents", "acme", AgentIn(name="one"), actor="a")
        await a.create_item("agents", "acme", AgentIn(name="two", voice="ash"), actor="a")
        await a.create_item("dids", "acme", DidIn(number="+390611", target_ref="one"), actor="a")
        await wait_until(
            lambda: reg_b.table.did_route("+390611") is not None, 10, "B sees the new number"
        )
        in_progress = reg_b.table
        res = in_progress.resolve(call_to("+390611"))
        assert isinstance(res, Resolution) and res.agent_name == "one"

        await a.replace_item(
            "dids", "acme", "+390611", DidIn(number="+390611", target_ref="two"), actor="a"
        )
        await wait_until(
            lambda: reg_b.table.did_route("+390611").target_ref == "two",  # type: ignore[union-attr]
            10,
            "B routes the next call to agent two",
        )
        nxt = reg_b.table.resolve(call_to("+390611"))
        assert isinstance(nxt, Resolution) and nxt.agent_name == "two"
        # the call admitted before keeps its table
        again = in_progress.resolve(call_to("+390611"))
        assert isinstance(again, Resolution) and again.agent_name == "one"
    finally:
        await reg_b.stop()
        await a.close()
        await b.close()


async def test_refresh_only_rebuilds_on_a_change(db_url: str) -> None:
    repo = await ControlRepo.open(db_url)
    reg = TenantRegistry(settings_for(db_url))
    reg.attach_control(repo)
    try:
        assert await reg.refresh_control() is True
        assert await reg.refresh_control() is False  # same counter: nothing rebuilt
        await repo.create_tenant(TenantIn(id="acme"), actor="x")
        assert await reg.refresh_control() is True
    finally:
        await repo.close()


async def test_file_and_database_both(db_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "w3sipagent.toml"
    cfg.write_text(
        '[tenants.filed]\nhosts = ["filed.example"]\ndids = ["+4420000"]\n'
        "[tenants.filed.agents.main]\n"
    )
    repo = await ControlRepo.open(db_url)
    try:
        await repo.create_tenant(TenantIn(id="dbt", hosts=["filed.example"]), actor="x")
        await repo.create_item("agents", "dbt", AgentIn(name="a"), actor="x")
        await repo.create_item("dids", "dbt", DidIn(number="+4420000"), actor="x")
        await repo.create_item("dids", "dbt", DidIn(number="+4420001"), actor="x")
        for source, expected in (
            ("file", {"filed"}),
            ("database", {"dbt"}),
            ("both", {"filed", "dbt"}),
        ):
            reg = TenantRegistry(settings_for(db_url, source, cfg))
            reg.attach_control(repo)
            await reg.refresh_control(force=True)
            assert set(reg.table.tenants) == expected, source
            if source == "both":
                # the file's host and number stay the file tenant's: read-only, first
                assert reg.table.tenant_for_host("filed.example") == "filed"
                assert reg.table.did_route("+4420000").tenant_id == "filed"  # type: ignore[union-attr]
                assert reg.table.did_route("+4420001").tenant_id == "dbt"  # type: ignore[union-attr]
                assert set(reg.readonly_ids()) == {"filed"}
    finally:
        await repo.close()


async def test_database_outage_keeps_the_running_table(db_url: str) -> None:
    repo = await ControlRepo.open(db_url)
    reg = TenantRegistry(settings_for(db_url))
    reg.attach_control(repo)
    await repo.create_tenant(TenantIn(id="acme"), actor="x")
    await repo.create_item("agents", "acme", AgentIn(name="a"), actor="x")
    await reg.refresh_control()
    await repo.engine.dispose()

    class Down:
        async def version(self) -> int:
            raise OSError("connection refused")

        async def snapshot(self, previous: object = None) -> object:
            raise OSError("connection refused")

    reg.attach_control(Down())  # type: ignore[arg-type]
    assert await reg.refresh_control() is False
    assert "acme" in reg.table.tenants
