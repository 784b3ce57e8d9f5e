"""OpenAI and any OpenAI-compatible server: the wire format is already GreenGate's, so little translates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from providers.adapters import errors
from providers.http import TRANSPORT_ERRORS, client
from providers.types import ChatChunk, ChatRequest, ChatResponse, ProviderError, Target, Usage


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        return Usage(
            prompt_tokens=int(raw.get("prompt_tokens") or 0), completion_tokens=int(raw.get("completion_tokens") or 0)
        )
    except (TypeError, ValueError):
        return None


class OpenAIProvider:
    kind = "openai"

    def _payload(self, request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        payload = {**request.params, "model": target.upstream_model, "messages": request.messages}
        if stream:
            # Always ask for usage so the ledger is exact; the pipeline hides it if the client did not ask.
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _headers(self, target: Target) -> dict[str, str]:
        return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}

    def _url(self, target: Target) -> str:
        return target.base_url.rstrip("/") + "/chat/completions"

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse:
        try:
            response = await client().post(
                self._url(target),
                json=self._payload(request, target, stream=False),
                headers=self._headers(target),
                timeout=target.timeout,
            )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None
        if response.status_code != 200:
            raise errors.from_status(response.status_code, response.content, response.headers, target.provider_name)
        try:
            body = response.json()
        except ValueError:
            raise errors.malformed(target.provider_name) from None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise errors.malformed(target.provider_name)
        usage = _usage(body.get("usage"))
        return ChatResponse(body=body, usage=usage or Usage(estimated=True))

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[ChatChunk]:
        http = client()
        try:
            async with http.stream(
                "POST",
                self._url(target),
                json=self._payload(request, target, stream=True),
                headers=self._headers(target),
                timeout=target.timeout,
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
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise errors.malformed(target.provider_name) from None
                    if not isinstance(chunk, dict):
                        raise errors.malformed(target.provider_name)
                    if "error" in chunk:
                        message = errors.upstream_message(data.encode()) or "The upstream stream failed."
                        raise ProviderError(502, message, retryable=False, code="upstream_error")
                    yield ChatChunk(body=chunk, usage=_usage(chunk.get("usage")))
                # A stream that ends without [DONE] was cut short by the upstream.
                raise ProviderError(
                    502,
                    f"Provider '{target.provider_name}' ended the stream early.",
                    retryable=False,
                    code="upstream_stream_cut",
                )
        except TRANSPORT_ERRORS as exc:
            raise errors.from_transport(exc, target.provider_name) from None
