"""Any OpenAI-compatible server through a running GreenGate: the OpenAI mock, and the mock of a quirky server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from providers.models import Deployment, Provider
from tests.factories import DeploymentFactory, ProviderFactory
from tests.mock_upstream import MockUpstream, count_tokens
from tests.reference_tokens import tokens
from tests.test_bootstrap import bootstrap

pytestmark = pytest.mark.django_db(transaction=True)


def compatible_route(
    upstream: MockUpstream,
    model: str = "llama",
    *,
    quirky: bool = False,
    api_key: str = "",
    kind: str = "compatible",
    **knobs: Any,
) -> Deployment:
    """A compatible-kind deployment on the OpenAI mock, or (quirky) on the mock of a vLLM/Ollama-like server."""
    base_url = upstream.base_url(**knobs)
    if quirky:
        base_url = base_url.removesuffix("/v1") + "/compatible/v1"
    provider = ProviderFactory(kind=kind, base_url=base_url, api_key=api_key)
    return DeploymentFactory(model_name=model, provider=provider, upstream_model="meta-llama/Llama-3.1-8B")


def chat(gateway, key: str, content: str = "Hello compatible", **extra: Any) -> httpx.Response:
    body = {"model": "llama", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def stream(gateway, key: str, content: str = "Stream compatible", **extra: Any) -> tuple[httpx.Response, list]:
    """The response and its SSE payloads (decoded JSON, or '[DONE]'); every chunk checked against OpenAI's type."""
    body = {"model": "llama", "stream": True, "messages": [{"role": "user", "content": content}], **extra}
    received: list = []
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                received.append(data if data == "[DONE]" else json.loads(data))
    for event in received:
        if isinstance(event, dict) and "error" not in event:
            ChatCompletionChunk.model_validate(event)
    return response, received


def text_of(events: list) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events if isinstance(e, dict) and e.get("choices")
    )


def test_a_server_without_a_key_gets_no_authorization_header(gateway, api_key, upstream):
    compatible_route(upstream)

    response = chat(gateway, api_key)

    assert response.status_code == 200, response.text
    ChatCompletion.model_validate(response.json())
    [sent] = upstream.requests
    assert sent["path"] == "/v1/chat/completions"
    assert "Authorization" not in sent["headers"]
    assert sent["body"]["model"] == "meta-llama/Llama-3.1-8B"


def test_a_server_with_a_key_gets_it_as_a_bearer_token(gateway, api_key, upstream):
    compatible_route(upstream, api_key="sk-or-v1-compatible", require_key="sk-or-v1-compatible")
    assert chat(gateway, api_key).status_code == 200
    assert upstream.requests[0]["headers"]["Authorization"] == "Bearer sk-or-v1-compatible"


def test_an_answer_without_usage_is_counted_by_greengate(gateway, api_key, upstream, ledger_row):
    compatible_route(upstream, no_usage=1)

    response = chat(gateway, api_key)
    _, received = stream(gateway, api_key, stream_options={"include_usage": True})

    assert response.status_code == 200
    completion = ChatCompletion.model_validate(response.json())
    assert completion.usage is not None
    assert completion.usage.completion_tokens == tokens("Mock reply to: Hello compatible")
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.usage_estimated and entry.completion_tokens == completion.usage.completion_tokens
    assert received[-1] == "[DONE]"
    assert received[-2]["usage"]["completion_tokens"] == tokens(text_of(received))


def test_a_quirky_answer_reads_as_openai_shape(gateway, api_key, upstream):
    compatible_route(upstream, quirky=True)

    response = chat(gateway, api_key)

    assert response.status_code == 200, response.text
    completion = ChatCompletion.model_validate(response.json())
    assert completion.choices[0].finish_reason == "stop"  # the server said "eos"
    assert completion.model == "meta-llama/Llama-3.1-8B" and completion.created > 0
    assert completion.object == "chat.completion"


def test_a_stream_that_finished_then_closed_without_done_is_complete(gateway, api_key, upstream, ledger_row):
    # The quirky server: no [DONE], usage on the finishing chunk, "eos", no created/model/object.
    compatible_route(upstream, quirky=True, chunk_delay=0.01)

    response, received = stream(gateway, api_key, stream_options={"include_usage": True})

    assert response.status_code == 200
    assert received[-1] == "[DONE]"
    chunks = received[:-1]
    assert text_of(chunks) == "Mock reply to: Stream compatible"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert all(c["model"] == "meta-llama/Llama-3.1-8B" and c["created"] > 0 for c in chunks)
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == count_tokens("Mock reply to: Stream compatible")  # the server's count
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.status_code == 200 and not entry.usage_estimated
    assert entry.completion_tokens == usage["completion_tokens"]


def test_the_strict_openai_kind_reads_the_same_stream_as_cut_short(gateway, api_key, upstream):
    # The difference the compatible kind exists for: OpenAI always ends with [DONE].
    compatible_route(upstream, quirky=True, kind="openai")
    response, received = stream(gateway, api_key)
    assert response.status_code == 200
    assert received[-1]["error"]["code"] == "upstream_stream_cut"


def test_a_stream_cut_before_its_finish_reason_is_an_error(gateway, api_key, upstream, ledger_row):
    compatible_route(upstream, quirky=True, drop_after=3, chunk_delay=0.01)
    response, received = stream(gateway, api_key)
    assert response.status_code == 200
    assert "[DONE]" not in received and received[-1]["error"]["type"] == "upstream_error"
    assert ledger_row(response.headers["x-request-id"]).status_code == 502


def test_the_openai_sdk_reads_a_quirky_server_through_greengate(gateway, api_key, upstream):
    compatible_route(upstream, quirky=True)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0)

    completion = client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "Hi SDK"}])
    chunks = list(
        client.chat.completions.create(
            model="llama",
            messages=[{"role": "user", "content": "Hi SDK"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert completion.choices[0].message.content == "Mock reply to: Hi SDK"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Mock reply to: Hi SDK"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == completion.usage.total_tokens


def test_a_compatible_server_is_set_up_from_its_base_url_alone(upstream):
    result = bootstrap(
        LLM_PROVIDER_SEQUENCE="compatible,mock",
        COMPATIBLE_BASE_URL=upstream.base_url(),
        COMPATIBLE_MODELS="llama=meta-llama/Llama-3.1-8B,qwen",
    )
    assert result.returncode == 0, result.stderr
    provider = Provider.objects.get(name="compatible")
    assert (provider.kind, provider.base_url, provider.api_key) == ("compatible", upstream.base_url(), "")
    assert set(provider.deployments.values_list("model_name", "upstream_model")) == {
        ("llama", "meta-llama/Llama-3.1-8B"),
        ("qwen", "qwen"),
    }


def test_a_compatible_key_without_a_base_url_stops_the_start_up_with_a_clear_message():
    result = bootstrap(LLM_PROVIDER_SEQUENCE="compatible,mock", COMPATIBLE_API_KEY="sk-x")
    assert result.returncode != 0
    assert "COMPATIBLE_BASE_URL must be set" in result.stderr
