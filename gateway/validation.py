"""Request bodies into typed requests, once; anything malformed becomes a 400 whose `param` is the path."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from django.conf import settings

from gateway.errors import GatewayError, invalid_request
from gateway.schemas import KNOWN_REQUEST_FIELDS, ChatRequest

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


def parse_chat_request(body: bytes) -> ChatRequest:
    data = decode_object(body)
    known: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for name, value in data.items():
        (known if name in KNOWN_REQUEST_FIELDS else passthrough)[name] = value
    known["passthrough"] = passthrough
    known["raw"] = data
    try:
        request = msgspec.convert(known, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    _check_limits(request)
    return request


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
        return invalid_request(f"'{param}' must not be empty.", param=param or None, code="empty_array")
    where = f" for '{param}'" if param else ""
    if what.startswith("Expected `") and ", got `" in what:
        return invalid_request(
            f"Invalid type{where}: {what[0].lower()}{what[1:]}.", param=param or None, code="invalid_type"
        )
    return invalid_request(f"Invalid value{where}: {what}.", param=param or None, code="invalid_value")
