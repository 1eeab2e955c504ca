"""The ESL transfer's pure parts (no FreeSWITCH): causes to outcomes, dial strings, the
tenant config of ``transfer_method = "esl"``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from w3sipagent.asyncio.call_api import TransferOutcome
from w3sipagent.freeswitch.transfer import dial_string, outcome_of_cause
from w3sipagent.tenants import AgentConfig, TenantConfig


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        ("-ERR USER_BUSY\n", TransferOutcome("busy", 486, "USER_BUSY")),
        ("-ERR NO_ANSWER\n", TransferOutcome("no_answer", 480, "NO_ANSWER")),
        ("-ERR ALLOTTED_TIMEOUT", TransferOutcome("no_answer", 480, "ALLOTTED_TIMEOUT")),
        ("-ERR CALL_REJECTED", TransferOutcome("rejected", 603, "CALL_REJECTED")),
        ("-ERR NO_ROUTE_DESTINATION", TransferOutcome("failed", 404, "NO_ROUTE_DESTINATION")),
        ("-ERR NORMAL_CLEARING\n", TransferOutcome("failed", None, "NORMAL_CLEARING")),
        ("", TransferOutcome("failed", None, "originate failed")),
    ],
)
def test_outcome_of_cause(cause: str, outcome: TransferOutcome) -> None:
    assert outcome_of_cause(cause) == outcome


def test_dial_string() -> None:
    assert dial_string("sip:1001@pbx.example") == "sofia/external/1001@pbx.example"
    assert dial_string("<sip:1001@pbx.example>", "internal") == "sofia/internal/1001@pbx.example"
    assert dial_string("user/1001@acme.example") == "user/1001@acme.example"
    assert dial_string("loopback/1000/default") == "loopback/1000/default"


def _tenant(**kw: object) -> TenantConfig:
    return TenantConfig(id="acme", agents={"main": AgentConfig(instructions="x")}, **kw)  # type: ignore[arg-type]


def test_tenant_esl_config() -> None:
    t = _tenant(
        transfers={"sales": "user/1001@acme.example", "desk": "sip:2000@pbx.example"},
        transfer_method="esl",
        esl={"host": "10.0.0.5", "password": {"env": "FS_ESL_PASSWORD"}},
    )
    assert t.esl is not None and t.esl.port == 8021 and t.esl.password.env == "FS_ESL_PASSWORD"
    assert _tenant().transfer_method == "refer"


def test_tenant_esl_needs_its_table_and_dial_strings_need_esl() -> None:
    with pytest.raises(ValidationError, match=r"needs an \[esl\] table"):
        _tenant(transfer_method="esl")
    with pytest.raises(ValidationError, match="dial string"):
        _tenant(transfers={"sales": "user/1001@acme.example"})
    with pytest.raises(ValidationError, match="never the secret"):
        _tenant(transfer_method="esl", esl={"password": "ClueCon"})
