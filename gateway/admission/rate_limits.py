"""Step 3a: a call's rate limits, its x-ratelimit-* headers, and its 429."""

from __future__ import annotations

import asyncio
import contextvars
import math

from django.conf import settings

from gateway.admission import limiter
from gateway.admission.limiter import Decision, Limit
from gateway.call import Call
from gateway.errors import GatewayError
from gateway.schemas import message_text
from ledger import audit
from ledger.models import AuditAction
from providers.tokens import count_messages, embedding_input_tokens


def limits_for(call: Call) -> list[Limit]:
    assert call.key is not None
    key, limits = call.key, call.key.limits
    chosen = [Limit("requests", "tenant", str(key.tenant_id), limits.tenant_rpm)]
    if limits.key_rpm is not None:
        chosen.append(Limit("requests", "key", str(key.key_id), limits.key_rpm))
    if limits.tenant_tpm is not None:
        chosen.append(Limit("tokens", "tenant", str(key.tenant_id), limits.tenant_tpm))
    if limits.key_tpm is not None:
        chosen.append(Limit("tokens", "key", str(key.key_id), limits.key_tpm))
    return chosen


def estimated_usage(call: Call) -> tuple[int, int]:
    """The call's prompt tokens (GreenGate's count) and the most output it may ask for; counted once per call."""
    if call.token_estimate is None:
        if call.embedding is not None:
            call.token_estimate = (embedding_input_tokens(call.embedding.inputs, call.embedding.model).tokens, 0)
        else:
            assert call.chat is not None
            prompt = count_messages((message_text(m) for m in call.chat.messages), call.chat.model).tokens
            output = call.chat.output_limit or settings.DEFAULT_MAX_OUTPUT_TOKENS
            call.token_estimate = (prompt, output * (call.chat.n or 1))
    return call.token_estimate


def estimated_tokens(call: Call) -> int:
    """What the call may use at most, as OpenAI counts it against a token limit: prompt plus maximum output."""
    prompt, output = estimated_usage(call)
    return prompt + output


async def admit(call: Call) -> None:
    """Count the call against its key's and tenant's limits, or refuse it with a 429 saying which."""
    limits = limits_for(call)
    tokens = estimated_tokens(call) if any(limit.kind == "tokens" for limit in limits) else 0
    weighted = [(limit, 1 if limit.kind == "requests" else tokens) for limit in limits]
    decision = await limiter.check(call.request_id, weighted)
    call.response_headers.update(headers(decision))
    if not decision.admitted:
        assert decision.refused is not None
        audit_denial(call, AuditAction.RATE_LIMITED, f"{decision.refused.scope} {decision.refused.kind} per minute")
        raise refusal(call, decision, tokens)
    call.token_limits = [limit for limit in limits if limit.kind == "tokens"]
    call.reserved_tokens = tokens


async def admit_unauthenticated(address: str, request_id: str) -> GatewayError | None:
    """Callers without a valid key are limited per address (RATE_LIMIT_PER_MINUTE), never against a tenant."""
    if not address:
        return None
    limit = Limit("requests", "ip", address, settings.RATE_LIMIT_PER_MINUTE)
    decision = await limiter.check(request_id, [(limit, 1)])
    if decision.admitted:
        return None
    return _error(decision, limit, 1, who=f"address {address}")


def audit_denial(call: Call, action: AuditAction, limit: str) -> None:
    """Denials are audited in aggregate (one event per key, limit and minute), never one row per refusal."""
    assert call.key is not None
    audit.denial(
        action=action,
        limit=limit,
        key_id=call.key.key_id,
        key_prefix=call.key.prefix,
        tenant=call.key.tenant_slug,
        request_id=call.request_id,
    )


def settle_later(call: Call, used_tokens: int) -> None:
    """After the call: its token reservations become what it really used (off the request's task)."""
    if not call.token_limits:
        return
    limits, call.token_limits = call.token_limits, []
    loop = asyncio.get_running_loop()
    for limit in limits:
        task = loop.create_task(limiter.settle(call.request_id, limit, used_tokens), context=contextvars.Context())
        _pending.add(task)
        task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()


def headers(decision: Decision) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, for the tightest limit of each kind."""
    shown: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        usages = [u for u in decision.usage if u.limit.kind == kind]
        if not usages:
            continue
        tightest = min(usages, key=lambda u: (u.remaining, -u.empty_in_ms))
        shown[f"x-ratelimit-limit-{kind}"] = str(tightest.limit.maximum)
        shown[f"x-ratelimit-remaining-{kind}"] = str(tightest.remaining)
        shown[f"x-ratelimit-reset-{kind}"] = duration(tightest.empty_in_ms)
    return shown


def duration(ms: int) -> str:
    """As OpenAI writes them: 17ms, 1s, 1.5s, 6m0s."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m" + f"{rest:.3f}".rstrip("0").rstrip(".") + "s"


def refusal(call: Call, decision: Decision, tokens: int) -> GatewayError:
    assert decision.refused is not None and call.key is not None
    limit = decision.refused
    who = f"key {call.key.prefix}…" if limit.scope == "key" else f"tenant {call.key.tenant_slug}"
    weight = 1 if limit.kind == "requests" else tokens
    error = _error(decision, limit, weight, who=who)
    error.headers.update(call.response_headers)
    error.headers.update(_retry_after(decision))
    return error


def _error(decision: Decision, limit: Limit, weight: int, *, who: str) -> GatewayError:
    used = next((u.used for u in decision.usage if u.limit == limit), 0)
    per = "requests per min (RPM)" if limit.kind == "requests" else "tokens per min (TPM)"
    if decision.retry_after_ms < 0:
        message = (
            f"Request too large for {who} on {per}: Limit {limit.maximum}, Requested {weight}. "
            "Ask for fewer tokens (a smaller max_tokens or prompt), or for a higher limit."
        )
    else:
        message = (
            f"Rate limit reached for {who} on {per}: Limit {limit.maximum}, Used {used}, Requested {weight}. "
            f"Please try again in {duration(decision.retry_after_ms)}."
        )
    error = GatewayError(429, message, type=limit.kind, code="rate_limit_exceeded")
    error.headers.update(_retry_after(decision))
    return error


def _retry_after(decision: Decision) -> dict[str, str]:
    if decision.retry_after_ms < 0:
        return {}
    return {"Retry-After": str(max(1, math.ceil(decision.retry_after_ms / 1000)))}
