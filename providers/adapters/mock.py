"""The built-in demo provider: answers offline, deterministically, with real token counts and chunks.

Embeddings: unit vectors drawn from a hash of each input, so the same text always gets the same vector (and
different texts, unrelated ones: nothing semantic). `dimensions` sets their size, DEMO_EMBEDDING_DIMENSIONS
(256) if not given; token counts are real (providers.tokens).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
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
    EmbeddingRequest,
    EmbeddingResult,
    ResponseMessage,
    Usage,
    message_text,
)
from providers.adapters.base import ProviderSpec
from providers.tokens import count_messages, embedding_input_tokens, split_tokens
from providers.types import ProviderError, Target

FINGERPRINT = "greengate-demo"
DEMO_EMBEDDING_DIMENSIONS = 256
# The demo computes vectors in pure Python on the event loop: bounded so one request cannot stall it.
MAX_DEMO_DIMENSIONS = 4096
MAX_DEMO_VALUES = 2**20


def demo_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A unit vector from the input's SHA-256 stream (SHAKE-256); the same input always gives the same one."""
    seed = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else struct.pack(f"<{len(item)}I", *item)
    kind = b"t" if isinstance(item, str) else b"i"  # a text and its own token ids are different inputs
    raw = struct.unpack(f"<{dimensions}h", hashlib.shake_256(kind + seed).digest(2 * dimensions))
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


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

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResult:
        inputs = request.inputs
        dimensions = request.dimensions or DEMO_EMBEDDING_DIMENSIONS
        if dimensions > MAX_DEMO_DIMENSIONS or dimensions * len(inputs) > MAX_DEMO_VALUES:
            raise ProviderError(
                400,
                f"The demo provider makes at most {MAX_DEMO_DIMENSIONS} dimensions and {MAX_DEMO_VALUES} values "
                "per request; ask for fewer dimensions or send fewer inputs.",
                retryable=False,
                code="invalid_value",
            )
        vectors = [demo_vector(item, dimensions) for item in inputs]
        return EmbeddingResult(
            vectors=vectors, input_tokens=embedding_input_tokens(inputs, target.upstream_model).tokens
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
