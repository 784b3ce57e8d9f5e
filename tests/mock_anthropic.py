"""The Anthropic Messages wire format for the mock upstream: `POST {prefix}/v1/messages`, JSON and SSE.

Payloads are built from the official SDK's types (`anthropic.types`) and validated against them before they are
sent, and every request body is validated against `MessageCreateParams`: the result is kept in the recorded
request (`anthropic_valid`, `anthropic_errors`), and an invalid body gets Anthropic's own 400.

Answers, like `openai_chat`'s: text from the last user text (or the `words` knob), cut at `max_tokens`
(stop_reason max_tokens). With `tools` and a plain user message last, a `tool_use` of the forced or first tool,
its input sampled from the tool's schema; with a `tool_result` last, text quoting the result. `no_usage` zeroes
the counts (Anthropic always sends usage, so there is nothing to omit).

Anthropic-only options ride in a path segment after the knobs, `{prefix}/claude/{k=v,...}/v1/messages`:
  cache_read=N, cache_write=N   report N prompt-cache read / written tokens
  error_event=TYPE              after the first content delta, send an `error` event of TYPE and stop
  replay=FILE                   answer with tests/fixtures/anthropic/FILE as it is (.json, or .sse frames)
Shared knobs that look at `Authorization` (require_key) see the request's `x-api-key` as a bearer token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from anthropic.types import (
    InputJSONDelta,
    Message,
    MessageCreateParams,
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
    Usage,
)
from anthropic.types.raw_message_delta_event import Delta as MessageDelta
from anthropic.types.shared import ErrorResponse
from multidict import CIMultiDict
from pydantic import ConfigDict, TypeAdapter, ValidationError

from tests import mock_upstream
from tests.mock_upstream import JSON, Exchange, Frame, count_tokens, reply_pieces, wire_route

# Extra fields forbidden, so a misspelt or invented parameter fails as it would at Anthropic.
REQUEST_TYPES: TypeAdapter[Any] = TypeAdapter(MessageCreateParams, config=ConfigDict(extra="forbid"))
EVENT_TYPES: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
# Sampling fields the live API still takes for models up to Opus 4.6, though SDK 2.14's types no longer list them.
LEGACY_FIELDS = ("temperature", "top_p", "top_k")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "anthropic"
_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> bytes:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}
    return json.dumps(ErrorResponse.model_validate(body).model_dump(mode="json", exclude_none=True)).encode()


def _materialize(value: Any) -> Any:
    """pydantic validates `Iterable[...]` fields lazily: walk them so every nested block is checked."""
    if isinstance(value, dict):
        return {k: _materialize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_materialize(v) for v in value]
    if isinstance(value, Iterator):
        return [_materialize(v) for v in value]
    return value


def validate_request(body: Any) -> list[str]:
    """Why `body` is not a valid Messages request (empty if it is), by the SDK's MessageCreateParams."""
    if not isinstance(body, dict):
        return ["body: not a JSON object"]
    checked = {k: v for k, v in body.items() if k not in LEGACY_FIELDS}
    try:
        _materialize(REQUEST_TYPES.validate_python(checked))
    except ValidationError as exc:
        # The union reports both branches; keep the one this body is (streaming or not), else all.
        branch = "MessageCreateParamsStreaming" if body.get("stream") else "MessageCreateParamsNonStreaming"
        found = [e for e in exc.errors() if not e["loc"] or e["loc"][0] != _other(branch)]
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in found][:10] or [str(exc)[:500]]
    return []


def _other(branch: str) -> str:
    return (
        "MessageCreateParamsNonStreaming"
        if branch == "MessageCreateParamsStreaming"
        else "MessageCreateParamsStreaming"
    )


def _record(ex: Exchange, body: Any, problems: list[str]) -> None:
    # wire_route recorded this request already; attach the verdict to that same entry.
    with ex.state.cond:
        for entry in reversed(ex.state.requests):
            if entry["body"] is body:
                entry["anthropic_valid"] = not problems
                entry["anthropic_errors"] = problems
                break


def _options(spec: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        name, _, value = item.partition("=")
        if name in ("cache_read", "cache_write"):
            options[name] = int(value)
        elif name == "error_event":
            options[name] = value
        elif name == "replay" and re.fullmatch(r"[\w-]+\.(json|sse)", value):
            options[name] = value
        else:
            raise ValueError(f"unknown Anthropic mock option {name!r}")
    return options


def block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            texts.append(block_text(block.get("content")))
    return " ".join(texts)


def _sample(schema: Any) -> Any:
    """A small value that fits a JSON schema, so a tool call's input (or a JSON answer) is schema-shaped."""
    if not isinstance(schema, dict):
        return {}
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: _sample(sub) for name, sub in props.items()} if isinstance(props, dict) else {}
    return {"string": "mock", "integer": 1, "number": 1.5, "boolean": True, "array": [], "null": None}.get(
        kind if isinstance(kind, str) else "", "mock"
    )


def _has_tool_result(message: JSON) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def _tool_to_call(body: JSON, last: JSON) -> JSON | None:
    """The tool this turn answers with, or None for a text answer."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    choice = body.get("tool_choice") or {}
    if not tools or last.get("role") != "user" or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        return next((t for t in tools if t.get("name") == choice.get("name")), tools[0])
    if _has_tool_result(last):
        # After a result the model answers in text, unless it must call a tool: then the last one offered.
        return tools[-1] if choice.get("type") == "any" else None
    return tools[0]


def _usage(body: JSON, options: dict[str, Any], output: int, no_usage: bool) -> Usage:
    messages = body.get("messages") or []
    prompt = sum(count_tokens(block_text(m.get("content"))) + 3 for m in messages if isinstance(m, dict))
    prompt += count_tokens(block_text(body.get("system") or ""))
    if no_usage:
        return Usage(input_tokens=0, output_tokens=0)
    usage = Usage(input_tokens=prompt, output_tokens=output)
    if "cache_read" in options:
        usage.cache_read_input_tokens = options["cache_read"]
    if "cache_write" in options:
        usage.cache_creation_input_tokens = options["cache_write"]
    return usage


def _frame(event: Any) -> bytes:
    payload = event.model_dump(mode="json", exclude_unset=True)
    EVENT_TYPES.validate_python(payload)  # what the mock sends is what the SDK would accept
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


def _pieces(text: str) -> list[str]:
    # Leading whitespace stays with each piece, so the deltas join back to exactly the text.
    return _PIECE_RE.findall(text)


def _json_pieces(text: str) -> list[str]:
    # Real input_json_delta fragments split anywhere, not at token boundaries: three cuts show that.
    step = max(1, len(text) // 3)
    return [text[i : i + step] for i in range(0, len(text), step)]


async def anthropic_messages(ex: Exchange, body: Any) -> web.StreamResponse:
    problems = validate_request(body)
    _record(ex, body, problems)
    if problems:
        return await ex.send(anthropic_error(400, problems[0]), 400)
    try:
        options = _options(ex.request.match_info.get("claude", ""))
    except ValueError as exc:
        return await ex.send(anthropic_error(400, str(exc)), 400)
    if "replay" in options:
        return await _replay(ex, options["replay"])
    messages = body["messages"]
    last = messages[-1] if messages else {}
    users = [m for m in messages if m.get("role") == "user"]
    tool = _tool_to_call(body, last)
    msg_id = f"msg_mock{ex.n:06d}"
    model = str(body.get("model"))
    no_usage = bool(ex.knobs.get("no_usage"))

    if tool is not None:
        call = ToolUseBlock(
            type="tool_use", id=f"toolu_mock{ex.n:06d}", name=tool["name"], input=_sample(tool.get("input_schema"))
        )
        arguments = json.dumps(call.input)
        content: list[Any] = [call]
        stop, output = "tool_use", count_tokens(arguments) + 5
    else:
        if _has_tool_result(last):
            pieces = _pieces(f'The tool said: "{block_text(last.get("content"))}"')
        else:
            pieces = reply_pieces(block_text(users[-1].get("content")) if users else "", ex.knobs.get("words"))
        stop = "end_turn"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and len(pieces) > limit:
            pieces, stop = pieces[: max(limit, 0)], "max_tokens"
        content, output = [TextBlock(type="text", text="".join(pieces))], len(pieces)
    usage = _usage(body, options, output, no_usage)

    if not body.get("stream"):
        message = Message(
            id=msg_id,
            type="message",
            role="assistant",
            model=model,
            content=content,
            stop_reason=stop,
            stop_sequence=None,
            usage=usage,
        )
        payload = message.model_dump(mode="json", exclude_unset=True)
        Message.model_validate(payload)
        return await ex.reply(payload)

    start_usage = usage.model_copy(update={"output_tokens": 1 if not no_usage else 0})
    start = Message(
        id=msg_id,
        type="message",
        role="assistant",
        model=model,
        content=[],
        stop_reason=None,
        stop_sequence=None,
        usage=start_usage,
    )
    frames: list[Frame] = [
        (_frame(RawMessageStartEvent(type="message_start", message=start)), False),
        (b'event: ping\ndata: {"type": "ping"}\n\n', False),
    ]
    if tool is not None:
        block = ToolUseBlock(type="tool_use", id=content[0].id, name=content[0].name, input={})
        frames.append(
            (_frame(RawContentBlockStartEvent(type="content_block_start", index=0, content_block=block)), False)
        )
        for piece in _json_pieces(json.dumps(content[0].input)):
            delta = InputJSONDelta(type="input_json_delta", partial_json=piece)
            frames.append((_frame(RawContentBlockDeltaEvent(type="content_block_delta", index=0, delta=delta)), True))
    else:
        text_block = TextBlock(type="text", text="")
        event = RawContentBlockStartEvent(type="content_block_start", index=0, content_block=text_block)
        frames.append((_frame(event), False))
        for piece in _pieces(content[0].text):
            delta_event = RawContentBlockDeltaEvent(
                type="content_block_delta", index=0, delta=TextDelta(type="text_delta", text=piece)
            )
            frames.append((_frame(delta_event), True))
    if "error_event" in options:
        failure = {"type": "error", "error": {"type": options["error_event"], "message": "Overloaded"}}
        ErrorResponse.model_validate(failure)
        at = next((i for i, (_, is_content) in enumerate(frames) if is_content), len(frames) - 1) + 1
        frames.insert(at, (f"event: error\ndata: {json.dumps(failure)}\n\n".encode(), False))
        return await ex.stream(frames[: at + 1])
    frames.append((_frame(RawContentBlockStopEvent(type="content_block_stop", index=0)), False))
    final_usage = MessageDeltaUsage(
        output_tokens=usage.output_tokens,
        input_tokens=usage.input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
    )
    delta_event2 = RawMessageDeltaEvent(
        type="message_delta", delta=MessageDelta(stop_reason=stop, stop_sequence=None), usage=final_usage
    )
    frames.append((_frame(delta_event2), False))
    frames.append((_frame(RawMessageStopEvent(type="message_stop")), False))
    return await ex.stream(frames)


async def _replay(ex: Exchange, name: str) -> web.StreamResponse:
    raw = (FIXTURES / name).read_text()
    if name.endswith(".json"):
        return await ex.reply(json.loads(raw))
    frames = [(f"{frame.strip()}\n\n".encode(), "content_block_delta" in frame) for frame in raw.split("\n\n")]
    return await ex.stream([frame for frame in frames if frame[0].strip()])


def _with_api_key_as_bearer(
    route: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("x-api-key")
        if key is not None and "Authorization" not in request.headers:
            # The shared require_key knob reads Authorization; Anthropic's key travels in x-api-key.
            headers = CIMultiDict(request.headers)
            headers["Authorization"] = f"Bearer {key}"
            request = request.clone(headers=headers)
        return await route(request)

    return handle


def add_anthropic_routes(app: web.Application, prefix: str) -> None:
    if mock_upstream.STATE not in app:
        # Run as `python -m tests.mock_upstream`, the app was keyed by the __main__ copy of that module.
        for key in list(app):
            if type(app[key]).__name__ == "_State":
                app[mock_upstream.STATE] = app[key]
    route = _with_api_key_as_bearer(wire_route(anthropic_messages, anthropic_error))
    app.router.add_post(f"{prefix}/v1/messages", route)
    app.router.add_post(f"{prefix}/claude/{{claude}}/v1/messages", route)
