"""GreenGate's own typed forms of OpenAI's chat shapes, validated once at the edge.

msgspec over pydantic v2, by measurement on this machine (scripts/schema_parse_bench.py): a typical request
parses and validates in 0.8 us against pydantic's 2.1-3.9 us, a 100-message request in 19 us against 50-70 us.

Request structs omit unset fields when encoded, so what GreenGate forwards is what the client said. Top-level
fields GreenGate does not know are kept in `ChatRequest.passthrough` and forwarded as they came.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# Names that reach logs, the ledger and upstream URLs: printable, bounded, no NUL (PostgreSQL text refuses it).
Name = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+\Z")]
ModelName = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+\Z")]
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
PositiveInt = Annotated[int, Meta(ge=1, le=2**31 - 1)]
JSONObject = dict[str, Any]


class _Request(Struct, omit_defaults=True, forbid_unknown_fields=False):
    """Base of request-side structs: encoding back omits what the client did not send."""


# --- Content parts ---------------------------------------------------------------------------------------------


class TextPart(_Request, tag_field="type", tag="text"):
    text: str


class ImageURL(_Request):
    url: Annotated[str, Meta(min_length=1)]
    # "auto", "low", "high", and whatever level providers add next ("original"): passed on as given.
    detail: Annotated[str, Meta(min_length=1, max_length=32)] | None = None


class ImagePart(_Request, tag_field="type", tag="image_url"):
    image_url: ImageURL


class InputAudio(_Request):
    data: str
    format: Annotated[str, Meta(min_length=1, max_length=16)]


class AudioPart(_Request, tag_field="type", tag="input_audio"):
    input_audio: InputAudio


class FileRef(_Request):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Request, tag_field="type", tag="file"):
    file: FileRef


class RefusalPart(_Request, tag_field="type", tag="refusal"):
    refusal: str


UserPart = TextPart | ImagePart | AudioPart | FilePart
AssistantPart = TextPart | RefusalPart

TextContent = str | Annotated[list[TextPart], Meta(min_length=1)]
UserContent = str | Annotated[list[UserPart], Meta(min_length=1)]


# --- Tool calls as they appear in requests and responses -------------------------------------------------------


class FunctionCall(Struct):
    name: str
    arguments: str


class ToolCall(Struct, tag_field="type", tag="function"):
    id: str
    function: FunctionCall


class CustomCall(Struct):
    name: str
    input: str


class CustomToolCall(Struct, tag_field="type", tag="custom"):
    id: str
    custom: CustomCall


AnyToolCall = ToolCall | CustomToolCall


# --- Messages --------------------------------------------------------------------------------------------------


class SystemMessage(_Request, tag_field="role", tag="system"):
    content: TextContent
    name: Name | None = None


class DeveloperMessage(_Request, tag_field="role", tag="developer"):
    content: TextContent
    name: Name | None = None


class UserMessage(_Request, tag_field="role", tag="user"):
    content: UserContent
    name: Name | None = None


class AudioRef(_Request):
    id: str


class AssistantMessage(_Request, tag_field="role", tag="assistant"):
    # An assistant turn that calls tools may carry no text.
    content: str | Annotated[list[AssistantPart], Meta(min_length=1)] | None = None
    refusal: str | None = None
    name: Name | None = None
    tool_calls: list[AnyToolCall] | None = None
    function_call: FunctionCall | None = None
    audio: AudioRef | None = None


class ToolMessage(_Request, tag_field="role", tag="tool"):
    content: TextContent
    tool_call_id: Annotated[str, Meta(min_length=1, max_length=256)]


class FunctionMessage(_Request, tag_field="role", tag="function"):
    content: str | None
    name: Name


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage


def message_text(message: Message) -> str:
    """The text a message carries (its text parts joined), for token counts and the demo provider."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text if isinstance(part, TextPart) else getattr(part, "refusal", "") for part in content)


# --- Tools, tool choice, response format -----------------------------------------------------------------------


class FunctionDefinition(_Request):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+\Z")]
    description: str | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None


class FunctionTool(_Request, tag_field="type", tag="function"):
    function: FunctionDefinition


class CustomTool(_Request, tag_field="type", tag="custom"):
    custom: JSONObject


Tool = FunctionTool | CustomTool


class NamedFunction(_Request):
    name: str


class FunctionChoice(_Request, tag_field="type", tag="function"):
    function: NamedFunction


class CustomChoice(_Request, tag_field="type", tag="custom"):
    custom: NamedFunction


class AllowedToolsChoice(_Request, tag_field="type", tag="allowed_tools"):
    allowed_tools: JSONObject


ToolChoice = Literal["none", "auto", "required"] | FunctionChoice | CustomChoice | AllowedToolsChoice


class TextFormat(_Request, tag_field="type", tag="text"):
    pass


class JSONObjectFormat(_Request, tag_field="type", tag="json_object"):
    pass


class JSONSchemaSpec(_Request):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    description: str | None = None
    schema: JSONObject | None = None
    strict: bool | None = None


class JSONSchemaFormat(_Request, tag_field="type", tag="json_schema"):
    json_schema: JSONSchemaSpec


ResponseFormat = TextFormat | JSONObjectFormat | JSONSchemaFormat


class StreamOptions(_Request):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


Temperature = Annotated[float, Meta(ge=0, le=2)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
Stop = str | Annotated[list[str], Meta(max_length=4)]


class ChatRequest(_Request):
    """A chat completion request as OpenAI defines it."""

    model: ModelName
    messages: Annotated[list[Message], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    stop: Stop | None = None
    seed: Int64 | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[int, Meta(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: Annotated[str, Meta(max_length=256)] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    reasoning_effort: Annotated[str, Meta(max_length=32)] | None = None
    verbosity: Annotated[str, Meta(max_length=32)] | None = None
    service_tier: Annotated[str, Meta(max_length=32)] | None = None
    modalities: list[str] | None = None
    audio: JSONObject | None = None
    prediction: JSONObject | None = None
    web_search_options: JSONObject | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    functions: list[JSONObject] | None = None
    function_call: str | JSONObject | None = None
    # Top-level fields GreenGate does not know (filled by the parser, never from the body's own keys).
    passthrough: JSONObject = {}
    # The whole body as the client sent it, once validated: OpenAI-compatible upstreams get it as it came,
    # nested fields GreenGate does not model included (filled by the parser).
    raw: JSONObject = {}

    @property
    def wants_stream(self) -> bool:
        return bool(self.stream)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def output_limit(self) -> int | None:
        """The tighter of max_tokens and max_completion_tokens, if either was given."""
        limits = [v for v in (self.max_tokens, self.max_completion_tokens) if v is not None]
        return min(limits) if limits else None

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if isinstance(message, UserMessage):
                return message_text(message)
        return ""


KNOWN_REQUEST_FIELDS = frozenset(ChatRequest.__struct_fields__) - {"passthrough", "raw"}


# --- Usage -----------------------------------------------------------------------------------------------------


class PromptTokensDetails(Struct):
    cached_tokens: int = 0
    audio_tokens: int | UnsetType = UNSET
    # GreenGate's extension: tokens written to a provider's prompt cache (priced apart from plain input).
    cache_write_tokens: int | UnsetType = UNSET


class CompletionTokensDetails(Struct):
    reasoning_tokens: int = 0
    audio_tokens: int | UnsetType = UNSET
    accepted_prediction_tokens: int | UnsetType = UNSET
    rejected_prediction_tokens: int | UnsetType = UNSET


class Usage(Struct):
    """Token usage in OpenAI's wire shape, with accessors for what pricing and energy need."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @classmethod
    def of(cls, *, input: int, output: int, cached_input: int = 0, cache_write: int = 0, reasoning: int = 0) -> Usage:
        """input counts every prompt token, cached and cache-written ones included (OpenAI's convention)."""
        return cls(
            prompt_tokens=input,
            completion_tokens=output,
            total_tokens=input + output,
            prompt_tokens_details=PromptTokensDetails(
                cached_tokens=cached_input, cache_write_tokens=cache_write if cache_write else UNSET
            ),
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning),
        )

    def is_sane(self) -> bool:
        """Counts a ledger can hold: whole, not negative, below 2**31. An upstream reporting anything else is
        not believed, and GreenGate counts the tokens itself."""
        counts = [self.prompt_tokens, self.completion_tokens, self.total_tokens]
        if self.prompt_tokens_details is not None:
            counts.append(self.prompt_tokens_details.cached_tokens)
            if isinstance(self.prompt_tokens_details.cache_write_tokens, int):
                counts.append(self.prompt_tokens_details.cache_write_tokens)
        if self.completion_tokens_details is not None:
            counts.append(self.completion_tokens_details.reasoning_tokens)
        return all(isinstance(n, int) and 0 <= n < 2**31 for n in counts)

    @property
    def input_tokens(self) -> int:
        return self.prompt_tokens

    @property
    def output_tokens(self) -> int:
        return self.completion_tokens

    @property
    def cached_input_tokens(self) -> int:
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0

    @property
    def cache_write_tokens(self) -> int:
        details = self.prompt_tokens_details
        return details.cache_write_tokens if details and isinstance(details.cache_write_tokens, int) else 0

    @property
    def reasoning_tokens(self) -> int:
        return self.completion_tokens_details.reasoning_tokens if self.completion_tokens_details else 0


class GreenGateFigures(Struct):
    """The request's estimates, as its ledger row holds them (ledger.estimates). A figure nothing estimated is
    null, with its source saying why ("not_estimated", "unknown"...)."""

    energy_joules: float | None
    energy_joules_min: float | None
    energy_joules_max: float | None
    co2e_grams: float | None
    co2e_grams_min: float | None
    co2e_grams_max: float | None
    cost_usd: Decimal | None
    energy_source: str
    cost_source: str
    method: str


class ReportedUsage(Usage):
    """The usage GreenGate sends last in a stream: OpenAI's fields plus `greengate`, an extra field the official
    SDKs keep (their models allow extra fields). Only ever encoded: upstream usage is read as plain `Usage`, so
    an upstream cannot put figures in front of the client."""

    greengate: GreenGateFigures | UnsetType = UNSET


# --- Responses and chunks --------------------------------------------------------------------------------------

# Adapters map their providers' reasons onto these, the ones OpenAI's SDKs know.
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


class ResponseMessage(Struct):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[AnyToolCall] | UnsetType = UNSET
    function_call: FunctionCall | UnsetType = UNSET
    annotations: list[JSONObject] | UnsetType = UNSET
    audio: JSONObject | UnsetType = UNSET


class Choice(Struct):
    index: int
    message: ResponseMessage
    finish_reason: str | None = None
    logprobs: JSONObject | None = None


class ChatResponse(Struct, kw_only=True):
    # Keyword-only, so the fields can keep OpenAI's order on the wire.
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    # Defaults only so that an upstream omitting one is still readable.
    created: int = 0
    model: str = ""
    choices: list[Choice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | UnsetType = UNSET

    def text(self) -> str:
        return "".join(choice.message.content or "" for choice in self.choices)


class FunctionDelta(Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class Delta(Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: FunctionDelta | None = None


class ChunkChoice(Struct):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: JSONObject | None = None


class ChatChunk(Struct, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = []
    system_fingerprint: str | None = None
    service_tier: str | UnsetType = UNSET
    # Present (null) on every chunk when the client asked for usage, set on the last one.
    usage: Usage | None | UnsetType = UNSET

    def text(self) -> str:
        return "".join(choice.delta.content or "" for choice in self.choices)

    def tool_text(self) -> str:
        """Tool-call names and arguments in this chunk: generated output that counts as tokens too."""
        parts = []
        for choice in self.choices:
            for call in choice.delta.tool_calls or ():
                if call.function is not None:
                    parts.append((call.function.name or "") + (call.function.arguments or ""))
        return "".join(parts)


# --- Embeddings ------------------------------------------------------------------------------------------------

# OpenAI's limits: at most 2048 inputs per request, none of them empty. Token ids are non-negative 32-bit ints.
MAX_EMBEDDING_INPUTS = 2048
TokenId = Annotated[int, Meta(ge=0, le=2**31 - 1)]
EmbeddingText = Annotated[str, Meta(min_length=1)]
TokenIds = Annotated[list[TokenId], Meta(min_length=1)]
# msgspec allows one array type per union, so a list's items are a union and validation checks that they agree.
EmbeddingItem = EmbeddingText | TokenId | TokenIds
EmbeddingInput = EmbeddingText | Annotated[list[EmbeddingItem], Meta(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]


class EmbeddingRequest(_Request):
    """An embeddings request as OpenAI defines it: `input` is a string, strings, token ids, or lists of token ids."""

    model: ModelName
    input: EmbeddingInput
    dimensions: PositiveInt | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: Annotated[str, Meta(max_length=256)] | None = None
    # As ChatRequest's: unknown top-level fields, and the validated body as sent (filled by the parser).
    passthrough: JSONObject = {}
    raw: JSONObject = {}

    @property
    def inputs(self) -> list[str] | list[list[int]]:
        """Each input on its own: texts, or token-id lists (a flat list of ids is one input).

        Validation made a list's items all texts, all ids, or all id lists.
        """
        value = self.input
        if isinstance(value, str):
            return [value]
        if isinstance(value[0], int):
            return [cast(list[int], value)]
        return cast("list[str] | list[list[int]]", value)

    @property
    def texts(self) -> list[str] | None:
        """The inputs as texts, or None when they are token ids."""
        inputs = self.inputs
        return cast(list[str], inputs) if isinstance(inputs[0], str) else None


KNOWN_EMBEDDING_FIELDS = frozenset(EmbeddingRequest.__struct_fields__) - {"passthrough", "raw"}


# What little-endian float32 (OpenAI's base64 form) can hold: adapters read upstream vectors as these.
Float32 = Annotated[float, Meta(ge=-3.4028234663852886e38, le=3.4028234663852886e38)]


class EmbeddingResult(Struct):
    """What an adapter hands back: one float vector per input, in order, and the input tokens if the upstream
    reported them (None: GreenGate counts them)."""

    vectors: list[list[float]]
    input_tokens: int | None = None


class EmbeddingUsage(Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class Embedding(Struct, kw_only=True):
    object: Literal["embedding"] = "embedding"
    index: int
    # Floats, or the base64 of their little-endian float32 bytes when the client asked for "base64".
    embedding: list[float] | str


class EmbeddingResponse(Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# --- Errors ----------------------------------------------------------------------------------------------------


class ErrorDetail(Struct):
    message: str
    type: str = "server_error"
    param: str | None = None
    code: str | None = None


class ErrorBody(Struct):
    error: ErrorDetail


# Decimals (costs) as JSON numbers with their exact digits, not as strings.
encoder = msgspec.json.Encoder(decimal_format="number")
