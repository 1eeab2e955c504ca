"""The event-socket client against the real FreeSWITCH (127.0.0.1:8021)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from tests.freeswitch.conftest import ESL_HOST, ESL_PASSWORD, ESL_PORT, FreeSwitch
from w3sipagent.freeswitch.esl import EslAuthError, EslClient, EslCommandError, EslEvent


async def next_event(q: asyncio.Queue[EslEvent | None], name: str, uid: str) -> EslEvent:
    while True:
        ev = await asyncio.wait_for(q.get(), 10)
        assert ev is not None, "client ended"
        if ev.name == name and ev.uuid == uid:
            return ev


async def test_api_and_errors(esl: EslClient) -> None:
    assert "is ready" in await esl.api("status")
    assert (await esl.api("nosuchcmd")).startswith("-ERR nosuchcmd")
    with pytest.raises(EslCommandError, match="nosuchcmd"):
        await esl.api("nosuchcmd", check=True)
    assert (await esl.api("global_getvar domain")).strip() == "127.0.0.1"


async def test_wrong_password(freeswitch: FreeSwitch) -> None:
    client = EslClient(ESL_HOST, ESL_PORT, "not-the-password")
    with pytest.raises(EslAuthError, match="-ERR invalid"):
        await client.connect()


async def test_bgapi_returns_the_jobs_output(esl: EslClient) -> None:
    # several jobs at once: each answer goes to its own Job-UUID
    outs = await asyncio.gather(*(esl.bgapi(f"eval job-{i}") for i in range(5)))
    assert [o.strip() for o in outs] == [f"job-{i}" for i in range(5)]


async def test_events_of_a_call_and_filter(esl: EslClient) -> None:
    uid = str(uuid.uuid4())
    q = esl.subscribe()
    # only this channel's events from now on (BACKGROUND_JOB stays deliverable)
    await esl.add_filter("Unique-ID", uid)
    out = await esl.bgapi(f"originate {{origination_uuid={uid}}}loopback/9197/public &park")
    assert out.startswith("+OK " + uid), out
    create = await next_event(q, "CHANNEL_CREATE", uid)
    assert create.get("Channel-Name") == "loopback/9197-a"
    await next_event(q, "CHANNEL_ANSWER", uid)
    assert (await esl.api(f"uuid_kill {uid}")).startswith("+OK")
    hangup = await next_event(q, "CHANNEL_HANGUP_COMPLETE", uid)
    assert hangup.get("Hangup-Cause") == "NORMAL_CLEARING"
    # the filter held: no event of another channel came through
    seen: list[EslEvent] = []
    while not q.empty():
        ev = q.get_nowait()
        assert ev is not None
        seen.append(ev)
    assert all(e.uuid in (uid, "") for e in seen), [(e.name, e.uuid) for e in seen]
    esl.unsubscribe(q)


async def test_reconnects_with_its_subscriptions(freeswitch: FreeSwitch) -> None:
    """A TCP relay of ours between the client and FreeSWITCH drops the connection once."""
    conns: list[asyncio.StreamWriter] = []

    async def relay(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(ESL_HOST, ESL_PORT)
        conns.extend([w, uw])

        async def pipe(a: asyncio.StreamReader, b: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await a.read(65536):
                    b.write(data)
            b.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = EslClient(
        "127.0.0.1", port, ESL_PASSWORD, events=["CHANNEL_CREATE"], reconnect=True,
        reconnect_delay=0.05,
    )  # fmt: skip
    await client.connect()
    try:
        assert client.connects == 1
        q = client.subscribe()
        for w in conns:
            w.transport.abort()
        conns.clear()
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while client.connects < 2:
            assert loop.time() < end, "no reconnect"
            await asyncio.sleep(0.02)
        await client.wait_connected(5)
        assert "is ready" in await client.api("status")
        uid = str(uuid.uuid4())
        await client.api(f"originate {{origination_uuid={uid}}}loopback/9197/public &park")
        await next_event(q, "CHANNEL_CREATE", uid)  # subscribed again after the reconnect
        await client.api(f"uuid_kill {uid}")
    finally:
        await client.close()
        server.close()
        for w in conns:
            w.close()
