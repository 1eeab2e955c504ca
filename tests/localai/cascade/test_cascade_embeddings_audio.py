"""/v1/embeddings, /v1/audio/transcriptions and /v1/audio/speech of the local cascade server."""

from __future__ import annotations

import base64
import io
import shutil
import struct

import httpx
import numpy as np
import pytest

from tests.localai.cascade.conftest import KEY, SCENARIO, sse_events
from w3sipagent.localai.audio import PCM_RATE, parse_wav, tone, wav_bytes
from w3sipagent.localai.cascade import CascadeServer, embed

PASSAGES = [
    "Our opening hours: we are open from six until eleven every evening.",
    "Parking is available behind the restaurant, free for guests.",
    "We serve vegetarian and vegan dishes; ask for the green menu.",
]


async def _embed(
    client: httpx.AsyncClient, inputs: list[str] | str, **kw: object
) -> list[np.ndarray]:
    r = await client.post(
        "/embeddings", json={"model": "text-embedding-3-small", "input": inputs, **kw}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "text-embedding-3-small"
    assert [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    return [np.array(d["embedding"], dtype=np.float32) for d in body["data"]]


async def test_embeddings_are_deterministic_unit_vectors(client: httpx.AsyncClient) -> None:
    a, b = await _embed(client, ["When are you open tonight?", "When are you open tonight?"])
    assert a.shape == (1536,)
    assert np.array_equal(a, b)
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
    (again,) = await _embed(client, "When are you open tonight?")
    assert np.array_equal(a, again)
    assert np.array_equal(a, embed("When are you open tonight?"))  # same as in-process


async def test_related_texts_rank_first(client: httpx.AsyncClient) -> None:
    vecs = await _embed(client, PASSAGES)
    for query, best in [
        ("When are you open tonight?", 0),
        ("Where can I park my car?", 1),
        ("Do you have vegan food?", 2),
    ]:
        (q,) = await _embed(client, query)
        scores = [float(q @ v) for v in vecs]
        assert int(np.argmax(scores)) == best, (query, scores)


async def test_embeddings_dimensions_and_base64(client: httpx.AsyncClient) -> None:
    (short,) = await _embed(client, "hello world", dimensions=256)
    assert short.shape == (256,)
    r = await client.post(
        "/embeddings",
        json={
            "model": "text-embedding-3-small",
            "input": "hello world",
            "encoding_format": "base64",
        },
    )
    raw = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(raw, embed("hello world"))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "text-embedding-3-small"}, "input"),
        ({"input": "x"}, "model"),
        ({"model": "text-embedding-3-small", "input": ""}, "input"),
        ({"model": "text-embedding-3-small", "input": [1.5]}, "input"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 99999}, "dimensions"),
        ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}, "dimensions"),
        (
            {"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"},
            "encoding_format",
        ),
    ],
)
async def test_embeddings_errors(client: httpx.AsyncClient, body: dict, param: str) -> None:
    r = await client.post("/embeddings", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"


def _wav(ms: int = 1500) -> bytes:
    return wav_bytes(tone(300.0, ms, 16000), 16000)


async def _transcribe(client: httpx.AsyncClient, **data: str) -> httpx.Response:
    files = {"file": ("caller.wav", io.BytesIO(_wav()), "audio/wav")}
    return await client.post(
        "/audio/transcriptions", files=files, data={"model": "whisper-1", **data}
    )


async def test_transcriptions_follow_the_script_per_key(
    server: CascadeServer, client: httpx.AsyncClient
) -> None:
    r = await _transcribe(client)
    assert r.status_code == 200
    assert r.json() == {
        "text": SCENARIO.turns[0].caller,
        "usage": {"type": "duration", "seconds": 1.5},
    }
    r = await _transcribe(client, response_format="text")
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "Thanks, bye.\n"
    r = await _transcribe(client)
    assert r.json()["text"] == ""  # past the script
    server.audio.reset()
    r = await _transcribe(
        client, response_format="verbose_json", **{"timestamp_granularities[]": "word"}
    )
    body = r.json()
    assert body["text"] == "Where is my order?" and body["duration"] == 1.5
    assert body["segments"][0]["end"] == 1.5
    assert [w["word"] for w in body["words"]] == ["Where", "is", "my", "order"]


async def test_transcription_stream_for_gpt4o_models(client: httpx.AsyncClient) -> None:
    files = {"file": ("c.wav", io.BytesIO(_wav()), "audio/wav")}
    data = {"model": "gpt-4o-mini-transcribe", "stream": "true"}
    async with client.stream("POST", "/audio/transcriptions", files=files, data=data) as resp:
        events = await sse_events(resp)
    deltas = [e["delta"] for e in events if e["type"] == "transcript.text.delta"]
    assert "".join(deltas) == "Where is my order?"
    assert events[-1]["type"] == "transcript.text.done"
    assert events[-1]["usage"]["type"] == "tokens"


async def test_transcription_errors(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/audio/transcriptions", files={"file": ("a.xyz", b"abc")}, data={"model": "whisper-1"}
    )
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("Invalid file format")
    r = await client.post(
        "/audio/transcriptions", data={"model": "whisper-1", "x": "1"}, files={"y": ("a.wav", b"1")}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    files = {"file": ("c.wav", io.BytesIO(_wav()), "audio/wav")}
    r = await client.post(
        "/audio/transcriptions",
        files=files,
        data={"model": "gpt-4o-transcribe", "response_format": "verbose_json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_value"
    r = await client.post("/audio/transcriptions", json={"model": "whisper-1"})
    assert r.status_code == 400


async def _speech(client: httpx.AsyncClient, **body: object) -> tuple[httpx.Response, bytes]:
    req = {
        "model": "gpt-4o-mini-tts",
        "input": "Hello there. How are you?",
        "voice": "marin",
        **body,
    }
    async with client.stream("POST", "/audio/speech", json=req) as resp:
        chunks = [c async for c in resp.aiter_raw()]
    return resp, b"".join(chunks)


async def test_speech_pcm_and_wav_stream(client: httpx.AsyncClient) -> None:
    resp, pcm = await _speech(client, response_format="pcm")
    assert resp.status_code == 200 and resp.headers["transfer-encoding"] == "chunked"
    assert resp.headers["content-type"] == "audio/pcm"
    assert len(pcm) > PCM_RATE // 2 and len(pcm) % 2 == 0  # over a quarter second of speech
    assert float(np.abs(np.frombuffer(pcm, "<i2")).max()) > 1000
    resp, wav = await _speech(client, response_format="wav")
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert struct.unpack("<I", wav[24:28])[0] == PCM_RATE
    assert wav[44:] == pcm


async def test_speech_sse_and_errors(client: httpx.AsyncClient) -> None:
    req = {
        "model": "gpt-4o-mini-tts",
        "input": "Hi.",
        "voice": "coral",
        "response_format": "pcm",
        "stream_format": "sse",
    }
    async with client.stream("POST", "/audio/speech", json=req) as resp:
        events = await sse_events(resp)
    audio = b"".join(
        base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"
    )
    assert audio and events[-1]["type"] == "speech.audio.done"
    for body, param in [
        ({"model": "tts-1", "voice": "marin"}, "input"),
        ({"model": "tts-1", "input": "x", "voice": "nobody"}, "voice"),
        ({"model": "tts-1", "input": "x", "voice": "marin"}, "response_format"),  # mp3 default
        (
            {"model": "tts-1", "input": "x" * 5000, "voice": "marin", "response_format": "pcm"},
            "input",
        ),
        (
            {
                "model": "tts-1",
                "input": "x",
                "voice": "marin",
                "response_format": "pcm",
                "speed": 9,
            },
            "speed",
        ),
    ]:
        r = await client.post("/audio/speech", json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["param"] == param


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_speech_with_espeak() -> None:
    async with (
        CascadeServer(tts_engine="espeak") as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers={"Authorization": f"Bearer {KEY}"}) as c,
    ):
        resp, wav = await _speech(c, response_format="wav")
        assert resp.status_code == 200
        assert srv.synthesizer.last_engine == "espeak-ng"
        pcm, rate, _ = parse_wav(
            wav[:4]
            + struct.pack("<I", len(wav) - 8)
            + wav[8:40]
            + struct.pack("<I", len(wav) - 44)
            + wav[44:]
        )
        assert rate == PCM_RATE and len(pcm) > PCM_RATE  # over half a second
