"""Streams are relayed chunk by chunk; a client that leaves cancels the upstream call and is still billed."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.mock_upstream import count_tokens
from tests.reference_tokens import prompt_tokens, tokens

pytestmark = pytest.mark.django_db(transaction=True)


def open_stream(client: httpx.Client, gateway, key: str, **extra):
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "tell me a story"}], **extra}
    return client.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )


def events(response: httpx.Response):
    """Each SSE data payload as it arrives (decoded JSON, or the string '[DONE]')."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            yield data if data == "[DONE]" else json.loads(data)


def content_of(event) -> str:
    if not isinstance(event, dict) or not event.get("choices"):
        return ""
    return event["choices"][0]["delta"].get("content") or ""


def test_the_client_holds_the_first_chunk_before_the_upstream_sends_its_last(gateway, api_key, route, upstream):
    route("gpt-test", chunk_delay=0.15, words=12)
    with httpx.Client(timeout=30) as client, open_stream(client, gateway, api_key) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first_content_at = None
        for event in events(response):
            if content_of(event) and first_content_at is None:
                first_content_at = time.monotonic()
    last_sent = upstream.wait_for("last_chunk")
    assert first_content_at is not None
    # 12 words 0.15 s apart: the upstream's last word comes well over a second after its first.
    assert first_content_at < last_sent["t"] - 1.0


def test_a_client_leaving_mid_stream_cancels_the_upstream_and_is_billed_for_what_it_got(
    gateway, api_key, route, upstream, ledger_row
):
    route("gpt-test", chunk_delay=0.1, words=100)
    received = ""
    with httpx.Client(timeout=30) as client, open_stream(client, gateway, api_key) as response:
        request_id = response.headers["x-request-id"]
        for event in events(response):
            received += content_of(event)
            if count_tokens(received) >= 5:
                break  # leaving the block closes the connection mid-stream
    left_at = time.monotonic()

    gone = upstream.wait_for("client_disconnected", timeout=10)
    # The whole reply would take 10 s; the upstream saw GreenGate hang up long before it could have ended.
    assert gone["t"] - left_at < 5.0
    assert not any(e["kind"] == "last_chunk" for e in upstream.events)

    entry = ledger_row(request_id)
    assert entry.status_code == 499
    assert entry.error_code == "client_disconnected"
    assert entry.usage_estimated
    # Billed for the words streamed so far: at least what the client read, far from the whole reply.
    assert tokens(received) <= entry.completion_tokens < 30
    assert entry.prompt_tokens == prompt_tokens("tell me a story")


def test_a_client_leaving_before_the_first_byte_cancels_the_upstream_too(gateway, api_key, route, upstream, ledger_row):
    route("gpt-test", latency=5)
    with httpx.Client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        with open_stream(client, gateway, api_key) as response:
            response.read()
    upstream.wait_for("client_disconnected", timeout=5)
    request_id = upstream.requests[0]["headers"]["X-Request-ID"]
    assert ledger_row(request_id).status_code == 499


def test_an_upstream_that_drops_mid_stream_ends_the_stream_with_an_error_event(gateway, api_key, route, ledger_row):
    route("gpt-test", drop_after=3, chunk_delay=0.02)
    with httpx.Client(timeout=30) as client, open_stream(client, gateway, api_key) as response:
        request_id = response.headers["x-request-id"]
        received = list(events(response))
    assert response.status_code == 200  # the status line was sent with the first chunk
    assert "[DONE]" not in received
    assert received[-1]["error"]["type"] == "upstream_error"
    entry = ledger_row(request_id)
    assert entry.status_code == 502
    assert entry.completion_tokens == tokens("".join(content_of(e) for e in received))


def test_malformed_upstream_sse_ends_the_stream_with_an_error_event(gateway, api_key, route, ledger_row):
    route("gpt-test", malformed=1)
    with httpx.Client(timeout=30) as client, open_stream(client, gateway, api_key) as response:
        received = list(events(response))
    assert received[-1]["error"]["code"] == "upstream_malformed"


def test_a_stream_falls_back_to_the_next_deployment_before_its_first_chunk(gateway, api_key, route, upstream):
    route("gpt-test", status=503)
    route("gpt-test", priority=1)
    with httpx.Client(timeout=30) as client, open_stream(client, gateway, api_key) as response:
        received = list(events(response))
    assert received[-1] == "[DONE]"
    assert "".join(content_of(e) for e in received) == "Mock reply to: tell me a story"
    assert len(upstream.requests) == 2


def test_an_upstream_without_usage_still_gives_the_client_usage_when_asked(gateway, api_key, route, ledger_row):
    route("gpt-test", no_usage=1)
    with httpx.Client(timeout=30) as client:
        with open_stream(client, gateway, api_key, stream_options={"include_usage": True}) as response:
            request_id = response.headers["x-request-id"]
            received = [e for e in events(response) if e != "[DONE]"]
    usage = received[-1]["usage"]
    text = "".join(content_of(e) for e in received)
    assert received[-1]["choices"] == []
    assert usage["completion_tokens"] == tokens(text)
    assert usage["prompt_tokens"] == prompt_tokens("tell me a story")
    assert ledger_row(request_id).usage_estimated


def test_the_gateway_always_asks_the_upstream_for_usage(gateway, api_key, route, upstream):
    route("gpt-test")
    with httpx.Client(timeout=30) as client, open_stream(client, gateway, api_key) as response:
        list(events(response))
    assert upstream.requests[0]["body"]["stream_options"] == {"include_usage": True}
