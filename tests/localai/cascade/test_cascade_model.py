"""/v1/responses and /v1/chat/completions of the local cascade server, over real sockets."""

from __future__ import annotations

import json

import httpx

from tests.localai.cascade.conftest import TOOLS_CHAT, TOOLS_RESPONSES, sse_events
from w3sipagent.localai.cascade import CascadeServer


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


async def _stream(client: httpx.AsyncClient, path: str, body: dict) -> list:
    async with client.stream("POST", path, json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        return await sse_events(resp)


async def test_responses_stream_greeting_then_text_events(client: httpx.AsyncClient) -> None:
    events = await _stream(
        client, "/responses", {"model": "gpt-4.1-mini", "input": [], "stream": True}
    )
    types = [e["type"] for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "Hello caller."
    assert len(deltas) == 2  # word by word
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0] == {
        "type": "output_text",
        "annotations": [],
        "logprobs": [],
        "text": "Hello caller.",
    }
    assert (
        done["usage"]["total_tokens"]
        == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    )
    assert done["id"].startswith("resp_") and events[0]["response"]["id"] == done["id"]


async def test_responses_stream_tool_call_then_after_text(client: httpx.AsyncClient) -> None:
    history = [_user("hi"), _user("Where is my order?")]
    body = {"model": "m", "input": history[1:], "tools": TOOLS_RESPONSES, "stream": True}
    events = await _stream(client, "/responses", body)
    # one user message: turn 1 says its words and calls check_order
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert [i["type"] for i in added] == ["message", "function_call"]
    call = added[1]
    assert call["status"] == "in_progress" and call["arguments"] == ""
    args = "".join(
        e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
    )
    assert json.loads(args) == {"order_id": "42"}
    done_args = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done_args["name"] == "check_order" and done_args["arguments"] == args
    final = events[-1]["response"]
    fc = final["output"][1]
    assert fc["type"] == "function_call" and fc["status"] == "completed"
    # the tool output comes back: the turn's "after" text
    follow = [
        _user("Where is my order?"),
        {
            "type": "function_call",
            "call_id": fc["call_id"],
            "name": "check_order",
            "arguments": args,
        },
        {
            "type": "function_call_output",
            "call_id": fc["call_id"],
            "output": '{"status":"shipped"}',
        },
    ]
    events = await _stream(client, "/responses", {"model": "m", "input": follow, "stream": True})
    text = next(e["text"] for e in events if e["type"] == "response.output_text.done")
    assert text == "It shipped today."


async def test_responses_tool_not_offered_is_not_called(client: httpx.AsyncClient) -> None:
    r = await client.post("/responses", json={"model": "m", "input": "Where is my order?"})
    assert r.status_code == 200
    out = r.json()["output"]
    assert [o["type"] for o in out] == ["message"]
    assert out[0]["content"][0]["text"] == "Let me check."


async def test_responses_previous_response_id_continues_the_script(
    client: httpx.AsyncClient,
) -> None:
    first = (
        await client.post("/responses", json={"model": "m", "input": "Where is my order?"})
    ).json()
    nxt = await client.post(
        "/responses",
        json={"model": "m", "input": "Thanks, bye.", "previous_response_id": first["id"]},
    )
    assert nxt.json()["output"][0]["content"][0]["text"] == "Goodbye. Have a nice day!"
    missing = await client.post(
        "/responses", json={"model": "m", "input": "x", "previous_response_id": "resp_nope"}
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "message": "Previous response with id 'resp_nope' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


async def test_chat_stream_chunks_tool_call_and_done(client: httpx.AsyncClient) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, _user("Where is my order?")],
        "tools": TOOLS_CHAT,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = await _stream(client, "/chat/completions", body)
    assert chunks[-1] == "[DONE]"
    data = chunks[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in data)
    assert len({c["id"] for c in data}) == 1
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in data if c["choices"])
    assert content == "Let me check."
    calls = [
        tc for c in data if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "check_order"
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"order_id": "42"}
    finish = [c["choices"][0]["finish_reason"] for c in data if c["choices"]]
    assert finish[-1] == "tool_calls" and set(finish[:-1]) == {None}
    assert data[-1]["choices"] == [] and data[-1]["usage"]["total_tokens"] > 0
    # the tool result comes back as a "tool" message: the after text, finish "stop"
    body["messages"] = [
        _user("Where is my order?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[0]["id"],
                    "type": "function",
                    "function": {"name": "check_order", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "shipped"},
    ]
    body.pop("stream_options")
    chunks = await _stream(client, "/chat/completions", body)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == "It shipped today."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_chat_not_streamed(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/chat/completions", json={"model": "m", "messages": [_user("a"), _user("b")]}
    )
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "Goodbye. Have a nice day!"
    assert choice["finish_reason"] == "stop"


async def test_model_request_errors(client: httpx.AsyncClient) -> None:
    r = await client.post("/chat/completions", json={"model": "m"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_required_parameter"
    assert r.json()["error"]["param"] == "messages"
    r = await client.post("/responses", json={"input": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = await client.post(
        "/responses", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["message"].startswith("We could not parse the JSON body")


async def test_auth_errors(server: CascadeServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as anon:
        r = await anon.post("/responses", json={"model": "m", "input": "x"})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "invalid_request_error"
        r = await anon.post(
            "/embeddings",
            json={"model": "m", "input": "x"},
            headers={"Authorization": "Bearer sk-wrong-key-123456"},
        )
        assert r.status_code == 401
        err = r.json()["error"]
        assert err["code"] == "invalid_api_key" and set(err) == {"message", "type", "param", "code"}
        assert "sk-wrong-key-123456" not in err["message"]
        r = await anon.post("/nope", json={})
        assert r.status_code == 404


async def test_rate_limit_429_with_retry_after() -> None:
    now = [100.0]
    async with (
        CascadeServer(requests_per_minute=2, tts_engine="tone", clock=lambda: now[0]) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers={"Authorization": "Bearer k"}) as c,
    ):
        body = {"model": "text-embedding-3-small", "input": "hello"}
        assert (await c.post("/embeddings", json=body)).status_code == 200
        now[0] += 10
        assert (await c.post("/embeddings", json=body)).status_code == 200
        r = await c.post("/embeddings", json=body)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "50"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert r.json()["error"]["type"] == "requests"
        # another key has its own window; the first key may go on once the minute passed
        other = await c.post("/embeddings", json=body, headers={"Authorization": "Bearer k2"})
        assert other.status_code == 200
        now[0] += 50
        assert (await c.post("/embeddings", json=body)).status_code == 200


async def test_fail_next_injects_one_error(
    server: CascadeServer, client: httpx.AsyncClient
) -> None:
    server.fail_next("/v1/responses", 429, retry_after=2)
    server.fail_next("/v1/chat/completions", 503, message="overloaded", type="server_error")
    r = await client.post("/responses", json={"model": "m", "input": "x"})
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    r = await client.post("/chat/completions", json={"model": "m", "messages": [_user("x")]})
    assert r.status_code == 503 and r.json()["error"]["message"] == "overloaded"
    r = await client.post("/responses", json={"model": "m", "input": "x"})
    assert r.status_code == 200


async def test_raw_http_keep_alive_chunked_body_and_malformed_requests(
    server: CascadeServer,
) -> None:
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    body = json.dumps({"model": "text-embedding-3-small", "input": "hi"}).encode()
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    for _ in range(2):  # two requests on one connection (keep-alive), the body chunked
        writer.write(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test-cascade-0001\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: keep-alive" in head
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert json.loads(await reader.readexactly(length))["object"] == "list"
    writer.write(b"POST /v1/embeddings HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in head
    assert await reader.read() != b""  # the error body, then the server closes
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"NONSENSE\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    writer.close()
