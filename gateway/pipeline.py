"""The one request flow behind REST and SSE. Read top to bottom, it is the order of the steps.

1. identify      request id (made at the ASGI edge); the typed request, parsed once
2. authenticate  key -> tenant and limits, from process memory
3. admit         rate limits, budget, idempotency
4. cache         exact, then semantic
5. route         model -> deployments by priority and weight
6. call          the adapter, falling through to the next deployment on a retryable failure
7. account       ledger row and log line, once, before the last byte of the answer leaves

Transports only adapt this to their wire: they hand `serve()` a Responder and write what it is given.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import struct
from typing import Protocol

from msgspec import UNSET

from gateway import attempts, key_usage, lifecycle
from gateway.accounting import account, figure_headers, figures, final_usage
from gateway.admission import budgets, idempotency, rate_limits
from gateway.auth import authenticate
from gateway.call import EMBEDDINGS, Call
from gateway.errors import (
    GatewayError,
    from_provider_error,
    internal_error,
    invalid_request,
    model_not_found,
    shutting_down,
)
from gateway.live_config import live_config
from gateway.schemas import (
    ChatChunk,
    Embedding,
    EmbeddingResponse,
    EmbeddingResult,
    EmbeddingUsage,
    ReportedUsage,
    Usage,
    encoder,
)
from gateway.validation import parse_chat_request, parse_embedding_request
from greengate_site.request_context import header_value
from providers.adapters import errors
from providers.adapters.registry import spec_for
from providers.router import attempt_order
from providers.types import ProviderError, Target

logger = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]


class Responder(Protocol):
    """How a transport writes what the pipeline answers."""

    started: bool  # a stream's headers have gone out

    async def json(self, status: int, body: bytes, headers: Headers) -> None: ...

    async def start_stream(self, headers: Headers) -> None: ...

    async def event(self, data: bytes) -> None: ...

    async def end_stream(self, *, done: bool) -> None: ...

    async def error(self, error: GatewayError) -> None:
        """A JSON error response, or an in-stream error event once the stream has started."""


# 1-2. Identify and authenticate.
async def identify(call: Call, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Who is calling and what they ask. The key comes first: an unknown caller's body is never parsed.

    Never raises a GatewayError: a refusal is kept on the call for `serve()` to answer and account.
    """
    try:
        try:
            call.key, call.snapshot = await authenticate(header_value(headers, b"authorization"), live_config)
            key_usage.note(call.key.key_id)
        except GatewayError as refused:
            # Guessing keys is limited per client address, and never costs a tenant anything.
            raise await rate_limits.admit_unauthenticated(call.client_address, call.request_id) or refused from None
        if call.endpoint == EMBEDDINGS:
            call.embedding = parse_embedding_request(body)
        else:
            call.chat = parse_chat_request(body)
            call.stream = call.chat.wants_stream
        call.idempotency_key = idempotency.key_of(headers)
        if call.idempotency_key is not None:
            call.fingerprint = idempotency.fingerprint(call.endpoint, body)
    except GatewayError as exc:
        call.error = exc
    except Exception:
        logger.exception("identifying the request failed inside GreenGate")
        call.error = internal_error()


async def serve(call: Call, out: Responder) -> None:
    try:
        if call.error is not None:
            raise call.error
        stored = await admit(call)
        if stored is not None:
            await answer_replay(call, stored, out)
            return
        if call.idempotency is not None:
            out = idempotency.Recorder(out, call.idempotency)
        if await answer_from_cache(call, out):
            return
        targets = await route(call)
        if call.embedding is not None:
            await answer_embeddings(call, targets, out)
        elif call.stream:
            await answer_stream(call, targets, out)
        else:
            await answer_json(call, targets, out)
    except GatewayError as exc:
        call.fail(exc.status, exc.code)
        account(call)
        for name, value in call.response_headers.items():
            exc.headers.setdefault(name, value)
        await out.error(exc)
    except asyncio.CancelledError:
        account(call)  # the client left, or the server is shutting down: billed for what was sent
        if lifecycle.draining and out.started:
            # Cut off by the end of a shutdown's grace: a stream still open is told why, not just dropped.
            with contextlib.suppress(Exception):
                await asyncio.shield(out.error(shutting_down()))
        raise
    except Exception:
        logger.exception("request failed inside GreenGate")
        error = internal_error()
        call.fail(error.status, "internal_error")
        account(call)
        await out.error(error)
    finally:
        account(call)
        # After the answer has gone out: an answer worth keeping was stored on its way; otherwise free the key.
        idempotency.release_later(call.idempotency)


# 3. Admit.
async def admit(call: Call) -> idempotency.Stored | None:
    """The caller's models, then rate limits, idempotency and budget; a stored answer if the call is a repeat.

    Idempotency comes before the budget: a repeat replays what was already paid for, even over budget.
    """
    assert call.key is not None
    if not call.key.limits.allows_model(call.model):
        raise model_not_found(call.model)  # as if it did not exist: a caller learns nothing of others' models
    await rate_limits.admit(call)
    stored = await idempotency.admit(call)
    if stored is None:
        await budgets.admit(call)
    return stored


async def answer_replay(call: Call, stored: idempotency.Stored, out: Responder) -> None:
    """A repeat of an idempotency key: the first answer again, no upstream call, nothing charged."""
    call.replay_of = stored.request_id
    call.status = stored.status
    account(call)
    await idempotency.replay(stored, out, extra_headers(call))


# 4. Cache.
async def answer_from_cache(call: Call, out: Responder) -> bool:
    """Answer from the exact or semantic cache; True if it did. Every request misses until the cache exists."""
    return False


# 5. Route.
async def route(call: Call) -> list[Target]:
    assert call.snapshot is not None
    targets = call.snapshot.routes.get(call.model)
    if not targets:
        # Perhaps a route added a moment ago by another process (the CLI, without Redis): look once more.
        fresher = await live_config.reload_after_miss()
        if fresher is not None:
            call.snapshot = fresher
            targets = fresher.routes.get(call.model)
    if not targets:
        raise model_not_found(call.model)
    if call.embedding is not None:
        # An embedding model is a deployment like any other; only kinds with an embeddings API can serve it.
        targets = tuple(t for t in targets if spec_for(t.kind).supports.embeddings)
        if not targets:
            raise invalid_request(
                f"The model '{call.model}' cannot create embeddings: none of its providers has an embeddings API.",
                param="model",
                code="model_not_supported",
            )
    return attempt_order(targets)


# 6-7. Call and account, as JSON.
async def answer_json(call: Call, targets: list[Target], out: Responder) -> None:
    response = await attempts.complete(call, targets)
    for choice in response.choices:
        call.saw_output(choice.message.content or "")
    call.usage = response.usage if response.usage is not None and response.usage.is_sane() else None
    if call.usage is None:
        # The upstream sent no usage: give the client GreenGate's own count, as the ledger keeps it.
        response.usage = final_usage(call)[0]
    call.status = 200
    account(call)
    await out.json(200, encoder.encode(response), answer_headers(call))


# 6-7. Call and account, for embeddings.
async def answer_embeddings(call: Call, targets: list[Target], out: Responder) -> None:
    assert call.embedding is not None
    result = await attempts.embed(call, targets)
    assert call.target is not None
    if result.input_tokens is not None and 0 <= result.input_tokens < 2**31:
        call.usage = Usage.of(input=result.input_tokens, output=0)
    usage, _ = final_usage(call)  # the upstream's count, else GreenGate's
    call.status = 200
    account(call)
    body = _embedding_response(result, call.target.upstream_model, usage, call.embedding.encoding_format == "base64")
    await out.json(200, encoder.encode(body), answer_headers(call))


def _embedding_response(result: EmbeddingResult, model: str, usage: Usage, as_base64: bool) -> EmbeddingResponse:
    """Adapters deal in floats; "base64" is made here, as OpenAI makes it: little-endian float32 bytes."""
    data = [
        Embedding(index=i, embedding=_float32_base64(vector) if as_base64 else vector)
        for i, vector in enumerate(result.vectors)
    ]
    return EmbeddingResponse(
        data=data,
        model=model,
        usage=EmbeddingUsage(prompt_tokens=usage.input_tokens, total_tokens=usage.input_tokens),
    )


def _float32_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# 6-7. Call and account, as server-sent events.
async def answer_stream(call: Call, targets: list[Target], out: Responder) -> None:
    assert call.chat is not None
    upstream, first, deadline = await attempts.open_stream(call, targets)
    include_usage = call.chat.include_usage
    try:
        await out.start_stream(extra_headers(call))
        # One deadline for the whole relay (a timer per chunk cost measurably at high concurrency).
        async with asyncio.timeout_at(deadline):
            chunk: ChatChunk | None = first
            while chunk is not None:
                if _relay(call, chunk, include_usage):
                    await out.event(encoder.encode(chunk))
                chunk = await anext(upstream, None)
        call.status = 200
        account(call)
        if include_usage:
            await out.event(encoder.encode(_usage_chunk(call, first)))
        await out.end_stream(done=True)
    except TimeoutError:
        assert call.target is not None
        raise from_provider_error(attempts.timed_out(call.target)) from None
    except ProviderError as exc:
        assert call.target is not None
        exc.message = errors.redact(exc.message, call.target.api_key)
        await attempts.note_stream_failure(call.target, exc)
        raise from_provider_error(exc) from None
    finally:
        await upstream.aclose()


def extra_headers(call: Call) -> Headers:
    return [(name.encode(), value.encode()) for name, value in call.response_headers.items()]


def answer_headers(call: Call) -> Headers:
    return [*figure_headers(call), *extra_headers(call)]


def _relay(call: Call, chunk: ChatChunk, include_usage: bool) -> bool:
    """Note what the chunk carries; whether to pass it on. Usage goes out once, last, after accounting."""
    if isinstance(chunk.usage, Usage) and chunk.usage.is_sane():
        call.usage = chunk.usage
    call.saw_output(chunk.text() + chunk.tool_text())
    if not chunk.choices:
        return False  # a usage-only chunk: the final one is made after accounting
    chunk.usage = None if include_usage else UNSET
    return True


def _usage_chunk(call: Call, first: ChatChunk) -> ChatChunk:
    """The last chunk: the usage, and the estimates (whose headers left before the answer) in `usage.greengate`."""
    u, _ = final_usage(call)
    usage = ReportedUsage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.total_tokens,
        prompt_tokens_details=u.prompt_tokens_details,
        completion_tokens_details=u.completion_tokens_details,
        greengate=figures(call) or UNSET,
    )
    return ChatChunk(
        id=first.id,
        created=first.created,
        model=first.model,
        choices=[],
        system_fingerprint=first.system_fingerprint,
        usage=usage,
    )
