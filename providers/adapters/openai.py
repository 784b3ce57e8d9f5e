"""OpenAI and any OpenAI-compatible server: the wire format is GreenGate's own, so little translates."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from gateway.schemas import FINISH_REASONS, ChatChunk, ChatRequest, ChatResponse, ErrorBody, encoder
from providers.adapters import errors
from providers.adapters.base import EnvConfig, ProviderSpec
from providers.http import TRANSPORT_ERRORS, client, timeouts
from providers.types import ProviderError, Target

_response = msgspec.json.Decoder(ChatResponse)
_chunk = msgspec.json.Decoder(ChatChunk)
_error = msgspec.json.Decoder(ErrorBody)


def request_body(request: ChatRequest, target: Target, *, stream: bool) -> bytes:
    # The client's own body (validated already), so fields GreenGate does not model reach the upstream intact.
    payload: dict[str, Any] = {**request.raw, "model": target.upstream_model}
    if stream:
        # Always ask for usage so the ledger is exact; the pipeline hides it if the client did not ask.
        payload["stream"] = True
        payload["stream_options"] = {**payload.get("stream_options", {}), "include_usage": True}
    else:
        payload.pop("stream", None)
        payload.pop("stream_options", None)
    return encoder.encode(payload)


def _finish(reason: str | None) -> str | None:
    # Some compatible servers report their own reasons ("eos", "abort"); clients only know OpenAI's.
    return reason if reason is None or reason in FINISH_REASONS else "stop"


class OpenAIAdapter:
    kind = "openai"

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        return headers

    def url(self, target: Target) -> str:
        return target.base_url.rstrip("/") + "/chat/completions"

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse:
        try:
            response = await client().post(
                self.url(target),
                content=request_body(request, target, stream=False),
                headers=self.headers(target),
                timeout=timeouts(target),
            )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None
        if response.status_code != 200:
            raise errors.from_status(response.status_code, response.content, response.headers, target.provider_name)
        try:
            body = _response.decode(response.content)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            raise errors.malformed(target.provider_name) from None
        if not body.choices:
            raise errors.malformed(target.provider_name)
        for choice in body.choices:
            choice.finish_reason = _finish(choice.finish_reason)
        return body

    async def stream(self, request: ChatRequest, target: Target) -> AsyncGenerator[ChatChunk, None]:
        http = client()
        try:
            async with http.stream(
                "POST",
                self.url(target),
                content=request_body(request, target, stream=True),
                headers=self.headers(target),
                timeout=timeouts(target),
            ) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    raise errors.from_status(response.status_code, body, response.headers, target.provider_name)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments and event names carry nothing to relay
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    yield self._chunk(data.encode(), target)
                # A stream that ends without [DONE] was cut short by the upstream.
                raise ProviderError(
                    502,
                    f"Provider '{target.provider_name}' ended the stream early.",
                    retryable=False,
                    code="upstream_stream_cut",
                )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None

    def _chunk(self, data: bytes, target: Target) -> ChatChunk:
        try:
            chunk = _chunk.decode(data)
        except msgspec.DecodeError:
            try:
                failure = _error.decode(data)
            except msgspec.DecodeError:
                raise errors.malformed(target.provider_name) from None
            message = failure.error.message[:500] or "The upstream stream failed."
            raise ProviderError(502, message, retryable=False, code="upstream_error") from None
        for choice in chunk.choices:
            choice.finish_reason = _finish(choice.finish_reason)
        return chunk


SPEC: ProviderSpec = ProviderSpec(
    kind="openai",
    label="OpenAI (or any OpenAI-compatible server)",
    adapter=OpenAIAdapter,
    env=EnvConfig(
        api_key="OPENAI_API_KEY",
        base_url="OPENAI_BASE_URL",
        default_base_url="https://api.openai.com/v1",
        models="OPENAI_MODELS",
        default_models=("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o4-mini"),
    ),
)
