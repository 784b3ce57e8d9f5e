"""Every malformed chat body is refused with a 400 that names what is wrong."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from gateway.errors import GatewayError
from gateway.validation import parse_chat_request, wants_stream


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
    assert (chat.model, chat.stream, chat.include_usage, chat.max_tokens) == ("gpt-test", False, False, None)


def test_unknown_openai_parameters_pass_through_untouched():
    chat = parse_chat_request(body(temperature=0.2, tools=[{"type": "function"}], response_format={"type": "json"}))
    assert chat.params == {"temperature": 0.2, "tools": [{"type": "function"}], "response_format": {"type": "json"}}


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
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0]"),
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
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert len(parse_chat_request(body(messages=messages)).messages) == 3


@override_settings(MAX_COMPLETION_TOKENS=1000)
def test_the_max_tokens_ceiling_comes_from_settings():
    assert parse_chat_request(body(max_tokens=1000)).max_tokens == 1000
    assert "between 1 and 1000" in refusal(body(max_tokens=1001)).message


def test_the_smaller_of_max_tokens_and_max_completion_tokens_applies():
    assert parse_chat_request(body(max_tokens=50, max_completion_tokens=20)).max_tokens == 20


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(body(stream=True), True), (body(stream=False), False), (body(), False), (b"{broken", False), (b"\xff", False)],
)
def test_wants_stream_only_for_a_readable_true(raw, expected):
    assert wants_stream(raw) is expected
