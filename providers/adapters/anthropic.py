"""Anthropic's Messages API (`POST {base_url}/v1/messages`), translated from and to OpenAI's chat shapes.

Decisions a client may notice, each taken because Anthropic's API has no exact counterpart:
- `max_tokens` is required by Anthropic. GreenGate sends the tighter of the client's `max_tokens` and
  `max_completion_tokens`, else DEFAULT_MAX_TOKENS (4096): enough for a long answer on every current Claude model,
  small enough that a request without a limit cannot run up minutes of output. (A client's own limit above
  MAX_COMPLETION_TOKENS is refused before it gets here.)
- `response_format` (json_object / json_schema) is served the way Anthropic documents JSON output with tools: a
  tool named JSON_TOOL whose `input_schema` is the schema, forced with `tool_choice`, and its input returned as the
  message's text (streamed as text deltas, finish_reason "stop"). If the client also offers tools with
  tool_choice auto, the model must call one of them or the JSON tool (`tool_choice: any`). The native
  `output_config.format` is not used: it is not offered by every Claude model, the forced tool is.
- `temperature` and `top_p`: the Messages API of SDK 2.14 has no sampling parameters, and Claude models newer
  than Opus 4.6 reject `temperature` with a 400 ("temperature is deprecated for this model"). So they are left out
  by default. A provider whose models still honour them sets option ANTHROPIC_SAMPLING=send: then `temperature`
  is clamped into Anthropic's 0-1 (OpenAI allows 0-2; 1 is both defaults, so the clamp keeps "default" meaning
  default) and `top_p` is sent as given.
- `n` > 1 is refused (400 unsupported_parameter): Anthropic makes one answer per call.
- Ignored, as Anthropic has no counterpart: seed, presence/frequency_penalty, logit_bias, logprobs, store,
  OpenAI's metadata, service_tier, reasoning_effort, verbosity, modalities, prediction, prompt_cache_key and
  unknown top-level fields. `user` (or the newer `safety_identifier`) becomes `metadata.user_id`.
- Refused with a clear 400: audio input, files other than base64 PDFs, custom tools, `allowed_tools`, legacy
  `functions`/`function_call`, tool-call arguments that are not a JSON object.
- Thinking blocks in an answer are dropped (OpenAI's chat shape has no place for them); their tokens are counted
  as reasoning tokens when Anthropic reports them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import UNSET, Struct

from gateway.schemas import (
    AnyToolCall,
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    CustomToolCall,
    Delta,
    DeveloperMessage,
    FilePart,
    FunctionCall,
    FunctionChoice,
    FunctionDelta,
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
    encoder,
)
from providers.adapters import errors
from providers.adapters.base import EnvConfig, ProviderSpec, Supports
from providers.http import TRANSPORT_ERRORS, client, timeouts
from providers.types import ProviderError, Target

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# The tool that carries a response_format answer; a client tool of this name is refused rather than shadowed.
JSON_TOOL = "json_response"
SAMPLING_OPTION = "ANTHROPIC_SAMPLING"

JSON = dict[str, Any]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"^data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*?);base64,(?P<data>.*)\Z", re.DOTALL)


def _refuse(message: str, code: str = "unsupported_parameter") -> ProviderError:
    # status 400, not retryable: the request itself cannot be served here, nor by trying again.
    return ProviderError(400, message, retryable=False, code=code)


# --- OpenAI request -> Anthropic request ------------------------------------------------------------------------


def _text_blocks(content: str | list[Any]) -> list[JSON]:
    """Text content as text blocks; empty ones are dropped, since Anthropic refuses empty text blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        text = part.text if isinstance(part, TextPart) else part.refusal if isinstance(part, RefusalPart) else ""
        if text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _data_url(url: str, param: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 data URL; None if `url` is not a data URL at all."""
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.match(url)
    if match is None:
        raise _refuse(f"'{param}' is a data URL that is not base64-encoded.", "invalid_value")
    return match["type"].strip().lower(), match["data"]


def _image_block(part: ImagePart) -> JSON:
    url = part.image_url.url
    inline = _data_url(url, "image_url.url")
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = inline
    media_type = "image/jpeg" if media_type == "image/jpg" else media_type
    if media_type not in _IMAGE_TYPES:
        raise _refuse(
            f"Images of type '{media_type or 'unknown'}' are not supported by this provider; "
            "use JPEG, PNG, GIF or WebP.",
            "invalid_value",
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _file_block(part: FilePart) -> JSON:
    inline = _data_url(part.file.file_data or "", "file.file_data")
    if inline is None or inline[0] != "application/pdf":
        raise _refuse("This provider accepts files only as base64 PDF data URLs in 'file.file_data'.")
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": inline[1]}}


def _user_blocks(message: UserMessage) -> list[JSON]:
    if isinstance(message.content, str):
        return _text_blocks(message.content)
    blocks: list[JSON] = []
    for part in message.content:
        if isinstance(part, TextPart):
            blocks += _text_blocks(part.text)
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
        elif isinstance(part, FilePart):
            blocks.append(_file_block(part))
        else:
            raise _refuse("Audio input is not supported by this provider.")
    return blocks


def _tool_input(arguments: str, call_id: str) -> JSON:
    # Anthropic takes the arguments as an object, so a string that is not a JSON object cannot be sent on.
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _refuse(
            f"The arguments of tool call '{call_id}' must be a JSON object encoded as a string.", "invalid_value"
        )
    return value


def _assistant_blocks(message: AssistantMessage) -> list[JSON]:
    if message.function_call is not None:
        raise _refuse("Legacy 'function_call' messages are not supported by this provider; use 'tool_calls'.")
    blocks = _text_blocks(message.content) if message.content is not None else []
    for call in message.tool_calls or ():
        if isinstance(call, CustomToolCall):
            raise _refuse("Custom tool calls are not supported by this provider.")
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": _tool_input(call.function.arguments, call.id),
            }
        )
    return blocks


def _tool_result(message: ToolMessage) -> JSON:
    content: str | list[JSON] = message.content if isinstance(message.content, str) else _text_blocks(message.content)
    return {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content}


def _turns(messages: list[Message]) -> tuple[list[JSON], list[JSON]]:
    """(system blocks, user/assistant turns), same-role neighbours merged, as Anthropic requires alternation."""
    system: list[JSON] = []
    turns: list[JSON] = []
    for message in messages:
        if isinstance(message, (SystemMessage, DeveloperMessage)):
            system += _text_blocks(message.content)
            continue
        if isinstance(message, UserMessage):
            role, blocks = "user", _user_blocks(message)
        elif isinstance(message, AssistantMessage):
            role, blocks = "assistant", _assistant_blocks(message)
        elif isinstance(message, ToolMessage):
            role, blocks = "user", [_tool_result(message)]  # tool results travel in the user's turn
        else:
            raise _refuse("Legacy 'function' messages are not supported by this provider; use 'tool' messages.")
        if not blocks:
            continue  # Anthropic refuses empty turns; an empty message adds nothing to the conversation
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # Anthropic wants a turn's tool results before its other blocks; sorted() keeps each group's order.
            turn["content"] = sorted(turn["content"], key=lambda block: block["type"] != "tool_result")
    if not turns:
        raise _refuse("This provider needs at least one user message besides the system prompt.", "invalid_value")
    return system, turns


def _tools(request: ChatRequest) -> list[JSON]:
    tools = []
    for tool in request.tools or ():
        if not isinstance(tool, FunctionTool):
            raise _refuse("Custom tools are not supported by this provider; use function tools.")
        function = tool.function
        if function.name == JSON_TOOL and _wants_json(request):
            raise _refuse(f"The tool name '{JSON_TOOL}' is reserved when 'response_format' is set.", "invalid_value")
        definition: JSON = {
            "name": function.name,
            # Anthropic requires a schema; OpenAI lets a function without parameters take none.
            "input_schema": function.parameters or {"type": "object", "properties": {}},
        }
        if function.description:
            definition["description"] = function.description
        if function.strict is not None:
            definition["strict"] = function.strict
        tools.append(definition)
    return tools


def _tool_choice(request: ChatRequest) -> JSON | None:
    choice = request.tool_choice
    if choice is None or choice == "auto":
        result: JSON = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, FunctionChoice):
        result = {"type": "tool", "name": choice.function.name}
    else:
        raise _refuse("This provider supports tool_choice auto, required, none or a named function.")
    if request.parallel_tool_calls is False:
        result["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # nothing to say beyond Anthropic's own default
    return result


def _wants_json(request: ChatRequest) -> bool:
    return isinstance(request.response_format, (JSONSchemaFormat, JSONObjectFormat))


def _json_tool(request: ChatRequest) -> JSON | None:
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat):
        schema = fmt.json_schema.schema or {"type": "object"}
        if schema.get("type", "object") != "object":
            raise _refuse(
                "With this provider a JSON schema response_format must describe an object at its root.",
                "invalid_value",
            )
        description = fmt.json_schema.description or f"Answer with a JSON object matching '{fmt.json_schema.name}'."
        return {"name": JSON_TOOL, "description": description, "input_schema": {"type": "object", **schema}}
    if isinstance(fmt, JSONObjectFormat):
        return {
            "name": JSON_TOOL,
            "description": "Answer with a JSON object.",
            "input_schema": {"type": "object", "additionalProperties": True},
        }
    return None


def _sampling(request: ChatRequest, target: Target, payload: JSON) -> None:
    if target.options.get(SAMPLING_OPTION, "omit").strip().lower() != "send":
        return
    if request.temperature is not None:
        payload["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        payload["top_p"] = request.top_p


def request_payload(request: ChatRequest, target: Target, *, stream: bool) -> JSON:
    """The Messages API body for this request; ProviderError 400 for what Anthropic cannot be asked."""
    if request.n is not None and request.n > 1:
        raise _refuse("This provider returns one choice per request; 'n' must be 1.")
    if request.functions or request.function_call is not None:
        raise _refuse("Legacy 'functions' are not supported by this provider; use 'tools'.")
    system, turns = _turns(request.messages)
    payload: JSON = {
        "model": target.upstream_model,
        "max_tokens": request.output_limit or DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    if system:
        payload["system"] = system
    tools, choice, json_tool = _tools(request), _tool_choice(request), _json_tool(request)
    if json_tool is not None:
        if not tools or request.tool_choice == "none":
            # Only the JSON tool: the answer must be its input.
            tools, choice = [json_tool], {"type": "tool", "name": JSON_TOOL}
        elif choice is None or choice["type"] == "auto":
            # A real tool call or the JSON answer, the model's pick; "auto" could let it answer in free text.
            tools, choice = [*tools, json_tool], {**(choice or {}), "type": "any"}
        # required / named: the answer is a tool call anyway, so no JSON tool is needed.
    if tools:
        payload["tools"] = tools
        if choice is not None:
            payload["tool_choice"] = choice
    if request.stop is not None:
        stops = [request.stop] if isinstance(request.stop, str) else request.stop
        if stops:
            payload["stop_sequences"] = stops
    _sampling(request, target, payload)
    user = request.safety_identifier or request.user
    if user:
        payload["metadata"] = {"user_id": user}
    if stream:
        payload["stream"] = True
    return payload


# --- Anthropic response -> OpenAI response ----------------------------------------------------------------------


class _Usage(Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    output_tokens_details: dict[str, Any] | None = None


class _Block(Struct):
    # One struct for every block type: types Anthropic adds later must not make a whole answer unreadable.
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Message(Struct):
    id: str
    content: list[_Block]
    usage: _Usage
    model: str = ""
    stop_reason: str | None = None


class _Delta(Struct):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _ErrorObject(Struct):
    type: str = "api_error"
    message: str = ""


class _Event(Struct):
    type: str
    message: _Message | None = None
    index: int | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: _ErrorObject | None = None


_message = msgspec.json.Decoder(_Message)
_event = msgspec.json.Decoder(_Event)

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _finish(stop_reason: str | None, *, real_tool_calls: bool) -> str:
    reason = _FINISH.get(stop_reason or "", "stop")
    if reason == "tool_calls" and not real_tool_calls:
        return "stop"  # a stop for the JSON tool alone is a finished answer, not a call the client must run
    return reason


@dataclass
class _Tokens:
    """Anthropic's counts; its input_tokens excludes cache reads and writes, OpenAI's prompt_tokens includes them."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    thinking: int = 0

    def update(self, usage: _Usage) -> None:
        # message_delta's counts are cumulative: the latest value is the total.
        self.input = usage.input_tokens if usage.input_tokens is not None else self.input
        self.output = usage.output_tokens if usage.output_tokens is not None else self.output
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_write = usage.cache_creation_input_tokens
        thinking = (usage.output_tokens_details or {}).get("thinking_tokens")
        if isinstance(thinking, int):
            self.thinking = thinking

    def usage(self) -> Usage | None:
        if not (self.input or self.output or self.cache_read or self.cache_write):
            # Anthropic counts at least one output token even for an empty answer: all zeros means the counts
            # were lost on the way (a proxy), so GreenGate's own count is the better record.
            return None
        return Usage.of(
            input=self.input + self.cache_read + self.cache_write,
            output=self.output,
            cached_input=self.cache_read,
            cache_write=self.cache_write,
            reasoning=self.thinking,
        )


def response_from(message: _Message, json_mode: bool) -> ChatResponse:
    texts: list[str] = []
    calls: list[AnyToolCall] = []
    answer: str | None = None  # the JSON tool's input, in JSON mode
    for block in message.content:
        if block.type == "text" and block.text:
            texts.append(block.text)
        elif block.type == "tool_use" and block.name is not None and block.id is not None:
            arguments = json.dumps(block.input if block.input is not None else {}, ensure_ascii=False)
            if json_mode and block.name == JSON_TOOL:
                answer = arguments
            else:
                calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments)))
    if answer is not None:
        texts = [answer]  # any words around it would make the content unparseable as the JSON asked for
    tokens = _Tokens()
    tokens.update(message.usage)
    reply = ResponseMessage(content="".join(texts) if texts or not calls else None, tool_calls=calls or UNSET)
    return ChatResponse(
        id=message.id,
        created=int(time.time()),
        model=message.model,
        choices=[
            Choice(index=0, message=reply, finish_reason=_finish(message.stop_reason, real_tool_calls=bool(calls)))
        ],
        usage=tokens.usage(),
    )


@dataclass
class _StreamState:
    """What a stream has said so far, to turn Anthropic's block events into OpenAI's deltas."""

    json_mode: bool
    id: str = ""
    model: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    tokens: _Tokens = field(default_factory=_Tokens)
    stop_reason: str | None = None
    # Anthropic block index -> OpenAI tool_calls index, or None for the JSON tool (relayed as text).
    tools: dict[int, int | None] = field(default_factory=dict)
    started: bool = False

    def chunk(self, delta: Delta, finish_reason: str | None = None) -> ChatChunk:
        return ChatChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
        )

    def usage_chunk(self, usage: Usage) -> ChatChunk:
        return ChatChunk(id=self.id, created=self.created, model=self.model, choices=[], usage=usage)

    def real_tool_calls(self) -> bool:
        return any(index is not None for index in self.tools.values())


def _stream_error(event: _Event, state: _StreamState, provider: str) -> ProviderError:
    error = event.error or _ErrorObject()
    message = f"Provider '{provider}' failed mid-stream: {error.message[:300] or error.type}"
    # Before any chunk is out, an overloaded or failing upstream can still be replaced by the next deployment.
    retryable = not state.started and error.type in ("overloaded_error", "api_error", "rate_limit_error")
    return ProviderError(502, message, retryable=retryable, code="upstream_error")


def _translate(event: _Event, state: _StreamState, provider: str) -> list[ChatChunk]:
    """The OpenAI chunks one Anthropic event becomes (often none)."""
    kind = event.type
    if kind == "message_start" and event.message is not None:
        state.id, state.model, state.started = event.message.id, event.message.model, True
        state.tokens.update(event.message.usage)
        return [state.chunk(Delta(role="assistant", content=""))]
    if kind == "content_block_start" and event.content_block is not None and event.index is not None:
        block = event.content_block
        if block.type == "text" and block.text:
            return [state.chunk(Delta(content=block.text))]
        if block.type == "tool_use":
            if state.json_mode and block.name == JSON_TOOL:
                state.tools[event.index] = None
                return []
            index = state.tools[event.index] = sum(1 for i in state.tools.values() if i is not None)
            call = ToolCallDelta(
                index=index, id=block.id, type="function", function=FunctionDelta(name=block.name, arguments="")
            )
            return [state.chunk(Delta(tool_calls=[call]))]
        return []  # thinking and server-side blocks have no place in OpenAI's chat shape
    if kind == "content_block_delta" and event.delta is not None and event.index is not None:
        delta = event.delta
        if delta.type == "text_delta" and delta.text:
            return [state.chunk(Delta(content=delta.text))]
        if delta.type == "input_json_delta" and delta.partial_json and event.index in state.tools:
            position = state.tools[event.index]
            if position is None:
                return [state.chunk(Delta(content=delta.partial_json))]
            call = ToolCallDelta(index=position, function=FunctionDelta(arguments=delta.partial_json))
            return [state.chunk(Delta(tool_calls=[call]))]
        return []
    if kind == "message_delta":
        if event.delta is not None and event.delta.stop_reason is not None:
            state.stop_reason = event.delta.stop_reason
        if event.usage is not None:
            state.tokens.update(event.usage)
        return []
    if kind == "error":
        raise _stream_error(event, state, provider)
    if kind == "message_stop" and not state.started:
        raise errors.malformed(provider)
    # ping, content_block_stop, and event types Anthropic may add: nothing to relay.
    return []


# --- The adapter ------------------------------------------------------------------------------------------------


class AnthropicAdapter:
    kind = "anthropic"

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return headers

    def url(self, target: Target) -> str:
        return target.base_url.rstrip("/") + "/v1/messages"

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse:
        payload = request_payload(request, target, stream=False)
        try:
            response = await client().post(
                self.url(target),
                content=encoder.encode(payload),
                headers=self.headers(target),
                timeout=timeouts(target),
            )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None
        if response.status_code != 200:
            raise errors.from_status(response.status_code, response.content, response.headers, target.provider_name)
        try:
            message = _message.decode(response.content)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            raise errors.malformed(target.provider_name) from None
        return response_from(message, json_mode=_wants_json(request))

    async def stream(self, request: ChatRequest, target: Target) -> AsyncGenerator[ChatChunk, None]:
        payload = request_payload(request, target, stream=True)
        state = _StreamState(json_mode=_wants_json(request))
        try:
            async with client().stream(
                "POST",
                self.url(target),
                content=encoder.encode(payload),
                headers=self.headers(target),
                timeout=timeouts(target),
            ) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    raise errors.from_status(response.status_code, body, response.headers, target.provider_name)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # "event:" lines repeat the data's own type; blank lines only separate events
                    try:
                        event = _event.decode(line[5:].strip())
                    except msgspec.DecodeError:
                        raise errors.malformed(target.provider_name) from None
                    for chunk in _translate(event, state, target.provider_name):
                        yield chunk
                    if event.type == "message_stop":
                        yield state.chunk(Delta(), _finish(state.stop_reason, real_tool_calls=state.real_tool_calls()))
                        usage = state.tokens.usage()
                        if usage is not None:
                            yield state.usage_chunk(usage)
                        return
                # Anthropic always ends with message_stop: without it the answer was cut short.
                raise ProviderError(
                    502,
                    f"Provider '{target.provider_name}' ended the stream early.",
                    retryable=False,
                    code="upstream_stream_cut",
                )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None


SPEC: ProviderSpec = ProviderSpec(
    kind="anthropic",
    label="Anthropic (Claude, Messages API)",
    adapter=AnthropicAdapter,
    env=EnvConfig(
        api_key="ANTHROPIC_API_KEY",
        base_url="ANTHROPIC_BASE_URL",
        default_base_url="https://api.anthropic.com",
        models="ANTHROPIC_MODELS",
        default_models=("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-haiku-4-5"),
        options={SAMPLING_OPTION: "omit"},
    ),
    # Anthropic has no embeddings API: the pipeline never asks this adapter for one.
    supports=Supports(n_above_one=False, embeddings=False),
    ecologits_provider="anthropic",
    price_provider="anthropic",
)
