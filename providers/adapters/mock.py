"""The built-in demo provider: answers offline, deterministically, with real token counts and chunks."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncGenerator

from msgspec import UNSET

from gateway.schemas import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
    message_text,
)
from providers.adapters.base import ProviderSpec
from providers.tokens import count_messages, split_tokens
from providers.types import Target

FINGERPRINT = "greengate-demo"


def _reply(request: ChatRequest, target: Target) -> tuple[list[str], str, Usage]:
    excerpt = " ".join(request.last_user_text().split())[:80]
    text = (
        f'This is GreenGate\'s demo provider, answering offline. You said: "{excerpt}". '
        "Add a provider key to get real completions."
    )
    pieces = split_tokens(text, target.upstream_model)
    limit = request.output_limit
    finish = "stop"
    if limit is not None and len(pieces) > limit:
        pieces, finish = pieces[:limit], "length"
    prompt = count_messages((message_text(m) for m in request.messages), target.upstream_model).tokens
    return pieces, finish, Usage.of(input=prompt, output=len(pieces))


def _completion_id(request: ChatRequest) -> str:
    digest = hashlib.sha256(request.last_user_text().encode("utf-8", "replace")).hexdigest()[:24]
    return f"chatcmpl-demo-{digest}"


class MockAdapter:
    kind = "mock"

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse:
        pieces, finish, usage = _reply(request, target)
        return ChatResponse(
            id=_completion_id(request),
            created=int(time.time()),
            model=target.upstream_model,
            system_fingerprint=FINGERPRINT,
            choices=[Choice(index=0, message=ResponseMessage(content="".join(pieces)), finish_reason=finish)],
            usage=usage,
        )

    async def stream(self, request: ChatRequest, target: Target) -> AsyncGenerator[ChatChunk, None]:
        pieces, finish, usage = _reply(request, target)
        completion_id, created = _completion_id(request), int(time.time())

        def chunk(delta: Delta, finish_reason: str | None = None, usage: Usage | None = None) -> ChatChunk:
            choices = [] if usage else [ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)]
            return ChatChunk(
                id=completion_id,
                created=created,
                model=target.upstream_model,
                choices=choices,
                system_fingerprint=FINGERPRINT,
                usage=usage if usage else UNSET,
            )

        yield chunk(Delta(role="assistant", content=""))
        for piece in pieces:
            await asyncio.sleep(0)  # yield to the loop between chunks, like a network stream would
            yield chunk(Delta(content=piece))
        yield chunk(Delta(), finish)
        yield chunk(Delta(), usage=usage)


SPEC: ProviderSpec = ProviderSpec(kind="mock", label="Demo (built-in, offline)", adapter=MockAdapter, builtin=True)
