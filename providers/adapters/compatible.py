"""Any server that speaks OpenAI's Chat Completions format: vLLM, Ollama, OpenRouter, Groq, Mistral, LM Studio.

OpenAI's adapter with the tolerance these servers need:
- The key is optional: with none, no Authorization header is sent (local servers need none).
- `created` and `model` may be missing: filled with the time received and the deployment's upstream model,
  so clients that display them see something true. A missing `object` is OpenAI's by default.
- Their own finish reasons ("eos", "max_tokens", "tool_use") map onto OpenAI's; an unknown one reads "stop".
- Usage may be absent (the pipeline then counts the tokens itself) or ride on the last content chunk (the
  pipeline takes usage from whichever chunk carries it).
- A stream that sent a finish_reason for every requested choice and then closed without `[DONE]` is complete:
  several servers omit `[DONE]`, and nothing more was owed. Without those finish reasons it was cut short,
  as with OpenAI.
- `stream_options.include_usage` is always asked for. A server too old to accept it answers 400 naming the
  field; that reaches the client as a 400 with the server's words: upgrade the server, or use the OpenAI kind
  against it only for non-streamed calls.
"""

from __future__ import annotations

import time

from gateway.schemas import ChatChunk, ChatRequest, ChatResponse
from providers.adapters.base import EnvConfig, ProviderSpec
from providers.adapters.openai import OpenAIAdapter
from providers.types import Target

# Reasons seen from vLLM, TGI, llama.cpp, Ollama and Anthropic-style proxies, as OpenAI names them.
_REASONS = {
    "eos": "stop",
    "eos_token": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
}


class OpenAICompatibleAdapter(OpenAIAdapter):
    kind = "compatible"

    def finish_reason(self, reason: str | None) -> str | None:
        return super().finish_reason(_REASONS.get(reason, reason) if reason is not None else None)

    def parse_response(self, data: bytes, target: Target) -> ChatResponse:
        response = super().parse_response(data, target)
        response.created = response.created or int(time.time())
        response.model = response.model or target.upstream_model
        return response

    def parse_chunk(self, data: bytes, target: Target) -> ChatChunk | None:
        chunk = super().parse_chunk(data, target)
        if chunk is not None:
            chunk.created = chunk.created or int(time.time())
            chunk.model = chunk.model or target.upstream_model
        return chunk

    def stream_ended(self, request: ChatRequest, finished: set[int], target: Target) -> None:
        if len(finished) >= (request.n or 1):
            return
        super().stream_ended(request, finished, target)


SPEC: ProviderSpec = ProviderSpec(
    kind="compatible",
    label="Any OpenAI-compatible server (vLLM, Ollama, OpenRouter, Groq, Mistral)",
    adapter=OpenAICompatibleAdapter,
    env=EnvConfig(
        api_key="COMPATIBLE_API_KEY",
        # The server's API root, e.g. http://127.0.0.1:11434/v1; required: there is no default server.
        base_url="COMPATIBLE_BASE_URL",
        default_base_url="",
        models="COMPATIBLE_MODELS",
        default_models=(),
    ),
)
