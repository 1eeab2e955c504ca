"""Settings → the objects the service builds: user agent config, bridge options, AI sessions.

Pure mappings of a deployment's :class:`~w3sipagent.config.Settings` and a tenant's
configuration, no state: :func:`ua_config_from_settings` (``[sip]``/``[rtp]`` →
:class:`UserAgentConfig`), :func:`bridge_options` (tenant + agent + defaults →
:class:`BridgeOptions`), :func:`default_ai_factory` (``[realtime]`` → AI sessions), the
tenant's codec preference and the codec an SDP offer will be answered with.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from w3sipagent.agent.bridge import BridgeOptions
from w3sipagent.ai.session import AISession, AISessionConfig
from w3sipagent.asyncio.media import MediaConfig
from w3sipagent.asyncio.refer import TransferConfig
from w3sipagent.asyncio.useragent import UserAgentConfig
from w3sipagent.config import Settings
from w3sipagent.errors import AIError, ConfigError, SdpError
from w3sipagent.freeswitch.transfer import EslTransferConfig, EslTransferer
from w3sipagent.sdp import SessionDescription, negotiate_answer
from w3sipagent.tenants.cascade import CascadeConfig
from w3sipagent.tenants.models import TenantConfig
from w3sipagent.tenants.resolver import Resolution
from w3sipagent.tenants.secrets import resolve_secret

__all__ = [
    "CODEC_SPECS",
    "AIFactory",
    "bridge_options",
    "cascade_factory",
    "default_ai_factory",
    "negotiated_encoding",
    "tenant_codec_preference",
    "transfer_config_from",
    "ua_config_from_settings",
]

AIFactory = Callable[[str, str, str, AISessionConfig], AISession]
"""``factory(tenant_id, api_key, transport, config)`` → a not yet started AI session."""


def default_ai_factory(settings: Settings) -> AIFactory:
    """The agent's back end (``config.backend``): Realtime sessions (WebSocket or WebRTC per
    tenant) or GPT-Live sessions (WebSocket), both at ``settings.realtime.base_url``."""
    from w3sipagent.realtime import open_session

    base = settings.realtime.base_url  # ``…/v1``: the settings trim a trailing /realtime
    timeout = settings.realtime.connect_timeout
    ping = {  # 0: no keepalive
        "ping_interval": settings.realtime.ping_interval or None,
        "ping_timeout": settings.realtime.ping_timeout or None,
    }

    def make(tenant_id: str, api_key: str, transport: str, config: AISessionConfig) -> AISession:
        if config.backend == "live":
            from w3sipagent import live

            return live.open_session(
                config,
                api_key=api_key,
                transport="webrtc" if transport == "webrtc" else "websocket",
                base_url=base,
                connect_timeout=timeout,
                session_timeout=timeout,
                **(ping if transport != "webrtc" else {}),
            )
        url = base if transport == "websocket" else base.replace("ws", "http", 1)
        extra: dict[str, Any] = {}
        if transport == "websocket":
            extra = {
                "connect_timeout": timeout,
                "append_ms": settings.realtime.append_ms,
                **ping,
            }
        return open_session(
            config,
            api_key=api_key,
            transport="webrtc" if transport == "webrtc" else "websocket",
            base_url=url,
            session_timeout=timeout,
            **extra,
        )

    return make


def cascade_factory(
    settings: Settings,
    cascade: CascadeConfig,
    key: Callable[[], str],
    *,
    environ: Mapping[str, str] | None = None,
) -> Callable[[AISessionConfig], AISession]:
    """Cascaded sessions (issue 15) for one call of an agent with ``[cascade]``: each stage
    at its own endpoint, by default the deployment's OpenAI URL with the tenant's key
    (``key()`` reads it, raising AIError when there is none)."""
    from w3sipagent.cascade import CascadeSession

    base = settings.realtime.base_url.replace("ws", "http", 1)

    def make(config: AISessionConfig) -> AISession:
        try:
            resolved = cascade.to_settings(
                default_base_url=base,
                default_key=key(),
                voice=config.voice or "marin",
                environ=environ,
            )
        except ConfigError as exc:
            raise AIError(str(exc)) from exc
        return CascadeSession(config, resolved)

    return make


CODEC_SPECS: dict[str, str] = {
    "PCMU": "PCMU/8000",
    "PCMA": "PCMA/8000",
    "G722": "G722/8000",
    "opus": "opus/48000/2",
}
"""A tenant's codec names (:data:`w3sipagent.tenants.models.CODECS`) → SDP codec specs."""


def tenant_codec_preference(names: Sequence[str], configured: Sequence[str]) -> tuple[str, ...]:
    """The codec preference of a tenant's calls: its ``codecs`` in its order, each as the
    user agent's configured spec of that codec when there is one (else the standard spec)."""
    out: list[str] = []
    for name in names:
        spec = next(
            (c for c in configured if c.split("/", 1)[0].upper() == name.upper()),
            CODEC_SPECS.get(name, name),
        )
        if spec not in out:
            out.append(spec)
    return tuple(out)


def negotiated_encoding(
    body: bytes, preference: Sequence[str], *, telephone_event: bool = True
) -> str | None:
    """The audio codec (``"PCMU"``...) answering the SDP offer ``body`` with ``preference``
    will pick: the very :func:`~w3sipagent.sdp.negotiate_answer` the user agent runs, so the
    AI format chosen at admission is the one the call gets. None: no offer, or no codec."""
    if not body:
        return None
    try:
        offer = SessionDescription.parse(body)
        result = negotiate_answer(
            offer,
            local_address="0.0.0.0",
            ports=lambda _i, _m: 9,
            codec_preference=list(preference),
            session_id=1,
            session_version=1,
            telephone_event=telephone_event,
        )
    except SdpError:
        return None
    stream = result.audio
    if result.failure is not None or stream is None or stream.codec is None:
        return None
    return stream.codec.encoding.upper()


def digest_users(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The user agent's digest settings of ``sip.auth`` (empty when off): each password
    reference read now (a bad one is a :class:`ConfigError` naming the key)."""
    auth = settings.sip.auth
    if not auth.enabled:
        return {}
    passwords = {
        user: resolve_secret(ref, what=f"sip.auth.users.{user}", environ=environ)
        for user, ref in auth.users.items()
    }

    def lookup(user: str, realm: str) -> str | None:
        secret = passwords.get(user)
        return secret.get_secret_value() if secret is not None else None

    return {
        "auth_password": lookup,
        "auth_realm": auth.realm,
        "auth_proxy": auth.proxy,
        "auth_nonce_lifetime": auth.nonce_lifetime,
        "auth_algorithms": tuple(auth.algorithms),
    }


def ua_config_from_settings(
    settings: Settings, *, environ: Mapping[str, str] | None = None, **overrides: object
) -> UserAgentConfig:
    """The user agent configuration of a deployment's ``[sip]`` and ``[rtp]`` settings
    (``environ``: where ``sip.auth`` password references are read)."""
    sip, rtp = settings.sip, settings.rtp
    host, port = sip.listen_address
    adv_host: str | None = None
    adv_port: int | None = None
    if sip.advertised:
        h, _, p = sip.advertised.rpartition(":")
        if h and p.isdigit() and not sip.advertised.endswith("]"):
            adv_host, adv_port = h.strip("[]"), int(p)
        else:
            adv_host = sip.advertised.strip("[]")
    values: dict[str, object] = {
        "host": host,
        "port": port,
        "transports": tuple(sip.transports),
        "advertised_host": adv_host,
        "advertised_port": adv_port,
        "tls_cert": str(sip.tls_cert) if sip.tls_cert else None,
        "tls_key": str(sip.tls_key) if sip.tls_key else None,
        "tls_port": sip.tls_address[1] if "tls" in sip.transports else None,
        "t1": sip.t1,
        "t2": sip.t2,
        "t4": sip.t4,
        "ack_wait": sip.ack_wait,
        "rtp_port_min": rtp.port_min,
        "rtp_port_max": rtp.port_max,
        "media": MediaConfig(
            source_policy=rtp.source_policy,
            inactivity_timeout=rtp.inactivity_timeout,
            silence="silence" if rtp.send_silence else "none",
            kick=rtp.talkspurt_kick,
            receive_buffer=rtp.receive_buffer,
            receive_batch=rtp.receive_batch,
            receive_budget=rtp.receive_budget,
            relatch_packets=rtp.relatch_packets,
            max_packet_ms=rtp.max_packet_ms,
        ),
        "allowed_sources": tuple(str(n) for n in sip.allowed_sources),
        "max_calls": sip.max_calls,
        "drain_timeout": sip.drain_timeout,
        "tcp_max_connections": sip.tcp_max_connections,
        "tcp_max_per_source": sip.tcp_max_per_source,
        "tcp_idle_timeout": sip.tcp_idle_timeout,
        "tcp_message_timeout": sip.tcp_message_timeout,
        "user_agent": sip.user_agent,
        **digest_users(settings, environ),
    }
    values.update(overrides)
    return UserAgentConfig(**values)  # type: ignore[arg-type]


def bridge_options(
    settings: Settings,
    defaults: BridgeOptions,
    resolution: Resolution,
    call_id: str,
    *,
    ai_enabled: bool = True,
    environ: Mapping[str, str] | None = None,
) -> BridgeOptions:
    """One call's bridge options: the tenant's and agent's settings over ``defaults``.

    A tenant that records gets ``records.recordings_dir/TENANT/YYYY-MM-DD/CALL-ID.wav``
    (and its announcement); ``ai_enabled=False`` (over the usage cap) gives the fallback.
    """
    tenant, agent = resolution.tenant, resolution.agent
    rt = settings.realtime
    recording: Path | None = None
    if tenant.recording.enabled:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        safe_id = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in call_id)
        recording = settings.records.recordings_dir / tenant.id / day / f"{safe_id}.wav"
    d = defaults
    return BridgeOptions(
        greeting=agent.greeting,
        connect_timeout=rt.connect_timeout,
        reconnect_timeout=rt.reconnect_timeout,
        reconnect_attempts=d.reconnect_attempts,
        resume_instructions=d.resume_instructions,
        max_duration=tenant.max_call_duration or None,
        caller_silence_timeout=tenant.caller_silence_timeout or None,
        min_interrupt_ms=agent.turn_detection.min_interrupt_ms,
        dtmf_collect_timeout=d.dtmf_collect_timeout,
        dtmf_actions=dict(tenant.dtmf),
        transfers=dict(tenant.transfers),
        transfer_timeout=d.transfer_timeout,
        transferer=esl_transferer(tenant, os.environ if environ is None else environ),
        quiet_timeout=d.quiet_timeout,
        end_call_tail=d.end_call_tail,
        end_call_quiet=d.end_call_quiet,
        fallback_wav=tenant.fallback.wav,
        fallback_uri=None if agent.policy == "internal_fallback" else tenant.fallback_uri(),
        handover_uri=tenant.handover_uri(agent),
        handover_after=agent.handover_after,
        recording_path=recording,
        announcement=tenant.recording.announcement if recording is not None else None,
        ai_enabled=ai_enabled,
        housekeeping_interval=d.housekeeping_interval,
        max_held_audio_ms=d.max_held_audio_ms,
        hangup_timeout=d.hangup_timeout,
        close_timeout=d.close_timeout,
    )


def esl_transferer(tenant: TenantConfig, environ: Mapping[str, str]) -> EslTransferer | None:
    """The tenant's event-socket transferer (``transfer_method = "esl"``), else None."""
    esl = tenant.esl
    if tenant.transfer_method != "esl" or esl is None:
        return None
    ref = esl.password

    def password() -> str:
        what = f"tenant {tenant.id} esl.password"
        return resolve_secret(ref, what=what, environ=environ).get_secret_value()

    return EslTransferer(EslTransferConfig(esl.host, esl.port, esl.profile), password)


def transfer_config_from(settings: Settings) -> TransferConfig:
    """The REFER timers of ``[transfer]`` (the outcome wait itself is the bridge's timeout)."""
    t = settings.transfer
    return TransferConfig(
        refer_timeout=t.refer_timeout,
        default_timeout=t.timeout,
        after_bye_grace=t.after_bye_grace,
        rtp_silence=t.rtp_silence,
        rtp_gone=t.rtp_gone,
    )
