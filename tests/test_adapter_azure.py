"""Azure OpenAI through a running GreenGate, over real HTTP to the mock upstream's Azure wire format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from providers.adapters.azure import API_VERSION_OPTION, AzureOpenAIAdapter, streams_usage
from providers.models import Deployment, Provider
from providers.types import Target
from tests.conftest import ROOT, free_port
from tests.factories import DeploymentFactory, ProviderFactory
from tests.mock_upstream import MockUpstream, count_tokens
from tests.reference_tokens import tokens
from tests.test_bootstrap import bootstrap

pytestmark = pytest.mark.django_db(transaction=True)

# Assembled field for field from Azure's published payloads (api-version 2024-10-21, default and asynchronous
# content filtering), not captured from a live resource: replace with a real capture when one is at hand.
FIXTURES = Path(__file__).parent / "fixtures" / "azure"
AZURE_KEY = "azure-key-0123456789abcdef"
DEPLOYMENT = "my-gpt4o-deployment"


def azure_route(
    upstream: MockUpstream,
    model: str = "gpt-4o",
    *,
    deployment: str = DEPLOYMENT,
    version: str | None = "2024-10-21",
    priority: int = 0,
    timeout: float = 10.0,
    first_byte_timeout: float | None = None,
    **knobs: Any,
) -> Deployment:
    provider = ProviderFactory(
        kind="azure",
        # The endpoint is the resource root: the mock's, under a /scenario/... prefix when there are knobs.
        base_url=upstream.base_url(**knobs).removesuffix("/v1"),
        api_key=AZURE_KEY,
        options={API_VERSION_OPTION: version} if version else {},
    )
    return DeploymentFactory(
        model_name=model,
        provider=provider,
        upstream_model=deployment,
        priority=priority,
        total_timeout=timeout,
        first_byte_timeout=first_byte_timeout or timeout,
    )


def chat(gateway, key: str, content: str = "Say hello to Azure", **extra: Any) -> httpx.Response:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def stream(gateway, key: str, content: str = "Stream from Azure", **extra: Any) -> tuple[httpx.Response, list]:
    """The response and its SSE payloads (decoded JSON, or '[DONE]'); every chunk checked against OpenAI's type."""
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": content}], **extra}
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


# --- The wire: URL, headers, body ----------------------------------------------------------------------------------


def test_a_completion_goes_to_the_deployment_url_with_the_api_key_header(gateway, api_key, upstream, ledger_row):
    azure_route(upstream)

    response = chat(gateway, api_key)

    assert response.status_code == 200, response.text
    body = response.json()
    completion = ChatCompletion.model_validate(body)
    assert completion.choices[0].message.content == "Mock reply to: Say hello to Azure"
    assert completion.choices[0].finish_reason == "stop"
    # Azure's filter annotations are Azure's business; the client gets OpenAI's shape.
    assert "prompt_filter_results" not in body and "content_filter_results" not in body["choices"][0]
    [sent] = upstream.requests
    assert sent["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert sent["query"] == {"api-version": "2024-10-21"}
    assert sent["headers"]["api-key"] == AZURE_KEY
    assert "Authorization" not in sent["headers"] and api_key not in json.dumps(sent["headers"])
    assert sent["body"]["model"] == DEPLOYMENT  # kept: Azure routes by the URL and ignores it
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.status_code, entry.model) == (200, "gpt-4o")
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )


def test_a_provider_without_an_api_version_option_uses_the_current_ga_version(gateway, api_key, upstream):
    azure_route(upstream, version=None)
    assert chat(gateway, api_key).status_code == 200
    assert upstream.requests[0]["query"] == {"api-version": "2024-10-21"}


def test_a_stream_skips_the_filter_annotation_and_bills_the_usage_of_the_final_chunk(
    gateway, api_key, upstream, ledger_row
):
    azure_route(upstream, chunk_delay=0.01)

    response, received = stream(gateway, api_key, stream_options={"include_usage": True})

    assert response.status_code == 200
    assert received[-1] == "[DONE]"
    chunks = received[:-1]
    assert all(chunk["id"] and chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert text_of(chunks) == "Mock reply to: Stream from Azure"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == count_tokens("Mock reply to: Stream from Azure")  # the mock's own count
    assert upstream.requests[0]["body"]["stream_options"] == {"include_usage": True}
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.prompt_tokens, entry.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert not entry.usage_estimated


def test_an_api_version_before_stream_options_streams_without_them_and_greengate_counts(
    gateway, api_key, upstream, ledger_row
):
    # The mock refuses stream_options from such versions with 400, as Azure does.
    azure_route(upstream, version="2024-06-01")

    response, received = stream(gateway, api_key, stream_options={"include_usage": True})

    assert response.status_code == 200
    assert "stream_options" not in upstream.requests[0]["body"]
    assert received[-1] == "[DONE]"
    text = text_of(received)
    assert text == "Mock reply to: Stream from Azure"
    assert received[-2]["usage"]["completion_tokens"] == tokens(text)
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.completion_tokens == tokens(text) and entry.usage_estimated


@pytest.mark.parametrize(
    ("version", "accepts"),
    [("2024-10-21", True), ("2024-09-01-preview", True), ("2025-04-01-preview", True), ("preview", True),
     ("2024-06-01", False), ("2024-08-01-preview", False), ("2023-05-15", False)],
)  # fmt: skip
def test_stream_options_are_sent_from_api_version_2024_09_01(version: str, accepts: bool):
    assert streams_usage(version) is accepts


# --- Content filters -----------------------------------------------------------------------------------------------


def test_an_answer_cut_by_the_content_filter_passes_with_its_finish_reason(gateway, api_key, upstream):
    azure_route(upstream)

    plain = chat(gateway, api_key, "tell me [filter-output]")
    _, received = stream(gateway, api_key, "tell me [filter-output]")

    assert plain.status_code == 200
    assert ChatCompletion.model_validate(plain.json()).choices[0].finish_reason == "content_filter"
    reasons = [e["choices"][0]["finish_reason"] for e in received if isinstance(e, dict) and e.get("choices")]
    assert reasons[-1] == "content_filter" and received[-1] == "[DONE]"


def test_a_prompt_the_content_filter_blocks_is_a_clear_400_and_is_not_retried_elsewhere(
    gateway, api_key, upstream, route, ledger_row
):
    azure_route(upstream)
    route("gpt-4o", priority=1)  # a fallback that would answer: the organisation's filter must not be sidestepped

    response = chat(gateway, api_key, "something [filter-prompt]")
    _, received = stream(gateway, api_key, "something [filter-prompt]")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "content_filter" and error["type"] == "invalid_request_error"
    assert "content filter" in error["message"] and "Azure OpenAI's content management policy" in error["message"]
    assert received == []  # a refusal before the first chunk is a JSON error, not a stream
    assert [r["path"] for r in upstream.requests] == [f"/openai/deployments/{DEPLOYMENT}/chat/completions"] * 2
    assert ledger_row(response.headers["x-request-id"]).status_code == 400


# --- Faults --------------------------------------------------------------------------------------------------------


def test_an_azure_500_is_a_502(gateway, api_key, upstream):
    azure_route(upstream, status=500)
    response = chat(gateway, api_key)
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_error"


def test_an_azure_500_falls_back_to_the_next_deployment(gateway, api_key, upstream, route):
    azure_route(upstream, status=500)
    route("gpt-4o", priority=1)
    response = chat(gateway, api_key)
    assert response.status_code == 200
    assert [r["path"] for r in upstream.requests] == [
        f"/scenario/status=500/openai/deployments/{DEPLOYMENT}/chat/completions",
        "/v1/chat/completions",
    ]


def test_an_azure_429_is_a_429_with_its_retry_after(gateway, api_key, upstream):
    azure_route(upstream, status=429, retry_after=6)
    response = chat(gateway, api_key)
    assert response.status_code == 429  # every deployment rate limited: 429, not 502
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert response.headers["retry-after"] == "6"


def test_a_slow_azure_deployment_times_out_with_504(gateway, api_key, upstream):
    azure_route(upstream, latency=3, first_byte_timeout=0.3)
    response = chat(gateway, api_key)
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"


def test_a_malformed_azure_answer_is_a_502(gateway, api_key, upstream):
    azure_route(upstream, malformed=1)
    response = chat(gateway, api_key)
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_malformed"
    # In a stream the broken line follows the annotation chunk, so no chunk reached the client yet.
    streamed, _ = stream(gateway, api_key)
    assert streamed.status_code == 502


def test_an_azure_stream_dropped_midway_ends_with_an_error_event(gateway, api_key, upstream, ledger_row):
    azure_route(upstream, drop_after=3, chunk_delay=0.02)
    response, received = stream(gateway, api_key)
    assert response.status_code == 200
    assert "[DONE]" not in received and received[-1]["error"]["type"] == "upstream_error"
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.status_code == 502 and entry.completion_tokens == tokens(text_of(received))


def test_a_wrong_azure_key_is_an_auth_failure_that_never_quotes_the_key(gateway, api_key, upstream):
    azure_route(upstream, require_key="the-right-key")
    azure_route(upstream, require_key=AZURE_KEY, model="gpt-4o-keyed")

    response = chat(gateway, api_key)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    assert AZURE_KEY[:8] not in response.text
    assert chat(gateway, api_key, model="gpt-4o-keyed").status_code == 200


# --- The official SDK ----------------------------------------------------------------------------------------------


def test_the_openai_sdk_reads_azure_answers_through_greengate(gateway, api_key, upstream):
    azure_route(upstream)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0)

    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi SDK"}])
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hi SDK"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert completion.choices[0].message.content == "Mock reply to: Hi SDK"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Mock reply to: Hi SDK"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == completion.usage.total_tokens


# --- Bootstrap from the environment --------------------------------------------------------------------------------


def test_azure_settings_create_the_provider_and_its_deployments(gateway, api_key, upstream):
    result = bootstrap(
        LLM_PROVIDER_SEQUENCE="azure,mock",
        AZURE_OPENAI_API_KEY=AZURE_KEY,
        AZURE_OPENAI_ENDPOINT=upstream.url,
        AZURE_OPENAI_DEPLOYMENTS="gpt-4o=my-gpt4o-deployment, gpt-4o-mini=mini-eu",
    )
    assert result.returncode == 0, result.stderr

    azure = Provider.objects.get(name="azure")
    assert (azure.kind, azure.base_url, azure.api_key) == ("azure", upstream.url, AZURE_KEY)
    assert azure.options == {API_VERSION_OPTION: "2024-10-21"}
    assert set(azure.deployments.values_list("model_name", "upstream_model")) == {
        ("gpt-4o", "my-gpt4o-deployment"),
        ("gpt-4o-mini", "mini-eu"),
    }
    # And the gateway routes to it (the bootstrap's commit moved the shared config version).
    assert chat(gateway, api_key).status_code == 200
    assert upstream.requests[-1]["path"] == "/openai/deployments/my-gpt4o-deployment/chat/completions"


def test_an_azure_key_without_an_endpoint_stops_the_start_up_with_a_clear_message():
    result = bootstrap(LLM_PROVIDER_SEQUENCE="azure,mock", AZURE_OPENAI_API_KEY=AZURE_KEY)
    assert result.returncode != 0
    assert "AZURE_OPENAI_ENDPOINT must be set" in result.stderr
    assert not Provider.objects.filter(kind="azure").exists()


def test_azure_without_deployments_says_it_serves_nothing_yet(upstream):
    result = bootstrap(
        LLM_PROVIDER_SEQUENCE="azure,mock", AZURE_OPENAI_API_KEY=AZURE_KEY, AZURE_OPENAI_ENDPOINT=upstream.url
    )
    assert result.returncode == 0, result.stderr
    assert "AZURE_OPENAI_DEPLOYMENTS" in result.stderr
    assert not Deployment.objects.filter(provider__name="azure").exists()


# --- Recorded payloads and the mock --------------------------------------------------------------------------------


def _target(**options: str) -> Target:
    return Target(
        1, 1, "azure-test", "azure", "https://example.openai.azure.com/", "k", DEPLOYMENT, 1, 0, options=options
    )


def test_the_recorded_azure_payloads_read_as_openai_shapes():
    adapter = AzureOpenAIAdapter()
    recorded = (FIXTURES / "chat_completion.json").read_bytes()
    ChatCompletion.model_validate_json(recorded)
    assert adapter.parse_response(recorded, _target()).text() == "Hello! How can I help you today?"

    lines = [line[6:] for line in (FIXTURES / "chat_completion_stream.sse").read_text().splitlines() if line]
    assert lines[-1] == "[DONE]"
    chunks = [adapter.parse_chunk(line.encode(), _target()) for line in lines[:-1]]
    # The prompt's annotation (first) and an asynchronous-filter annotation (no delta) are not relayed.
    assert [chunk is None for chunk in chunks].count(True) == 2 and chunks[0] is None
    relayed = [chunk for chunk in chunks if chunk is not None]
    assert "".join(chunk.text() for chunk in relayed) == "Hello! How can I help you today?"
    assert relayed[-1].usage.total_tokens == 19
    for line, chunk in zip(lines, chunks, strict=False):
        if chunk is not None:
            ChatCompletionChunk.model_validate_json(line)


def test_the_mock_answers_with_the_fields_azure_sends(upstream):
    recorded = json.loads((FIXTURES / "chat_completion.json").read_text())
    url = f"{upstream.url}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
    mocked = httpx.post(url, json={"messages": [{"role": "user", "content": "hi"}]}).json()
    assert set(recorded) - {"service_tier"} <= set(mocked)
    assert {"content_filter_results", "message", "finish_reason"} <= set(mocked["choices"][0])
    ChatCompletion.model_validate(mocked)

    with httpx.stream("POST", url, json={"stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        payloads = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    first = json.loads(payloads[0])
    assert (first["choices"], first["object"], "prompt_filter_results" in first) == ([], "", True)
    for payload in payloads[1:-1]:
        ChatCompletionChunk.model_validate_json(payload)


def test_the_mock_refuses_a_request_without_an_api_version_as_azure_does(upstream):
    url = f"{upstream.url}/openai/deployments/{DEPLOYMENT}/chat/completions"
    response = httpx.post(url, json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_the_standalone_mock_serves_azure_too():
    # `python -m tests.mock_upstream` runs the module as __main__: the Azure routes must find its state.
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mock_upstream", "--port", str(port)],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in (process.stdout.readline() if process.stdout else "")
        url = f"http://127.0.0.1:{port}/openai/deployments/d/chat/completions?api-version=2024-10-21"
        response = httpx.post(url, json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert response.status_code == 200 and "prompt_filter_results" in response.json()
    finally:
        process.terminate()
        process.wait(10)
