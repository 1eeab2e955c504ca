"""Secret references: read at call time, errors name the reference, logs are masked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from w3sipagent.errors import ConfigError
from w3sipagent.redact import RedactingFilter, Redactor
from w3sipagent.tenants.models import SecretRef, TenantConfig
from w3sipagent.tenants.secrets import resolve_api_key, resolve_secret


def tenant(tid: str, ref: dict[str, str] | None) -> TenantConfig:
    return TenantConfig.model_validate({"id": tid, "agents": {"a": {}}, "api_key": ref})


def test_env_and_file(tmp_path: Path) -> None:
    assert (
        resolve_secret(SecretRef(env="K"), environ={"K": " sk-env-value \n"}).get_secret_value()
        == "sk-env-value"
    )
    f = tmp_path / "key"
    f.write_text("sk-file-value\n")
    assert resolve_secret(SecretRef(file=f)).get_secret_value() == "sk-file-value"


def test_read_at_call_time(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("sk-first-key")
    t = TenantConfig.model_validate(
        {"id": "acme", "agents": {"a": {}}, "api_key": {"file": str(f)}}
    )
    assert resolve_api_key(t) == SecretStr("sk-first-key")
    f.write_text("sk-rotated-key")  # a rotated key is used by the next call, no reload
    assert resolve_api_key(t) == SecretStr("sk-rotated-key")


@pytest.mark.parametrize(
    ("ref", "env", "expected"),
    [
        (
            {"env": "ACME_KEY"},
            {},
            "tenant 'acme': api_key: environment variable ACME_KEY is not set",
        ),
        (
            {"env": "ACME_KEY"},
            {"ACME_KEY": "  "},
            "tenant 'acme': api_key: environment variable ACME_KEY is empty",
        ),
        (
            {"file": "/nonexistent/acme.key"},
            {},
            "tenant 'acme': api_key: file /nonexistent/acme.key not found",
        ),
    ],
)
def test_errors_name_the_reference(ref: dict[str, str], env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as ei:
        resolve_api_key(tenant("acme", ref), environ=env)
    assert str(ei.value) == expected


def test_isolation_of_keys() -> None:
    env = {"ACME_KEY": "sk-acme-111111", "GLOBEX_KEY": "sk-globex-222222"}
    default = SecretStr("sk-default-333333")
    assert resolve_api_key(tenant("acme", {"env": "ACME_KEY"}), default, environ=env) == SecretStr(
        "sk-acme-111111"
    )
    assert resolve_api_key(
        tenant("globex", {"env": "GLOBEX_KEY"}), default, environ=env
    ) == SecretStr("sk-globex-222222")
    assert resolve_api_key(tenant("initech", None), default, environ=env) == default
    assert resolve_api_key(tenant("initech", None), None, environ=env) is None
    # a tenant whose own key is missing never falls back to the deployment's key
    with pytest.raises(ConfigError):
        resolve_api_key(tenant("acme", {"env": "ACME_KEY"}), default, environ={})


def test_ref_validation() -> None:
    assert SecretRef.model_validate("env:ACME_KEY").env == "ACME_KEY"
    assert SecretRef.model_validate("file:/run/k").file == Path("/run/k")
    for bad in ({}, {"env": "A", "file": "/x"}, {"env": "not a name"}, "sk-live-123"):
        with pytest.raises(ValueError):
            SecretRef.model_validate(bad)
    assert SecretRef(env="X").describe() == "env X"


def test_redacting_filter(caplog: pytest.LogCaptureFixture) -> None:
    r = Redactor()
    r.add("sk-very-secret-999")
    r.add("abc")  # too short to mask safely
    log = logging.getLogger("test.redact")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect()
    handler.addFilter(RedactingFilter(r))
    log.addHandler(handler)
    try:
        log.warning("connect failed with key %s (abc)", "sk-very-secret-999")
    finally:
        log.removeHandler(handler)
    assert records == ["connect failed with key *** (abc)"]
