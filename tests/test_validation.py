"""Every malformed chat body is refused with a 400 that names what is wrong."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from gateway.errors import GatewayError
from gateway.schemas import AssistantMessage, FunctionTool, JSONSchemaFormat
from gateway.validation import parse_chat_request


def body(**fields) -> bytes:
    base = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def refusal(raw: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        parse_chat_request(raw)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


def test_a_minimal_request_parses():
    chat = parse_chat_request(body())
    assert (chat.model, chat.wants_stream, chat.include_usage, chat.output_limit) == ("gpt-test", False, False, None)


def test_known_parameters_are_typed_and_unknown_ones_pass_through_untouched():
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    chat = parse_chat_request(
        body(temperature=0.2, tools=[tool], response_format=fmt, reasoning_effort="low", brand_new={"a": [1]})
    )
    assert chat.temperature == 0.2
    assert isinstance(chat.tools[0], FunctionTool) and chat.tools[0].function.name == "get_weather"
    assert isinstance(chat.response_format, JSONSchemaFormat)
    assert chat.passthrough == {"brand_new": {"a": [1]}}


def test_stream_options_include_usage_is_read():
    chat = parse_chat_request(body(stream=True, stream_options={"include_usage": True}))
    assert chat.stream and chat.include_usage


@pytest.mark.parametrize(
    ("raw", "param", "fragment"),
    [
        (b"", None, "empty"),
        (b"{not json", None, "could not parse the JSON body"),
        (b'{"model": "x", "messages": [}', None, "could not parse the JSON body"),
        (b"\xff\xfe{}", None, "not valid UTF-8"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'"text"', None, "must be a JSON object"),
    ],
)
def test_unreadable_bodies_are_refused(raw, param, fragment):
    error = refusal(raw)
    assert error.param == param
    assert fragment in error.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ...}, "model"),
        ({"model": 42}, "model"),
        ({"model": ""}, "model"),
        ({"messages": ...}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": ["hello"]}, "messages[0]"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0].type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "text": 5}]}]},
            "messages[0].content[0].image_url",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, 3]}]}, "messages[0].content[1]"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        ({"model": "gpt\u0000x"}, "model"),
        ({"model": "x" * 201}, "model"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"seed": 2**70}, "seed"),
        ({"logit_bias": {"50256": 1000}}, "logit_bias[...]"),
        ({"metadata": {"a": 1}}, "metadata[...]"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**12}, "max_tokens"),
        ({"max_completion_tokens": -5}, "max_completion_tokens"),
        ({"temperature": 7}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 1.5}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"user": 5}, "user"),
    ],
)
def test_wrong_fields_are_refused_naming_the_param(fields, param):
    assert refusal(body(**fields)).param == param


def test_an_assistant_turn_calling_tools_may_have_no_content():
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    chat = parse_chat_request(body(messages=messages))
    assert isinstance(chat.messages[1], AssistantMessage) and chat.messages[1].tool_calls[0].function.name == "weather"


@override_settings(MAX_COMPLETION_TOKENS=1000)
def test_the_max_tokens_ceiling_comes_from_settings():
    assert parse_chat_request(body(max_tokens=1000)).max_tokens == 1000
    assert "between 1 and 1000" in refusal(body(max_tokens=1001)).message


def test_the_smaller_of_max_tokens_and_max_completion_tokens_applies():
    assert parse_chat_request(body(max_tokens=50, max_completion_tokens=20)).output_limit == 20


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": NaN}', "could not parse"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": Infinity}', "could not parse"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1e999}', "out of range"),
        (b'{"model": "m", "messages": [], "seed": ' + b"9" * 5000 + b"}", "out of range"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}', "could not parse"),
        (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    ],
)
def test_hostile_json_is_a_clean_400_not_a_crash(raw, fragment):
    assert fragment in refusal(raw).message


def test_every_role_and_content_part_parses():
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "function", "name": "f", "content": None},
    ]
    assert len(parse_chat_request(body(messages=messages)).messages) == 5
