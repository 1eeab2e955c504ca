"""Settings: layers and precedence, provenance, one-line errors naming file/tenant/key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from w3sipagent.config import ConfigProblems, load_settings, parse_hostport
from w3sipagent.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

TENANT = """
[tenants.acme]
hosts = ["acme.example"]
api_key = { env = "ACME_KEY" }
[tenants.acme.agents.support]
voice = "marin"
"""


def write(tmp_path: Path, text: str, name: str = "w3sipagent.toml") -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def error(
    path: Path | None, overrides: dict[str, object] | None = None, env: dict[str, str] | None = None
) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_settings(path, overrides or {}, environ=env or {}, discover=False)
    msg = str(ei.value)
    assert "\n" not in msg and "Traceback" not in msg
    return ei.value


def test_defaults_without_file() -> None:
    s = load_settings(None, {}, environ={}, discover=False)
    assert s.sip.listen == "0.0.0.0:5090" and s.sip.listen_address == ("0.0.0.0", 5090)
    assert s.sip.allowed_sources == [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
    assert s.records.database_url == "sqlite+aiosqlite:///./var/w3sipagent.db"
    assert s.tenants == {} and s.config_file is None
    assert s.source_of("sip.listen") == "default"
    assert s.rtp.source_policy == "latch" and s.sip.t1 == 0.5
    assert s.sip.tls_address == ("0.0.0.0", 5091)


def test_metrics_off_from_flag_env_and_file(tmp_path: Path) -> None:
    """``off`` switches the metrics listener off wherever null cannot be written; an unset
    flag (None) leaves the configured address."""
    p = write(tmp_path, '[metrics]\nlisten = "127.0.0.1:9999"\n')
    assert load_settings(p, {"metrics.listen": "off"}, environ={}).metrics.listen is None
    assert load_settings(p, {"metrics": {"listen": None}}, environ={}).metrics.listen == (
        "127.0.0.1:9999"
    )
    env = {"W3SIPAGENT_METRICS__LISTEN": "OFF"}
    assert load_settings(p, {}, environ=env).metrics.listen is None
    off = write(tmp_path, '[metrics]\nlisten = "off"\n', "off.toml")
    assert load_settings(off, {}, environ={}).metrics.listen is None


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    p = write(tmp_path, '[sip]\nlisten = "127.0.0.1:6000"\nmax_calls = 10\n')
    env = {"W3SIPAGENT_SIP__LISTEN": "127.0.0.1:7000", "W3SIPAGENT_SIP__MAX_CALLS": "20"}
    s = load_settings(p, {"sip.listen": "127.0.0.1:8000"}, environ=env)
    assert s.sip.listen == "127.0.0.1:8000" and s.source_of("sip.listen") == "flag"
    assert s.sip.max_calls == 20 and s.source_of("sip.max_calls") == "env:W3SIPAGENT_SIP__MAX_CALLS"
    s = load_settings(p, {"sip": {"listen": None}}, environ=env)  # unset flags are ignored
    assert (
        s.sip.listen == "127.0.0.1:7000"
        and s.source_of("sip.listen") == "env:W3SIPAGENT_SIP__LISTEN"
    )
    s = load_settings(p, {}, environ={})
    assert s.sip.listen == "127.0.0.1:6000" and s.source_of("sip.listen") == f"file:{p}"
    assert s.sip.max_calls == 10 and s.source_of("sip.drain_timeout") == "default"
    rows = {k: (v, src) for k, v, src in s.describe()}
    assert rows["sip.listen"] == ('"127.0.0.1:6000"', f"file:{p}")
    assert rows["sip.t1"] == ("0.5", "default")


def test_env_nests_into_tenants_and_parses_lists(tmp_path: Path) -> None:
    p = write(tmp_path, TENANT + "[tenants.acme.fallback]\ntransfer = 'sip:100@pbx'\n")
    env = {
        "W3SIPAGENT_TENANTS__ACME__MAX_CONCURRENT_CALLS": "5",
        "W3SIPAGENT_SIP__TRANSPORTS": "udp, tcp",
        "W3SIPAGENT_SIP__ALLOWED_SOURCES": '["10.0.0.0/8"]',
        "W3SIPAGENT_TENANCY__RESOLUTION_ORDER": "did,request_uri_host",
        "W3SIPAGENT_CONFIG": "/not/a/setting.toml",  # names the file; not a key
        "OTHER": "x",
    }
    s = load_settings(p, {}, environ=env)
    acme = s.tenants["acme"]
    assert acme.max_concurrent_calls == 5 and acme.hosts == ["acme.example"]
    assert (
        s.source_of("tenants.acme.max_concurrent_calls")
        == "env:W3SIPAGENT_TENANTS__ACME__MAX_CONCURRENT_CALLS"
    )
    assert s.source_of("tenants.acme.hosts") == f"file:{p}"
    assert s.sip.transports == ["udp", "tcp"]
    assert s.sip.allowed_sources == [ipaddress.ip_network("10.0.0.0/8")]
    assert s.tenancy.resolution_order == ["did", "request_uri_host"]


def test_secrets_are_secretstr_and_masked() -> None:
    env = {
        "W3SIPAGENT_REALTIME__API_KEY": "sk-test-abcdef123456",
        "W3SIPAGENT_RECORDS__DATABASE_PASSWORD": "pg-pass-987",
    }
    s = load_settings(
        None,
        {"records.database_url": "postgresql://agent@db.internal/w3"},
        environ=env,
        discover=False,
    )
    assert (
        s.realtime.api_key is not None
        and s.realtime.api_key.get_secret_value() == "sk-test-abcdef123456"
    )
    shown = repr(s) + str(s.describe()) + s.model_dump_json()
    assert "sk-test-abcdef123456" not in shown and "pg-pass-987" not in shown
    assert s.records.database_url == "postgresql+asyncpg://agent@db.internal/w3"
    assert s.records.url() == "postgresql+asyncpg://agent:pg-pass-987@db.internal/w3"
    s2 = load_settings(
        None, {"records.database_url": "postgresql://u:inline-pw@h/db"}, environ={}, discover=False
    )
    assert s2.records.display_url() == "postgresql+asyncpg://u:***@h/db"
    assert "inline-pw" not in str(s2.describe())


def test_bad_voice_names_file_tenant_key(tmp_path: Path) -> None:
    p = write(tmp_path, TENANT.replace('"marin"', '"bob"'))
    e = error(p)
    assert str(e) == (
        f"{p}: tenant 'acme': agents.support.voice: must be one of alloy, ash, ballad, coral, "
        "echo, sage, shimmer, verse, marin, cedar (got 'bob')"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[sip]\nlisten = '0.0.0.0'\n",
            "sip.listen: expected HOST:PORT, the port is missing (got '0.0.0.0')",
        ),
        ("[sip]\nlistn = '0.0.0.0:1'\n", "sip.listn: unknown key"),
        (
            "[sip]\nmax_calls = 'lots'\n",
            "sip.max_calls: input should be a valid integer, unable to parse string as an integer (got 'lots')",
        ),
        (
            "[sip]\nallowed_sources = ['10.0.0.300/8']\n",
            "sip.allowed_sources.0: not an IP address or CIDR: '10.0.0.300/8'",
        ),
        ("[sip]\ntransports = ['tls']\n", "sip: transports: tls needs tls_cert and tls_key"),
        (
            "[rtp]\nport_min = 30000\nport_max = 20000\n",
            "rtp: port_max: must be above port_min (30000 > 20000)".replace(
                "30000 > 20000", "20000 <= 30000"
            ),
        ),
        (
            "[rtp]\ninactivity_timeout = 'soon'\n",
            "rtp.inactivity_timeout: must be a duration such as 30, '30s', '5m', '2h' or '30d' (got 'soon')",
        ),
        (
            "[records]\ndatabase_url = 'mysql://x/y'\n",
            "records.database_url: database 'mysql' is not supported: use sqlite+aiosqlite or postgresql+asyncpg (got 'mysql://x/y')",
        ),
        (
            "[logging]\nlevel = 'LOUD'\n",
            "logging.level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'LOUD')",
        ),
        (
            "[tenancy]\nresolution_order = ['host']\n",
            "tenancy.resolution_order.0: must be one of request_uri_host, to_host, registration, did, trunk, trusted_header (got 'host')",
        ),
    ],
)
def test_section_errors(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, text)
    assert str(error(p)) == f"{p}: {expected}"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("dids = ['555-CALL-NOW']", "dids: '555-CALL-NOW' is not an E.164 number (write +CC...)"),
        ("hosts = ['bad host!']", "hosts: not a host name or IP address: 'bad host!'"),
        ("codecs = ['G729']", "codecs: must be among PCMU, PCMA, G722, opus (got 'G729')"),
        (
            "transfers = { human = 'http://x' }",
            "transfers: must be a sip:, sips: or tel: URI (got 'http://x')",
        ),
        ("dtmf = { '0' = 'transfer:nobody' }", "dtmf.0: no transfer destination named 'nobody'"),
        ("dtmf = { 'X' = 'hangup' }", "dtmf: 'X' is not a DTMF digit (0-9 * # A-D)"),
        ("default_agent = 'sales'", "default_agent: no agent named 'sales'"),
        (
            "max_call_duration = '-5s'",
            "max_call_duration: must be a duration such as 30, '30s', '5m', '2h' or '30d' (got '-5s')",
        ),
        (
            "realtime_transport = 'sip'",
            "realtime_transport: must be one of websocket, webrtc (got 'sip')",
        ),
        (
            "cdr_webhook = 'ftp://hooks'",
            "cdr_webhook.url: must be an http:// or https:// URL (got 'ftp://hooks')",
        ),
        (
            "fallback = { transfer = 'nowhere' }",
            "fallback.transfer: 'nowhere' is neither a transfer destination nor a URI",
        ),
        (
            "max_concurrent_calls = 0",
            "max_concurrent_calls: input should be greater than or equal to 1 (got 0)",
        ),
        ("id = 'other'", "id: differs from the table name (got 'other')"),
    ],
)
def test_tenant_errors(tmp_path: Path, snippet: str, expected: str) -> None:
    text = TENANT.replace('hosts = ["acme.example"]\n', "").replace(
        'api_key = { env = "ACME_KEY" }', 'api_key = { env = "ACME_KEY" }\n' + snippet
    )
    p = write(tmp_path, text)
    assert str(error(p)) == f"{p}: tenant 'acme': {expected}"


def test_tool_schema_and_names(tmp_path: Path) -> None:
    tool = '[[tenants.acme.agents.support.tools]]\nname = "transfer_call"\nurl = "https://x/t"\n'
    p = write(tmp_path, TENANT + tool)
    assert (
        str(error(p))
        == f"{p}: tenant 'acme': agents.support.tools: tool name 'transfer_call' is reserved for a built-in tool"
    )
    tool = '[[tenants.acme.agents.support.tools]]\nname = "x"\nurl = "https://x/t"\nparameters = { type = "string" }\n'
    p = write(tmp_path, TENANT + tool)
    assert (
        str(error(p))
        == f"{p}: tenant 'acme': agents.support.tools.0.parameters: must be a JSON schema with type = \"object\""
    )


def test_inline_api_key_is_refused_without_echo(tmp_path: Path) -> None:
    p = write(tmp_path, TENANT.replace('{ env = "ACME_KEY" }', '"sk-proj-SECRETSECRET"'))
    e = error(p)
    assert "sk-proj-SECRETSECRET" not in str(e)
    assert str(e).startswith(f"{p}: tenant 'acme': api_key: must be a reference")
    p = write(tmp_path, TENANT.replace('{ env = "ACME_KEY" }', '{ env = "sk-proj-SECRET-VALUE" }'))
    assert "sk-proj-SECRET-VALUE" not in str(error(p))


def test_env_error_names_the_variable() -> None:
    e = error(None, env={"W3SIPAGENT_SIP__MAX_CALLS": "many"})
    assert str(e).startswith(
        "environment W3SIPAGENT_SIP__MAX_CALLS: sip.max_calls: input should be a valid integer"
    )
    e = error(None, env={"W3SIPAGENT_SIP__LISTN": "x"})
    assert str(e) == "environment W3SIPAGENT_SIP__LISTN: sip.listn: unknown key"
    e = error(None, overrides={"rtp.port_min": 5})
    assert str(e).startswith(
        "command-line flag: rtp.port_min: input should be greater than or equal to 1024"
    )


def test_several_problems_in_one_line(tmp_path: Path) -> None:
    p = write(tmp_path, "[sip]\nmax_calls = 0\nt1 = 'x'\n[rtp]\nsend_silence = 'maybe'\nfoo = 1\n")
    e = error(p)
    assert isinstance(e, ConfigProblems) and len(e.problems) == 4
    assert str(e).endswith("(+1 more)") and str(e).count(f"{p}:") == 3


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[sip\nlisten = 1\n")
    msg = str(error(p))
    assert msg.startswith(f"{p}: invalid TOML: ") and "line 1" in msg
    assert str(error(tmp_path / "nope.toml")) == f"{tmp_path / 'nope.toml'}: file not found"


def test_include_files(tmp_path: Path) -> None:
    main = write(tmp_path, 'include = ["tenants.d/*.toml"]\n' + TENANT)
    write(
        tmp_path,
        '[tenants.globex]\nhosts = ["globex.example"]\n[tenants.globex.agents.main]\n',
        "tenants.d/globex.toml",
    )
    s = load_settings(main, {}, environ={})
    assert sorted(s.tenants) == ["acme", "globex"]
    assert s.files == [main, tmp_path / "tenants.d" / "globex.toml"]
    assert s.source_of("tenants.globex.hosts") == f"file:{tmp_path / 'tenants.d' / 'globex.toml'}"
    # an error inside an included file names that file
    bad = write(
        tmp_path,
        '[tenants.initech]\nhosts = ["initech.example"]\n[tenants.initech.agents.a]\nspeed = 9\n',
        "tenants.d/initech.toml",
    )
    assert (
        str(error(main))
        == f"{bad}: tenant 'initech': agents.a.speed: input should be less than or equal to 1.5 (got 9)"
    )
    bad.unlink()
    # the same tenant twice
    dup = write(tmp_path, '[tenants.acme]\nhosts = ["x.example"]\n', "tenants.d/zz.toml")
    assert str(error(main)) == f"{dup}: tenant 'acme': already defined in {main}"
    dup.unlink()
    # a host owned by two tenants
    write(
        tmp_path,
        '[tenants.globex]\nhosts = ["acme.example"]\n[tenants.globex.agents.main]\n',
        "tenants.d/globex.toml",
    )
    assert (
        str(error(main))
        == f"{tmp_path / 'tenants.d' / 'globex.toml'}: tenant 'globex': hosts: 'acme.example' is already a host of tenant 'acme'"
    )
    # included files hold tenants only
    write(tmp_path, '[sip]\nlisten = "0.0.0.0:1"\n', "tenants.d/globex.toml")
    assert "an included file may only hold [tenants.NAME] tables" in str(error(main))
    # a literal include that does not exist
    main2 = write(tmp_path, 'include = ["missing.toml"]\n', "other.toml")
    assert str(error(main2)) == f"{tmp_path / 'missing.toml'}: file not found"


def test_relative_paths_follow_the_file(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        TENANT
        + '[tenants.acme.fallback]\nwav = "prompts/sorry.wav"\n[records]\nrecordings_dir = "rec"\ndatabase_url = "sqlite+aiosqlite:///var/db.sqlite"\n',
        "conf/w3sipagent.toml",
    )
    s = load_settings(p, {"logging.sip_trace_path": "trace.jsonl"}, environ={})
    assert s.tenants["acme"].fallback.wav == tmp_path / "conf" / "prompts" / "sorry.wav"
    assert s.records.recordings_dir == tmp_path / "conf" / "rec"
    assert (
        s.records.database_url == f"sqlite+aiosqlite:///{tmp_path / 'conf' / 'var' / 'db.sqlite'}"
    )
    assert s.logging.sip_trace_path == Path("trace.jsonl")  # a flag stays relative to the cwd


def test_discovery_by_env_variable(tmp_path: Path) -> None:
    p = write(tmp_path, '[sip]\nlisten = "127.0.0.1:5999"\n')
    s = load_settings(None, {}, environ={"W3SIPAGENT_CONFIG": str(p)})
    assert s.sip.listen == "127.0.0.1:5999" and s.config_file == p


def test_example_config_loads() -> None:
    s = load_settings(ROOT / "examples" / "w3sipagent.toml", {}, environ={})
    assert sorted(s.tenants) == ["acme", "globex"]
    acme, globex = s.tenants["acme"], s.tenants["globex"]
    assert acme.dids == {"+15551230000": "support", "+15551230001": "sales"}
    assert (
        acme.dtmf_action("0") == "transfer:human"
        and acme.fallback_uri() == "sip:100@pbx.acme.example"
    )
    assert acme.agents["support"].tools[0].name == "lookup_order"
    assert (
        globex.registrations["pbx"].password is not None
        and globex.registrations["pbx"].password.env == "GLOBEX_SIP_PASSWORD"
    )
    assert (
        globex.api_key is not None
        and globex.api_key.file == ROOT / "examples" / "secrets" / "globex.key"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:5090", ("0.0.0.0", 5090)),
        ("[::1]:5060", ("::1", 5060)),
        ("host.example:0", ("host.example", 0)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["::1:5060", "host:99999", ":5060", "[::1", "host:port"])
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[metrics]\ntoken = 'short'\n", "metrics: token: at least 16 characters"),
        (
            "[metrics]\ntoken_env = 'bad name'\n",
            "metrics.token_env: must be an environment variable NAME (letters, digits, _)",
        ),
        (
            "[metrics]\ntoken = '0123456789abcdef'\ntoken_env = 'TOK'\n",
            "metrics: token, token_env: set one, not both",
        ),
        (
            "[logging]\nsip_trace_max_bytes = 10\n",
            "logging.sip_trace_max_bytes: input should be greater than or equal to 4096 (got 10)",
        ),
        (
            "[logging]\nsip_trace_files = 0\n",
            "logging.sip_trace_files: input should be greater than or equal to 1 (got 0)",
        ),
        ("[sip.auth]\nnonce_lifetime = 0\n", "sip.auth: nonce_lifetime: must be > 0"),
        (
            "[sip.auth]\nalgorithms = ['SHA-1']\n",
            "sip.auth.algorithms.0: must be one of SHA-512-256, SHA-256, MD5",
        ),
    ],
)
def test_protection_key_errors(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, text)
    assert str(error(p)) == f"{p}: {expected}"


def test_sip_auth_password_is_a_reference_never_inline(tmp_path: Path) -> None:
    p = write(tmp_path, "[sip.auth]\nusers = { bob = 'hunter2' }\n")
    msg = str(error(p))
    assert msg.startswith(f"{p}: sip.auth.users.bob: must be a reference")
    assert "hunter2" not in msg


def test_protection_keys_load_with_their_defaults(tmp_path: Path) -> None:
    s = load_settings(None, {}, environ={}, discover=False)
    assert not s.sip.auth.enabled and s.metrics.bearer_token({}) is None
    assert (s.logging.sip_trace_max_bytes, s.logging.sip_trace_files) == (50_000_000, 3)
    p = write(
        tmp_path,
        "[sip.auth]\nusers = { bob = { env = 'BOB_PW' } }\nrealm = 'acme.example'\n"
        "nonce_lifetime = '2m'\n[metrics]\ntoken_env = 'METRICS_TOKEN'\n",
    )
    s = load_settings(p, {}, environ={}, discover=False)
    assert s.sip.auth.enabled and s.sip.auth.nonce_lifetime == 120
    assert s.metrics.bearer_token({"METRICS_TOKEN": "t" * 20}) == "t" * 20
    with pytest.raises(ConfigError, match=r"metrics\.token_env: environment variable"):
        s.metrics.bearer_token({})
    s = load_settings(None, {}, environ={"W3SIPAGENT_METRICS__TOKEN": "x" * 16}, discover=False)
    assert s.metrics.bearer_token({}) == "x" * 16
    assert s.source_of("metrics.token") == "env:W3SIPAGENT_METRICS__TOKEN"


def test_transfer_timers_come_from_the_transfer_table(tmp_path: Path) -> None:
    from w3sipagent.agent.mappers import transfer_config_from

    p = tmp_path / "w3sipagent.toml"
    p.write_text('[transfer]\ntimeout = "12s"\nrtp_silence = "1.5s"\nrefer_timeout = "4s"\n')
    settings = load_settings(p, {}, environ={}, discover=False)
    cfg = transfer_config_from(settings)
    assert (cfg.default_timeout, cfg.rtp_silence, cfg.refer_timeout) == (12.0, 1.5, 4.0)
    from w3sipagent.agent.service import AgentService

    assert AgentService(settings, environ={}).bridge_defaults.transfer_timeout == 12.0
    assert (
        transfer_config_from(load_settings(None, {}, environ={}, discover=False)).rtp_silence
        is None
    )
    p.write_text('[transfer]\nrtp_silence = "soon"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(p, {}, environ={}, discover=False)
    assert f"{p}" in str(info.value) and "transfer.rtp_silence" in str(info.value)
