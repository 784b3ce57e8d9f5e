"""Step 7 of the pipeline: what a finished request leaves behind (ledger row, access log)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.live_config import KeyEntry
from ledger.writer import LedgerRow, ledger_writer
from providers.tokens import count_prompt_tokens, count_tokens
from providers.types import ChatRequest, Target, Usage

logger = logging.getLogger("greengate.requests")

CLIENT_CLOSED = 499  # the client left before the answer was complete (nginx's convention)


@dataclass(slots=True)
class Call:
    """Everything one request has learnt by the time it is accounted."""

    request_id: str
    stream: bool
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    chat: ChatRequest | None = None
    key: KeyEntry | None = None
    target: Target | None = None
    status: int | None = None
    error_code: str = ""
    usage: Usage | None = None
    first_token_at: float | None = None
    streamed: list[str] = field(default_factory=list)
    cache_status: str = "none"
    accounted: bool = False

    def fail(self, status: int, code: str | None) -> None:
        self.status = status
        self.error_code = code or ""

    def final_usage(self) -> Usage:
        if self.usage is not None and not self.usage.estimated:
            return self.usage
        if self.chat is None or self.target is None:
            return Usage()
        # No usage from upstream (it omitted it, or the client left first): count what was sent.
        return Usage(
            prompt_tokens=count_prompt_tokens(self.chat.messages),
            completion_tokens=count_tokens("".join(self.streamed)),
            estimated=True,
        )


def account(call: Call) -> None:
    """Record the request exactly once; safe to call from every exit path."""
    if call.accounted:
        return
    call.accounted = True
    if call.status is None:
        call.fail(CLIENT_CLOSED, "client_disconnected")
    usage = call.final_usage()
    elapsed = time.monotonic() - call.started
    ttft_ms = round((call.first_token_at - call.started) * 1000) if call.first_token_at else None
    row = LedgerRow(
        request_id=call.request_id,
        created_at=call.started_at,
        status_code=call.status,
        latency_ms=round(elapsed * 1000),
        stream=call.stream,
        tenant_id=call.key.tenant_id if call.key else None,
        api_key_id=call.key.key_id if call.key else None,
        provider=call.target.provider_name if call.target else "",
        model=call.chat.model if call.chat else "",
        upstream_model=call.target.upstream_model if call.target else "",
        error_code=call.error_code,
        cache_status=call.cache_status,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        usage_estimated=usage.estimated,
        ttft_ms=ttft_ms,
    )
    ledger_writer.record(row)
    logger.info(
        "chat completion",
        extra={
            "status": row.status_code,
            "error_code": row.error_code or None,
            "tenant": call.key.tenant_slug if call.key else None,
            "model": row.model or None,
            "provider": row.provider or None,
            "stream": row.stream,
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "latency_ms": row.latency_ms,
            "ttft_ms": row.ttft_ms,
        },
    )


def account_refused(request_id: str, *, status: int, code: str) -> None:
    """Record a request the server refused before GreenGate read it (a body over the size limit)."""
    call = Call(request_id=request_id, stream=False)
    call.fail(status, code)
    account(call)
