"""SDP offer/answer to RTP for a user agent's calls (:class:`MediaSetup`): opening the
call's endpoint with our answer (or offer), pointing it at what negotiation decided, media
formats, 488 refusals, the silence payload of each format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from w3sipagent.asyncio.call import Call
from w3sipagent.asyncio.call_api import (
    HoldChanged,
    MediaChanged,
    MediaFormat,
)
from w3sipagent.asyncio.media import RtpEndpoint
from w3sipagent.asyncio.pacer import Pacer
from w3sipagent.asyncio.ports import RtpPortRange
from w3sipagent.asyncio.runtime import Runtime
from w3sipagent.asyncio.transport import is_ip_literal
from w3sipagent.codecs import get_codec
from w3sipagent.errors import (
    ConfigError,
    SdpError,
)
from w3sipagent.sdp import (
    AnswerResult,
    NegotiatedStream,
    SessionDescription,
    create_offer,
    negotiate_answer,
)
from w3sipagent.sip.events import (
    TransactionId,
)


def sdp_address(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


class MediaSetup:
    """Opens and steers the RTP endpoints of a user agent's calls."""

    def __init__(self, runtime: Runtime, ports: RtpPortRange, pacer: Pacer) -> None:
        self._rt = runtime
        self._ports = ports
        self._pacer = pacer
        self._silence: dict[tuple[str, int, int, str | None], bytes | None] = {}

    async def prepare_media(
        self,
        call: Call,
        offer: SessionDescription | None,
        tx: TransactionId,
        codecs: Sequence[str] | None = None,
    ) -> SessionDescription | None:
        """Open the RTP endpoint and build our SDP (answer, or offer for an offerless INVITE)
        with ``codecs`` (default: the configured preference). Answers the INVITE itself (488)
        and returns None when the offer is unacceptable."""
        c = self._rt.config
        prefs = list(codecs or c.codecs)
        host = c.rtp_host or c.host
        sdp_host = sdp_address(self._rt.advertised_host)
        if offer is None:
            call.remote_sdp = None
            return await self.open_with_offer(call, prefs)
        audio_index = next(
            (i for i, m in enumerate(offer.media) if m.media == "audio" and m.port != 0), None
        )

        def port_for(index: int, _m: object) -> int | None:
            return 9 if index == audio_index else None

        sid = self._rt.next_session_id()
        result = negotiate_answer(
            offer,
            local_address=sdp_host,
            ports=port_for,
            codec_preference=prefs,
            session_id=sid,
            session_version=1,
            telephone_event=c.telephone_event,
            ptime=c.ptime,
        )
        stream = result.audio
        refusal = sdp_refusal(result, c.user_agent)
        if refusal is not None or stream is None or stream.codec is None:
            reason, warning = refusal or (None, NO_AUDIO)
            self._rt.respond(tx, 488, reason, headers=[("Warning", warning)])
            return None
        fmt = _format_of_stream(stream)
        endpoint = await RtpEndpoint.open(
            self._ports,
            host,
            self._pacer,
            self._rt.ids,
            payload_type=stream.codec.payload_type,
            clock_rate=stream.codec.clock_rate,
            ptime_ms=fmt.ptime_ms,
            telephone_event_pt=fmt.telephone_event_pt,
            rtcp_mux=stream.rtcp_mux,
            signalling_ip=call.peer[0],
            config=c.media,
        )
        result.answer.media[stream.index].port = endpoint.local_port
        stream.local_port = endpoint.local_port
        endpoint.silence_payload = self.silence_payload(fmt)
        call.attach(endpoint, fmt)
        call.remote_sdp = offer
        self.apply_stream(call, stream, initial=True)
        return result.answer

    async def open_with_offer(self, call: Call, prefs: Sequence[str]) -> SessionDescription:
        """Open the call's RTP endpoint and make our offer of ``prefs`` on its port (an
        outbound call, or the 200 of an offerless INVITE); the endpoint is closed on error."""
        c = self._rt.config
        endpoint = await RtpEndpoint.open(
            self._ports,
            c.rtp_host or c.host,
            self._pacer,
            self._rt.ids,
            payload_type=0,
            clock_rate=get_codec_spec(prefs[0])[1],
            signalling_ip=call.peer[0],
            config=c.media,
        )
        try:
            ours = create_offer(
                list(prefs),
                local_address=sdp_address(self._rt.advertised_host),
                port=endpoint.local_port,
                session_id=self._rt.next_session_id(),
                session_version=1,
                telephone_event=c.telephone_event,
                ptime=c.ptime or 20,
            )
        except SdpError:
            endpoint.close()
            raise
        call.attach(endpoint, _format_of_codec(ours.media[0].codecs[0], ours.media[0]))
        return ours

    def silence_payload(self, fmt: MediaFormat) -> bytes | None:
        """The payload of 20 ms of silence in ``fmt`` (cached per format; None if no coder)."""
        key = (fmt.encoding.lower(), fmt.clock_rate, fmt.channels, fmt.fmtp)
        if key not in self._silence:
            try:
                codec = get_codec(fmt.encoding, fmt.clock_rate, fmt.channels, fmt.fmtp)
                enc = codec.encoder()
                zero = bytes(codec.samples_per_frame * 2)
                payload = b""
                # let stateful coders settle: G.722's ADPCM needs ~10 frames; the 3rd frame
                # sent over and over decodes to a -45 dBFS buzz that a VAD takes for speech
                for _ in range(50):
                    payload = enc.encode(zero)
                self._silence[key] = payload
            except Exception:
                self._silence[key] = None
        return self._silence[key]

    def apply_stream(self, call: Call, stream: NegotiatedStream, *, initial: bool = False) -> None:
        """Point the call's RTP endpoint at what offer/answer decided (codec, address, direction)."""
        ep = call.endpoint
        if ep is None or stream.codec is None:
            return
        old_fmt = call.media
        old_remote = ep.sdp_address
        fmt = _format_of_stream(stream)
        if (
            initial
            or (fmt.payload_type, fmt.clock_rate, fmt.encoding)
            != (old_fmt.payload_type, old_fmt.clock_rate, old_fmt.encoding)
            or fmt.telephone_event_pt != old_fmt.telephone_event_pt
        ):
            ep.set_codec(
                fmt.payload_type,
                fmt.clock_rate,
                ptime_ms=fmt.ptime_ms,
                telephone_event_pt=fmt.telephone_event_pt,
                silence_payload=self.silence_payload(fmt),
            )
        call.set_media(fmt)
        hold = stream.hold
        address = stream.remote_address
        usable = address is not None and is_ip_literal(address)  # never resolve a name
        if address is not None and usable:
            remote = (address, stream.remote_port)
            if remote != ep.sdp_address:
                ep.set_remote(remote, stream.remote_rtcp)
        ep.set_remote_direction(stream.remote_direction if usable else "inactive")
        if initial:
            call.on_hold = hold
            return
        if hold != call.on_hold:
            call.on_hold = hold
            call.emit(HoldChanged(hold))
        new_remote = ep.sdp_address
        if fmt != old_fmt or (new_remote != old_remote and new_remote is not None):
            call.emit(MediaChanged(fmt, new_remote or ("", 0)))


def get_codec_spec(name: str) -> tuple[str, int]:
    """(encoding, clock rate) of a preference entry like ``"PCMU/8000"``."""
    parts = name.split("/")
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConfigError(f"codec {name!r}: expected encoding/rate[/channels]")
    return parts[0], int(parts[1])


def _format_of_codec(codec: Any, media: Any) -> MediaFormat:
    te = next((c for c in media.codecs if c.is_telephone_event), None)
    return MediaFormat(
        codec.encoding,
        codec.clock_rate,
        codec.channels,
        codec.payload_type,
        codec.fmtp,
        media.ptime or 20,
        te.payload_type if te is not None else None,
    )


def _format_of_stream(stream: NegotiatedStream) -> MediaFormat:
    codec = stream.codec
    assert codec is not None
    te = stream.telephone_event
    return MediaFormat(
        codec.encoding,
        codec.clock_rate,
        codec.channels,
        codec.payload_type,
        codec.fmtp,
        stream.ptime or 20,
        te.payload_type if te is not None else None,
    )


NO_AUDIO = '304 w3sipagent "no audio stream"'


def sdp_refusal(result: AnswerResult, agent: str) -> tuple[str | None, str] | None:
    """(reason, Warning) when an offer cannot be taken: negotiation failed, or the audio
    connection address is a host name (we never resolve one: 488 with Warning 301)."""
    failure = result.failure
    if failure is not None:
        return failure.reason, failure.warning_header(agent)
    stream = result.audio
    if stream is not None and stream.remote_address and not is_ip_literal(stream.remote_address):
        return "Host name in SDP", f'301 {agent} "c= must be an IP address (no DNS here)"'
    return None
