"""Cohere's v2 Chat API (POST {base_url}/v2/chat), translated from and back to OpenAI's chat shapes.

What maps, and how (OpenAI -> Cohere):
- system and developer messages -> `system` messages; user, assistant and tool turns keep their roles; text and
  image parts (web URLs and base64 data URLs) -> `text` and `image_url` content parts.
- `tools` -> `tools`; `tool_choice` "required"/"none" -> REQUIRED/NONE, "auto" -> omitted (Cohere's default).
  A named function (or `allowed_tools`) has no Cohere form: `tools` is narrowed to the named ones, with REQUIRED
  when the choice requires a call. `strict_tools` is set only when every tool asks for `strict` (it is global).
- `response_format` json_object -> json_object; json_schema -> json_object with that `json_schema`.
- max_tokens/max_completion_tokens (the tighter) -> max_tokens; stop -> stop_sequences; top_p -> p and the
  penalties are clamped into Cohere's documented ranges (p 0.01-0.99, penalties 0-1): the nearest value it accepts.
- Refused with 400 `unsupported_parameter`, since Cohere has no equivalent and silence would mislead: n > 1,
  logprobs, audio and file parts, custom tools, and the legacy `functions`/`function_call` form.
- Ignored, as Cohere's v2 Chat has nothing they could set: user, metadata, store, service_tier, safety_identifier,
  prompt_cache_key, parallel_tool_calls (Cohere decides), stream_options (usage is always asked for), logit_bias,
  reasoning_effort, verbosity, modalities/audio, prediction, web_search_options, message `name`s, image `detail`
  levels Cohere does not know, and any top-level field GreenGate does not model.

Back (Cohere -> OpenAI): text parts joined into `content`; `thinking` parts and the tool plan dropped (OpenAI's chat
shape has no place for them); tool calls keep their ids and JSON-string arguments; COMPLETE/STOP_SEQUENCE -> stop,
MAX_TOKENS -> length, TOOL_CALL -> tool_calls, ERROR/TIMEOUT -> ProviderError. Usage from `usage.tokens` (what the
model processed), else `billed_units`, with `cached_tokens` as cached input.

Embeddings (POST {base_url}/v2/embed): `input` texts -> `texts`, `dimensions` -> `output_dimension`, always
`embedding_types: ["float"]` (GreenGate makes base64 itself). `input_type` is "search_document", what stored
documents need; a client embedding search queries (or for classification or clustering) may send Cohere's own
`input_type` as an extra field, and it is passed on. Cohere takes at most 96 texts per call, so longer inputs
go as several calls in order. Token-id inputs are refused (Cohere embeds text only). Tokens come from
`meta.billed_units.input_tokens`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from gateway.schemas import (
    AllowedToolsChoice,
    AssistantMessage,
    AudioPart,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    CustomChoice,
    CustomToolCall,
    Delta,
    DeveloperMessage,
    EmbeddingRequest,
    EmbeddingResult,
    FilePart,
    Float32,
    FunctionCall,
    FunctionChoice,
    FunctionDelta,
    FunctionMessage,
    FunctionTool,
    ImagePart,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    RefusalPart,
    ResponseMessage,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolMessage,
    Usage,
    UserMessage,
    UserPart,
    encoder,
)
from providers.adapters import errors
from providers.adapters.base import EnvConfig, ProviderSpec, Supports
from providers.http import TRANSPORT_ERRORS, bearer_json_headers, client, timeouts
from providers.types import ProviderError, Target

JSON = dict[str, Any]

# --- OpenAI -> Cohere ------------------------------------------------------------------------------------------

_IMAGE_DETAILS = frozenset({"auto", "low", "high"})


def _unsupported(what: str) -> ProviderError:
    return ProviderError(
        400,
        f"{what} is not supported by this model's provider (Cohere).",
        retryable=False,
        code="unsupported_parameter",
    )


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _text_parts(content: str | list[TextPart]) -> str | list[JSON]:
    if isinstance(content, str):
        return content
    return [{"type": "text", "text": part.text} for part in content]


def _user_content(content: str | list[UserPart]) -> str | list[JSON]:
    if isinstance(content, str):
        return content
    parts: list[JSON] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image: JSON = {"url": part.image_url.url}
            if part.image_url.detail in _IMAGE_DETAILS:
                image["detail"] = part.image_url.detail
            parts.append({"type": "image_url", "image_url": image})
        elif isinstance(part, AudioPart):
            raise _unsupported("Audio input")
        elif isinstance(part, FilePart):
            raise _unsupported("File input")
    return parts


def _assistant(message: AssistantMessage) -> JSON:
    if message.function_call is not None:
        raise _unsupported("The legacy 'function_call' message field (use 'tool_calls')")
    out: JSON = {"role": "assistant"}
    content = message.content
    if isinstance(content, list):
        # A refusal the model gave earlier is still what it said: it goes back as text.
        text = [
            p.text if isinstance(p, TextPart) else p.refusal for p in content if isinstance(p, TextPart | RefusalPart)
        ]
        content = "".join(text)
    content = content or message.refusal
    if content:
        out["content"] = content
    calls = []
    for call in message.tool_calls or ():
        if isinstance(call, CustomToolCall):
            raise _unsupported("Custom tool calls")
        calls.append(
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
        )
    if calls:
        out["tool_calls"] = calls
    if "content" not in out and "tool_calls" not in out:
        out["content"] = ""  # an empty turn: Cohere needs content or tool calls
    return out


def _message(message: Message) -> JSON:
    if isinstance(message, SystemMessage | DeveloperMessage):
        # Cohere has one instruction role; OpenAI's developer role is the newer name for system.
        return {"role": "system", "content": _text_parts(message.content)}
    if isinstance(message, UserMessage):
        return {"role": "user", "content": _user_content(message.content)}
    if isinstance(message, AssistantMessage):
        return _assistant(message)
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": _text_parts(message.content)}
    assert isinstance(message, FunctionMessage)
    raise _unsupported("The legacy 'function' role (use 'tool' messages)")


def _tools(request: ChatRequest, body: JSON) -> None:
    """`tools`, `strict_tools` and `tool_choice`, narrowing the tools where OpenAI names which ones may be called."""
    tools: list[FunctionTool] = []
    for tool in request.tools or ():
        if not isinstance(tool, FunctionTool):
            raise _unsupported("Custom tools")
        tools.append(tool)
    choice = request.tool_choice
    mode: str | None = None
    if isinstance(choice, CustomChoice):
        raise _unsupported("A custom tool choice")
    if isinstance(choice, FunctionChoice | AllowedToolsChoice):
        if isinstance(choice, FunctionChoice):
            wanted, mode = {choice.function.name}, "REQUIRED"
        else:
            listed = choice.allowed_tools.get("tools")
            wanted = {
                entry["function"]["name"]
                for entry in (listed if isinstance(listed, list) else [])
                if isinstance(entry, dict)
                and isinstance(entry.get("function"), dict)
                and isinstance(entry["function"].get("name"), str)
            }
            mode = "REQUIRED" if choice.allowed_tools.get("mode") == "required" else None
        narrowed = [tool for tool in tools if tool.function.name in wanted]
        if not wanted or len(narrowed) != len(wanted):
            raise ProviderError(
                400, "'tool_choice' names a function that is not in 'tools'.", retryable=False, code="invalid_value"
            )
        tools = narrowed
    elif choice == "required":
        mode = "REQUIRED"
    elif choice == "none":
        mode = "NONE"
    if not tools:
        return
    body["tools"] = [
        {
            "type": "function",
            "function": {
                "name": tool.function.name,
                # Cohere requires a schema; a function without parameters takes an empty object.
                "parameters": tool.function.parameters or {"type": "object", "properties": {}},
                **({"description": tool.function.description} if tool.function.description else {}),
            },
        }
        for tool in tools
    ]
    if all(tool.function.strict for tool in tools):
        body["strict_tools"] = True
    if mode is not None:
        body["tool_choice"] = mode


def request_body(request: ChatRequest, target: Target, *, stream: bool) -> bytes:
    if request.n is not None and request.n > 1:
        raise _unsupported("'n' above 1")
    if request.logprobs:
        raise _unsupported("'logprobs'")
    if request.functions or request.function_call is not None:
        raise _unsupported("The legacy 'functions'/'function_call' parameters (use 'tools')")
    body: JSON = {
        "model": target.upstream_model,
        "messages": [_message(message) for message in request.messages],
        "stream": stream,
    }
    _tools(request, body)
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat):
        body["response_format"] = {"type": "json_object"}
        if fmt.json_schema.schema is not None:
            body["response_format"]["json_schema"] = fmt.json_schema.schema
    elif isinstance(fmt, JSONObjectFormat):
        body["response_format"] = {"type": "json_object"}
    if request.output_limit is not None:
        body["max_tokens"] = request.output_limit
    if request.stop:
        body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["p"] = _clamp(request.top_p, 0.01, 0.99)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.frequency_penalty is not None:
        body["frequency_penalty"] = _clamp(request.frequency_penalty, 0.0, 1.0)
    if request.presence_penalty is not None:
        body["presence_penalty"] = _clamp(request.presence_penalty, 0.0, 1.0)
    return encoder.encode(body)


# --- Cohere -> OpenAI: the shapes GreenGate reads, typed once at the edge --------------------------------------

# Cohere's SDK types token counts as floats; a count past this is a broken upstream, not a bill.
Count = Annotated[float, Meta(ge=0, le=1e12)]


class _Tokens(Struct):
    input_tokens: Count | None = None
    output_tokens: Count | None = None


class _Usage(Struct):
    tokens: _Tokens | None = None
    billed_units: _Tokens | None = None
    cached_tokens: Count | None = None


class _Function(Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(Struct):
    id: str | None = None
    function: _Function | None = None


class _ContentItem(Struct):
    # Types beyond text (thinking, and whatever comes next) are read and left out of the answer.
    type: str = "text"
    text: str | None = None


class _Message(Struct):
    content: list[_ContentItem] | None = None
    tool_calls: list[_ToolCall] | None = None


class _Response(Struct):
    id: str
    finish_reason: str
    message: _Message
    usage: _Usage | None = None


class _Head(Struct):
    type: str = ""
    message: str | None = None  # an error object in place of an event


class _MessageStart(Struct):
    id: str | None = None


class _Piece(Struct):
    text: str | None = None
    thinking: str | None = None


class _PieceMessage(Struct):
    content: _Piece | None = None


class _PieceDelta(Struct):
    message: _PieceMessage | None = None


class _ContentEvent(Struct):
    delta: _PieceDelta | None = None


class _CallMessage(Struct):
    tool_calls: _ToolCall | None = None


class _CallDelta(Struct):
    message: _CallMessage | None = None


class _ToolCallEvent(Struct):
    index: int = 0
    delta: _CallDelta | None = None


class _EndDelta(Struct):
    finish_reason: str | None = None
    usage: _Usage | None = None
    error: str | None = None


class _MessageEnd(Struct):
    delta: _EndDelta | None = None


_response = msgspec.json.Decoder(_Response)
_head = msgspec.json.Decoder(_Head)
_message_start = msgspec.json.Decoder(_MessageStart)
_content_event = msgspec.json.Decoder(_ContentEvent)
_tool_call_event = msgspec.json.Decoder(_ToolCallEvent)
_message_end = msgspec.json.Decoder(_MessageEnd)

_FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}


def _usage(usage: _Usage | None) -> Usage | None:
    if usage is None:
        return None
    # `tokens` is what the model processed; `billed_units` leaves out Cohere's own prompt template.
    counts = usage.tokens if usage.tokens and usage.tokens.input_tokens is not None else usage.billed_units
    if counts is None or counts.input_tokens is None:
        return None
    prompt = int(counts.input_tokens)
    # Cohere counts cache hits inside the prompt, as OpenAI does; a larger figure would be a broken report.
    cached = min(int(usage.cached_tokens or 0), prompt)
    return Usage.of(input=prompt, output=int(counts.output_tokens or 0), cached_input=cached)


def _finish(reason: str | None, error: str | None, target: Target, *, retryable: bool) -> str:
    mapped = _FINISH.get(reason or "")
    if mapped is not None and not error:
        return mapped
    if reason == "TIMEOUT":
        raise ProviderError(
            504, f"Provider '{target.provider_name}' timed out.", retryable=retryable, code="upstream_timeout"
        )
    if reason == "ERROR" or error:
        words = (error or "").strip()[:500]
        message = f"Provider '{target.provider_name}' failed while generating" + (f": {words}" if words else ".")
        raise ProviderError(502, message, retryable=retryable, code="upstream_error")
    return "stop"  # a reason newer than this adapter: the answer did end


# --- Embeddings ------------------------------------------------------------------------------------------------

# Cohere's documented limit of texts per embed call.
EMBED_BATCH = 96
DEFAULT_INPUT_TYPE = "search_document"
INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})


class _Floats(Struct):
    float: list[list[Float32]] | None = None


class _BilledUnits(Struct):
    input_tokens: Count | None = None


class _Meta(Struct):
    billed_units: _BilledUnits | None = None


class _Embed(Struct):
    embeddings: _Floats
    meta: _Meta | None = None


_embed = msgspec.json.Decoder(_Embed)


def embed_body(request: EmbeddingRequest, texts: list[str], target: Target) -> JSON:
    input_type = request.passthrough.get("input_type", DEFAULT_INPUT_TYPE)
    if input_type not in INPUT_TYPES:
        raise ProviderError(
            400,
            f"'input_type' must be one of {', '.join(sorted(INPUT_TYPES))} for this model's provider (Cohere).",
            retryable=False,
            code="invalid_value",
        )
    body: JSON = {
        "model": target.upstream_model,
        "texts": texts,
        "input_type": input_type,
        "embedding_types": ["float"],
    }
    if request.dimensions is not None:
        body["output_dimension"] = request.dimensions
    return body


class CohereAdapter:
    kind = "cohere"

    def headers(self, target: Target) -> dict[str, str]:
        return bearer_json_headers(target)

    def url(self, target: Target) -> str:
        # The API root, without a version; a root that names /v2 already is accepted as given.
        return target.base_url.rstrip("/").removesuffix("/v2") + "/v2/chat"

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse:
        body = request_body(request, target, stream=False)
        try:
            response = await client().post(
                self.url(target), content=body, headers=self.headers(target), timeout=timeouts(target)
            )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None
        if response.status_code != 200:
            raise errors.from_status(response.status_code, response.content, response.headers, target.provider_name)
        try:
            answer = _response.decode(response.content)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            raise errors.malformed(target.provider_name) from None
        # Nothing has reached the client yet: a failed generation may succeed on another deployment.
        finish = _finish(answer.finish_reason, None, target, retryable=True)
        text = "".join(item.text or "" for item in answer.message.content or () if item.type == "text")
        calls = [
            ToolCall(
                id=call.id or f"call_{uuid.uuid4().hex[:24]}",
                function=FunctionCall(name=call.function.name or "", arguments=call.function.arguments or "{}"),
            )
            for call in answer.message.tool_calls or ()
            if call.function is not None
        ]
        message = ResponseMessage(content=text or (None if calls else ""))
        if calls:
            message.tool_calls = list(calls)
        return ChatResponse(
            id=answer.id,
            created=int(time.time()),
            model=target.upstream_model,
            choices=[Choice(index=0, message=message, finish_reason=finish)],
            usage=_usage(answer.usage),
        )

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResult:
        texts = request.texts
        if texts is None:
            raise _unsupported("Token-id input (send text)")
        url = target.base_url.rstrip("/").removesuffix("/v2") + "/v2/embed"
        vectors: list[list[float]] = []
        tokens: int | None = 0
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            payload = encoder.encode(embed_body(request, batch, target))
            try:
                response = await client().post(
                    url, content=payload, headers=self.headers(target), timeout=timeouts(target)
                )
            except TRANSPORT_ERRORS as exc:
                raise errors.from_transport(exc, target.provider_name) from None
            if response.status_code != 200:
                raise errors.from_status(response.status_code, response.content, response.headers, target.provider_name)
            try:
                answer = _embed.decode(response.content)
            except msgspec.DecodeError:  # ValidationError is a DecodeError
                raise errors.malformed(target.provider_name) from None
            floats = answer.embeddings.float
            if floats is None or len(floats) != len(batch):
                raise errors.malformed(target.provider_name)
            vectors += floats
            billed = answer.meta.billed_units if answer.meta is not None else None
            # One batch without a count leaves the whole count to GreenGate.
            if tokens is not None and billed is not None and billed.input_tokens is not None:
                tokens += int(billed.input_tokens)
            else:
                tokens = None
        return EmbeddingResult(vectors=vectors, input_tokens=tokens)

    async def stream(self, request: ChatRequest, target: Target) -> AsyncGenerator[ChatChunk, None]:
        body = request_body(request, target, stream=True)
        http = client()
        try:
            async with http.stream(
                "POST", self.url(target), content=body, headers=self.headers(target), timeout=timeouts(target)
            ) as response:
                if response.status_code != 200:
                    raise errors.from_status(
                        response.status_code, await response.aread(), response.headers, target.provider_name
                    )
                relay = _StreamRelay(target)
                async for line in response.aiter_lines():
                    # `event:` names repeat the JSON's own `type`; blank lines only separate events.
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        continue
                    for chunk in relay.event(data.encode()):
                        yield chunk
                    if relay.ended:
                        return
                raise ProviderError(
                    502,
                    f"Provider '{target.provider_name}' ended the stream early.",
                    retryable=False,
                    code="upstream_stream_cut",
                )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None


class _StreamRelay:
    """Cohere's stream events -> OpenAI chunks, remembering the id and which tool call is which."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.started = False
        self.ended = False
        self.calls: dict[int, int] = {}  # Cohere's tool-call index -> OpenAI's, in order of appearance

    def chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(
            id=self.id,
            created=self.created,
            model=self.target.upstream_model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
        )

    def event(self, data: bytes) -> list[ChatChunk]:
        try:
            head = _head.decode(data)
            return self._translate(head, data)
        except msgspec.DecodeError:
            raise errors.malformed(self.target.provider_name) from None

    def _start(self) -> list[ChatChunk]:
        # Every OpenAI stream opens with the role, even when Cohere's message-start went missing.
        if self.started:
            return []
        self.started = True
        return [self.chunk(Delta(role="assistant", content=""))]

    def _translate(self, head: _Head, data: bytes) -> list[ChatChunk]:
        kind = head.type
        if not kind and head.message is not None:
            # An error object in place of an event: the stream failed after it began.
            raise ProviderError(
                502, head.message[:500] or "The upstream stream failed.", retryable=False, code="upstream_error"
            )
        if kind == "message-start":
            start = _message_start.decode(data)
            if start.id and not self.started:
                self.id = start.id
            return self._start()
        out = self._start()
        if kind in ("content-start", "content-delta"):
            event = _content_event.decode(data)
            piece = event.delta.message.content if event.delta and event.delta.message else None
            # Thinking text has no place in OpenAI's chat chunks; only the answer's text is relayed.
            if piece is not None and piece.text:
                out.append(self.chunk(Delta(content=piece.text)))
        elif kind in ("tool-call-start", "tool-call-delta"):
            out += self._tool_call(kind, _tool_call_event.decode(data))
        elif kind == "message-end":
            end = _message_end.decode(data).delta or _EndDelta()
            # The client has seen this deployment's words: no other deployment can take over now.
            finish = _finish(end.finish_reason, end.error, self.target, retryable=False)
            self.ended = True
            out.append(self.chunk(Delta(), finish))
            usage = _usage(end.usage)
            if usage is not None:
                out.append(
                    ChatChunk(
                        id=self.id, created=self.created, model=self.target.upstream_model, choices=[], usage=usage
                    )
                )
        # content-end, tool-plan-delta, tool-call-end, citations and debug events carry nothing OpenAI shows.
        return out

    def _tool_call(self, kind: str, event: _ToolCallEvent) -> list[ChatChunk]:
        call = event.delta.message.tool_calls if event.delta and event.delta.message else None
        if call is None:
            return []
        function = call.function or _Function()
        if kind == "tool-call-start" or event.index not in self.calls:
            index = self.calls.setdefault(event.index, len(self.calls))
            delta = ToolCallDelta(
                index=index,
                id=call.id or f"call_{uuid.uuid4().hex[:24]}",
                type="function",
                function=FunctionDelta(name=function.name or "", arguments=function.arguments or ""),
            )
        else:
            if not function.arguments:
                return []
            delta = ToolCallDelta(index=self.calls[event.index], function=FunctionDelta(arguments=function.arguments))
        return [self.chunk(Delta(tool_calls=[delta]))]


SPEC: ProviderSpec = ProviderSpec(
    kind="cohere",
    label="Cohere (v2 Chat and Embed APIs)",
    adapter=CohereAdapter,
    env=EnvConfig(
        api_key="COHERE_API_KEY",
        base_url="COHERE_BASE_URL",
        default_base_url="https://api.cohere.com",
        models="COHERE_MODELS",
        default_models=(
            "command-a-03-2025",
            "command-a-reasoning-08-2025",
            "command-a-vision-07-2025",
            "command-r-plus-08-2024",
            "command-r-08-2024",
            "command-r7b-12-2024",
        ),
    ),
    # One answer per request (no `n`); images only on Cohere's vision models, which the upstream checks.
    supports=Supports(streaming=True, tools=True, images=True, json_schema=True, n_above_one=False),
    ecologits_provider="cohere",
    price_provider="cohere",
)
