"""Stage failures: a refused key fails the start, a failed stage ends the session with an
error (the bridge's reconnection and fallback take over), a short 429 is waited out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.cascade.conftest import CHECK_ORDER, Run, caller_speech, settings_for
from tests.wait import wait_until
from w3sipagent.ai.session import (
    AIErrorEvent,
    AISessionConfig,
    CallerTranscript,
    Closed,
    ResponseDone,
    ToolCall,
)
from w3sipagent.cascade import CascadeSession
from w3sipagent.cascade.stages import StageError
from w3sipagent.errors import AIError
from w3sipagent.localai.cascade import CascadeServer


async def test_refused_key_fails_the_start(server: CascadeServer) -> None:
    settings = settings_for(server)
    bad = replace(settings, llm=replace(settings.llm, api_key="sk-wrong-key-000000"))
    session = CascadeSession(AISessionConfig(), bad)
    with pytest.raises(AIError) as err:
        await session.start()
    assert isinstance(err.value, StageError)
    assert (err.value.stage, err.value.status, err.value.code) == ("llm", 401, "invalid_api_key")
    assert "sk-wrong-key" not in str(err.value)


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/responses"])
async def test_failed_stage_ends_the_session_with_an_error(
    server: CascadeServer, path: str
) -> None:
    run = Run(CascadeSession(AISessionConfig(tools=(CHECK_ORDER,)), settings_for(server)))
    await run.start()
    server.fail_next(path, 503, message="overloaded")
    if path == "/v1/responses":
        await run.session.create_response()
    else:
        for frame in caller_speech():
            run.session.send_audio(frame)
    await wait_until(lambda: bool(run.of(Closed)), 5, "session closed")
    err = run.of(AIErrorEvent)[0]
    assert isinstance(err, AIErrorEvent) and err.fatal and "overloaded" in err.message
    closed = run.events[-1]
    assert isinstance(closed, Closed) and closed.error
    stage = "stt" if "transcriptions" in path else "llm"
    assert closed.reason.startswith(f"{stage} failed")
    if stage == "llm":
        done = run.of(ResponseDone)[0]
        assert isinstance(done, ResponseDone) and done.status == "failed"
    await run.session.close()  # idempotent after a failure
    assert len(run.of(Closed)) == 1


async def test_short_rate_limit_is_waited_out(server: CascadeServer) -> None:
    run = Run(CascadeSession(AISessionConfig(tools=(CHECK_ORDER,)), settings_for(server)))
    await run.start()
    server.fail_next("/v1/audio/transcriptions", 429, retry_after=0.05)
    server.fail_next("/v1/responses", 429, retry_after=0.05)
    for frame in caller_speech():
        run.session.send_audio(frame)
    await wait_until(lambda: bool(run.of(ToolCall)), 5, "turn answered")
    caller = run.of(CallerTranscript)[0]
    assert isinstance(caller, CallerTranscript) and caller.text == "Where is my order?"
    paths = [r.path for r in server.requests]
    assert paths.count("/v1/audio/transcriptions") == 2
    assert paths.count("/v1/responses") == 2
    assert not run.of(AIErrorEvent)
    await run.stop()
