"""The Cohere adapter, through a running GreenGate to the mock upstream's Cohere v2 Chat wire format.

Every outgoing request is checked against the cohere SDK's request types by the mock; every answer GreenGate
gives is checked against the openai SDK's types.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import cohere
import httpx
import openai
import pydantic
import pytest
from django.conf import settings
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.factories import DeploymentFactory, ProviderFactory
from tests.mock_cohere import FIXTURES, recorded_stream_events, validate_request
from tests.mock_upstream import MockUpstream, count_tokens

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "command-test"
CHAT = "/v1/chat/completions"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def cohere_route(transactional_db, upstream: MockUpstream) -> Callable[..., Any]:
    """cohere_route(upstream_model=..., first_byte_timeout=..., priority=..., **knobs): a Cohere deployment."""

    def make(
        *,
        model: str = MODEL,
        upstream_model: str = "command-a-03-2025",
        priority: int = 0,
        timeout: float = 10.0,
        first_byte_timeout: float | None = None,
        **knobs: Any,
    ):
        # The mock's knob-carrying URL names OpenAI's /v1 root; Cohere's root is the part before it.
        base_url = upstream.base_url(**knobs).removesuffix("/v1")
        provider = ProviderFactory(kind="cohere", base_url=base_url, api_key="co-upstream-test")
        return DeploymentFactory(
            model_name=model,
            provider=provider,
            upstream_model=upstream_model,
            priority=priority,
            total_timeout=timeout,
            first_byte_timeout=first_byte_timeout or timeout,
        )

    return make


def sdk(gateway, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0)


def post(gateway, key: str, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, **body}
    return httpx.post(gateway.url + CHAT, json=payload, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def completion(response: httpx.Response) -> ChatCompletion:
    assert response.status_code == 200, response.text
    return ChatCompletion.model_validate(response.json())


def stream(gateway, key: str, **body: Any) -> tuple[httpx.Response, list[Any]]:
    """The SSE answer's payloads: dicts (each checked as a ChatCompletionChunk unless an error) and '[DONE]'."""
    payload = {"model": MODEL, "stream": True, **body}
    events: list[Any] = []
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST", gateway.url + CHAT, json=payload, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    event = data if data == "[DONE]" else json.loads(data)
                    if isinstance(event, dict) and "error" not in event:
                        ChatCompletionChunk.model_validate(event)
                    events.append(event)
    return response, events


def text_of(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events if isinstance(e, dict) and e.get("choices")
    )


def sent(upstream: MockUpstream) -> list[dict[str, Any]]:
    """What GreenGate sent to Cohere; each request must have passed the SDK's request types."""
    requests = [r for r in upstream.requests if r["path"].endswith("/v2/chat")]
    for request in requests:
        # A request a fault knob answered never reached the Cohere handler: it is checked here instead.
        verdict = request.get("cohere") or {"errors": validate_request(request["body"])}
        assert not verdict["errors"], verdict["errors"]
    return requests


def prompt_count(*texts: str) -> int:
    """The mock's `tokens.input_tokens`: the prompt's tokens plus 3 per message of Cohere's own template."""
    return sum(count_tokens(text) for text in texts) + 3 * len(texts)


# --- Plain and streamed answers --------------------------------------------------------------------------------


def test_a_plain_answer_comes_back_in_openai_shape_with_cohere_usage_in_the_ledger(
    gateway, api_key, cohere_route, upstream, ledger_row
):
    deployment = cohere_route()
    response = post(gateway, api_key, messages=[{"role": "user", "content": "Say hello to GreenGate"}])
    answer = completion(response)

    assert answer.choices[0].message.content == "Mock reply to: Say hello to GreenGate"
    assert answer.choices[0].finish_reason == "stop"
    # Usage is Cohere's `tokens` count (the billed one leaves out its template).
    assert answer.usage.prompt_tokens == prompt_count("Say hello to GreenGate")
    assert answer.usage.completion_tokens == count_tokens(answer.choices[0].message.content)
    [request] = sent(upstream)
    assert request["cohere"] == {"valid": True, "errors": []}
    assert request["path"] == "/v2/chat"
    assert request["headers"]["Authorization"] == "Bearer co-upstream-test"
    assert request["body"]["model"] == "command-a-03-2025"
    assert request["body"]["stream"] is False
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.status_code, entry.provider, entry.stream) == (200, deployment.provider.name, False)
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert not entry.usage_estimated


def test_a_streamed_answer_relays_role_text_finish_and_usage(gateway, api_key, cohere_route, upstream, ledger_row):
    cohere_route()
    response, events = stream(
        gateway,
        api_key,
        messages=[{"role": "user", "content": "Stream me something"}],
        stream_options={"include_usage": True},
    )

    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(chunks) == "Mock reply to: Stream me something"
    # One chunk per word: relayed as Cohere sent them, not gathered into one.
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) > 3
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == prompt_count("Stream me something")
    assert usage["completion_tokens"] == count_tokens(text_of(chunks))
    assert sent(upstream)[0]["body"]["stream"] is True
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.status_code, entry.stream) == (200, True)
    assert (entry.prompt_tokens, entry.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert not entry.usage_estimated


def test_the_first_words_reach_the_client_before_cohere_sends_its_last(gateway, api_key, cohere_route, upstream):
    cohere_route(words=12, chunk_delay=0.15)
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    upstream_done_at_first_words = None
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", gateway.url + CHAT, json=body, headers={"Authorization": f"Bearer {api_key}"}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    upstream_done_at_first_words = any(e["kind"] == "last_chunk" for e in upstream.events)
                    break
    assert upstream_done_at_first_words is False


def test_a_client_leaving_mid_stream_cancels_the_cohere_call_and_is_billed(
    gateway, api_key, cohere_route, upstream, ledger_row
):
    cohere_route(words=100, chunk_delay=0.1)
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    seen = 0
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", gateway.url + CHAT, json=body, headers={"Authorization": f"Bearer {api_key}"}) as r:
            request_id = r.headers["x-request-id"]
            for line in r.iter_lines():
                seen += line.startswith("data: ")
                if seen >= 5:
                    break  # leaving the block closes the connection mid-stream

    upstream.wait_for("client_disconnected", timeout=10)
    assert not any(e["kind"] == "last_chunk" for e in upstream.events)
    entry = ledger_row(request_id)
    assert (entry.status_code, entry.error_code) == (499, "client_disconnected")
    assert 0 < entry.completion_tokens < 100


def test_system_and_developer_prompts_become_system_messages_and_cached_tokens_are_kept(
    gateway, api_key, cohere_route, upstream, ledger_row
):
    cohere_route()
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "Hi"},
    ]
    response = post(gateway, api_key, messages=messages)
    answer = completion(response)

    body = sent(upstream)[0]["body"]
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "system", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "Hi"},
    ]
    # The mock reports the system prompt as prompt-cache hits, as Cohere's `cached_tokens`.
    cached = count_tokens("You are terse.") + count_tokens("Answer in English.")
    assert answer.usage.prompt_tokens_details.cached_tokens == cached
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.cached_input_tokens == cached
    assert entry.prompt_tokens == prompt_count("You are terse.", "Answer in English.", "Hi")


# --- Tools -----------------------------------------------------------------------------------------------------


def test_the_openai_sdk_runs_a_tool_call_round_trip_through_cohere(gateway, api_key, cohere_route, upstream):
    cohere_route()
    client = sdk(gateway, api_key)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None  # Cohere's tool plan has no place in OpenAI's message
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"})
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "The tool said: Sunny, 21 C"
    assert second.choices[0].finish_reason == "stop"

    first_sent, second_sent = (r["body"] for r in sent(upstream))
    assert first_sent["tools"] == [WEATHER_TOOL]
    assert second_sent["messages"][1] == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": call.function.arguments},
            }
        ],
    }
    assert second_sent["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}


def test_the_openai_sdk_streams_a_tool_call_round_trip_through_cohere(gateway, api_key, cohere_route, upstream):
    cohere_route()
    client = sdk(gateway, api_key)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    # The id and name come first, alone; then the arguments arrive in fragments.
    assert deltas[0].index == 0 and deltas[0].id and deltas[0].function.name == "get_weather"
    assert deltas[0].function.arguments == ""
    fragments = [d.function.arguments for d in deltas[1:]]
    assert len(fragments) > 1 and all(d.id is None and d.index == 0 for d in deltas[1:])
    arguments = "".join(fragments)
    assert json.loads(arguments) == {"city": "mock"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"

    messages.append(
        {
            "role": "assistant",
            "tool_calls": [
                {"id": deltas[0].id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": deltas[0].id, "content": "Rain"})
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The tool said: Rain"
    assert len(sent(upstream)) == 2


def test_tool_choice_is_translated_and_a_named_function_narrows_the_tools(gateway, api_key, cohere_route, upstream):
    cohere_route()
    clock = {"type": "function", "function": {"name": "get_time"}}
    user = [{"role": "user", "content": "Hi"}]
    for choice in ("required", "none", "auto", {"type": "function", "function": {"name": "get_time"}}):
        completion(post(gateway, api_key, messages=user, tools=[WEATHER_TOOL, clock], tool_choice=choice))

    required, none, auto, named = (r["body"] for r in sent(upstream))
    assert required["tool_choice"] == "REQUIRED" and len(required["tools"]) == 2
    assert none["tool_choice"] == "NONE"
    assert "tool_choice" not in auto
    # Cohere cannot name a function: only that one is offered, and a call is required.
    assert named["tool_choice"] == "REQUIRED"
    assert named["tools"] == [
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    ]


# --- Images, JSON, parameters ----------------------------------------------------------------------------------


def test_images_by_url_and_as_base64_data_reach_cohere_as_image_url_parts(gateway, api_key, cohere_route, upstream):
    cohere_route()
    data_url = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    content = [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]
    answer = completion(post(gateway, api_key, messages=[{"role": "user", "content": content}]))

    assert answer.choices[0].message.content == "Mock reply to: What is in these pictures?"
    assert sent(upstream)[0]["body"]["messages"][0]["content"] == content


def test_a_json_schema_response_format_gets_json_that_fits_it(gateway, api_key, cohere_route, upstream):
    cohere_route()
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
        "required": ["city", "celsius"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}}
    answer = completion(
        post(gateway, api_key, messages=[{"role": "user", "content": "Weather?"}], response_format=response_format)
    )
    _, events = stream(
        gateway, api_key, messages=[{"role": "user", "content": "Weather?"}], response_format={"type": "json_object"}
    )

    assert json.loads(answer.choices[0].message.content) == {"city": "mock", "celsius": 1.5}
    assert json.loads(text_of(events)) == {"reply": "mock"}
    schema_sent, object_sent = (r["body"] for r in sent(upstream))
    assert schema_sent["response_format"] == {"type": "json_object", "json_schema": schema}
    assert object_sent["response_format"] == {"type": "json_object"}


def test_sampling_parameters_are_translated_into_what_cohere_accepts(gateway, api_key, cohere_route, upstream):
    cohere_route()
    user = [{"role": "user", "content": "one two three four five"}]
    stopped = completion(
        post(
            gateway,
            api_key,
            messages=user,
            stop=["four"],
            temperature=0.4,
            top_p=1.0,
            seed=7,
            frequency_penalty=-0.5,
            presence_penalty=1.5,
            user="someone",
            metadata={"team": "a"},
            parallel_tool_calls=False,
        )
    )
    cut = completion(post(gateway, api_key, messages=user, max_tokens=9, max_completion_tokens=3))

    assert stopped.choices[0].message.content == "Mock reply to: one two three"
    assert stopped.choices[0].finish_reason == "stop"
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens == 3
    first, second = (r["body"] for r in sent(upstream))
    assert {k: first[k] for k in ("stop_sequences", "temperature", "p", "seed", "frequency_penalty")} == {
        "stop_sequences": ["four"],
        "temperature": 0.4,
        "p": 0.99,  # Cohere's ceiling
        "seed": 7,
        "frequency_penalty": 0.0,  # Cohere cannot reward repetition
    }
    assert first["presence_penalty"] == 1.0
    assert not {"user", "metadata", "parallel_tool_calls", "top_p", "stop"} & set(first)
    assert second["max_tokens"] == 3  # the tighter of the two limits


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ({"n": 2}, "'n'"),
        ({"logprobs": True}, "logprobs"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                    }
                ]
            },
            "Audio",
        ),
    ],
    ids=["n", "logprobs", "audio"],
)
def test_what_cohere_cannot_do_is_refused_with_a_400_before_any_call(
    gateway, api_key, cohere_route, upstream, ledger_row, extra, what
):
    cohere_route()
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gateway, api_key).chat.completions.create(
            **{"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **extra}
        )
    assert refused.value.code == "unsupported_parameter"
    assert what in refused.value.message
    assert sent(upstream) == []
    assert ledger_row(refused.value.response.headers["x-request-id"]).status_code == 400


def test_the_mock_refuses_a_request_cohere_would_refuse(upstream):
    # Fields Cohere does not know, OpenAI's names for its parameters, values outside its ranges.
    body = {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "user", "content": "Hi", "name": "bob"},
            {"role": "tool", "tool_call_id": "x", "content": "1"},
        ],
        "top_p": 0.5,
    }
    response = httpx.post(upstream.url + "/v2/chat", json=body, timeout=10)
    body.pop("top_p")
    body["presence_penalty"] = -1
    again = httpx.post(upstream.url + "/v2/chat", json=body, timeout=10)

    assert (response.status_code, again.status_code) == (400, 400)
    assert set(response.json()) == {"id", "message"}
    first, second = (r["cohere"] for r in upstream.requests)
    assert not first["valid"] and any("top_p" in e for e in first["errors"])
    assert any("messages[0].name" in e for e in second["errors"])
    assert any("presence_penalty" in e for e in second["errors"])
    assert any("tool_call_id" in e for e in second["errors"])


# --- Recorded payloads -----------------------------------------------------------------------------------------


def test_the_recorded_payloads_are_valid_cohere_answers():
    pydantic.TypeAdapter(cohere.V2ChatResponse).validate_json((FIXTURES / "chat_response.json").read_text())
    event = pydantic.TypeAdapter(cohere.StreamedChatResponseV2)
    for name in ("chat_stream.sse", "chat_stream_error.sse", "chat_stream_cut.sse"):
        for _, data in recorded_stream_events(name):
            if data is not None:
                assert type(event.validate_python(data)).__name__.lower().startswith(data["type"].replace("-", ""))


def test_recorded_cohere_answers_translate_to_openai_ones(gateway, api_key, cohere_route):
    cohere_route(upstream_model="recorded")
    recorded = json.loads((FIXTURES / "chat_response.json").read_text())
    answer = completion(post(gateway, api_key, messages=[{"role": "user", "content": "Why?"}]))
    response, events = stream(
        gateway, api_key, messages=[{"role": "user", "content": "Why?"}], stream_options={"include_usage": True}
    )

    assert answer.id == recorded["id"]
    # The model's thinking has no place in OpenAI's message: only the text part is the answer.
    assert answer.choices[0].message.content == recorded["message"]["content"][1]["text"]
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (214, 16)
    assert answer.usage.prompt_tokens_details.cached_tokens == 192
    assert events[-1] == "[DONE]"
    assert text_of(events) == "Water boils at a lower temperature up high."
    assert events[0]["id"] == "29f14a5a-11de-4cae-9800-25e4747408ea"
    usage = events[-2]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (209, 9)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 192


# --- Faults ----------------------------------------------------------------------------------------------------


def error_event(events: list[Any]) -> dict[str, Any]:
    assert "[DONE]" not in events
    assert "error" in events[-1], events[-1]
    return events[-1]["error"]


def test_a_generation_error_mid_stream_ends_the_stream_with_an_error_event(gateway, api_key, cohere_route, ledger_row):
    cohere_route(upstream_model="recorded-error")
    response, events = stream(gateway, api_key, messages=[{"role": "user", "content": "Hi"}])

    assert text_of(events) == "Partial"
    error = error_event(events)
    assert error["code"] == "upstream_error"
    assert "internal error while generating" in error["message"]
    assert ledger_row(response.headers["x-request-id"]).status_code == 502


def test_a_stream_that_ends_without_message_end_was_cut_short(gateway, api_key, cohere_route, ledger_row):
    cohere_route(upstream_model="recorded-cut")
    response, events = stream(gateway, api_key, messages=[{"role": "user", "content": "Hi"}])

    assert text_of(events) == "Water boils at a lower temperature up high."
    assert error_event(events)["code"] == "upstream_stream_cut"
    assert ledger_row(response.headers["x-request-id"]).status_code == 502


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_a_slow_cohere_times_out_at_the_deployments_first_byte_deadline(
    gateway, api_key, cohere_route, ledger_row, streamed
):
    cohere_route(latency=5, first_byte_timeout=0.5)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": streamed}
    response = httpx.post(gateway.url + CHAT, json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert ledger_row(response.headers["x-request-id"]).status_code == 504


def test_a_cohere_500_is_a_502_and_falls_back_to_the_next_deployment(gateway, api_key, cohere_route, upstream):
    # Every route exists before the first request: the gateway's copy of the routes is taken then.
    cohere_route(model="command-down", status=500)
    cohere_route(status=500)
    cohere_route(priority=1)

    failed = httpx.post(
        gateway.url + CHAT,
        json={"model": "command-down", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    answer = completion(post(gateway, api_key, messages=[{"role": "user", "content": "Hi"}]))

    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "upstream_error"
    assert "Mock failure" not in failed.text
    assert answer.choices[0].message.content == "Mock reply to: Hi"
    # command-down was tried in each of the 1 + UPSTREAM_RETRIES rounds; then 500, fallback.
    assert len(sent(upstream)) == 1 + settings.UPSTREAM_RETRIES + 2


def test_a_cohere_429_is_a_429_with_its_retry_after(gateway, api_key, cohere_route):
    cohere_route(status=429, retry_after=7)
    response = post(gateway, api_key, messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 429  # every deployment rate limited: 429, not 502
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert response.headers["retry-after"] == "7"


def test_a_cohere_400_reaches_the_client_as_a_400_with_cohere_s_words(gateway, api_key, cohere_route):
    cohere_route(status=400)
    response = post(gateway, api_key, messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Mock failure."
    assert response.json()["error"]["code"] == "upstream_rejected_request"


def test_a_refused_cohere_key_is_never_quoted_to_the_client(gateway, api_key, cohere_route):
    cohere_route(require_key="co-the-right-one")
    response = post(gateway, api_key, messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    assert "co-upstr" not in response.text and "Incorrect API key" not in response.text


def test_a_malformed_cohere_body_is_a_502(gateway, api_key, cohere_route):
    cohere_route(malformed=1)
    response = post(gateway, api_key, messages=[{"role": "user", "content": "Hi"}])
    _, events = stream(gateway, api_key, messages=[{"role": "user", "content": "Hi"}])

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_malformed"
    assert error_event(events)["code"] == "upstream_malformed"


def test_a_connection_dropped_mid_stream_ends_the_stream_with_an_error_event(
    gateway, api_key, cohere_route, ledger_row
):
    cohere_route(drop_after=2, chunk_delay=0.02)
    response, events = stream(gateway, api_key, messages=[{"role": "user", "content": "tell me a long story"}])

    assert response.status_code == 200  # sent with the first chunk
    assert text_of(events) == "Mock reply"  # the two pieces sent before the drop
    assert error_event(events)["code"] == "upstream_unavailable"
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.status_code == 502
    assert entry.completion_tokens == count_tokens("Mock reply")
