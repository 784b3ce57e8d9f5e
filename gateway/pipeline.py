"""The one request pipeline behind REST and SSE. Read top to bottom, it is the order of the steps."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from gateway.accounting import Call, account
from gateway.auth import authenticate
from gateway.errors import GatewayError, from_provider_error, internal_error, model_not_found
from gateway.live_config import Snapshot, live_config
from gateway.validation import parse_chat_request
from providers.adapters import adapter_for
from providers.router import attempt_order
from providers.types import ChatChunk, ProviderError, Target

logger = logging.getLogger(__name__)


async def complete(call: Call, body: bytes, authorization: str | None) -> dict[str, Any]:
    """A whole completion as OpenAI's JSON body."""
    try:
        snapshot = await _identify_and_admit(call, body, authorization)
        targets = _route(call, snapshot)
        response = await _call_with_fallback(call, targets)
        call.usage = response.usage
        if response.usage.estimated:
            # The upstream sent no usage: count the reply, and give the client the count it expects.
            call.streamed.append(_reply_text(response.body))
            response.body["usage"] = call.final_usage().as_openai()
        call.status = 200
        return response.body
    except GatewayError as exc:
        call.fail(exc.status, exc.code)
        raise
    except Exception:
        logger.exception("completion failed inside GreenGate")
        error = internal_error()
        call.fail(error.status, "internal_error")
        raise error from None
    finally:
        account(call)


async def open_stream(call: Call, body: bytes, authorization: str | None) -> AsyncIterator[dict[str, Any]]:
    """Start a stream; errors before the first chunk raise GatewayError so the transport can send a status."""
    try:
        snapshot = await _identify_and_admit(call, body, authorization)
        targets = _route(call, snapshot)
        upstream, first = await _open_with_fallback(call, targets)
    except GatewayError as exc:
        call.fail(exc.status, exc.code)
        account(call)
        raise
    except asyncio.CancelledError:
        account(call)  # the client left before the stream began
        raise
    except Exception:
        logger.exception("stream failed inside GreenGate")
        error = internal_error()
        call.fail(error.status, "internal_error")
        account(call)
        raise error from None
    return _relay(call, upstream, first)


def finish(call: Call) -> None:
    """Transports call this on every exit; it records the request if nothing else has."""
    account(call)


# 1-3. Identify, authenticate, admit.
async def _identify_and_admit(call: Call, body: bytes, authorization: str | None) -> Snapshot:
    call.key, snapshot = await authenticate(authorization, live_config)
    call.chat = parse_chat_request(body)
    return snapshot


# 5. Route.
def _route(call: Call, snapshot: Snapshot) -> list[Target]:
    assert call.chat is not None
    targets = snapshot.routes.get(call.chat.model)
    if not targets:
        raise model_not_found(call.chat.model)
    return attempt_order(targets)


# 6. Call, falling through to the next deployment on a retryable failure.
async def _call_with_fallback(call: Call, targets: list[Target]):
    assert call.chat is not None
    last: ProviderError | None = None
    for target in targets:
        call.target = target
        try:
            return await adapter_for(target.kind).complete(call.chat, target)
        except ProviderError as exc:
            last = exc
            logger.warning("deployment failed", extra={"provider": target.provider_name, "code": exc.code})
            if not exc.retryable:
                break
    assert last is not None
    raise from_provider_error(last)


async def _open_with_fallback(call: Call, targets: list[Target]) -> tuple[AsyncIterator[ChatChunk], ChatChunk]:
    """Fallback is possible only until the first chunk: after that the client has seen this deployment's words."""
    assert call.chat is not None
    last: ProviderError | None = None
    for target in targets:
        call.target = target
        upstream = adapter_for(target.kind).stream(call.chat, target)
        try:
            first = await anext(upstream)
            return upstream, first
        except StopAsyncIteration:
            last = ProviderError(502, f"Provider '{target.provider_name}' sent an empty stream.", retryable=True)
        except ProviderError as exc:
            last = exc
            await upstream.aclose()
        logger.warning("deployment failed", extra={"provider": target.provider_name, "code": last.code})
        if not last.retryable:
            break
    assert last is not None
    raise from_provider_error(last)


async def _relay(call: Call, upstream: AsyncIterator[ChatChunk], first: ChatChunk) -> AsyncIterator[dict[str, Any]]:
    """Pass each upstream chunk on as it arrives; account when done, failed or abandoned."""
    assert call.chat is not None
    include_usage = call.chat.include_usage
    chunk: ChatChunk | None = first
    try:
        while chunk is not None:
            if chunk.usage is not None:
                call.usage = chunk.usage
            text = chunk.content
            if text:
                call.streamed.append(text)
                if call.first_token_at is None:
                    call.first_token_at = time.monotonic()
            is_usage_only = not chunk.body.get("choices") and chunk.usage is not None
            if include_usage:
                yield chunk.body
            elif not is_usage_only:
                chunk.body.pop("usage", None)
                yield chunk.body
            chunk = await anext(upstream, None)
        if include_usage and call.usage is None:
            # The upstream sent no usage: honour the client's request with GreenGate's own count.
            usage = call.final_usage()
            yield {**_chunk_envelope(first), "choices": [], "usage": usage.as_openai()}
        call.status = 200
    except ProviderError as exc:
        error = from_provider_error(exc)
        call.fail(error.status, error.code)
        yield error.body()
    finally:
        await upstream.aclose()
        account(call)


def _reply_text(body: dict[str, Any]) -> str:
    texts = []
    for choice in body.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            texts.append(message["content"])
    return "".join(texts)


def _chunk_envelope(chunk: ChatChunk) -> dict[str, Any]:
    return {key: chunk.body[key] for key in ("id", "object", "created", "model") if key in chunk.body}
