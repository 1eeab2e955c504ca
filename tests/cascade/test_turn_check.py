"""The optional semantic end-of-turn check: a second model judges whether the caller
finished; an unfinished turn waits for the caller to go on (then both parts are answered
as one message) or, after ``turn_check_wait_ms``, is answered as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.cascade.conftest import KEY, Run, caller_speech
from tests.wait import wait_until
from w3sipagent.ai.session import AISessionConfig, AudioFormat, CallerTranscript, ResponseDone
from w3sipagent.cascade import CascadeSession, CascadeSettings, ListenSettings, StageEndpoint
from w3sipagent.cascade.eot import PROMPT
from w3sipagent.localai import Scenario
from w3sipagent.localai.cascade import CascadeServer
from w3sipagent.tenants.cascade import CascadeConfig

MAIN = Scenario.loads(
    """
name = "turn-check"
[greeting]
say = "Hello."
[[turns]]
caller = "I would like to"
say = "A pizza, of course."
[[turns]]
caller = "order a pizza."
say = "Not used."
"""
)


def judge(answer: str) -> Scenario:
    return Scenario.loads(f'name = "judge"\n[[turns]]\ncaller = "x"\nsay = "{answer}"\n')


@pytest.fixture
async def main() -> AsyncIterator[CascadeServer]:
    async with CascadeServer(scenario=MAIN, api_keys=[KEY], tts_engine="tone") as srv:
        yield srv


def session(main: CascadeServer, checker: CascadeServer | None, wait_ms: int) -> Run:
    ep = StageEndpoint(main.base_url, "whisper-1", KEY)
    settings = CascadeSettings(
        stt=ep,
        llm=replace(ep, model="gpt-4.1-mini"),
        tts=replace(ep, model="gpt-4o-mini-tts"),
        listen=ListenSettings(turn_check_wait_ms=wait_ms),
        turn_check=None
        if checker is None
        else StageEndpoint(checker.base_url, "gpt-4.1-nano", KEY, timeout=3),
    )
    cfg = AISessionConfig(input_format=AudioFormat.PCMU, output_format=AudioFormat.PCMU)
    return Run(CascadeSession(cfg, settings))


def model_requests(srv: CascadeServer) -> list[dict]:  # type: ignore[type-arg]
    return [r.json() for r in srv.requests if r.path == "/v1/responses"]


async def test_finished_turn_is_answered_at_once(main: CascadeServer) -> None:
    async with CascadeServer(scenario=judge("Yes"), api_keys=[KEY]) as checker:
        run = session(main, checker, 5000)
        await run.start()
        try:
            for f in caller_speech():
                run.session.send_audio(f)
            await wait_until(lambda: run.of(ResponseDone), 5, "answered")
            (asked,) = model_requests(checker)
            assert asked["instructions"] == PROMPT and asked["max_output_tokens"] == 16
            assert asked["input"][-1] == {"role": "user", "content": "I would like to"}
            (sent,) = model_requests(main)
            assert sent["input"] == [{"role": "user", "content": "I would like to"}]
        finally:
            await run.stop()


async def test_unfinished_turn_waits_and_joins_the_next_utterance(main: CascadeServer) -> None:
    async with CascadeServer(scenario=judge("No"), api_keys=[KEY]) as checker:
        run = session(main, checker, 5000)
        await run.start()
        try:
            for f in caller_speech():
                run.session.send_audio(f)
            await wait_until(lambda: model_requests(checker), 5, "the check")
            await wait_until(lambda: run.of(CallerTranscript), 5, "first part transcribed")
            assert model_requests(main) == []  # held: the caller may go on
            for f in caller_speech():  # ... and does
                run.session.send_audio(f)
            await wait_until(lambda: run.of(ResponseDone), 5, "answered")
            (sent,) = model_requests(main)
            assert sent["input"] == [{"role": "user", "content": "I would like to order a pizza."}]
            assert len(model_requests(checker)) == 1  # the joined turn is not judged again
            said = [e for e in run.of(CallerTranscript) if isinstance(e, CallerTranscript)]
            finals = [e.text for e in said if e.final]
            assert finals == ["I would like to", "order a pizza."]
        finally:
            await run.stop()


async def test_unfinished_turn_is_answered_after_the_wait(main: CascadeServer) -> None:
    async with CascadeServer(scenario=judge("No"), api_keys=[KEY]) as checker:
        run = session(main, checker, 300)
        await run.start()
        try:
            for f in caller_speech():
                run.session.send_audio(f)
            await wait_until(lambda: run.of(ResponseDone), 5, "answered after the wait")
            (sent,) = model_requests(main)
            assert sent["input"] == [{"role": "user", "content": "I would like to"}]
        finally:
            await run.stop()


async def test_failed_check_counts_as_finished_and_off_by_default(main: CascadeServer) -> None:
    async with CascadeServer(scenario=judge("No"), api_keys=[KEY]) as checker:
        checker.fail_next("/v1/responses", 500)
        run = session(main, checker, 30_000)  # a "no" would hold it for 30 s
        await run.start()
        try:
            for f in caller_speech():
                run.session.send_audio(f)
            await wait_until(lambda: run.of(ResponseDone), 5, "answered")
            assert len(model_requests(main)) == 1
            assert [r.path for r in checker.requests] == ["/v1/responses"]  # it failed
        finally:
            await run.stop()
    assert CascadeConfig().turn_check is None
    settings = CascadeConfig.model_validate(
        {"turn_check": {"model": "gpt-4.1-nano"}, "listen": {"turn_check_wait_ms": 800}}
    ).to_settings(default_base_url="http://x/v1", default_key="k", voice="marin")
    assert settings.turn_check is not None and settings.turn_check.model == "gpt-4.1-nano"
    assert settings.listen.turn_check_wait_ms == 800
