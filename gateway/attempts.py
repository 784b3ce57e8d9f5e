"""Step 6's one attempt loop, for JSON and streams alike: breakers, deadlines, fallback, retries.

Deployments are tried in the router's order, skipping those whose breaker is open. A retryable failure
(a timeout, a connection error, a 429 or 5xx upstream) feeds the breaker and falls through to the next one;
a non-retryable one (the upstream judged the request itself) is the answer. When a whole round failed
retryably, the round is tried again up to UPSTREAM_RETRIES times, after a backoff that honours the
upstream's Retry-After (one asking for more than UPSTREAM_RETRY_MAX_WAIT is not waited for).

When everything was rate limited the client gets 429 with Retry-After, not 502; when every breaker is open,
503 naming the model, with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from django.conf import settings

from gateway.call import Call
from gateway.errors import GatewayError, from_provider_error
from gateway.schemas import ChatChunk, ChatResponse, EmbeddingResult
from providers import breaker, network
from providers.adapters import errors
from providers.adapters.registry import adapter_for
from providers.types import ProviderError, Target

logger = logging.getLogger("gateway.pipeline")

T = TypeVar("T")
RATE_LIMITED = "upstream_rate_limited"
BACKOFF_BASE_SECONDS = 0.25


async def _answered_at_once(target: Target, answer: Awaitable[T]) -> T:
    """An answer that arrives whole (JSON, embeddings): its first byte is all of it, so the tighter deadline."""
    try:
        async with asyncio.timeout(min(target.first_byte_timeout, target.total_timeout)):
            return await answer
    except TimeoutError:
        raise timed_out(target) from None


async def complete(call: Call, targets: list[Target]) -> ChatResponse:
    assert call.chat is not None
    chat = call.chat

    async def try_one(target: Target) -> ChatResponse:
        return await _answered_at_once(target, adapter_for(target.kind).complete(chat, target))

    return await run(call, targets, try_one)


async def embed(call: Call, targets: list[Target]) -> EmbeddingResult:
    assert call.embedding is not None
    request = call.embedding

    async def try_one(target: Target) -> EmbeddingResult:
        result = await _answered_at_once(target, adapter_for(target.kind).embed(request, target))
        if len(result.vectors) != len(request.inputs):
            # A vector short would shift every index after it: a broken answer, worth trying elsewhere.
            raise ProviderError(
                502,
                f"Provider '{target.provider_name}' returned {len(result.vectors)} embeddings for "
                f"{len(request.inputs)} inputs.",
                retryable=True,
                code="upstream_malformed",
            )
        return result

    return await run(call, targets, try_one)


Stream = tuple[AsyncGenerator[ChatChunk, None], ChatChunk, float]


async def open_stream(call: Call, targets: list[Target]) -> Stream:
    """The upstream stream, its first chunk, and the loop time its total deadline falls at.

    Fallback is possible only until the first chunk: after that the client has seen this deployment's words.
    """
    assert call.chat is not None
    chat = call.chat
    loop = asyncio.get_running_loop()

    async def try_one(target: Target) -> Stream:
        started = loop.time()
        deadline = started + target.total_timeout
        upstream = adapter_for(target.kind).stream(chat, target)
        try:
            async with asyncio.timeout_at(min(started + target.first_byte_timeout, deadline)):
                first = await anext(upstream)
        except StopAsyncIteration:
            raise ProviderError(
                502, f"Provider '{target.provider_name}' sent an empty stream.", retryable=True
            ) from None
        except TimeoutError:
            await upstream.aclose()
            raise timed_out(target) from None
        except ProviderError as exc:
            await upstream.aclose()
            if exc.status >= 500 and not exc.retryable:
                # Nothing reached the client yet: an in-stream error or a cut before the first chunk may still
                # fall through to the next deployment.
                raise ProviderError(
                    exc.status, exc.message, retryable=True, retry_after=exc.retry_after, code=exc.code
                ) from None
            raise
        except BaseException:
            await upstream.aclose()
            raise
        return upstream, first, deadline

    return await run(call, targets, try_one)


async def run(call: Call, targets: list[Target], try_one: Callable[[Target], Awaitable[T]]) -> T:
    failures: list[ProviderError] = []
    for round_number in range(settings.UPSTREAM_RETRIES + 1):
        if round_number:
            await _back_off(round_number, failures)
        round_failures: list[ProviderError] = []
        open_targets: list[Target] = []
        for target in targets:
            verdict = await breaker.local.check(target.deployment_id, target.breaker)
            if verdict is breaker.Verdict.OPEN:
                call.attempt(target, "breaker_open")
                open_targets.append(target)
                continue
            call.target = target
            started = time.monotonic()
            network.private_network_allowed.set(target.allow_private_network)
            try:
                if target.base_url and network.literal_refusal(target.base_url, target.allow_private_network):
                    raise ProviderError(
                        502,
                        f"Provider '{target.provider_name}' is at an address GreenGate may not call.",
                        retryable=True,
                        code="upstream_address_refused",
                    )
                result = await try_one(target)
            except ProviderError as exc:
                exc.message = errors.redact(exc.message, target.api_key)
                await _note_failure(target, exc, started, verdict)
                call.attempt(target, exc.code)
                if not exc.retryable:
                    raise from_provider_error(exc) from None
                round_failures.append(exc)
                continue
            except asyncio.CancelledError:
                # The client left (or the server is stopping) while this deployment was working: the attempt
                # counts, and a probe it held is handed back so the breaker is not stuck half-open.
                call.attempt(target, "cancelled")
                if verdict is breaker.Verdict.PROBE:
                    await asyncio.shield(breaker.release_probe(target.deployment_id))
                raise
            transition = await breaker.local.record(
                target.deployment_id, target.breaker, verdict=verdict, ok=True, latency_ms=_elapsed_ms(started)
            )
            if transition != "same":
                logger.warning(
                    f"circuit breaker {transition}",
                    extra={"provider": target.provider_name, "deployment": target.deployment_id},
                )
            call.attempt(target, "ok")
            return result
        if not round_failures:
            # Every breaker is open: the failures that opened them this time, else a plain 503.
            if failures:
                break
            raise await _all_open(call, open_targets)
        failures = round_failures
    raise _exhausted_error(failures)


async def note_stream_failure(target: Target, exc: ProviderError) -> None:
    """A stream that broke after its first chunk still counts against its deployment."""
    await breaker.local.record(
        target.deployment_id, target.breaker, verdict=breaker.Verdict.CLOSED, ok=False, latency_ms=0, error=exc.code
    )


async def _note_failure(target: Target, exc: ProviderError, started: float, verdict: breaker.Verdict) -> None:
    logger.warning(
        "deployment failed",
        extra={"provider": target.provider_name, "deployment": target.deployment_id, "code": exc.code},
    )
    # Only the provider's faults count against it: an upstream 400 is about the request, and a 429 is the
    # provider asking for less traffic, which Retry-After and the client's 429 already convey.
    counts = (exc.retryable and exc.code != RATE_LIMITED) or exc.code == "upstream_auth_failed"
    if not counts and verdict is breaker.Verdict.PROBE:
        # A probe the provider answered, even with a refusal: it is up again.
        await breaker.local.record(target.deployment_id, target.breaker, verdict=verdict, ok=True, latency_ms=0)
    if counts:
        transition = await breaker.local.record(
            target.deployment_id,
            target.breaker,
            verdict=verdict,
            ok=False,
            latency_ms=_elapsed_ms(started),
            error=exc.code,
        )
        if transition != "same":
            logger.warning(
                f"circuit breaker {transition}",
                extra={"provider": target.provider_name, "deployment": target.deployment_id, "code": exc.code},
            )


async def _back_off(round_number: int, failures: list[ProviderError]) -> None:
    asked = max((f.retry_after or 0.0 for f in failures), default=0.0)
    if asked > settings.UPSTREAM_RETRY_MAX_WAIT:
        raise _exhausted_error(failures)
    # Exponential with full jitter, so instances retrying at once do not stampede the upstream together.
    delay = max(asked, random.uniform(0, BACKOFF_BASE_SECONDS * 2 ** (round_number - 1)))
    await asyncio.sleep(min(delay, settings.UPSTREAM_RETRY_MAX_WAIT))


def _exhausted_error(failures: list[ProviderError]) -> GatewayError:
    if failures and all(f.code == RATE_LIMITED for f in failures):
        waits = [f.retry_after for f in failures if f.retry_after]
        retry_after = max(1, round(min(waits))) if waits else 1
        return GatewayError(
            429,
            "Every deployment of this model is rate limited by its provider; retry after the time given.",
            type="rate_limit_error",
            code=RATE_LIMITED,
            headers={"Retry-After": str(retry_after)},
        )
    return from_provider_error(failures[-1])


async def _all_open(call: Call, targets: list[Target]) -> GatewayError:
    waits = [await breaker.retry_after(t.deployment_id) for t in targets]
    retry_after = max(1, round(min(waits, default=1.0)))
    return GatewayError(
        503,
        f"Every deployment of model '{call.model}' is failing and paused (circuit open); retry in {retry_after} s.",
        type="server_error",
        code="model_unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def timed_out(target: Target) -> ProviderError:
    return ProviderError(504, f"Provider '{target.provider_name}' timed out.", retryable=True, code="upstream_timeout")


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
