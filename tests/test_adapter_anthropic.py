"""The Anthropic adapter, over real HTTP: OpenAI-shaped clients -> GreenGate -> the mock's Anthropic Messages API.

Every outgoing request is checked against the Anthropic SDK's MessageCreateParams (by the mock), and every answer
GreenGate gives against the openai SDK's ChatCompletion / ChatCompletionChunk.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from providers.adapters.anthropic import DEFAULT_MAX_TOKENS, SAMPLING_OPTION
from tests.factories import DeploymentFactory, ProviderFactory
from tests.mock_upstream import MockUpstream, count_tokens

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "anthropic"
UPSTREAM_MODEL = "claude-sonnet-5-5"
PROVIDER_KEY = "sk-ant-upstream-test-0123456789"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# A 1x1 PNG, as clients send pasted images.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


@pytest.fixture
def claude(transactional_db, upstream: MockUpstream):
    """claude(model, *, priority, timeout, first_byte_timeout, options, mock={...}, **knobs): an Anthropic deployment."""

    def make(
        model: str = "claude-test",
        *,
        priority: int = 0,
        timeout: float = 10.0,
        first_byte_timeout: float | None = None,
        options: dict[str, str] | None = None,
        mock: dict[str, Any] | None = None,
        **knobs: Any,
    ):
        # base_url() ends in /v1 for OpenAI's layout; Anthropic's path brings its own /v1.
        base = upstream.base_url(**knobs).removesuffix("/v1")
        if mock:
            base += "/claude/" + ",".join(f"{name}={value}" for name, value in mock.items())
        provider = ProviderFactory(kind="anthropic", base_url=base, api_key=PROVIDER_KEY, options=options or {})
        return DeploymentFactory(
            model_name=model,
            provider=provider,
            upstream_model=UPSTREAM_MODEL,
            priority=priority,
            total_timeout=timeout,
            first_byte_timeout=first_byte_timeout or timeout,
        )

    return make


def chat(gateway, key: str, **body: Any) -> httpx.Response:
    body = {"model": "claude-test", "messages": [{"role": "user", "content": "hello Claude"}], **body}
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def stream(gateway, key: str, **body: Any) -> tuple[httpx.Response, list[Any]]:
    """The response and its SSE payloads (decoded JSON, or '[DONE]'); each chunk checked by the openai SDK."""
    body = {"model": "claude-test", "messages": [{"role": "user", "content": "hello Claude"}], "stream": True, **body}
    events: list[Any] = []
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST", f"{gateway.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    events.append(data if data == "[DONE]" else json.loads(data))
    for event in events:
        if isinstance(event, dict) and "error" not in event:
            ChatCompletionChunk.model_validate(event)
    return response, events


def text_of(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events if isinstance(e, dict) and e.get("choices")
    )


def completion(response: httpx.Response) -> ChatCompletion:
    assert response.status_code == 200, response.text
    return ChatCompletion.model_validate(response.json())


def sent(upstream: MockUpstream, index: int = -1) -> dict[str, Any]:
    """The body GreenGate sent upstream, asserted to be a valid Anthropic Messages request."""
    request = upstream.requests[index]
    assert request["anthropic_valid"], request["anthropic_errors"]
    return request["body"]


def sdk(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


# --- Plain and streamed answers ---------------------------------------------------------------------------------


def test_a_plain_answer_comes_back_as_an_openai_completion(gateway, api_key, claude, upstream, ledger_row):
    claude()
    response = chat(gateway, api_key)
    answer = completion(response)

    assert answer.choices[0].message.content == "Mock reply to: hello Claude"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.id.startswith("msg_mock")
    assert answer.usage.completion_tokens == count_tokens("Mock reply to: hello Claude")
    assert answer.usage.prompt_tokens == count_tokens("hello Claude") + 3
    request = upstream.requests[0]
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == PROVIDER_KEY
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    body = sent(upstream)
    assert body["model"] == UPSTREAM_MODEL
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello Claude"}]}]
    assert "stream" not in body
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.status_code, entry.prompt_tokens, entry.completion_tokens) == (
        200,
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )


def test_a_streamed_answer_arrives_as_openai_chunks_with_usage_last(gateway, api_key, claude, upstream, ledger_row):
    claude()
    response, events = stream(gateway, api_key, stream_options={"include_usage": True})

    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(chunks) == "Mock reply to: hello Claude"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == count_tokens("Mock reply to: hello Claude")
    assert sent(upstream)["stream"] is True
    entry = ledger_row(response.headers["x-request-id"])
    assert not entry.usage_estimated
    assert entry.completion_tokens == chunks[-1]["usage"]["completion_tokens"]


def test_max_tokens_is_passed_on_and_a_cut_answer_finishes_with_length(gateway, api_key, claude, upstream):
    claude()
    answer = completion(chat(gateway, api_key, max_completion_tokens=3))
    assert answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.content == "Mock reply to"
    assert sent(upstream)["max_tokens"] == 3

    _, events = stream(gateway, api_key, max_tokens=2)
    assert [c["choices"][0]["finish_reason"] for c in events[:-1] if c["choices"]][-1] == "length"


# --- Request translation ----------------------------------------------------------------------------------------


def test_system_and_developer_messages_become_the_system_prompt_and_same_role_turns_merge(
    gateway, api_key, claude, upstream
):
    claude()
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "third"},
    ]
    completion(chat(gateway, api_key, messages=messages, stop=["END"], user="user-42", seed=7, n=1))
    body = sent(upstream)
    assert body["system"] == [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": [{"type": "text", "text": "third"}]},
    ]
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert "seed" not in body


def test_images_go_up_by_url_and_as_base64_with_their_media_type_and_pdfs_as_documents(
    gateway, api_key, claude, upstream
):
    claude()
    content = [
        {"type": "text", "text": "compare these"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}},
    ]
    answer = completion(chat(gateway, api_key, messages=[{"role": "user", "content": content}]))
    assert answer.choices[0].message.content == "Mock reply to: compare these"
    assert sent(upstream)["messages"][0]["content"] == [
        {"type": "text", "text": "compare these"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}},
    ]


def test_an_image_type_anthropic_cannot_read_is_refused_before_any_upstream_call(gateway, api_key, claude, upstream):
    claude()
    content = [{"type": "image_url", "image_url": {"url": f"data:image/bmp;base64,{PNG}"}}]
    response = chat(gateway, api_key, messages=[{"role": "user", "content": content}])
    assert response.status_code == 400
    assert "image/bmp" in response.json()["error"]["message"]
    assert upstream.requests == []


def test_sampling_parameters_are_left_out_unless_the_provider_opts_in_and_then_clamped(
    gateway, api_key, claude, upstream
):
    claude()
    claude("claude-sampled", options={SAMPLING_OPTION: "send"})
    completion(chat(gateway, api_key, temperature=1.7, top_p=0.9))
    assert "temperature" not in sent(upstream) and "top_p" not in sent(upstream)

    completion(chat(gateway, api_key, model="claude-sampled", temperature=1.7, top_p=0.9))
    body = upstream.requests[-1]["body"]
    assert (body["temperature"], body["top_p"]) == (1.0, 0.9)


def test_n_above_one_is_refused_with_400_and_never_reaches_the_upstream(gateway, api_key, claude, upstream):
    claude()
    response = chat(gateway, api_key, n=2)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_parameter"
    response, events = stream(gateway, api_key, n=2)
    assert response.status_code == 400
    assert upstream.requests == []


def test_an_upstream_reporting_no_usage_is_counted_by_greengate(gateway, api_key, claude, ledger_row):
    claude(no_usage=1)
    response = chat(gateway, api_key)
    assert completion(response).usage.completion_tokens > 0
    assert ledger_row(response.headers["x-request-id"]).usage_estimated
    response, events = stream(gateway, api_key, stream_options={"include_usage": True})
    assert events[-2]["usage"]["completion_tokens"] > 0
    assert ledger_row(response.headers["x-request-id"]).usage_estimated


def test_tool_results_lead_their_user_turn_and_empty_messages_are_dropped(gateway, api_key, claude, upstream):
    claude()
    call = {"id": "toolu_9", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "user", "content": "and hurry"},
        {"role": "tool", "tool_call_id": "toolu_9", "content": "rain"},
        {"role": "assistant", "content": ""},
    ]
    completion(chat(gateway, api_key, messages=messages, tools=[WEATHER_TOOL]))
    turns = sent(upstream)["messages"]
    assert turns[1]["content"] == [{"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_9", "content": "rain"},
        {"type": "text", "text": "and hurry"},
    ]
    assert len(turns) == 3


def test_tool_call_arguments_that_are_not_json_get_a_clear_400(gateway, api_key, claude, upstream):
    claude()
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{city: Paris"}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    ]
    response = chat(gateway, api_key, messages=messages, tools=[WEATHER_TOOL])
    assert response.status_code == 400
    assert "toolu_1" in response.json()["error"]["message"]
    assert upstream.requests == []


def test_tool_choice_and_parallel_tool_calls_are_translated(gateway, api_key, claude, upstream):
    claude()
    completion(chat(gateway, api_key, tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False))
    assert sent(upstream)["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent(upstream)["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    named = {"type": "function", "function": {"name": "get_weather"}}
    completion(chat(gateway, api_key, tools=[WEATHER_TOOL], tool_choice=named))
    assert sent(upstream)["tool_choice"] == {"type": "tool", "name": "get_weather"}
    completion(chat(gateway, api_key, tools=[WEATHER_TOOL], tool_choice="none"))
    assert sent(upstream)["tool_choice"] == {"type": "none"}


# --- A full tool round trip through the official openai SDK -----------------------------------------------------


def test_the_openai_sdk_runs_a_tool_round_trip_through_greengate(gateway, api_key, claude, upstream):
    claude()
    client = sdk(gateway, api_key)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

    first = client.chat.completions.create(model="claude-test", messages=messages, tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}

    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    second = client.chat.completions.create(model="claude-test", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert "18 degrees and sunny" in second.choices[0].message.content

    turns = sent(upstream)["messages"]
    assert turns[1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "mock"}}],
    }
    assert turns[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees and sunny"}],
    }


def test_the_openai_sdk_runs_a_streamed_tool_round_trip_with_parallel_results_merged(
    gateway, api_key, claude, upstream
):
    claude()
    client = sdk(gateway, api_key)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Rome?"}]

    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(
        model="claude-test", messages=messages, tools=[WEATHER_TOOL], stream=True
    ):
        for delta in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function.name or "") if delta.function else ""
            call["arguments"] += (delta.function.arguments or "") if delta.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"].startswith("toolu_mock") and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "mock"}

    # Two results (as if the model had called twice): consecutive tool messages become one user turn.
    tool_calls = [
        {
            "id": calls[0]["id"],
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "toolu_other", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
    ]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": tool_calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "Paris: rain"},
        {"role": "tool", "tool_call_id": "toolu_other", "content": "Rome: sun"},
    ]
    text = ""
    for chunk in client.chat.completions.create(
        model="claude-test", messages=messages, tools=[WEATHER_TOOL], stream=True
    ):
        text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert "Paris: rain" in text and "Rome: sun" in text
    last_turn = sent(upstream)["messages"][-1]
    assert last_turn["role"] == "user"
    assert [block["tool_use_id"] for block in last_turn["content"]] == [calls[0]["id"], "toolu_other"]


# --- JSON output ------------------------------------------------------------------------------------------------


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "city_facts",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["city", "population"],
        },
    },
}


def test_a_json_schema_response_format_is_answered_through_a_forced_tool_as_plain_content(
    gateway, api_key, claude, upstream
):
    claude()
    answer = completion(chat(gateway, api_key, response_format=SCHEMA_FORMAT))
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.tool_calls is None
    assert json.loads(answer.choices[0].message.content) == {"city": "mock", "population": 1}
    body = sent(upstream)
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert body["tools"][0]["input_schema"]["properties"] == SCHEMA_FORMAT["json_schema"]["schema"]["properties"]

    _, events = stream(gateway, api_key, response_format=SCHEMA_FORMAT)
    assert json.loads(text_of(events)) == {"city": "mock", "population": 1}
    assert not any(e["choices"][0]["delta"].get("tool_calls") for e in events[:-1] if e["choices"])
    assert [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]][-1] == "stop"


def test_json_object_mode_with_client_tools_lets_the_model_pick_a_tool_or_the_answer(
    gateway, api_key, claude, upstream
):
    claude()
    completion(chat(gateway, api_key, response_format={"type": "json_object"}, tools=[WEATHER_TOOL]))
    body = sent(upstream)
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", "json_response"]
    assert body["tool_choice"] == {"type": "any"}


# --- Usage and prompt caching -----------------------------------------------------------------------------------


def test_cache_reads_and_writes_count_as_prompt_tokens_and_reach_the_ledger(
    gateway, api_key, claude, upstream, ledger_row
):
    claude(mock={"cache_read": 1200, "cache_write": 300})
    response = chat(gateway, api_key)
    usage = completion(response).usage
    uncached = count_tokens("hello Claude") + 3
    assert usage.prompt_tokens == uncached + 1200 + 300
    assert usage.prompt_tokens_details.cached_tokens == 1200
    assert response.json()["usage"]["prompt_tokens_details"]["cache_write_tokens"] == 300
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.prompt_tokens, entry.cached_input_tokens, entry.cache_write_tokens) == (uncached + 1500, 1200, 300)

    response, events = stream(gateway, api_key, stream_options={"include_usage": True})
    assert events[-2]["usage"]["prompt_tokens"] == uncached + 1500
    assert events[-2]["usage"]["prompt_tokens_details"]["cached_tokens"] == 1200
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.prompt_tokens, entry.cached_input_tokens, entry.cache_write_tokens) == (uncached + 1500, 1200, 300)


# --- Recorded payloads ------------------------------------------------------------------------------------------


def test_the_fixture_payloads_are_valid_by_the_anthropic_sdk():
    Message.model_validate_json((FIXTURES / "message_text_and_tool.json").read_text())
    events = TypeAdapter(RawMessageStreamEvent)
    for frame in (FIXTURES / "stream_text_and_tool.sse").read_text().split("\n\n"):
        data = next((line[6:] for line in frame.splitlines() if line.startswith("data: ")), None)
        if data and json.loads(data)["type"] != "ping":
            events.validate_json(data)


def test_a_recorded_answer_with_thinking_text_and_a_tool_call_translates_in_full(gateway, api_key, claude, ledger_row):
    claude(mock={"replay": "message_text_and_tool.json"})
    response = chat(gateway, api_key, tools=[WEATHER_TOOL])
    answer = completion(response)
    message = answer.choices[0].message
    assert message.content == "I'll check the weather in Paris for you."  # the thinking block is not shown
    assert message.tool_calls[0].id == "toolu_01A09q90qw90lq917835lq9"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.model == "claude-sonnet-5-5"
    assert answer.usage.prompt_tokens == 412 + 2048 + 1024
    assert answer.usage.prompt_tokens_details.cached_tokens == 2048
    assert answer.usage.completion_tokens == 87
    assert answer.usage.completion_tokens_details.reasoning_tokens == 21
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.cached_input_tokens, entry.cache_write_tokens, entry.reasoning_tokens) == (2048, 1024, 21)


def test_a_recorded_stream_becomes_text_then_incremental_tool_call_deltas(gateway, api_key, claude):
    claude(mock={"replay": "stream_text_and_tool.sse"})
    _, events = stream(gateway, api_key, tools=[WEATHER_TOOL], stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    assert text_of(chunks) == "Okay, let's check the weather for San Francisco."
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert deltas[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(d) == {"index", "function"} for d in deltas[1:])  # fragments carry no id or name
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"location": "San Francisco, CA"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    usage = events[-2]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (472 + 1536, 89)


# --- Faults -----------------------------------------------------------------------------------------------------


def test_a_slow_upstream_times_out_with_504(gateway, api_key, claude):
    claude(latency=5, first_byte_timeout=0.5)
    response = chat(gateway, api_key)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_an_upstream_500_becomes_502(gateway, api_key, claude):
    claude(status=500)
    response = chat(gateway, api_key)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"


def test_a_rate_limited_upstream_is_a_429_with_its_retry_after(gateway, api_key, claude):
    claude(status=429, retry_after=7)
    response = chat(gateway, api_key)
    assert response.status_code == 429  # every deployment rate limited: 429, not 502
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("status", [429, 529])
def test_a_rate_limited_or_overloaded_anthropic_falls_back_to_the_next_deployment(
    gateway, api_key, claude, upstream, status
):
    claude(status=status, retry_after=3)
    claude(priority=1)
    answer = completion(chat(gateway, api_key))
    assert answer.choices[0].message.content == "Mock reply to: hello Claude"
    assert len(upstream.requests) == 2


def test_an_overloaded_upstream_alone_is_a_502(gateway, api_key, claude):
    claude(status=529)
    response = chat(gateway, api_key)
    assert response.status_code == 502
    assert "529" in response.json()["error"]["message"]


def test_an_anthropic_400_reaches_the_client_with_anthropics_words(gateway, api_key, claude):
    claude(status=400)
    response = chat(gateway, api_key)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Mock failure."


def test_a_refused_provider_key_is_never_quoted_to_the_client(gateway, api_key, claude, upstream):
    claude(require_key="sk-ant-the-right-one")
    response = chat(gateway, api_key)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    assert PROVIDER_KEY[:8] not in response.text
    assert upstream.requests[0]["headers"]["x-api-key"] == PROVIDER_KEY


def test_a_malformed_answer_becomes_502(gateway, api_key, claude):
    claude(malformed=1)
    response = chat(gateway, api_key)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_malformed"


def test_a_malformed_stream_ends_with_an_error_event(gateway, api_key, claude):
    claude(malformed=1)
    _, events = stream(gateway, api_key)
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "upstream_malformed"


def test_a_connection_dropped_mid_stream_ends_with_an_error_event_and_no_done(gateway, api_key, claude, ledger_row):
    claude(drop_after=2, words=20)
    response, events = stream(gateway, api_key)
    assert response.status_code == 200
    assert "[DONE]" not in events
    assert events[-1]["error"]["type"] == "upstream_error"
    assert text_of(events[:-1]) == "word0 word1"
    assert ledger_row(response.headers["x-request-id"]).status_code == 502


def test_an_error_event_mid_stream_ends_the_stream_with_an_error_event(gateway, api_key, claude, ledger_row):
    claude(mock={"error_event": "overloaded_error"})
    response, events = stream(gateway, api_key)
    assert "[DONE]" not in events
    assert text_of(events[:-1]) == "Mock"
    assert events[-1]["error"]["code"] == "upstream_error"
    assert "Overloaded" in events[-1]["error"]["message"]
    assert ledger_row(response.headers["x-request-id"]).status_code == 502
