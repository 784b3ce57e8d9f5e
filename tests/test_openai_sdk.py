"""The official openai SDK, pointed at a running GreenGate, talks to the mock upstream through it."""

from __future__ import annotations

import openai
import pytest

from tests.mock_upstream import count_tokens

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(gateway, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0)


def test_sdk_plain_completion_returns_the_upstream_answer_with_usage(gateway, api_key, route, upstream, ledger_row):
    route("gpt-test")
    client = sdk(gateway, api_key)

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "Say hello to GreenGate"}]
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == "Mock reply to: Say hello to GreenGate"
    assert completion.usage.prompt_tokens == count_tokens("Say hello to GreenGate") + 3
    assert completion.usage.completion_tokens == count_tokens(completion.choices[0].message.content)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    # The upstream got GreenGate's provider key, not the client's GreenGate key.
    assert upstream.requests[0]["headers"]["Authorization"] == "Bearer sk-upstream-test"
    entry = ledger_row(raw.headers["x-request-id"])
    assert (entry.status_code, entry.stream, entry.model) == (200, False, "gpt-test")
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert entry.tenant_id is not None and entry.api_key_id is not None


def test_sdk_streamed_completion_relays_chunks_and_usage(gateway, api_key, route, ledger_row):
    route("gpt-test")
    client = sdk(gateway, api_key)

    with client.chat.completions.with_streaming_response.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "Stream me something"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text == "Mock reply to: Stream me something"
    assert chunks[-1].choices == []
    assert usage.prompt_tokens == count_tokens("Stream me something") + 3
    assert usage.completion_tokens == count_tokens(text)
    entry = ledger_row(request_id)
    assert (entry.status_code, entry.stream) == (200, True)
    assert (entry.prompt_tokens, entry.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert not entry.usage_estimated
    assert entry.ttft_ms is not None


def test_stream_without_include_usage_carries_no_usage_but_the_ledger_still_counts(gateway, api_key, route, ledger_row):
    route("gpt-test")
    client = sdk(gateway, api_key)

    with client.chat.completions.with_streaming_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "no usage please"}], stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())

    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    entry = ledger_row(request_id)
    assert entry.completion_tokens == count_tokens("Mock reply to: no usage please")
    assert not entry.usage_estimated


def test_sdk_lists_the_routed_models(gateway, api_key, route):
    route("gpt-test")
    route("gpt-other")
    models = {m.id for m in sdk(gateway, api_key).models.list()}
    assert {"gpt-test", "gpt-other"} <= models


def test_sdk_sees_openai_shaped_errors(gateway, api_key, route):
    route("gpt-test")
    with pytest.raises(openai.NotFoundError) as missing:
        sdk(gateway, api_key).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "gg-wrong").chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
