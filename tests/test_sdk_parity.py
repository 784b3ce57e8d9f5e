"""Parity with the official openai SDK: what its types accept GreenGate accepts and forwards intact, and what
GreenGate answers (JSON, chunks, errors) the SDK's own models accept without a field they do not know."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat import completion_create_params as sdk_params
from openai.types.shared import ErrorObject
from pydantic import BaseModel, TypeAdapter

from gateway.validation import parse_chat_request
from tests.factories import DeploymentFactory, ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
MODEL = "gpt-parity"
USER = {"role": "user", "content": "What is the weather in Paris?"}

SDK_JSON = TypeAdapter(sdk_params.CompletionCreateParamsNonStreaming)
SDK_STREAM = TypeAdapter(sdk_params.CompletionCreateParamsStreaming)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TOOL_CALL = {
    "id": "call_abc123",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'},
}
PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def body(*messages: dict, **fields: Any) -> dict:
    return {"model": MODEL, "messages": list(messages) or [USER], **fields}


# Each body is one the SDK's own request types accept (proved below); ids read as what the body exercises.
CORPUS: dict[str, dict] = {
    "plain_user_string": body(),
    "system_and_user": body({"role": "system", "content": "Be brief.", "name": "ops"}, USER),
    "system_text_parts": body({"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, USER),
    "developer_message": body({"role": "developer", "content": "Answer in French.", "name": "dev"}, USER),
    "user_named_text_parts": body(
        {"role": "user", "name": "alice", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ),
    "image_url_parts_with_detail": body(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "auto"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/c.png"}},
            ],
        }
    ),
    "input_audio_part": body(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Transcribe"},
                {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}},
                {"type": "input_audio", "input_audio": {"data": "SUQzBAAAAAAA", "format": "mp3"}},
            ],
        }
    ),
    "file_parts": body(
        {
            "role": "user",
            "content": [
                {"type": "file", "file": {"file_id": "file-abc123"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
                {"type": "text", "text": "Summarise both files."},
            ],
        }
    ),
    "assistant_tool_calls_and_tool_result": body(
        USER,
        {"role": "assistant", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp": 21}'},
        tools=[WEATHER_TOOL],
    ),
    "assistant_text_with_tool_calls_and_parallel": body(
        USER,
        {
            "role": "assistant",
            "content": "Let me check.",
            "name": "helper",
            "tool_calls": [TOOL_CALL, {**TOOL_CALL, "id": "call_def456"}],
        },
        {"role": "tool", "tool_call_id": "call_abc123", "content": [{"type": "text", "text": "21C"}]},
        {"role": "tool", "tool_call_id": "call_def456", "content": "22C"},
        tools=[WEATHER_TOOL],
        parallel_tool_calls=True,
    ),
    "assistant_refusal_parts": body(
        USER,
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Partly: "}, {"type": "refusal", "refusal": "I can't help."}],
            "refusal": "I can't help.",
        },
        {"role": "user", "content": "Please?"},
    ),
    "assistant_audio_reference": body(USER, {"role": "assistant", "audio": {"id": "audio_abc"}}, USER),
    "assistant_custom_tool_call": body(
        USER,
        {
            "role": "assistant",
            "tool_calls": [{"id": "call_c1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}],
        },
        {"role": "tool", "tool_call_id": "call_c1", "content": "1"},
        tools=[{"type": "custom", "custom": {"name": "sql", "description": "Run SQL", "format": {"type": "text"}}}],
    ),
    "legacy_function_role_and_functions": body(
        USER,
        {"role": "assistant", "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
        functions=[{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
        function_call="auto",
    ),
    "legacy_function_call_named": body(
        functions=[{"name": "get_weather", "description": "w"}], function_call={"name": "get_weather"}
    ),
    "tool_choice_none": body(tools=[WEATHER_TOOL], tool_choice="none"),
    "tool_choice_auto": body(tools=[WEATHER_TOOL], tool_choice="auto"),
    "tool_choice_required": body(tools=[WEATHER_TOOL], tool_choice="required"),
    "tool_choice_named_function": body(
        tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    ),
    "tool_choice_custom": body(
        tools=[{"type": "custom", "custom": {"name": "sql"}}], tool_choice={"type": "custom", "custom": {"name": "sql"}}
    ),
    "tool_choice_allowed_tools": body(
        tools=[WEATHER_TOOL],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
        },
    ),
    "tool_without_parameters": body(tools=[{"type": "function", "function": {"name": "now"}}]),
    "response_format_text": body(response_format={"type": "text"}),
    "response_format_json_object": body(response_format={"type": "json_object"}),
    "response_format_json_schema": body(
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "weather",
                "description": "A weather report",
                "schema": {"type": "object", "properties": {"temp": {"type": "number"}}, "required": ["temp"]},
                "strict": True,
            },
        }
    ),
    "stop_string": body(stop="\n\n"),
    "stop_list": body(stop=["END", "STOP", "###"]),
    "n_and_seed": body(n=3, seed=42),
    "logprobs_and_top_logprobs": body(logprobs=True, top_logprobs=5),
    "sampling_knobs": body(
        temperature=0.2, top_p=0.9, presence_penalty=-0.5, frequency_penalty=1.5, logit_bias={"50256": -100}
    ),
    "max_tokens": body(max_tokens=64),
    "max_completion_tokens": body(max_completion_tokens=64),
    "metadata_store_user": body(metadata={"team": "finance", "ticket": "T-1"}, store=True, user="user-1"),
    "reasoning_effort_and_verbosity": body(reasoning_effort="high", verbosity="low"),
    "service_tier_and_cache_key": body(service_tier="auto", prompt_cache_key="k1", safety_identifier="s1"),
    "audio_output": body(modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}),
    "prediction_and_web_search": body(
        prediction={"type": "content", "content": "The weather is"}, web_search_options={"search_context_size": "low"}
    ),
    "unknown_future_fields": body(
        future_knob={"nested": [1, 2.5, "x", None, True]},
        prompt_cache_retention="24h",
        another_future_flag=True,
        # GreenGate's own internal names for what it keeps: a client may still send them, and they pass through.
        raw={"messages": 5},
        passthrough="client value",
    ),
    # A detail level newer than GreenGate's own list: passed on as given.
    "image_detail_original": body(
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "original"}}],
        }
    ),
    # Fields the SDK knows inside a content part that GreenGate's structs do not declare.
    "content_part_cache_breakpoint": body(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "long context", "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "30m"}}
            ],
        }
    ),
    # Fields the SDK's TypedDicts do not declare, nested anywhere: accepted by both, forwarded as sent.
    "nested_unknown_fields": body(
        {"role": "user", "content": "x", "cache_control": {"type": "ephemeral"}},
        {"role": "assistant", "tool_calls": [{**TOOL_CALL, "extra_call_field": 1}]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": "r", "extra_tool_field": [2]},
        tools=[{**WEATHER_TOOL, "extra_tool_field": {"a": None}}],
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {}, "extra": True}},
    ),
    "stream_plain": body(stream=True),
    "stream_with_usage": body(stream=True, stream_options={"include_usage": True}),
    "stream_with_tools_and_usage": body(
        {"role": "developer", "content": "Use tools."},
        USER,
        stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    ),
}


def _materialized(value: Any) -> Any:
    """pydantic validates the SDK's Iterable[...] fields lazily; walk them so every nested item is checked."""
    if isinstance(value, dict):
        return {k: _materialized(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or isinstance(value, Iterator):
        return [_materialized(v) for v in value]
    return value


def assert_sdk_accepts_request(payload: dict) -> None:
    adapter = SDK_STREAM if payload.get("stream") else SDK_JSON
    _materialized(adapter.validate_python(copy.deepcopy(payload)))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def assert_forwarded_intact(sent: dict, forwarded: dict) -> None:
    """Every field the client sent reaches the upstream unchanged (model and stream settings are GreenGate's)."""
    for name, value in sent.items():
        if name in ("model", "stream", "stream_options"):
            continue
        assert name in forwarded, f"{name} was not forwarded"
        assert _without_nulls(forwarded[name]) == _without_nulls(value), name
    if sent.get("stream"):
        assert forwarded["stream"] is True
        assert {**sent.get("stream_options", {}), "include_usage": True} == forwarded["stream_options"]
    else:
        assert "stream" not in forwarded or forwarded["stream"] is False


def post(gateway, key: str, payload: dict | None = None, *, content: bytes | None = None) -> httpx.Response:
    data = content if content is not None else json.dumps(payload).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return httpx.post(gateway.url + CHAT, content=data, headers=headers, timeout=30)


def sse_payloads(response: httpx.Response) -> list[Any]:
    """The data of each event, in order: decoded JSON, or the string '[DONE]'. Any other line is a failure."""
    out: list[Any] = []
    for line in response.iter_lines():
        if not line:
            continue
        assert line.startswith("data: "), f"unexpected SSE line {line!r}"
        data = line[6:]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream(gateway, key: str, payload: dict) -> tuple[httpx.Response, list[Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", gateway.url + CHAT, json=payload, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                return response, []
            return response, sse_payloads(response)


def _extras(obj: Any, path: str = "$") -> Iterator[str]:
    """Fields the SDK's models do not declare (they land in model_extra), anywhere in a parsed object."""
    if isinstance(obj, BaseModel):
        for name in obj.model_extra or {}:
            yield f"{path}.{name}"
        for name in type(obj).model_fields:
            yield from _extras(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _extras(item, f"{path}[{i}]")


# GreenGate's documented extensions, which the SDK keeps as extra fields: the estimates in a stream's last chunk.
EXTENSIONS = frozenset({"$.usage.greengate"})


def assert_sdk_model(model: type[BaseModel], data: dict) -> BaseModel:
    parsed = model.model_validate(data, strict=False)
    unknown = [path for path in _extras(parsed) if path not in EXTENSIONS]
    assert unknown == [], f"fields the SDK does not know: {unknown}"
    return parsed


def assert_error_shape(data: dict) -> ErrorObject:
    assert set(data) == {"error"}
    assert set(data["error"]) == {"message", "type", "param", "code"}
    error = ErrorObject.model_validate(data["error"], strict=False)
    assert error.message and error.type
    assert data["error"]["param"] is None or isinstance(data["error"]["param"], str)
    assert data["error"]["code"] is None or isinstance(data["error"]["code"], str)
    return error


@pytest.fixture
def demo_route(transactional_db):
    """A deployment on the built-in demo provider (kind "mock"): answers offline, without the mock upstream."""

    def make(model: str = "gpt-demo"):
        return DeploymentFactory(model_name=model, provider=ProviderFactory(kind="mock", base_url=""))

    return make


# --- 1. Requests the SDK's types accept ------------------------------------------------------------------------


def test_the_corpus_covers_what_it_claims():
    roles = {m["role"] for b in CORPUS.values() for m in b["messages"]}
    assert roles == {"system", "developer", "user", "assistant", "tool", "function"}
    parts = {
        p["type"]
        for b in CORPUS.values()
        for m in b["messages"]
        if isinstance(m.get("content"), list)
        for p in m["content"]
    }
    assert {"text", "image_url", "input_audio", "file", "refusal"} <= parts
    choices = [b["tool_choice"] for b in CORPUS.values() if "tool_choice" in b]
    assert {"none", "auto", "required"} <= {c for c in choices if isinstance(c, str)}
    assert {"function", "custom", "allowed_tools"} <= {c["type"] for c in choices if isinstance(c, dict)}
    formats = {b["response_format"]["type"] for b in CORPUS.values() if "response_format" in b}
    assert formats == {"text", "json_object", "json_schema"}
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_sdk_request_types_accept_each_corpus_body(name):
    assert_sdk_accepts_request(CORPUS[name])


def test_the_sdk_check_is_not_vacuous():
    """The lazy Iterable fields are really walked: a bad role deep in the list is refused."""
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError
        assert_sdk_accepts_request(body(USER, {"role": "robot", "content": "x"}))
    with pytest.raises(Exception):  # noqa: B017
        assert_sdk_accepts_request(body({"role": "user", "content": [{"type": "image_url", "text": 5}]}))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_greengate_parses_each_body_the_sdk_accepts(name):
    payload = CORPUS[name]
    request = parse_chat_request(json.dumps(payload).encode())
    assert request.model == MODEL
    assert len(request.messages) == len(payload["messages"])


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_body_goes_through_the_gateway_and_is_forwarded_intact(gateway, api_key, route, upstream, name):
    route(MODEL)
    payload = CORPUS[name]
    if payload.get("stream"):
        response, events = stream(gateway, api_key, payload)
        assert response.status_code == 200, response.text
        assert events[-1] == "[DONE]"
    else:
        response = post(gateway, api_key, payload)
        assert response.status_code == 200, response.text
    forwarded = upstream.requests[-1]["body"]
    assert forwarded["model"] == MODEL
    assert_forwarded_intact(payload, forwarded)


def test_unknown_fields_inside_a_content_part_are_forwarded(gateway, api_key, route, upstream):
    route(MODEL)
    part = {"type": "text", "text": "long context", "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "30m"}}
    payload = body({"role": "user", "content": [part]})
    assert_sdk_accepts_request(payload)
    assert post(gateway, api_key, payload).status_code == 200
    assert upstream.requests[-1]["body"]["messages"] == payload["messages"]


# --- 2. Answers the SDK's models accept ------------------------------------------------------------------------


def check_json_answer(response: httpx.Response) -> ChatCompletion:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    completion = assert_sdk_model(ChatCompletion, response.json())
    assert completion.object == "chat.completion"
    assert completion.choices and completion.choices[0].message.role == "assistant"
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    return completion


def check_stream_answer(
    response: httpx.Response, events: list[Any], *, include_usage: bool
) -> list[ChatCompletionChunk]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    chunks = [assert_sdk_model(ChatCompletionChunk, e) for e in events[:-1]]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    if include_usage:
        *body_chunks, last = chunks
        # OpenAI's convention: "usage": null on every chunk, then one last chunk with no choices and the usage.
        assert all("usage" in e and e["usage"] is None for e in events[: len(body_chunks)])
        assert all(c.choices for c in body_chunks)
        assert last.choices == [] and last.usage is not None
        assert last.usage.completion_tokens > 0 and last.usage.prompt_tokens > 0
        assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    else:
        assert all(e.get("usage") is None for e in events[:-1])
        assert all(c.choices for c in chunks)
    return chunks


ASK = {"messages": [{"role": "user", "content": "Tell me about GreenGate"}]}


def test_demo_provider_json_answer_is_a_valid_sdk_chat_completion(gateway, api_key, demo_route):
    demo_route("gpt-demo")
    completion = check_json_answer(post(gateway, api_key, {"model": "gpt-demo", **ASK}))
    assert "demo provider" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
def test_demo_provider_stream_chunks_are_valid_sdk_chunks(gateway, api_key, demo_route, include_usage):
    demo_route("gpt-demo")
    payload = {"model": "gpt-demo", "stream": True, **ASK}
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    response, events = stream(gateway, api_key, payload)
    check_stream_answer(response, events, include_usage=include_usage)


def test_openai_adapter_json_answer_is_a_valid_sdk_chat_completion(gateway, api_key, route):
    route(MODEL)
    completion = check_json_answer(post(gateway, api_key, {"model": MODEL, **ASK}))
    assert completion.choices[0].message.content == "Mock reply to: Tell me about GreenGate"


def test_openai_adapter_json_answer_without_upstream_usage_still_validates(gateway, api_key, route):
    route(MODEL, no_usage=1)
    completion = check_json_answer(post(gateway, api_key, {"model": MODEL, **ASK}))
    assert completion.usage.completion_tokens > 0


@pytest.mark.parametrize("no_usage", [False, True], ids=["upstream-usage", "upstream-no-usage"])
@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
def test_openai_adapter_stream_chunks_are_valid_sdk_chunks(gateway, api_key, route, include_usage, no_usage):
    route(MODEL, **({"no_usage": 1} if no_usage else {}))
    payload = {"model": MODEL, "stream": True, **ASK}
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    response, events = stream(gateway, api_key, payload)
    chunks = check_stream_answer(response, events, include_usage=include_usage)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply to: Tell me about GreenGate"


@pytest.mark.parametrize("stream_it", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("case", "status"),
    [("bad_body", 400), ("bad_key", 401), ("unknown_model", 404), ("upstream_500", 502)],
)
def test_error_bodies_have_openai_error_shape(gateway, api_key, route, case, status, stream_it):
    route(MODEL, **({"status": 500} if case == "upstream_500" else {}))
    payload = {"model": "nope" if case == "unknown_model" else MODEL, **ASK}
    if case == "bad_body":
        payload["messages"] = [{"role": "user", "content": [{"type": "image_url", "text": 5}]}]
    if stream_it:
        payload["stream"] = True
    key = "gg-not-a-key" if case == "bad_key" else api_key
    response = post(gateway, key, payload)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert_error_shape(response.json())


@pytest.mark.parametrize(
    ("path", "key", "status"),
    [("/v1/models", "gg-not-a-key", 401), ("/v1/models/no-such-model", None, 404), ("/v1/nope", None, 404)],
)
def test_model_and_path_errors_have_openai_error_shape(gateway, api_key, path, key, status):
    response = httpx.get(gateway.url + path, headers={"Authorization": f"Bearer {key or api_key}"}, timeout=30)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert_error_shape(response.json())


def test_an_in_stream_error_event_has_openai_error_shape(gateway, api_key, route):
    route(MODEL, drop_after=2)
    response, events = stream(gateway, api_key, {"model": MODEL, "stream": True, **ASK})
    assert response.status_code == 200
    assert "[DONE]" not in events
    for event in events[:-1]:
        assert_sdk_model(ChatCompletionChunk, event)
    assert_error_shape(events[-1])


def test_the_sdk_raises_on_an_in_stream_error_event_rather_than_ending_quietly(gateway, api_key, route):
    route(MODEL, drop_after=2)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=api_key, max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model=MODEL, messages=[USER], stream=True):
            received.append(chunk)
    assert received  # the words before the failure were relayed
    assert caught.value.message


def test_the_sdk_raises_its_own_typed_error_for_a_gateway_400(gateway, api_key, route):
    route(MODEL)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=api_key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=10**9)
    assert caught.value.code == "invalid_value"
    assert caught.value.param == "max_tokens"


def test_the_unknown_field_check_is_not_vacuous():
    completion = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi", "x": 1}}],
    }
    assert list(_extras(ChatCompletion.model_validate(completion))) == ["$.choices[0].message.x"]


def test_the_model_list_is_a_valid_sdk_page_of_models(gateway, api_key, route, demo_route):
    route(MODEL)
    demo_route("gpt-demo")
    response = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "list"
    models = [assert_sdk_model(Model, card) for card in data["data"]]
    assert {MODEL, "gpt-demo"} <= {m.id for m in models}
    one = httpx.get(gateway.url + "/v1/models/gpt-demo", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert assert_sdk_model(Model, one.json()).id == "gpt-demo"
    assert {m.id for m in sdk(gateway, api_key).models.list()} >= {MODEL, "gpt-demo"}


# --- 3. The official SDK drives the gateway --------------------------------------------------------------------


def sdk(gateway, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=api_key, max_retries=0)


def test_sdk_plain_completion_through_the_demo_provider(gateway, api_key, demo_route, ledger_row):
    demo_route("gpt-demo")
    raw = sdk(gateway, api_key).chat.completions.with_raw_response.create(
        model="gpt-demo", messages=[{"role": "user", "content": "hello demo"}]
    )
    completion = raw.parse()
    assert 'You said: "hello demo"' in completion.choices[0].message.content
    assert completion.usage.completion_tokens > 0
    assert ledger_row(raw.headers["x-request-id"]).status_code == 200


def test_sdk_stream_with_usage_through_the_openai_adapter(gateway, api_key, route, ledger_row):
    route(MODEL)
    with sdk(gateway, api_key).chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Mock reply to: stream please"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    entry = ledger_row(request_id)
    assert entry.completion_tokens == chunks[-1].usage.completion_tokens


def test_sdk_tool_call_turn_is_forwarded_intact(gateway, api_key, route, upstream):
    route(MODEL)
    messages = [
        {"role": "system", "content": "You can call tools."},
        USER,
        {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp": 21, "unit": "c"}'},
    ]
    tool_choice = {"type": "function", "function": {"name": "get_weather"}}
    completion = sdk(gateway, api_key).chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
        parallel_tool_calls=False,
        extra_body={"future_field": {"x": 1}},
    )
    assert completion.choices[0].message.content == "Mock reply to: What is the weather in Paris?"
    forwarded = upstream.requests[-1]["body"]
    assert _without_nulls(forwarded["messages"]) == _without_nulls(messages)
    assert forwarded["messages"][2]["tool_calls"] == [TOOL_CALL]
    assert forwarded["tools"] == [WEATHER_TOOL]
    assert forwarded["tool_choice"] == tool_choice
    assert forwarded["parallel_tool_calls"] is False
    assert forwarded["future_field"] == {"x": 1}


def test_sdk_parse_with_a_pydantic_response_format_is_forwarded_as_json_schema(gateway, api_key, route, upstream):
    """The SDK's structured-output helper builds a strict json_schema; GreenGate passes it on unchanged."""

    class Weather(BaseModel):
        temp: float

    route(MODEL)
    client = sdk(gateway, api_key)
    # The mock's reply is not JSON, so parsing would fail; what matters is the request the SDK built.
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError from the SDK's parse
        client.chat.completions.parse(model=MODEL, messages=[USER], response_format=Weather)
    sent = upstream.requests[-1]["body"]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Weather"
    assert sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["properties"] == {"temp": {"title": "Temp", "type": "number"}}
