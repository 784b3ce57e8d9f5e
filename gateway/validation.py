"""Request bodies into typed requests, once; anything malformed becomes a 400 whose `param` is the path."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from django.conf import settings

from gateway.errors import GatewayError, invalid_request
from gateway.schemas import KNOWN_EMBEDDING_FIELDS, KNOWN_REQUEST_FIELDS, ChatRequest, EmbeddingRequest

_decoder = msgspec.json.Decoder()
_AT_PATH = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def decode_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object. NaN, Infinity, numbers out of range and lone surrogates are refused here."""
    if not body.strip():
        raise invalid_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        data = _decoder.decode(body)
    except UnicodeDecodeError:
        raise invalid_request("The request body is not valid UTF-8.", code="invalid_encoding") from None
    except RecursionError:
        raise invalid_request("The request body is nested too deeply.", code="invalid_json") from None
    except msgspec.ValidationError as exc:
        # A number out of range, found while decoding: before any field is known, so no param to name.
        what = str(exc).split(" - at ", 1)[0]
        raise invalid_request(
            f"A number in the request body is out of range ({what.lower()}).", code="invalid_value"
        ) from None
    except msgspec.DecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_request("The request body is not valid UTF-8.", code="invalid_encoding") from None
        raise invalid_request(
            f"We could not parse the JSON body of your request: {exc}. "
            "(Lone surrogates, NaN and Infinity are not valid JSON.)",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return data


def _split(data: dict[str, Any], known_fields: frozenset[str]) -> dict[str, Any]:
    """The fields a request type knows, with the rest kept apart as `passthrough` and the whole as `raw`."""
    known: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for name, value in data.items():
        (known if name in known_fields else passthrough)[name] = value
    known["passthrough"] = passthrough
    known["raw"] = data
    return known


def parse_chat_request(body: bytes) -> ChatRequest:
    try:
        request = msgspec.convert(_split(decode_object(body), KNOWN_REQUEST_FIELDS), ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    _check_limits(request)
    return request


def parse_embedding_request(body: bytes) -> EmbeddingRequest:
    try:
        request = msgspec.convert(_split(decode_object(body), KNOWN_EMBEDDING_FIELDS), EmbeddingRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    _check_input_kinds(request)
    return request


def _check_input_kinds(request: EmbeddingRequest) -> None:
    """A list of inputs is all texts, all token ids, or all token-id lists: the types allow each item any of them."""
    value = request.input
    if isinstance(value, str):
        return
    first = type(value[0])
    for index, item in enumerate(value):
        if type(item) is not first:
            kinds = {str: "a string", int: "a token id", list: "a list of token ids"}
            raise invalid_request(
                f"Invalid type for 'input[{index}]': expected {kinds[first]} like 'input[0]', got {kinds[type(item)]}. "
                "'input' is a string, a list of strings, a list of token ids, or a list of token-id lists.",
                param=f"input[{index}]",
                code="invalid_type",
            )


def _check_limits(request: ChatRequest) -> None:
    """What the types cannot say: limits from settings, and fields that only make sense together."""
    limit = settings.MAX_COMPLETION_TOKENS
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(request, name)
        if value is not None and value > limit:
            raise invalid_request(
                f"Invalid value for '{name}': {value}. It must be between 1 and {limit}.",
                param=name,
                code="invalid_value",
            )
    if request.stream_options is not None and not request.stream:
        raise invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    if request.top_logprobs is not None and not request.logprobs:
        raise invalid_request(
            "'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs", code="invalid_value"
        )


def _invalid(exc: msgspec.ValidationError) -> GatewayError:
    """msgspec's "Expected `int`, got `str` - at `$.messages[2].content`" as OpenAI's 400."""
    match = _AT_PATH.match(str(exc))
    what = match.group("what") if match else str(exc)
    path = (match.group("path") or "") if match else ""
    param = path[1:] if path.startswith(".") else path
    missing = _MISSING.match(what)
    if missing:
        field = f"{param}.{missing['field']}" if param else missing["field"]
        return invalid_request(
            f"Missing required parameter: '{field}'.", param=field, code="missing_required_parameter"
        )
    if what.endswith("of length >= 1"):
        code = "empty_string" if what.startswith("Expected `str`") else "empty_array"
        return invalid_request(f"'{param}' must not be empty.", param=param or None, code=code)
    where = f" for '{param}'" if param else ""
    if what.startswith("Expected `") and ", got `" in what:
        return invalid_request(
            f"Invalid type{where}: {what[0].lower()}{what[1:]}.", param=param or None, code="invalid_type"
        )
    return invalid_request(f"Invalid value{where}: {what}.", param=param or None, code="invalid_value")
