"""Cohere's v2 Chat and Embed wire formats for the mock upstream: POST {prefix}/v2/chat (JSON and server-sent
events) and POST {prefix}/v2/embed (float vectors from ``mock_embedding``, tokens in ``meta.billed_units``; each
body checked against the SDK's embed signature and the rules Cohere documents, recorded as for chat).

Payloads are built from the official SDK's types (``cohere`` 7.3.1) and checked against them before they are
sent; each request body is checked against the SDK's own v2 chat request signature, and the verdict is kept
on the recorded request as ``entry["cohere"] = {"valid": bool, "errors": [...]}``. An invalid request is
answered 400, as Cohere would.

How it answers: text quoting the last user message ("Mock reply to: ..."); with ``tools`` and a user message
last, a call to the first tool (TOOL_CALL); with a tool result last, text quoting that result; with a JSON
response format, a JSON object (shaped by the schema when given). The upstream models in ``RECORDED`` replay
payloads saved under ``tests/fixtures/cohere/`` verbatim.
"""

from __future__ import annotations

import inspect
import json
import sys
import typing
import uuid
from pathlib import Path
from typing import Any

import cohere
import pydantic
from aiohttp import web
from cohere.v2.raw_client import RawV2Client

# Run as `python -m tests.mock_upstream` (the bench), the server module is __main__: importing it by name would
# load a second copy whose app key the running server does not hold, so this module shares the running one.
_main = sys.modules.get("__main__")
if getattr(getattr(_main, "__spec__", None), "name", None) == "tests.mock_upstream":
    sys.modules.setdefault("tests.mock_upstream", _main)

from tests.mock_upstream import (  # noqa: E402
    _PIECE_RE,
    JSON,
    STATE,
    Exchange,
    Frame,
    count_tokens,
    mock_embedding,
    reply_pieces,
    wire_route,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cohere"
# Upstream model names that replay saved payloads: (JSON answer, stream).
RECORDED = {
    "recorded": ("chat_response.json", "chat_stream.sse"),
    "recorded-error": ("chat_response.json", "chat_stream_error.sse"),
    "recorded-cut": ("chat_response.json", "chat_stream_cut.sse"),  # ends cleanly, without message-end
}

# --- Requests, checked against the SDK's declared request shape -----------------------------------------------


def _request_model(method: Any, name: str, **extra: Any) -> type[pydantic.BaseModel]:
    """A pydantic model of a v2 request, from the SDK's own method signature (it has no request types)."""
    hints = typing.get_type_hints(method, include_extras=True)
    fields: dict[str, Any] = {}
    for param_name, param in inspect.signature(method).parameters.items():
        if param_name in ("self", "request_options"):
            continue
        required = param.default is inspect.Parameter.empty
        fields[param_name] = (hints[param_name], ... if required else None)
    fields.update(extra)
    return pydantic.create_model(
        name, __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields
    )


_REQUEST = _request_model(RawV2Client.chat, "V2ChatRequest", stream=(bool, False))
_EMBED_REQUEST = _request_model(RawV2Client.embed, "V2EmbedRequest")
_EMBED_RESPONSE = pydantic.TypeAdapter(cohere.EmbedByTypeResponse)
_RESPONSE = pydantic.TypeAdapter(cohere.V2ChatResponse)
_STREAM_EVENT = pydantic.TypeAdapter(cohere.StreamedChatResponseV2)

# Ranges the SDK documents in words but not in types.
_BOUNDS = {"p": (0.01, 0.99), "frequency_penalty": (0.0, 1.0), "presence_penalty": (0.0, 1.0), "k": (0, 500)}


def _extra_fields(value: Any, path: str) -> list[str]:
    """Fields the SDK's models do not declare: they accept them (extra="allow"), Cohere's API would not."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found += [f"{path}.{name}: unknown field" for name in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extra_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found += _extra_fields(item, f"{path}[{i}]")
    return found


def validate_request(body: Any) -> list[str]:
    """What is wrong with a v2 chat request body, per the SDK's types and documented rules; [] if nothing."""
    try:
        request = _REQUEST.model_validate(body)
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    problems = _extra_fields(request, "body")
    for name, (low, high) in _BOUNDS.items():
        value = getattr(request, name)
        if value is not None and not low <= value <= high:
            problems.append(f"{name}: {value} is outside {low}..{high}")
    if request.stop_sequences is not None and len(request.stop_sequences) > 5:
        problems.append("stop_sequences: at most 5")
    if request.tool_choice is not None and not request.tools:
        problems.append("tool_choice: needs tools")
    called: set[str] = set()
    for i, message in enumerate(request.messages):
        if isinstance(message, cohere.AssistantChatMessageV2):
            called |= {call.id for call in message.tool_calls or ()}
        if isinstance(message, cohere.ToolChatMessageV2) and message.tool_call_id not in called:
            problems.append(f"messages[{i}].tool_call_id: no earlier tool call has id {message.tool_call_id!r}")
    return problems


def _record(ex: Exchange, body: Any, problems: list[str]) -> None:
    # wire_route recorded this request as a dict holding this very body object: find it by identity.
    state = ex.request.app[STATE]
    with state.cond:
        for entry in reversed(state.requests):
            if entry["body"] is body:
                entry["cohere"] = {"valid": not problems, "errors": problems}
                break


# --- Answers ---------------------------------------------------------------------------------------------------


def cohere_error(status: int, message: str) -> bytes:
    return json.dumps({"id": str(uuid.uuid4()), "message": message}).encode()


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def sample(schema: Any) -> Any:
    """A value that fits a (simple) JSON schema, so structured-output answers are well-formed."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample(schema.get("items"))]
    return {"string": "mock", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def _usage(messages: list[JSON], output: int, no_usage: bool) -> cohere.Usage | None:
    if no_usage:
        return None
    billed = sum(count_tokens(text_of(m.get("content"))) for m in messages)
    system = sum(count_tokens(text_of(m.get("content"))) for m in messages if m.get("role") == "system")
    return cohere.Usage(
        billed_units=cohere.UsageBilledUnits(input_tokens=billed, output_tokens=output),
        # What the model processed: the billed prompt plus Cohere's own template around each message.
        tokens=cohere.UsageTokens(input_tokens=billed + 3 * len(messages), output_tokens=output),
        # The system prompt is the stable prefix a prompt cache would hold.
        cached_tokens=system or None,
    )


def _wire(value: Any) -> Any:
    """An SDK model's dump as Cohere's JSON has it: no nulls, and counts as integers (the SDK types them float)."""
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _event(model: pydantic.BaseModel, content: bool = False) -> Frame:
    payload = _wire(model)
    checked = _STREAM_EVENT.validate_python(payload)
    assert type(checked) is type(model), f"{payload} does not validate as {type(model).__name__}"
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode(), content


def _text_answer(ex: Exchange, body: JSON, messages: list[JSON]) -> tuple[list[str], str]:
    last = messages[-1]
    fmt = body.get("response_format") or {}
    if last.get("role") == "tool":
        text = "The tool said: " + text_of(last.get("content"))
    elif fmt.get("type") == "json_object":
        schema = fmt.get("json_schema")
        text = json.dumps(sample(schema) if schema else {"reply": "mock"})
    else:
        users = [m for m in messages if m.get("role") == "user"]
        return _limit(body, reply_pieces(text_of(users[-1].get("content")) if users else "", ex.knobs.get("words")))
    return _limit(body, _PIECE_RE.findall(text))


def _limit(body: JSON, pieces: list[str]) -> tuple[list[str], str]:
    text, finish = "".join(pieces), "COMPLETE"
    for stop in body.get("stop_sequences") or ():
        if stop and stop in text:
            text, finish = text[: text.index(stop)], "STOP_SEQUENCE"
            pieces = _PIECE_RE.findall(text)
    limit = body.get("max_tokens")
    if isinstance(limit, int) and len(pieces) > limit:
        pieces, finish = pieces[:limit], "MAX_TOKENS"
    return pieces, finish


async def cohere_chat(ex: Exchange, body: Any) -> web.StreamResponse:
    problems = validate_request(body)
    _record(ex, body, problems)
    if problems:
        return await ex.send(cohere_error(400, "invalid request: " + "; ".join(problems)), 400)
    if body["model"] in RECORDED:
        return await _replay(ex, body["model"], bool(body.get("stream")))
    messages: list[JSON] = body["messages"]
    no_usage = bool(ex.knobs.get("no_usage"))
    tools = body.get("tools") or []
    answer_id = f"mock-cohere-{ex.n}"
    if tools and messages[-1].get("role") == "user" and body.get("tool_choice") != "NONE":
        function = tools[0]["function"]
        arguments = json.dumps(sample(function.get("parameters")) or {})
        call = cohere.ToolCallV2(
            id=f"mockcall-{ex.n}", function=cohere.ToolCallV2Function(name=function["name"], arguments=arguments)
        )
        plan = f"I will call {function['name']}."
        usage = _usage(messages, count_tokens(plan + function["name"] + arguments), no_usage)
        if not body.get("stream"):
            message = cohere.AssistantMessageResponse(tool_plan=plan, tool_calls=[call])
            return await _reply(
                ex, cohere.V2ChatResponse(id=answer_id, finish_reason="TOOL_CALL", message=message, usage=usage)
            )
        frames = [_start(answer_id), _event(_plan_delta(plan))]
        frames.append(_event(_call_start(call)))
        frames += [_event(_call_delta(piece), True) for piece in _PIECE_RE.findall(arguments)]
        frames += [_event(cohere.ToolCallEndV2ChatStreamResponse(index=0)), _end(answer_id, "TOOL_CALL", usage)]
        return await ex.stream(frames)

    pieces, finish = _text_answer(ex, body, messages)
    usage = _usage(messages, len(pieces), no_usage)
    if not body.get("stream"):
        text = cohere.TextAssistantMessageResponseContentItem(text="".join(pieces))
        message = cohere.AssistantMessageResponse(content=[text])
        return await _reply(ex, cohere.V2ChatResponse(id=answer_id, finish_reason=finish, message=message, usage=usage))
    frames = [_start(answer_id), _event(_content_start())]
    frames += [_event(_content_delta(piece), True) for piece in pieces]
    frames += [_event(cohere.ContentEndV2ChatStreamResponse(index=0)), _end(answer_id, finish, usage)]
    return await ex.stream(frames)


async def _reply(ex: Exchange, response: cohere.V2ChatResponse) -> web.StreamResponse:
    payload = _wire(response)
    _RESPONSE.validate_python(payload)
    return await ex.reply(payload)


def _start(answer_id: str) -> Frame:
    message = cohere.ChatMessageStartEventDeltaMessage(role="assistant")
    return _event(
        cohere.MessageStartV2ChatStreamResponse(id=answer_id, delta=cohere.ChatMessageStartEventDelta(message=message))
    )


def _content_start() -> cohere.ContentStartV2ChatStreamResponse:
    content = cohere.ChatContentStartEventDeltaMessageContent(type="text", text="")
    message = cohere.ChatContentStartEventDeltaMessage(content=content)
    return cohere.ContentStartV2ChatStreamResponse(index=0, delta=cohere.ChatContentStartEventDelta(message=message))


def _content_delta(text: str) -> cohere.ContentDeltaV2ChatStreamResponse:
    content = cohere.ChatContentDeltaEventDeltaMessageContent(text=text)
    message = cohere.ChatContentDeltaEventDeltaMessage(content=content)
    return cohere.ContentDeltaV2ChatStreamResponse(index=0, delta=cohere.ChatContentDeltaEventDelta(message=message))


def _plan_delta(plan: str) -> cohere.ToolPlanDeltaV2ChatStreamResponse:
    message = cohere.ChatToolPlanDeltaEventDeltaMessage(tool_plan=plan)
    return cohere.ToolPlanDeltaV2ChatStreamResponse(delta=cohere.ChatToolPlanDeltaEventDelta(message=message))


def _call_start(call: cohere.ToolCallV2) -> cohere.ToolCallStartV2ChatStreamResponse:
    assert call.function is not None
    opening = cohere.ToolCallV2(id=call.id, function=cohere.ToolCallV2Function(name=call.function.name, arguments=""))
    message = cohere.ChatToolCallStartEventDeltaMessage(tool_calls=opening)
    return cohere.ToolCallStartV2ChatStreamResponse(index=0, delta=cohere.ChatToolCallStartEventDelta(message=message))


def _call_delta(arguments: str) -> cohere.ToolCallDeltaV2ChatStreamResponse:
    function = cohere.ChatToolCallDeltaEventDeltaMessageToolCallsFunction(arguments=arguments)
    calls = cohere.ChatToolCallDeltaEventDeltaMessageToolCalls(function=function)
    message = cohere.ChatToolCallDeltaEventDeltaMessage(tool_calls=calls)
    return cohere.ToolCallDeltaV2ChatStreamResponse(index=0, delta=cohere.ChatToolCallDeltaEventDelta(message=message))


def _end(answer_id: str, finish: str, usage: cohere.Usage | None) -> Frame:
    delta = cohere.ChatMessageEndEventDelta(finish_reason=finish, usage=usage)
    return _event(cohere.MessageEndV2ChatStreamResponse(id=answer_id, delta=delta))


# --- Recorded payloads -----------------------------------------------------------------------------------------


def recorded_stream_events(name: str = "chat_stream.sse") -> list[tuple[bytes, JSON | None]]:
    """A saved stream as (raw SSE event, its decoded data or None for [DONE])."""
    events = []
    for block in (FIXTURES / name).read_text().split("\n\n"):
        if not block.strip():
            continue
        data = next(line[5:].strip() for line in block.splitlines() if line.startswith("data:"))
        events.append(((block + "\n\n").encode(), None if data == "[DONE]" else json.loads(data)))
    return events


async def _replay(ex: Exchange, model: str, stream: bool) -> web.StreamResponse:
    answer, events = RECORDED[model]
    if not stream:
        return await ex.reply(json.loads((FIXTURES / answer).read_text()))
    frames = [
        (raw, bool(data) and data.get("type") in ("content-delta", "tool-call-delta"))
        for raw, data in recorded_stream_events(events)
    ]
    return await ex.stream(frames)


# --- Embed -------------------------------------------------------------------------------------------------------

# Rules Cohere documents in words where the SDK types say "str" or "Any".
EMBED_MAX_TEXTS = 96
EMBED_INPUT_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}
EMBED_TYPES = {"float", "int8", "uint8", "binary", "ubinary", "base64"}
EMBED_DIMENSIONS = {256, 512, 1024, 1536}


def validate_embed_request(body: Any) -> list[str]:
    """What is wrong with a v2 embed request body, per the SDK's signature and documented rules; [] if nothing."""
    try:
        request = _EMBED_REQUEST.model_validate(body)
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    problems = []
    if request.input_type not in EMBED_INPUT_TYPES:
        problems.append(f"input_type: {request.input_type!r} is not one of {sorted(EMBED_INPUT_TYPES)}")
    if not request.texts or len(request.texts) > EMBED_MAX_TEXTS:
        problems.append(f"texts: 1 to {EMBED_MAX_TEXTS} texts")
    if request.embedding_types is not None and not set(request.embedding_types) <= EMBED_TYPES:
        problems.append(f"embedding_types: {request.embedding_types!r}")
    if request.output_dimension is not None and request.output_dimension not in EMBED_DIMENSIONS:
        problems.append(f"output_dimension: one of {sorted(EMBED_DIMENSIONS)}")
    return problems


async def cohere_embed(ex: Exchange, body: Any) -> web.StreamResponse:
    problems = validate_embed_request(body)
    _record(ex, body, problems)
    if problems:
        return await ex.send(cohere_error(400, "invalid request: " + "; ".join(problems)), 400)
    texts: list[str] = body["texts"]
    vectors = [mock_embedding(text, body.get("output_dimension")) for text in texts]
    meta = None
    if not ex.knobs.get("no_usage"):
        meta = cohere.ApiMeta(billed_units=cohere.ApiMetaBilledUnits(input_tokens=sum(map(count_tokens, texts))))
    response = cohere.EmbedByTypeResponse(
        id=f"mock-embed-{ex.n}",
        response_type="embeddings_by_type",
        embeddings=cohere.EmbedByTypeResponseEmbeddings(float_=vectors),
        texts=texts,
        meta=meta,
    )
    payload = _wire(response.model_dump(mode="json", by_alias=True))
    _EMBED_RESPONSE.validate_python(payload)
    return await ex.reply(payload)


def add_cohere_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/v2/chat", wire_route(cohere_chat, cohere_error))
    app.router.add_post(f"{prefix}/v2/embed", wire_route(cohere_embed, cohere_error))
