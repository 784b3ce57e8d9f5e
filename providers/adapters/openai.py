"""OpenAI's Chat Completions API: the wire format is GreenGate's own, so little translates.

Providers that speak OpenAI's format with differences (Azure OpenAI, self-hosted compatible servers) subclass
`OpenAIAdapter` and override its hooks: `url`, `headers`, `payload`, `error`, `finish_reason`, `parse_chunk`
and `stream_ended`; for embeddings, `embeddings_url`.

Embeddings: POST {base}/embeddings with the client's body, `encoding_format` always "float" (GreenGate makes
base64 itself, so every adapter deals in floats).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

import httpx
import msgspec
from msgspec import Meta, Struct

from gateway.schemas import (
    FINISH_REASONS,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    ErrorBody,
    Float32,
    encoder,
)
from providers.adapters import errors
from providers.adapters.base import EnvConfig, ProviderSpec
from providers.http import TRANSPORT_ERRORS, bearer_json_headers, client, timeouts
from providers.types import ProviderError, Target

_response = msgspec.json.Decoder(ChatResponse)
_chunk = msgspec.json.Decoder(ChatChunk)
_error = msgspec.json.Decoder(ErrorBody)


class _EmbeddingItem(Struct):
    embedding: list[Float32]
    index: int | None = None


class _EmbeddingUsage(Struct):
    prompt_tokens: Annotated[int, Meta(ge=0, le=10**12)] | None = None


class _Embeddings(Struct):
    data: list[_EmbeddingItem]
    usage: _EmbeddingUsage | None = None


_embeddings = msgspec.json.Decoder(_Embeddings)


def embedding_result(data: bytes, target: Target) -> EmbeddingResult:
    """OpenAI's embeddings answer (float form) as GreenGate's result, vectors in input order."""
    try:
        body = _embeddings.decode(data)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        raise errors.malformed(target.provider_name) from None
    items = body.data
    if all(item.index is not None for item in items):
        items = sorted(items, key=lambda item: item.index or 0)
        if [item.index for item in items] != list(range(len(items))):
            raise errors.malformed(target.provider_name)
    tokens = body.usage.prompt_tokens if body.usage is not None else None
    return EmbeddingResult(vectors=[item.embedding for item in items], input_tokens=tokens)


def request_body(request: ChatRequest, target: Target, *, stream: bool) -> bytes:
    return encoder.encode(request_payload(request, target, stream=stream))


def request_payload(request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
    # The client's own body (validated already), so fields GreenGate does not model reach the upstream intact.
    payload: dict[str, Any] = {**request.raw, "model": target.upstream_model}
    if stream:
        # Always ask for usage so the ledger is exact; the pipeline hides it if the client did not ask.
        payload["stream"] = True
        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    else:
        payload.pop("stream", None)
        payload.pop("stream_options", None)
    return payload


def _finish(reason: str | None) -> str | None:
    # Some compatible servers report their own reasons ("eos", "abort"); clients only know OpenAI's.
    return reason if reason is None or reason in FINISH_REASONS else "stop"


def stream_cut(target: Target) -> ProviderError:
    return ProviderError(
        502,
        f"Provider '{target.provider_name}' ended the stream early.",
        retryable=False,
        code="upstream_stream_cut",
    )


class OpenAIAdapter:
    kind = "openai"

    # --- Hooks for OpenAI-format providers ---------------------------------------------------------------------

    def headers(self, target: Target) -> dict[str, str]:
        return bearer_json_headers(target)

    def url(self, target: Target) -> str:
        return target.base_url.rstrip("/") + "/chat/completions"

    def embeddings_url(self, target: Target) -> str:
        return target.base_url.rstrip("/") + "/embeddings"

    def payload(self, request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        return request_payload(request, target, stream=stream)

    def error(self, status: int, body: bytes, headers: httpx.Headers, target: Target) -> ProviderError:
        return errors.from_status(status, body, headers, target.provider_name)

    def finish_reason(self, reason: str | None) -> str | None:
        return _finish(reason)

    def parse_response(self, data: bytes, target: Target) -> ChatResponse:
        try:
            body = _response.decode(data)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            raise errors.malformed(target.provider_name) from None
        if not body.choices:
            raise errors.malformed(target.provider_name)
        for choice in body.choices:
            choice.finish_reason = self.finish_reason(choice.finish_reason)
        return body

    def parse_chunk(self, data: bytes, target: Target) -> ChatChunk | None:
        """One SSE data line as a chunk; None for a line that carries nothing to relay."""
        try:
            chunk = _chunk.decode(data)
        except msgspec.DecodeError:
            raise self._stream_failure(data, target) from None
        for choice in chunk.choices:
            choice.finish_reason = self.finish_reason(choice.finish_reason)
        return chunk

    def stream_ended(self, request: ChatRequest, finished: set[int], target: Target) -> None:
        """The stream closed without [DONE]; `finished` holds the choices that sent a finish_reason.

        OpenAI always ends with [DONE], so a stream without it was cut short by the upstream.
        """
        raise stream_cut(target)

    # --- The calls ---------------------------------------------------------------------------------------------

    async def _post(self, url: str, payload: dict[str, Any], target: Target) -> bytes:
        """POST a JSON payload; the 200 answer's body, or the failure as a ProviderError."""
        try:
            response = await client().post(
                url, content=encoder.encode(payload), headers=self.headers(target), timeout=timeouts(target)
            )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None
        if response.status_code != 200:
            raise self.error(response.status_code, response.content, response.headers, target)
        return response.content

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse:
        body = await self._post(self.url(target), self.payload(request, target, stream=False), target)
        return self.parse_response(body, target)

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResult:
        payload = {**request.raw, "model": target.upstream_model, "encoding_format": "float"}
        return embedding_result(await self._post(self.embeddings_url(target), payload, target), target)

    async def stream(self, request: ChatRequest, target: Target) -> AsyncGenerator[ChatChunk, None]:
        http = client()
        finished: set[int] = set()
        try:
            async with http.stream(
                "POST",
                self.url(target),
                content=encoder.encode(self.payload(request, target, stream=True)),
                headers=self.headers(target),
                timeout=timeouts(target),
            ) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    raise self.error(response.status_code, body, response.headers, target)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments and event names carry nothing to relay
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = self.parse_chunk(data.encode(), target)
                    if chunk is None:
                        continue
                    finished.update(c.index for c in chunk.choices if c.finish_reason is not None)
                    yield chunk
                self.stream_ended(request, finished, target)
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None

    def _stream_failure(self, data: bytes, target: Target) -> ProviderError:
        """A data line that is not a chunk: an error event the upstream sent mid-stream, or garbage."""
        try:
            failure = _error.decode(data)
        except msgspec.DecodeError:
            return errors.malformed(target.provider_name)
        message = failure.error.message[:500] or "The upstream stream failed."
        return ProviderError(502, message, retryable=False, code="upstream_error")


SPEC: ProviderSpec = ProviderSpec(
    kind="openai",
    label="OpenAI",
    adapter=OpenAIAdapter,
    env=EnvConfig(
        api_key="OPENAI_API_KEY",
        base_url="OPENAI_BASE_URL",
        default_base_url="https://api.openai.com/v1",
        models="OPENAI_MODELS",
        default_models=("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o4-mini"),
    ),
    ecologits_provider="openai",
    price_provider="openai",
)
