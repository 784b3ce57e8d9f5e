"""Parse and validate an OpenAI chat completion body into a ChatRequest, or raise a 400 naming the param."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from gateway.errors import invalid_request
from providers.types import ChatRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# Parameters GreenGate itself interprets; every other key is passed through to the provider.
_OWN_KEYS = {"model", "messages", "stream", "stream_options"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _decode(body: bytes) -> dict[str, Any]:
    if not body:
        raise invalid_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_request("The request body is not valid UTF-8.", code="invalid_encoding") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise invalid_request(
            f"We could not parse the JSON body of your request: {exc.msg} at line {exc.lineno} column {exc.colno}.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return data


def _check_content(content: Any, role: str, where: str, *, optional: bool) -> None:
    if content is None:
        if optional:
            return
        raise invalid_request(f"Missing required parameter: '{where}'.", param=where, code="missing_required_parameter")
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise invalid_request(
            f"Invalid type for '{where}': expected a string or a non-empty array of content parts.",
            param=where,
            code="invalid_type",
        )
    for index, part in enumerate(content):
        part_where = f"{where}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid_request(
                f"Invalid content part at '{part_where}': expected an object with a string 'type'.",
                param=part_where,
                code="invalid_type",
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise invalid_request(
                f"Invalid type for '{part_where}.text': expected a string.",
                param=f"{part_where}.text",
                code="invalid_type",
            )


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise invalid_request(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise invalid_request(
            "Invalid type for 'messages': expected an array of messages.", param="messages", code="invalid_type"
        )
    if not messages:
        raise invalid_request("'messages' must contain at least one message.", param="messages", code="empty_array")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid_request(f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid_request(
                f"Invalid value for '{where}.role': {role!r}. Supported values are: {', '.join(sorted(ROLES))}.",
                param=f"{where}.role",
                code="invalid_value",
            )
        # An assistant turn that calls tools may carry no text.
        optional = role == "assistant" and bool(message.get("tool_calls") or message.get("function_call"))
        _check_content(message.get("content"), role, f"{where}.content", optional=optional)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise invalid_request(
                f"Missing required parameter: '{where}.tool_call_id'.",
                param=f"{where}.tool_call_id",
                code="missing_required_parameter",
            )
        if "name" in message and not isinstance(message["name"], str):
            raise invalid_request(
                f"Invalid type for '{where}.name': expected a string.", param=f"{where}.name", code="invalid_type"
            )
    return messages


def _check_range(data: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False) -> None:
    value = data.get(name)
    if value is None:
        return
    if not (_is_int(value) if integer else _is_number(value)):
        kind = "an integer" if integer else "a number"
        raise invalid_request(f"Invalid type for '{name}': expected {kind}.", param=name, code="invalid_type")
    if not low <= value <= high:
        raise invalid_request(
            f"Invalid value for '{name}': {value} is outside the allowed range {low} to {high}.",
            param=name,
            code="invalid_value",
        )


def _max_tokens(data: dict[str, Any]) -> int | None:
    limit = settings.MAX_COMPLETION_TOKENS
    chosen = None
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if not _is_int(value):
            raise invalid_request(f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type")
        if value < 1 or value > limit:
            raise invalid_request(
                f"Invalid value for '{name}': {value}. It must be between 1 and {limit}.",
                param=name,
                code="invalid_value",
            )
        chosen = value if chosen is None else min(chosen, value)
    return chosen


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        return
    raise invalid_request(
        "Invalid value for 'stop': expected a string or an array of at most 4 strings.",
        param="stop",
        code="invalid_type",
    )


def parse_chat_request(body: bytes) -> ChatRequest:
    data = _decode(body)

    model = data.get("model")
    if model is None:
        raise invalid_request("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise invalid_request(
            "Invalid value for 'model': expected a non-empty string.", param="model", code="invalid_type"
        )

    messages = _check_messages(data.get("messages"))

    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request("Invalid type for 'stream': expected a boolean.", param="stream", code="invalid_type")
    stream = bool(stream)

    include_usage = False
    options = data.get("stream_options")
    if options is not None:
        if not stream:
            raise invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        if not isinstance(options, dict):
            raise invalid_request(
                "Invalid type for 'stream_options': expected an object.", param="stream_options", code="invalid_type"
            )
        usage_flag = options.get("include_usage")
        if usage_flag is not None and not isinstance(usage_flag, bool):
            raise invalid_request(
                "Invalid type for 'stream_options.include_usage': expected a boolean.",
                param="stream_options.include_usage",
                code="invalid_type",
            )
        include_usage = bool(usage_flag)

    max_tokens = _max_tokens(data)
    _check_range(data, "temperature", 0, 2)
    _check_range(data, "top_p", 0, 1)
    _check_range(data, "presence_penalty", -2, 2)
    _check_range(data, "frequency_penalty", -2, 2)
    _check_range(data, "n", 1, 128, integer=True)
    _check_stop(data.get("stop"))
    if "user" in data and data["user"] is not None and not isinstance(data["user"], str):
        raise invalid_request("Invalid type for 'user': expected a string.", param="user", code="invalid_type")

    params = {key: value for key, value in data.items() if key not in _OWN_KEYS}
    return ChatRequest(
        model=model, messages=messages, stream=stream, include_usage=include_usage, max_tokens=max_tokens, params=params
    )


def wants_stream(body: bytes) -> bool:
    """Whether a body asks for SSE; anything unreadable is left for full validation to report."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("stream") is True
