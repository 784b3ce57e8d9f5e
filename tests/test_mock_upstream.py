"""Tests for the mock OpenAI upstream (no Django, no database)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import openai
import pytest

from tests.mock_upstream import MockUpstream, count_tokens, tokenize

HELLO = [{"role": "user", "content": "Hello, world!"}]


@pytest.fixture(scope="module")
def server() -> Iterator[MockUpstream]:
    with MockUpstream() as up:
        yield up


@pytest.fixture
def up(server: MockUpstream) -> MockUpstream:
    server.reset()
    return server


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)


def chat_url(up: MockUpstream, **knobs: object) -> str:
    return up.base_url(**knobs) + "/chat/completions"


def sse_payloads(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]


def test_tokenizer() -> None:
    assert tokenize("Hello, world!") == ["Hello", ",", "world", "!"]
    assert count_tokens("it's  2 words\n") == 5
    assert count_tokens("") == 0


def test_base_url_format(up: MockUpstream) -> None:
    assert up.url.startswith("http://127.0.0.1:")
    assert up.base_url() == f"{up.url}/v1"
    assert up.base_url(latency=1, chunk_delay=0.05) == f"{up.url}/scenario/latency=1,chunk_delay=0.05/v1"
    with pytest.raises(ValueError):
        up.base_url(nope=1)


def test_health_and_models(up: MockUpstream) -> None:
    assert httpx.get(f"{up.url}/_health").text == "ok"
    models = client(up.base_url(latency=0)).models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]


def test_plain_completion(up: MockUpstream) -> None:
    resp = client(up.base_url()).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert resp.id.startswith("chatcmpl-mock-")
    assert resp.object == "chat.completion"
    assert resp.model == "gpt-4o-mini"
    assert resp.system_fingerprint == "fp_mock"
    choice = resp.choices[0]
    assert choice.message.content == "Mock reply to: Hello, world!"
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 4 + 3
    assert resp.usage.completion_tokens == count_tokens(choice.message.content) == 8
    assert resp.usage.total_tokens == 15
    [req] = up.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["messages"] == HELLO
    assert req["headers"]["Authorization"] == "Bearer x"
    up.wait_for("done")  # recorded just after the last byte went out, so possibly after the client read it
    assert [e["kind"] for e in up.events] == ["request", "first_byte", "done"]


def test_content_parts_and_words(up: MockUpstream) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi there"}]},
    ]
    resp = client(up.base_url(words=5)).chat.completions.create(model="m", messages=messages)
    assert resp.choices[0].message.content == "word0 word1 word2 word3 word4"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == (3 + 3) + (2 + 3)
    assert resp.usage.completion_tokens == 5


def test_stream_with_usage_matches_json(up: MockUpstream) -> None:
    c = client(up.base_url(chunk_delay=0.01))
    plain = c.chat.completions.create(model="m", messages=HELLO)
    chunks = list(
        c.chat.completions.create(
            model="m",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len({ch.id for ch in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == plain.usage
    assert all(ch.usage is None for ch in chunks[:-1])
    kinds = [e["kind"] for e in up.events]
    assert kinds.count("chunk") == 8
    assert kinds[-2:] == ["last_chunk", "done"]


def test_stream_wire_format_without_usage(up: MockUpstream) -> None:
    body = {"model": "m", "messages": HELLO, "stream": True}
    r = httpx.post(chat_url(up), json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(r.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all("usage" not in ch for ch in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_max_tokens_truncates(up: MockUpstream) -> None:
    c = client(up.base_url())
    resp = c.chat.completions.create(model="m", messages=HELLO, max_tokens=3)
    assert resp.choices[0].message.content == "Mock reply to"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    chunks = list(c.chat.completions.create(model="m", messages=HELLO, max_completion_tokens=2, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "Mock reply"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_no_usage(up: MockUpstream) -> None:
    c = client(up.base_url(no_usage=1))
    assert c.chat.completions.create(model="m", messages=HELLO).usage is None
    chunks = list(
        c.chat.completions.create(
            model="m",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(ch.usage is None and ch.choices for ch in chunks)


def test_status_knob(up: MockUpstream) -> None:
    c = client(up.base_url(status=429, retry_after=7))
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model="m", messages=HELLO)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    error = info.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    # The header overrides the path knob.
    r = httpx.post(chat_url(up, status=500), json={}, headers={"X-Mock-Status": "503"})
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "server_error"


def test_bad_requests(up: MockUpstream) -> None:
    r = httpx.post(chat_url(up), content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.post(chat_url(up), json={"model": "m"}).status_code == 400
    r = httpx.post(chat_url(up), json={"messages": HELLO}, headers={"X-Mock-Bogus": "1"})
    assert r.status_code == 400 and "bogus" in r.json()["error"]["message"]


def test_require_key(up: MockUpstream) -> None:
    url = up.base_url(require_key="sk-good")
    with pytest.raises(openai.AuthenticationError):
        client(url).chat.completions.create(model="m", messages=HELLO)
    ok = openai.OpenAI(base_url=url, api_key="sk-good", max_retries=0)
    assert ok.chat.completions.create(model="m", messages=HELLO).choices


def test_latency(up: MockUpstream) -> None:
    start = time.monotonic()
    client(up.base_url(latency=0.3)).chat.completions.create(model="m", messages=HELLO)
    assert time.monotonic() - start >= 0.3
    assert up.wait_for("first_byte")["t"] - up.wait_for("request")["t"] >= 0.3


def test_chunk_delay(up: MockUpstream) -> None:
    body = {"model": "m", "messages": HELLO, "stream": True}
    start = time.monotonic()
    httpx.post(chat_url(up, chunk_delay=0.05), json=body)
    # Every frame after the role chunk waits: 8 content, the finish, [DONE].
    assert time.monotonic() - start >= 10 * 0.05


def test_drop_after_stream(up: MockUpstream) -> None:
    stream = client(up.base_url(drop_after=2)).chat.completions.create(model="m", messages=HELLO, stream=True)
    got: list[str] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for ch in stream:
            got.append(ch.choices[0].delta.content or "")
    assert "".join(got) == "Mock reply"
    up.wait_for("dropped")
    assert "done" not in [e["kind"] for e in up.events]


def test_drop_after_zero_non_stream(up: MockUpstream) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(chat_url(up, drop_after=0), json={"model": "m", "messages": HELLO})


def test_client_disconnect_mid_stream(up: MockUpstream) -> None:
    body = {"model": "m", "messages": HELLO, "stream": True}
    url = chat_url(up, chunk_delay=0.1, words=50)
    with httpx.Client() as http, http.stream("POST", url, json=body) as r:
        next(r.iter_raw())  # then hang up mid-stream
    gone = up.wait_for("client_disconnected", timeout=10)
    # The whole stream would take 5 s: the hang-up was seen long before it could have ended.
    assert gone["t"] - up.wait_for("first_byte")["t"] < 4.0
    assert "done" not in [e["kind"] for e in up.events]


def test_client_disconnect_during_latency(up: MockUpstream) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(chat_url(up, latency=3), json={"messages": HELLO}, timeout=0.2)
    up.wait_for("client_disconnected", timeout=10)
    assert "first_byte" not in [e["kind"] for e in up.events]  # seen during the 3 s wait, before any reply


def test_malformed(up: MockUpstream) -> None:
    r = httpx.post(chat_url(up, malformed=1), json={"model": "m", "messages": HELLO})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    body = {"model": "m", "messages": HELLO, "stream": True}
    payloads = sse_payloads(httpx.post(chat_url(up, malformed=1), json=body).text)
    json.loads(payloads[0])
    with pytest.raises(ValueError):
        json.loads(payloads[1])
    with pytest.raises(ValueError):  # the SDK cannot decode the bad chunk
        list(client(up.base_url(malformed=1)).chat.completions.create(model="m", messages=HELLO, stream=True))


def test_many_concurrent_connections(up: MockUpstream) -> None:
    # aiohttp rather than httpx as the client: httpx's per-request CPU cost
    # would dominate, and the mock is what is under test here.
    body = {"model": "m", "messages": HELLO, "stream": True}

    async def run() -> list[int]:
        connector = aiohttp.TCPConnector(limit=400)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> int:
                async with session.post(chat_url(up, latency=0.5), json=body) as r:
                    await r.read()
                    return r.status

            return await asyncio.gather(*(one() for _ in range(300)))

    start = time.monotonic()
    assert asyncio.run(run()) == [200] * 300
    assert time.monotonic() - start < 30  # served concurrently: one by one would take 150 s
    assert len(up.requests) == 300
    assert sum(e["kind"] == "done" for e in up.events) == 300


def test_wait_for_times_out(up: MockUpstream) -> None:
    with pytest.raises(TimeoutError):
        up.wait_for("done", timeout=0.05)


def test_cli_serves_in_the_foreground() -> None:
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "tests.mock_upstream", "--port", "0"]
    with subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("mock upstream listening on http://127.0.0.1:")
            url = line.rsplit(" ", 1)[1]
            assert httpx.get(f"{url}/_health").text == "ok"
        finally:
            proc.terminate()
